/**
 * Live data over socket.io [C-SOCKET]. A client emits `subscribe` with a device, a zone, a family or nothing
 * (everything); the ack carries a snapshot of the latest values and online states of what it subscribed to;
 * then it receives every `reading` and `status` as ingested, `rejected`, `aqi`, `indicator` and `command` for its
 * scope, and every `alarm` whatever its subscription.
 *
 * Connecting needs an operator session token or the service token in `auth: { token }` (any role may
 * subscribe); a refusal reaches the client as a `connect_error` whose `data.code` is CP_API_UNAUTHORIZED. A
 * socket is closed when its session ends (logout, operator disabled or password changed) or expires.
 *
 * Fan-out costs one emit per event (socket.io encodes once and sends to the union of rooms), whatever the
 * number of sockets: rooms `all`, `device:<id>`, `zone:<id>`, `family:<name>`.
 *
 * Batched sockets: a client that connects with `auth: { token, batch: true }` receives readings,
 * device indicators, device statuses and rejections in one `batch` event instead, at most one per `BATCH_MS`
 * per subscription, packed as arrays (`LiveBatchFrame`, batch-frame.ts; `unpackBatch` gives the objects back,
 * oldest first). Every socket.io event is a WebSocket frame and a write(v) system call per socket, and on this
 * machine those writes are the largest cost of fan-out: 200 screens at 5,000 readings/s would be 2 million
 * frames a second one by one, 50 per second per socket batched (one frame for all the arrays: two events per
 * flush measured 84–103 ms p99 in `npm run bench -- fanout`, see the README), and packing makes each frame about
 * a third the size. A batched
 * socket subscribed to overlapping scopes (all and a zone) gets a reading once per scope.
 *
 * Unbatched sockets share a budget of frames a second (api.maxUnbatchedFramesPerSecond): see `sentUnbatched`.
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { Ajv } from 'ajv';
import { Server, type ServerOptions, type Socket } from 'socket.io';
import { FAMILIES, type EnrichedReading, type Family } from '../ingest/index.ts';
import type { AlarmRecord, AqiEvent, BusEvents, CommandRecord, IndicatorEvent, LiveBus, RejectionEvent, StatusEvent } from '../core/bus.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { Auth, Principal } from './auth.ts';
import { BatchPacker, type LiveBatchFrame } from './batch-frame.ts';

export const SUBSCRIPTION_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    device: { type: 'string', maxLength: 64 },
    zone: { type: 'string', maxLength: 64 },
    family: { type: 'string', enum: FAMILIES },
  },
  maxProperties: 1,
} as const;

export interface Subscription {
  device?: string;
  zone?: string;
  family?: Family;
}

/** What a `subscribe` ack carries. */
export interface SubscribeAck {
  ok: boolean;
  /** With ok false: CP_API_LIVE_UNBATCHED_BUSY when refused for load (a malformed subscription has none). */
  code?: string;
  error?: string;
  room?: string;
  snapshot?: { readings: EnrichedReading[]; statuses: StatusEvent[] };
}

/** Socket events the server emits [C-SOCKET]. */
export interface ServerToClient {
  reading: (r: EnrichedReading) => void;
  status: (s: StatusEvent) => void;
  rejected: (r: RejectionEvent) => void;
  /** An air-quality index (station or zone), to all, zone, device (station) and family:airQuality rooms. */
  aqi: (a: AqiEvent) => void;
  /** Derived indicators of a device, a zone or the city. */
  indicator: (i: IndicatorEvent) => void;
  /**
   * Batched sockets: for one of its subscriptions, the readings, the device indicators, the device status
   * changes and the rejections of the last BATCH_MS, packed (`unpackBatch` gives them as objects, oldest first;
   * a batched socket gets no `reading`, `status` or `rejected` events, and zone and city indicators come one by
   * one as `indicator`).
   */
  batch: (b: LiveBatchFrame) => void;
  /** An alarm raised or changed: to every connected socket (every screen announces new alarms). */
  alarm: (a: AlarmRecord) => void;
  /** A command created or changed state: to all, its device's and its zone's rooms. */
  command: (c: CommandRecord) => void;
  /** Sent before the server shuts down, or disconnects this socket for load (the frame budget, below). */
  offline: (info: { reason: string }) => void;
}
export interface ClientToServer {
  subscribe: (sub: Subscription, ack: (a: SubscribeAck) => void) => void;
  unsubscribe: (sub: Subscription, ack?: (a: { ok: boolean }) => void) => void;
}

/** Between API nodes (api.redisUrl): each node's watched rooms, so that others send only what someone watches. */
export interface InterServer {
  [ROOMS_EVENT]: (node: string, rooms: string[]) => void;
}
export const ROOMS_EVENT = 'citypulse:rooms';
/** A node announces its watched rooms at least this often, ms; another's are forgotten 3 times as long after. */
export const ROOMS_HEARTBEAT_MS = 2000;
/** A change of this node's watched rooms is announced this long after it at most (changes in between go together), ms. */
export const ROOMS_ANNOUNCE_MS = 20;

/** Per socket: who connected (set at the handshake), and whether it asked for batched events. */
export interface SocketData {
  principal: Principal;
  batch?: boolean;
}

/** Batched sockets get readings and device indicators at most this often, ms (the latency it adds at most). */
export const BATCH_MS = 20;

/** Latest reading and status per device, kept from the bus (the snapshot source). */
export class LatestValues {
  readonly readings = new Map<string, EnrichedReading>();
  readonly statuses = new Map<string, StatusEvent>();
  matching(sub: Subscription): { readings: EnrichedReading[]; statuses: StatusEvent[] } {
    const match = (x: { device: string; zone: string; family: string }) =>
      (!sub.device || x.device === sub.device) && (!sub.zone || x.zone === sub.zone) && (!sub.family || x.family === sub.family);
    if (sub.device) {
      const r = this.readings.get(sub.device);
      const s = this.statuses.get(sub.device);
      return { readings: r ? [r] : [], statuses: s ? [s] : [] };
    }
    return { readings: [...this.readings.values()].filter(match), statuses: [...this.statuses.values()].filter(match) };
  }
}

const roomOf = (s: Subscription) => (s.device ? `device:${s.device}` : s.zone ? `zone:${s.zone}` : s.family ? `family:${s.family}` : 'all');
const roomsFor = (x: { device: string; zone: string; family: string }) => [
  'all',
  `device:${x.device}`,
  `zone:${x.zone}`,
  `family:${x.family}`,
];

export function attachLive(
  httpServer: http.Server,
  deps: {
    bus: LiveBus;
    latest: LatestValues;
    auth: Auth;
    metrics?: Metrics;
    logger?: Logger;
    maxSocketBufferedPackets?: number;
    /** The frame budget of unbatched sockets, see `sentUnbatched` (default 20,000; 0 = no limit). */
    maxUnbatchedFramesPerSecond?: number;
    /**
     * Several API nodes: socket.io's adapter that carries broadcasts to the sockets of every node (the Redis
     * streams adapter, api.redisUrl). The nodes then tell each other which rooms their sockets watch (below).
     */
    adapter?: ServerOptions['adapter'];
  },
): { io: Server<ClientToServer, ServerToClient, InterServer, SocketData>; close(): Promise<void> } {
  const log = deps.logger ?? silentLogger;
  // destroyUpgrade: false: upgrades of other paths (MQTT over WebSocket) are left to dashboard-api/upgrades.ts.
  const io = new Server<ClientToServer, ServerToClient, InterServer, SocketData>(httpServer, {
    serveClient: false,
    maxHttpBufferSize: 64 * 1024,
    destroyUpgrade: false,
    ...(deps.adapter ? { adapter: deps.adapter } : {}),
  });
  /**
   * Several nodes (deps.adapter): the rooms watched on the other nodes, as they announce them. An event is sent
   * (through Redis) only when a socket of this node or of another watches one of its rooms, as on one node. A
   * node announces its rooms within ROOMS_ANNOUNCE_MS of a change and every ROOMS_HEARTBEAT_MS; another node's
   * are forgotten when it has not announced for 3 heartbeats (it stopped, or Redis is unreachable).
   */
  const clustered = deps.adapter !== undefined;
  const node = randomBytes(6).toString('hex');
  const remoteRooms = new Map<string, { rooms: Set<string>; at: number }>();
  let remoteUnion = new Set<string>();
  const rebuildUnion = () => {
    const now = Date.now();
    remoteUnion = new Set();
    for (const [n, r] of remoteRooms) {
      if (now - r.at > 3 * ROOMS_HEARTBEAT_MS) remoteRooms.delete(n);
      else for (const room of r.rooms) remoteUnion.add(room);
    }
  };
  /** Whether a socket of this node or (several nodes) of another is in `room`. */
  const anyoneIn = (room: string) => io.sockets.adapter.rooms.has(room) || (clustered && remoteUnion.has(room));
  let announceTimer: NodeJS.Timeout | undefined;
  const announce = () => {
    announceTimer = undefined;
    const a = io.sockets.adapter;
    // Every socket is alone in a room named by its id: not a subscription.
    const rooms = [...a.rooms.keys()].filter((r) => !a.sids.has(r));
    io.serverSideEmit(ROOMS_EVENT, node, rooms);
  };
  let heartbeat: NodeJS.Timeout | undefined;
  if (clustered) {
    io.on(ROOMS_EVENT, (from, rooms) => {
      if (from === node || !Array.isArray(rooms)) return;
      remoteRooms.set(from, { rooms: new Set(rooms.filter((r) => typeof r === 'string')), at: Date.now() });
      rebuildUnion();
    });
    const changed = (room: string) => {
      if (!io.sockets.adapter.sids.has(room)) announceTimer ??= setTimeout(announce, ROOMS_ANNOUNCE_MS);
    };
    io.sockets.adapter.on('create-room', changed);
    io.sockets.adapter.on('delete-room', changed);
    heartbeat = setInterval(() => {
      announce();
      rebuildUnion();
    }, ROOMS_HEARTBEAT_MS);
    heartbeat.unref();
    announce();
  }
  const ajv = new Ajv({ allErrors: true });
  const validSub = ajv.compile<Subscription>(SUBSCRIPTION_SCHEMA);

  io.use((socket, next) => {
    const token = (socket.handshake.auth as { token?: unknown } | undefined)?.token;
    deps.auth.resolve(typeof token === 'string' ? token : undefined).then(
      (p) => {
        if (!p) return next(Object.assign(new Error('unauthorized'), { data: { code: 'CP_API_UNAUTHORIZED' } }));
        socket.data.principal = p;
        socket.data.batch = (socket.handshake.auth as { batch?: unknown }).batch === true;
        next();
      },
      (err) => {
        log.error({ err }, 'socket.io authentication failed');
        next(Object.assign(new Error('internal error'), { data: { code: 'CP_API_INTERNAL' } }));
      },
    );
  });
  const endSockets = (match: (p: Principal) => boolean) => {
    for (const socket of io.sockets.sockets.values()) if (match(socket.data.principal)) socket.disconnect(true);
  };
  const offEnded = deps.auth.onEnded((e) =>
    endSockets((p) => ('sessionId' in e ? p.sessionId === e.sessionId : p.kind === 'session' && p.username === e.username)),
  );
  const expiryCheck = setInterval(() => {
    const now = new Date().toISOString();
    endSockets((p) => p.expiresAt !== undefined && p.expiresAt <= now);
  }, 1000);
  expiryCheck.unref();

  // socket.io encodes a broadcast before it looks for members: with nobody watching, that was ~11 % of
  // the platform's CPU per reading (bench profile). Only emit when one of the rooms has a member.
  const watched = (rooms: string[]) => rooms.some(anyoneIn);
  /** Sockets in `rooms`, one per room it is in (the frames an emit to them costs, give or take overlaps). */
  const members = (rooms: string[]) => {
    const all = io.sockets.adapter.rooms;
    let n = 0;
    for (const room of rooms) n += all.get(room)?.size ?? 0;
    return n;
  };
  // Batched delivery: per room of batched sockets (`batch:<room>`), what waits for the next flush.
  const batchRooms = new Map<string, BatchPacker>();
  let batchedSockets = 0;
  let batchTimer: NodeJS.Timeout | undefined;
  const flushBatches = () => {
    batchTimer = undefined;
    // One event (one frame, one write per socket) for both arrays.
    for (const [room, b] of batchRooms) io.to(`batch:${room}`).emit('batch', b.take());
    batchRooms.clear();
  };
  /** Adds `item` to the pending frame of each of `rooms` that has batched members (`add`: a BatchPacker method). */
  const queueBatch = <T>(rooms: string[], add: (b: BatchPacker, item: T) => void, item: T) => {
    const all = io.sockets.adapter.rooms;
    for (const room of rooms) {
      if (!all.has(`batch:${room}`) && !(clustered && remoteUnion.has(`batch:${room}`))) continue;
      let b = batchRooms.get(room);
      if (!b) {
        b = new BatchPacker();
        batchRooms.set(room, b);
      }
      add(b, item);
      batchTimer ??= setTimeout(flushBatches, BATCH_MS);
    }
  };
  const addReading = (b: BatchPacker, r: EnrichedReading) => b.addReading(r);
  const addIndicator = (b: BatchPacker, i: IndicatorEvent) => b.addIndicator(i);
  const addStatus = (b: BatchPacker, s: StatusEvent) => b.addStatus(s);
  const addRejection = (b: BatchPacker, r: RejectionEvent) => b.addRejection(r);
  /**
   * The budget of frames to unbatched sockets. Each event is a frame and a write system call per unbatched
   * socket in its rooms (~20 µs on loopback): 200 of them watching everything at 5,000 readings/s were ~2 million
   * frames a second, and the platform's thread stopped running its timers for 80–105 s (`npm run bench --
   * fanout`, the unbatched comparison). It is not a slow client (their buffers stay empty), so the slow-consumer
   * bound does not see it. So the frames are counted where they are sent (the check rides on the sending, not on
   * a timer, which that load delays); once two seconds in a row were over the budget, the newest unbatched sockets
   * holding a broad subscription (everything, a zone, a family: the ones whose cost grows with the city) are
   * told why (`offline`) and disconnected, as many as the budget needs (an even share per socket assumed; the
   * oldest always stays), and new broad subscriptions of unbatched sockets are refused
   * (CP_API_LIVE_UNBATCHED_BUSY) from the first second over it until a second is under it again. Batched
   * sockets and device subscriptions are never shed.
   */
  const maxFrames = deps.maxUnbatchedFramesPerSecond ?? 20_000;
  /** Unbatched sockets with a broad subscription, in the order they took their first one (the newest last). */
  const broadUnbatched = new Map<string, Socket<ClientToServer, ServerToClient, InterServer, SocketData>>();
  let frames = 0;
  let windowStart = performance.now();
  /** Frames a second to unbatched sockets in the last whole window (0 until one ended). */
  let rate = 0;
  /** Whole windows in a row over the budget. */
  let overWindows = 0;
  /** Counts `n` frames just sent to unbatched sockets; closes the window once a second has passed. */
  const sentUnbatched = (n: number) => {
    if (maxFrames === 0) return;
    frames += n;
    const now = performance.now();
    if (now - windowStart < 1000) return;
    rate = (frames * 1000) / (now - windowStart);
    frames = 0;
    windowStart = now;
    overWindows = rate > maxFrames ? overWindows + 1 : 0;
    // Two seconds in a row: one over it can be the catch-up after a stall (measured: the last socket shed).
    if (overWindows >= 2 && broadUnbatched.size > 0) shed();
  };
  const shed = () => {
    // The oldest stays whatever the rate: one screen may always watch (its cost is the event rate itself), and
    // the rate after a stall includes its catch-up (measured: otherwise the last one went too).
    const n = Math.min(broadUnbatched.size - 1, Math.ceil(broadUnbatched.size * (1 - maxFrames / rate)));
    if (n <= 0) return;
    const newest = [...broadUnbatched.values()].slice(-n);
    log.warn(
      { rate: Math.round(rate), limit: maxFrames, disconnected: newest.length },
      'socket.io: too many frames to sockets without batching; the newest ones watching a zone, a family or everything are disconnected',
    );
    for (const socket of newest) {
      broadUnbatched.delete(socket.id);
      // Out of every room at once: the disconnect itself waits for the socket's write buffer to drain, and
      // meanwhile it would still be sent (and counted) every event.
      for (const room of [...socket.rooms]) if (room !== socket.id) void socket.leave(room);
      socket.emit('offline', {
        reason: `${Math.round(rate)} frames a second to sockets without batching, over api.maxUnbatchedFramesPerSecond (${maxFrames}): connect with auth.batch: true (CP_API_LIVE_UNBATCHED_BUSY)`,
      });
      socket.disconnect(true);
    }
  };
  /**
   * A broad subscription of an unbatched socket is refused while the last second was over the budget; a quiet
   * spell (no frame sent to close the window for 2 s) ends the refusal, and the window closed next is then
   * measured over that whole spell.
   */
  const unbatchedBusy = () => maxFrames > 0 && rate > maxFrames && performance.now() - windowStart < 2000;
  /** A subscription whose cost grows with the city: everything, a zone or a family (not one device). */
  const isBroad = (room: string) => room === 'all' || room.startsWith('zone:') || room.startsWith('family:');

  /**
   * A device's event to its rooms: one by one to plain sockets, into the frames for batched ones. Readings come
   * at the ingest rate, statuses in bursts (thousands of devices reconnecting after an outage), rejections as
   * fast as a device with broken firmware can send: one event per item per screen would be a write each.
   */
  const route = <T extends { device: string; zone: string; family: string }>(
    event: 'reading' | 'status' | 'rejected',
    item: T,
    add: (b: BatchPacker, item: T) => void,
  ) => {
    // No socket connected (every socket has its own room): nothing to route, skip building the room names.
    if (io.sockets.adapter.rooms.size === 0 && remoteUnion.size === 0) return;
    const rooms = roomsFor(item);
    const n = members(rooms);
    if (n > 0 || (clustered && rooms.some((r) => remoteUnion.has(r)))) {
      io.to(rooms).emit(event, item as never);
      sentUnbatched(n);
    }
    if (batchedSockets > 0 || clustered) queueBatch(rooms, add, item);
  };
  const onReading = (r: EnrichedReading) => {
    deps.latest.readings.set(r.device, r);
    route('reading', r, addReading);
  };
  /** Low-volume events (indices, commands) go one by one to batched sockets too: the rooms plus their `batch:` counterparts. */
  const withBatched = (rooms: string[]) => (batchedSockets > 0 || clustered ? [...rooms, ...rooms.map((r) => `batch:${r}`)] : rooms);
  const onStatus = (s: StatusEvent) => {
    deps.latest.statuses.set(s.device, s);
    route('status', s, addStatus);
  };
  const onRejected = (r: RejectionEvent) => route('rejected', r, addRejection);
  const onAqi = (a: AqiEvent) => {
    const rooms = withBatched(['all', `zone:${a.zone}`, 'family:airQuality', ...(a.scope === 'station' ? [`device:${a.id}`] : [])]);
    if (watched(rooms)) io.to(rooms).emit('aqi', a);
  };
  const onIndicator = (i: IndicatorEvent) => {
    if (io.sockets.adapter.rooms.size === 0 && remoteUnion.size === 0) return; // no socket connected: nothing to route
    const rooms = ['all', `family:${i.family}`];
    if (i.zone) rooms.push(`zone:${i.zone}`);
    if (i.scope === 'device') rooms.push(`device:${i.id}`);
    const n = members(rooms);
    if (n > 0 || (clustered && rooms.some((r) => remoteUnion.has(r)))) {
      io.to(rooms).emit('indicator', i);
      sentUnbatched(n);
    }
    if (batchedSockets > 0 || clustered) {
      // Device indicators come with every reading: batched; zone and city ones are throttled already.
      if (i.scope === 'device') queueBatch(rooms, addIndicator, i);
      else {
        const batched = rooms.map((r) => `batch:${r}`);
        if (watched(batched)) io.to(batched).emit('indicator', i);
      }
      // (A socket is either batched or not: its rooms are `batch:` ones or plain ones, never both.)
    }
  };
  // Alarms are few and every operator must see a new one, whatever the screen is subscribed to.
  const onAlarm = (a: AlarmRecord) => io.emit('alarm', a);
  const onCommand = (c: CommandRecord) => {
    const rooms = ['all', `device:${c.device}`];
    if (c.zone) rooms.push(`zone:${c.zone}`);
    if (c.family) rooms.push(`family:${c.family}`);
    const to = withBatched(rooms);
    if (watched(to)) io.to(to).emit('command', c);
  };
  const forwarded = {
    reading: onReading,
    status: onStatus,
    rejected: onRejected,
    aqi: onAqi,
    indicator: onIndicator,
    alarm: onAlarm,
    command: onCommand,
  };
  for (const [event, fn] of Object.entries(forwarded)) deps.bus.on(event as keyof BusEvents, fn as (...a: unknown[]) => void);

  // Slow consumers: a socket that stops reading piles packets up in its engine.io write buffer.
  // Past the bound it is disconnected (the client reconnects and gets a fresh snapshot), so one frozen
  // screen never holds unbounded memory or slows the others.
  const maxBuffered = deps.maxSocketBufferedPackets ?? 2000;
  const slowCheck = setInterval(() => {
    for (const socket of io.sockets.sockets.values()) {
      const buffered = (socket.conn as unknown as { writeBuffer: unknown[] }).writeBuffer.length;
      if (buffered > maxBuffered) {
        deps.metrics?.socketsDropped.inc();
        log.warn({ socket: socket.id, buffered }, 'socket.io client not reading: disconnected');
        // discard: drop the buffered packets now instead of waiting for a drain that will not come.
        (socket.conn as unknown as { close(discard: boolean): void }).close(true);
      }
    }
  }, 250);
  slowCheck.unref();

  io.on('connection', (socket: Socket<ClientToServer, ServerToClient, InterServer, SocketData>) => {
    deps.metrics?.socketClients.set(io.engine.clientsCount);
    socket.on('disconnect', () => deps.metrics?.socketClients.set(io.engine.clientsCount));
    socket.on('subscribe', (sub, ack) => {
      if (typeof ack !== 'function') return;
      const s = sub ?? {};
      if (!validSub(s)) {
        return ack({
          ok: false,
          error: `invalid subscription: ${ajv.errorsText(validSub.errors)}; give one of device, zone, family, or none`,
        });
      }
      const room = roomOf(s);
      const broad = !socket.data.batch && isBroad(room);
      if (broad && !broadUnbatched.has(socket.id) && unbatchedBusy()) {
        return ack({
          ok: false,
          code: 'CP_API_LIVE_UNBATCHED_BUSY',
          error: `the platform already sends ${Math.round(rate)} frames a second to sockets without batching (api.maxUnbatchedFramesPerSecond ${maxFrames}): connect with auth.batch: true, or subscribe to one device`,
        });
      }
      if (broad) broadUnbatched.set(socket.id, socket);
      void socket.join(socket.data.batch ? `batch:${room}` : room);
      ack({ ok: true, room, snapshot: deps.latest.matching(s) });
    });
    socket.on('unsubscribe', (sub, ack) => {
      if (sub && validSub(sub)) void socket.leave(socket.data.batch ? `batch:${roomOf(sub)}` : roomOf(sub));
      // No broad room left: no longer among the sockets the budget sheds.
      if (!socket.data.batch && ![...socket.rooms].some(isBroad)) broadUnbatched.delete(socket.id);
      if (typeof ack === 'function') ack({ ok: true });
    });
    socket.on('disconnect', () => broadUnbatched.delete(socket.id));
    if (socket.data.batch) {
      batchedSockets++;
      socket.on('disconnect', () => batchedSockets--);
    }
  });

  return {
    io,
    async close() {
      clearInterval(slowCheck);
      clearTimeout(batchTimer);
      clearInterval(expiryCheck);
      clearInterval(heartbeat);
      clearTimeout(announceTimer);
      offEnded();
      for (const [event, fn] of Object.entries(forwarded)) deps.bus.off(event as keyof BusEvents, fn as (...a: unknown[]) => void);
      io.emit('offline', { reason: 'server shutting down' });
      await new Promise<void>((resolve) => io.close(() => resolve()));
      log.debug('socket.io closed');
    },
  };
}
