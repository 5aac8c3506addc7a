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
 * Unbatched sockets share a budget of frames a second (api.maxUnbatchedFramesPerSecond): see live-budget.ts.
 * The socket's contract (events, subscription, snapshot source) is in live-protocol.ts.
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { Ajv } from 'ajv';
import { Server, type ServerOptions } from 'socket.io';
import type { EnrichedReading } from '../ingest/index.ts';
import type { AlarmRecord, AqiEvent, BusEvents, CommandRecord, IndicatorEvent, LiveBus, RejectionEvent, StatusEvent } from '../core/bus.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { PlatformError } from '../core/errors.ts';
import type { Metrics } from '../core/metrics.ts';
import type { Auth, Principal } from './auth.ts';
import { BatchPacker } from './batch-frame.ts';
import { createFrameBudget, isBroad } from './live-budget.ts';
import {
  BATCH_MS,
  type ClientToServer,
  type InterServer,
  type LatestValues,
  type LiveSocket,
  ROOMS_ANNOUNCE_MS,
  ROOMS_EVENT,
  ROOMS_HEARTBEAT_MS,
  roomOf,
  roomsFor,
  type ServerToClient,
  type SocketData,
  type Subscription,
  SUBSCRIPTION_SCHEMA,
} from './live-protocol.ts';

export {
  BATCH_MS,
  type ClientToServer,
  type InterServer,
  LatestValues,
  ROOMS_ANNOUNCE_MS,
  ROOMS_EVENT,
  ROOMS_HEARTBEAT_MS,
  type ServerToClient,
  type SocketData,
  type SubscribeAck,
  type Subscription,
  SUBSCRIPTION_SCHEMA,
} from './live-protocol.ts';

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
): {
  io: Server<ClientToServer, ServerToClient, InterServer, SocketData>;
  /** Checks every session socket's token again and closes those whose session ended (ends when done or on a failure). */
  recheckSessions(): Promise<void>;
  close(): Promise<void>;
} {
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
        // A coded error (the shared state database unavailable) keeps its code; anything else is internal.
        const code = err instanceof PlatformError ? err.code : 'CP_API_INTERNAL';
        log.error({ err, code }, 'socket.io authentication failed');
        next(Object.assign(new Error(code === 'CP_API_INTERNAL' ? 'internal error' : err.message), { data: { code } }));
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
  const maxFrames = deps.maxUnbatchedFramesPerSecond ?? 20_000;
  const { sentUnbatched, admitBroad, forget } = createFrameBudget(maxFrames, log);

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

  io.on('connection', (socket: LiveSocket) => {
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
      const refused = !socket.data.batch && isBroad(room) ? admitBroad(socket) : undefined;
      if (refused) return ack({ ok: false, code: 'CP_API_LIVE_UNBATCHED_BUSY', error: refused });
      void socket.join(socket.data.batch ? `batch:${room}` : room);
      ack({ ok: true, room, snapshot: deps.latest.matching(s) });
    });
    socket.on('unsubscribe', (sub, ack) => {
      if (sub && validSub(sub)) void socket.leave(socket.data.batch ? `batch:${roomOf(sub)}` : roomOf(sub));
      // No broad room left: no longer among the sockets the budget sheds.
      if (!socket.data.batch && ![...socket.rooms].some(isBroad)) forget(socket.id);
      if (typeof ack === 'function') ack({ ok: true });
    });
    socket.on('disconnect', () => forget(socket.id));
    if (socket.data.batch) {
      batchedSockets++;
      socket.on('disconnect', () => batchedSockets--);
    }
  });

  return {
    io,
    async recheckSessions() {
      for (const socket of [...io.sockets.sockets.values()]) {
        if (socket.data.principal?.kind !== 'session' || !socket.connected) continue;
        const token = (socket.handshake.auth as { token?: unknown }).token;
        if (!(await deps.auth.resolve(typeof token === 'string' ? token : undefined))) socket.disconnect(true);
      }
    },
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
