/**
 * The embedded MQTT broker (Aedes over TCP; TLS and WebSocket in listeners.ts) with the device rules of the contract [C-TOPIC]:
 * - CONNECT: username = device id = client id, password = token. Unknown device or wrong token →
 *   CONNACK 4 "bad username or password"; revoked → 5 "not authorized"; client id ≠ username → 2.
 * - PUBLISH: a device may publish only to `devices/{own id}/telemetry` and `devices/{own id}/acks` (anything
 *   else closes the connection: MQTT 3.1.1 has no negative PUBACK); the retain flag is cleared.
 * - SUBSCRIBE: only `devices/{own id}/errors` and `devices/{own id}/commands`; anything else gets 0x80.
 * - `devices/{id}/status` is retained and kept by the platform from connect/disconnect.
 * Telemetry and acks go to `onMessage` (kind `telemetry` / `acks`) from the authorizePublish hook, so a QoS 1
 * PUBACK leaves only once ingest made the reading durable (see the comment there).
 * For commands (platform → device) the broker tells `events` when a device's subscription is in place
 * (`subscribed`: a command published before the SUBSCRIBE would be lost) and when the device PUBACKed a QoS 1
 * publish to it (`delivered`).
 */
import { EventEmitter, setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex, Writable } from 'node:stream';
import { Aedes, type Client } from 'aedes';
import { TOPICS, type DeviceStatus } from '../core/contract.ts';
import { ConnectionGuard, LIMIT_DEFAULTS, limitPacketSize } from './connection-guard.ts';
import { createWebSocketListener, startTlsListener, type TlsListener } from './listeners.ts';
import type { Delivery, DeviceMeta } from '../ingest/index.ts';
import type { DeviceStore } from '../registry/index.ts';
import type { LiveBus } from '../core/bus.ts';
import { excerpt } from '../core/log-excerpt.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';

export interface BrokerOptions {
  host: string;
  /** 0 = any free port. */
  port: number;
  drainTimeoutMs: number;
  /** Connections held at most (all listeners). Default LIMIT_DEFAULTS. */
  maxConnections?: number;
  /** Connection attempts per source address per window; 0 = no limit. */
  maxConnectionAttemptsPerAddress?: number;
  connectionAttemptWindowMs?: number;
  /** Largest MQTT packet accepted, bytes; a larger one closes the connection. */
  maxPacketBytes?: number;
  /** Largest keepalive a client may ask for, s; a larger one is closed without CONNACK. */
  maxKeepaliveSeconds?: number;
  /** A connection with keepalive 0 (keep-alive off) is closed after this long without a packet from it, s. */
  idleTimeoutSeconds?: number;
  /**
   * Lab mode (conformance suites, tools): clients that are not devices may connect anonymously and publish and
   * subscribe on any topic. Devices keep their rules and their telemetry is still ingested; a provisioned
   * device's id (as username or client id) still needs its token. Never in production.
   */
  labMode?: boolean;
  /** Subscription filters refused (SUBACK 0x80) to lab tools, as conformance suites expect. Default none. */
  labRefusedTopics?: readonly string[];
  /** MQTT over TLS on `host` (broker/listeners.ts); certFile and keyFile empty = self-signed in tlsSelfSignedDir. */
  tls?: { enabled: boolean; port: number; certFile: string; keyFile: string; caFile?: string; requireClientCert?: boolean };
  tlsSelfSignedDir?: string;
}

export interface BrokerDeps {
  devices: Pick<DeviceStore, 'checkToken' | 'touch'>;
  /**
   * A message of an authenticated device on one of its own topics (kind = last topic level). A returned
   * promise withholds the acknowledgement until it settles, and with it the acknowledgements of the
   * connection's later messages (they leave in order); a rejection closes the connection with none of them
   * acknowledged, so the device sends them again.
   */
  onMessage: (device: DeviceMeta, kind: string, payload: Buffer, qos: number, delivery?: Delivery, closed?: AbortSignal) => unknown;
  /** A QoS 1 message's PUBACK was handed to its connection (which may still lose it if it breaks). */
  onAcknowledged?: (device: DeviceMeta, delivery: Delivery) => void;
  /** A device's connection ended; `clean`: it sent DISCONNECT, so every PUBACK written to it had arrived. */
  onConnectionClosed?: (device: DeviceMeta, connection: number, clean: boolean) => void;
  /**
   * True while messages wait for room (the durable log's disk budget is used up): a connection whose message
   * waits then stops being read until all its waiting messages are answered, so the device is slowed down by
   * TCP instead of its messages piling up in memory.
   */
  slowDown?: () => boolean;
  bus?: LiveBus;
  metrics?: Metrics;
  logger?: Logger;
}

/** What the broker tells about platform → device delivery. */
export interface BrokerEvents {
  /** A device's connection holds a granted subscription to `topic` and its CONNACK went out: publishes reach it now. */
  subscribed: [deviceId: string, topic: string];
  /** A device answered a QoS 1 publish of the platform with PUBACK (the message reached the device). */
  delivered: [deviceId: string, topic: string, payload: Buffer];
}

export interface Broker {
  /** Starts the TCP listener (and the TLS one when tls.enabled); `tls` = its address and server certificate. */
  start(): Promise<{ host: string; port: number; tls?: { host: string; port: number; certFile: string } }>;
  stop(): Promise<void>;
  /** Publishes as the platform (no client: not subject to device rules). */
  publish(topic: string, payload: string | Buffer, opts?: { qos?: 0 | 1; retain?: boolean }): Promise<void>;
  /**
   * Takes a new connection from any listener (TCP, TLS, WebSocket): admission limits, the packet size guard,
   * then aedes. `address` is the source address for the per-address attempt limit.
   */
  accept(stream: Duplex, address: string | undefined): void;
  /** MQTT over WebSocket: takes an HTTP upgrade request routed to the broker's path (refused after stop()). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Closes the connection of a device, if it is connected. */
  disconnect(deviceId: string): boolean;
  isOnline(deviceId: string): boolean;
  /** True while the device's current connection holds a granted subscription to exactly `topic` (after its CONNACK). */
  isSubscribed(deviceId: string, topic: string): boolean;
  onlineCount(): number;
  readonly events: EventEmitter<BrokerEvents>;
  readonly aedes: Aedes;
}

/** Pending connections the kernel queues for accept() (see start()). */
export const LISTEN_BACKLOG = 16_384;

/** net.core.somaxconn, which caps every listen backlog (Linux); undefined elsewhere. */
export function somaxconn(): number | undefined {
  try {
    const n = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8').trim());
    return Number.isFinite(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

type AuthError = Error & { returnCode: number };
const authError = (message: string, returnCode: number): AuthError => Object.assign(new Error(message), { returnCode });

export async function createBroker(options: BrokerOptions, deps: BrokerDeps): Promise<Broker> {
  const opts = { ...LIMIT_DEFAULTS, ...options };
  const log = deps.logger ?? silentLogger;
  const metrics = deps.metrics;
  const devices = new WeakMap<Client, DeviceMeta>();
  const online = new Map<string, Client>();

  const guard = new ConnectionGuard({
    maxConnections: opts.maxConnections,
    maxAttemptsPerAddress: opts.maxConnectionAttemptsPerAddress,
    attemptWindowMs: opts.connectionAttemptWindowMs,
    maxPacketBytes: opts.maxPacketBytes,
  });
  const lab = opts.labMode === true;
  const labRefused = new Set(opts.labRefusedTopics ?? []);
  if (lab) {
    log.warn(
      'LAB MODE IS ON: anonymous MQTT clients and free topics are allowed. For conformance suites and tools only, never in production (broker.labMode)',
    );
  }
  /**
   * QoS 1 publishes written to each device, oldest first, until its PUBACK: aedes 1.2 stores outgoing packets
   * only for persistent sessions, so its 'ack' event carries no packet for a clean session (every simulated
   * light). A client must send PUBACKs in the order it received the PUBLISHes [MQTT-4.6.0-2], and aedes writes
   * a client's packets in the order it forwards them (authorizeForward, then one setImmediate each): the oldest
   * entry is the one a PUBACK answers.
   */
  const inflight = new WeakMap<Client, { topic: string; payload: Buffer }[]>();
  const MAX_TRACKED_INFLIGHT = 1000;
  /** Clients whose CONNECT had an empty client id with a persistent session [MQTT-3.1.3-8]. */
  const emptyPersistentId = new WeakSet<Client>();
  /** Device telemetry and acks taken by ingest in authorizePublish, which nobody may subscribe to (see below). */
  const consumed = new WeakSet<object>();
  /**
   * PUBACKs leave in the order the publishes came [MQTT-4.6.0-2]. aedes handles all the packets of one socket
   * read at once (and reads again as data arrives), and a publish's PUBACK waits for onMessage's promise (the
   * reading durable), while one refused at once (invalid, over the rate) would be answered at once: ahead of
   * its connection's earlier publishes. So a connection's publishes wait here in arrival order, and one is
   * answered only once every earlier one was. test/broker-ack-order.test.ts.
   */
  interface Awaiting {
    settled: boolean;
    err: Error | undefined;
    cb: (err: Error | null) => void;
    device: DeviceMeta;
    /** QoS 1 packet id and connection, reported to onAcknowledged once its PUBACK is handed over. */
    delivery: Delivery | undefined;
  }
  const awaiting = new WeakMap<Client, Awaiting[]>();
  /** A connection's first refusal: what settles after it is refused too (the connection is closing). */
  const refusals = new WeakMap<Client, Error>();
  /** Aborted when the connection ends: messages waiting for room let go of it (see onMessage). */
  const closers = new WeakMap<Client, AbortController>();
  const closedSignal = (client: Client) => {
    let c = closers.get(client);
    if (!c) {
      c = new AbortController();
      // One listener per waiting message of the connection (a paused socket bounds how many).
      setMaxListeners(0, c.signal);
      closers.set(client, c);
    }
    return c.signal;
  };
  /** Each connection's number in this run (a resend comes on another connection than its first delivery). */
  const connectionIds = new WeakMap<Client, number>();
  let lastConnectionId = 0;
  const connectionId = (client: Client) => {
    let id = connectionIds.get(client);
    if (id === undefined) {
      id = ++lastConnectionId;
      connectionIds.set(client, id);
    }
    return id;
  };
  const acknowledged = (device: DeviceMeta, delivery: Delivery | undefined) => {
    if (!delivery || !deps.onAcknowledged) return;
    try {
      deps.onAcknowledged(device, delivery);
    } catch (err) {
      log.error({ err, device: device.id }, 'acknowledgement listener failed');
    }
  };
  /**
   * Connections not read while their messages wait for room. aedes 1.2 reads a socket again on every
   * 'readable' even while a publish of it is still waiting (lib/client.js nextBatch), so without this a full
   * disk budget held every device's whole stream in memory. Client.pause() makes aedes skip those reads; the
   * socket's buffer then fills and TCP pushes back on the device. They are resumed a few per turn, so a
   * budget that frees up does not release every held device in one turn of the event loop. aedes counts the
   * packets of a read still being handled (`_parsingBatch`) and skips that count while paused, so it is set to
   * one before resume() (whose own call takes it to zero and reads): every message of the connection has been
   * answered by then.
   */
  const pausedClients = new WeakSet<Client>();
  const toResume: Client[] = [];
  const RESUME_PER_TURN = 64;
  const resumeSome = () => {
    for (const c of toResume.splice(0, RESUME_PER_TURN)) {
      const paused = c as Client & { resume(): void; _parsingBatch: number };
      paused._parsingBatch = 1;
      paused.resume();
    }
    if (toResume.length) setImmediate(resumeSome);
  };
  const resumeReading = (client: Client) => {
    if (!pausedClients.delete(client)) return;
    toResume.push(client);
    if (toResume.length === 1) setImmediate(resumeSome);
  };
  const settle = (client: Client, entry: Awaiting, err: Error | undefined) => {
    entry.settled = true;
    entry.err = err;
    const waiting = awaiting.get(client) as Awaiting[];
    if (waiting[0] !== entry) return;
    let n = 0;
    while (n < waiting.length && (waiting[n] as Awaiting).settled) n++;
    const ready = waiting.splice(0, n);
    if (waiting.length === 0) {
      awaiting.delete(client);
      resumeReading(client);
    }
    corkBriefly(client.conn);
    // After a refusal the connection closes, and nothing behind it is acknowledged, in this call or a later one:
    // the device sends it all again.
    let refused = refusals.get(client);
    for (const e of ready) {
      if (e.err && !refused) {
        refused = e.err;
        refusals.set(client, refused);
        // A connection that ended while its messages waited for room is no fault: they were let go on purpose.
        if (e.err.name === 'ConnectionClosedError') log.debug({ device: e.device.id }, e.err.message);
        else log.error({ err: e.err.message, device: e.device.id }, 'message not made durable: connection closed unacknowledged');
      }
      e.cb(refused ?? null);
      if (!refused) acknowledged(e.device, e.delivery);
    }
  };
  const aedes = await Aedes.createBroker({
    drainTimeout: opts.drainTimeoutMs,
    // No keepaliveLimit: aedes would answer keepalive 0 (which MQTT 3.1.1 allows) and one over the limit with
    // CONNACK 6, a code MQTT 3.1.1 reserves. Both are handled in preConnect.
    preConnect(client, packet, cb) {
      if (!packet.clientId && !packet.clean) emptyPersistentId.add(client);
      // [MQTT-3.1.2-2]: level 4 is named "MQTT" and level 3 (MQTT 3.1) "MQIsdp"; aedes checks the level alone and
      // accepts "MQTT" at level 3. An unsupported level makes aedes itself answer CONNACK 1 and close.
      const level = packet.protocolVersion;
      if (!((packet.protocolId === 'MQTT' && level === 4) || (packet.protocolId === 'MQIsdp' && level === 3))) {
        (packet as { protocolVersion: number }).protocolVersion = 0;
        return cb(null, true);
      }
      const keepalive = packet.keepalive ?? 0;
      if (keepalive > opts.maxKeepaliveSeconds) {
        // No CONNACK return code says "keepalive too long": close without one [MQTT-3.2.2-6].
        metrics?.mqttAuthFailures.inc({ reason: 'keepalive-too-long' });
        log.info({ keepalive, limit: opts.maxKeepaliveSeconds }, 'MQTT connection refused: keepalive too long');
        return cb(new Error('keepalive above broker.maxKeepaliveSeconds'), false);
      }
      // Keepalive 0 turns keep-alive off [MQTT-3.1.2-10]; the idle timeout still reclaims a silent (half-open)
      // connection. It is aedes' keepalive timer, which every packet restarts and which closes after 1.5 × keepalive.
      if (keepalive === 0) packet.keepalive = opts.idleTimeoutSeconds / 1.5;
      cb(null, true);
    },
    authenticate(client, username, password, done) {
      const id = username ?? '';
      // [MQTT-3.1.3-8]: an empty client id with CleanSession 0 gets CONNACK 2, in lab mode too.
      if (emptyPersistentId.has(client)) {
        metrics?.mqttAuthFailures.inc({ reason: 'empty-client-id' });
        return done(authError('a persistent session needs a client id', 2), null);
      }
      const reject = (reason: string, code: number, message: string) => {
        metrics?.mqttAuthFailures.inc({ reason });
        log.info({ clientId: excerpt(client.id), username: excerpt(id), reason }, 'MQTT connection refused');
        done(authError(message, code), null);
      };
      // A lab tool (not a device) may not use a provisioned device's id without its token: as client id it would
      // take over the device's session [MQTT-3.1.4-2], and act in its name (commands, retained status).
      const admitLabTool = () => {
        const claimed = id && id !== client.id ? [id, client.id] : [client.id];
        Promise.all(claimed.map((claim) => deps.devices.checkToken(claim, ''))).then(
          (checks) =>
            checks.every((c) => c.result === 'unknown')
              ? done(null, true)
              : reject('device-id-without-token', 4, 'bad username or password'),
          (err: Error) => {
            log.error({ err: err.message }, 'registry lookup failed');
            done(authError('server unavailable', 3), null);
          },
        );
      };
      if (lab && (!id || !password)) return admitLabTool(); // anonymous lab client
      if (!id || !password) return reject('missing-credentials', 4, 'bad username or password');
      deps.devices.checkToken(id, password.toString('utf8')).then(
        (check) => {
          if (check.result === 'unknown') {
            if (lab) return admitLabTool(); // lab mode: any other username is an anonymous tool
            return reject('unknown-device', 4, 'bad username or password');
          }
          if (check.result === 'wrong') return reject('wrong-token', 4, 'bad username or password');
          if (client.id !== id) return reject('client-id-mismatch', 2, 'client id must equal the device id');
          if (check.result === 'revoked') return reject('revoked', 5, 'device revoked');
          devices.set(client, { id: check.device.id, family: check.device.family, zone: check.device.zone });
          done(null, true);
        },
        (err: Error) => {
          log.error({ err: err.message }, 'registry lookup failed');
          done(authError('server unavailable', 3), null);
        },
      );
    },
    authorizePublish(client, packet, cb) {
      if (!client) return cb(null); // the platform itself
      const device = devices.get(client);
      if (lab && !device) return cb(null); // lab mode: tools publish anywhere
      const kind = !device
        ? undefined
        : packet.topic === TOPICS.telemetry(device.id)
          ? 'telemetry'
          : packet.topic === TOPICS.acks(device.id)
            ? 'acks'
            : undefined;
      if (!device || !kind) {
        metrics?.mqttUnauthorized.inc({ action: 'publish' });
        log.warn(
          { device: excerpt(client.id), topic: excerpt(packet.topic) },
          'publish refused: not the device’s own telemetry or acks topic',
        );
        return cb(new Error(`publish to ${packet.topic} not allowed`));
      }
      packet.retain = false; // telemetry and acks are a stream, not state: never kept by the broker
      if (!lab) consumed.add(packet);
      // Ingest runs here, not in the `published` hook: aedes 1.2 writes a QoS 1 PUBACK *before* it calls
      // `published` (lib/handlers/publish.js), while authorizePublish completes before the PUBACK is sent.
      // So a device is told "received" only once onMessage's promise says the reading is durable.
      const delivery =
        packet.qos > 0 && packet.messageId !== undefined ? { packetId: packet.messageId, connection: connectionId(client) } : undefined;
      // While messages wait for room, each carries its connection's end, so a closed one lets them go.
      const closed = deps.slowDown?.() ? closedSignal(client) : undefined;
      let result: unknown;
      try {
        result = deps.onMessage(device, kind, packet.payload as Buffer, packet.qos, delivery, closed);
      } catch (err) {
        // A bug in a handler must never take the broker down or lose the connection's other messages.
        log.error({ err, device: device.id }, 'message handler failed');
      }
      const waiting = awaiting.get(client);
      const pending = result instanceof Promise;
      // Settled now and nothing earlier waiting: answered at once.
      if (!pending && !waiting) {
        cb(null);
        acknowledged(device, delivery);
        return;
      }
      const entry: Awaiting = { settled: !pending, err: undefined, cb, device, delivery };
      if (waiting) waiting.push(entry);
      else awaiting.set(client, [entry]);
      if (pending && !pausedClients.has(client) && deps.slowDown?.()) {
        pausedClients.add(client);
        (client as Client & { pause(): void }).pause();
      }
      if (pending) {
        (result as Promise<unknown>).then(
          () => settle(client, entry, undefined),
          (err: Error) => settle(client, entry, err),
        );
      }
    },
    authorizeForward(client, packet) {
      if (!devices.has(client)) return packet;
      // The QoS the client gets: the publish's, lowered to its subscription's (aedes does the same on write).
      const sub = (client as Client & { subscriptions?: Record<string, { qos?: number }> }).subscriptions?.[packet.topic];
      const qos = Math.min(packet.qos, sub?.qos ?? packet.qos);
      if (qos > 0) {
        let list = inflight.get(client);
        if (!list) {
          list = [];
          inflight.set(client, list);
        }
        list.push({ topic: packet.topic, payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload) });
        if (list.length > MAX_TRACKED_INFLIGHT) list.shift(); // a client that never acknowledges: forget the oldest
      }
      return packet;
    },
    authorizeSubscribe(client, sub, cb) {
      const device = devices.get(client);
      if (lab && !device) return cb(null, labRefused.has(sub.topic) ? null : sub); // lab mode: tools subscribe anywhere else
      if (device && (sub.topic === TOPICS.errors(device.id) || sub.topic === TOPICS.commands(device.id))) {
        return cb(null, sub);
      }
      metrics?.mqttUnauthorized.inc({ action: 'subscribe' });
      log.warn({ device: excerpt(client.id), topic: excerpt(sub.topic) }, 'subscription refused');
      cb(null, null); // SUBACK 0x80 for this topic; the connection stays
    },
  });

  // A device's telemetry and acks end in ingest (authorizePublish above): authorizeSubscribe lets no client
  // subscribe to them outside lab mode, so aedes' routing of each one afterwards (a Packet and PublishState,
  // the persistence's offline-subscription lookup, the mqemitter match, the `publish` event) finds nobody.
  // It was ~8 % of the broker's thread per message at one reading a message (`npm run bench -- throughput`
  // profile); aedes has no option to skip it, so its publish is wrapped for exactly those packets. The QoS 1
  // PUBACK is written by aedes before this call, as before.
  // (aedes' internal call passes the client as the second argument; its typings show only the public form.)
  type InternalPublish = (packet: object, client: unknown, done?: (err?: Error) => void) => void;
  const internal = aedes as unknown as { publish: InternalPublish };
  const aedesPublish = internal.publish.bind(aedes);
  internal.publish = (packet, client, done) => {
    if (client && consumed.delete(packet)) return done?.();
    aedesPublish(packet, client, done);
  };

  // A group commit of the durable log releases the PUBACKs of many publishes at once, often several of one
  // connection: cork each connection until the next turn of the event loop so they leave in one write
  // (writev) instead of one system call each (the bench profile showed socket writes as the top cost).
  const corked = new Set<Writable>();
  const uncorkAll = () => {
    for (const conn of corked) conn.uncork();
    corked.clear();
  };
  const corkBriefly = (conn: Writable | undefined) => {
    if (!conn || corked.has(conn) || conn.destroyed) return;
    conn.cork();
    if (corked.size === 0) setImmediate(uncorkAll);
    corked.add(conn);
  };

  const publish = (topic: string, payload: string | Buffer, o: { qos?: 0 | 1; retain?: boolean } = {}) =>
    new Promise<void>((resolve, reject) =>
      aedes.publish(
        {
          cmd: 'publish',
          topic,
          payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
          qos: o.qos ?? 0,
          retain: o.retain ?? false,
          dup: false,
        },
        (err) => (err ? reject(err) : resolve()),
      ),
    );

  const setStatus = (device: DeviceMeta, state: DeviceStatus['state']) => {
    const at = new Date();
    const status: DeviceStatus = { state, at: at.toISOString() };
    publish(TOPICS.status(device.id), JSON.stringify(status), { qos: 1, retain: true }).catch((err: Error) =>
      log.warn({ err: err.message, device: device.id }, 'cannot publish status'),
    );
    deps.devices.touch(device.id, at).catch(() => undefined);
    deps.bus?.emit('status', { device: device.id, family: device.family, zone: device.zone, ...status });
  };

  aedes.on('client', (client) => {
    const device = devices.get(client);
    if (!device) return;
    online.set(device.id, client);
    metrics?.mqttConnections.set(online.size);
    log.debug({ device: device.id }, 'device online');
    setStatus(device, 'online');
  });
  aedes.on('clientDisconnect', (client) => {
    const device = devices.get(client);
    if (!device || online.get(device.id) !== client) return;
    online.delete(device.id);
    metrics?.mqttConnections.set(online.size);
    log.debug({ device: device.id }, 'device offline');
    if (!aedes.closed) setStatus(device, 'offline');
  });
  // Subscriptions of devices, per current connection: commands are published only once this says the device
  // listens (a publish before the SUBSCRIBE is processed would reach nobody). Restored subscriptions of a
  // persistent session are announced on 'subscribe' before the CONNACK: `subscribed` waits for 'clientReady'.
  const events = new EventEmitter<BrokerEvents>();
  const subscriptions = new Map<string, { client: Client; topics: Set<string>; ready: boolean }>();
  const announce = (id: string, topic: string) => {
    try {
      events.emit('subscribed', id, topic);
    } catch (err) {
      log.error({ err, device: id }, 'subscribed listener failed');
    }
  };
  aedes.on('subscribe', (subs, client) => {
    const device = client && devices.get(client);
    if (!device) return;
    let entry = subscriptions.get(device.id);
    if (entry?.client !== client) {
      entry = { client, topics: new Set(), ready: (client as Client & { connackSent?: boolean }).connackSent === true };
      subscriptions.set(device.id, entry);
    }
    for (const sub of subs) {
      if ((sub.qos as number) === 128) continue; // refused by authorizeSubscribe
      entry.topics.add(sub.topic);
      if (entry.ready) announce(device.id, sub.topic);
    }
  });
  aedes.on('clientReady', (client) => {
    const device = devices.get(client);
    const entry = device && subscriptions.get(device.id);
    if (!device || !entry || entry.client !== client || entry.ready) return;
    entry.ready = true;
    for (const topic of entry.topics) announce(device.id, topic);
  });
  aedes.on('unsubscribe', (topics, client) => {
    const device = client && devices.get(client);
    const entry = device && subscriptions.get(device.id);
    if (entry?.client === client) for (const t of topics) entry.topics.delete(t);
  });
  aedes.on('clientDisconnect', (client) => {
    closers.get(client)?.abort();
    const device = devices.get(client);
    if (device && subscriptions.get(device.id)?.client === client) subscriptions.delete(device.id);
    const connection = connectionIds.get(client);
    if (device && connection !== undefined && deps.onConnectionClosed) {
      // aedes sets _disconnected only when the client sent a DISCONNECT packet.
      const clean = (client as Client & { _disconnected?: boolean })._disconnected === true;
      try {
        deps.onConnectionClosed(device, connection, clean);
      } catch (err) {
        log.error({ err, device: device.id }, 'connection-closed listener failed');
      }
    }
  });
  // aedes 1.2 emits 'ack' on a client's PUBACK, with the stored outgoing packet for a persistent session and
  // undefined for a clean one: then the oldest publish in flight to that client is the one answered.
  aedes.on('ack', (packet, client) => {
    const device = client && devices.get(client);
    if (!device || (packet && packet.cmd !== 'publish')) return;
    const list = inflight.get(client);
    let acked: { topic: string; payload: Buffer } | undefined;
    if (packet) {
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      acked = { topic: packet.topic, payload };
      const i = list?.findIndex((x) => x.topic === packet.topic && x.payload.equals(payload)) ?? -1;
      if (i >= 0) list?.splice(i, 1);
    } else {
      acked = list?.shift();
    }
    if (!acked) return;
    try {
      events.emit('delivered', device.id, acked.topic, acked.payload);
    } catch (err) {
      log.error({ err, device: device.id }, 'delivered listener failed');
    }
  });

  aedes.on('clientError', (client, err) => log.debug({ device: excerpt(client.id), err: excerpt(err.message) }, 'client error'));
  aedes.on('connectionError', (client, err) => log.debug({ clientId: excerpt(client.id), err: excerpt(err.message) }, 'connection error'));

  /** Every accepted connection: stop() ends those aedes does not know yet (no CONNECT sent). */
  const streams = new Set<Duplex>();
  /** Source address of each accepted connection until it authenticates: one that ends before counts as failed. */
  const unauthenticated = new WeakMap<object, string | undefined>();
  aedes.on('client', (client) => {
    if (!unauthenticated.has(client.conn)) return;
    guard.authenticated(unauthenticated.get(client.conn));
    unauthenticated.delete(client.conn);
  });
  const accept = (stream: Duplex, address: string | undefined) => {
    const refused = guard.admit(address);
    if (refused) {
      metrics?.mqttRefused.inc({ reason: refused });
      log.warn({ address, reason: refused, connections: guard.connections }, 'MQTT connection refused by a limit');
      stream.destroy();
      return;
    }
    streams.add(stream);
    unauthenticated.set(stream, address);
    stream.once('close', () => {
      streams.delete(stream);
      guard.closed(address, !unauthenticated.delete(stream));
    });
    const guarded = limitPacketSize(stream, opts.maxPacketBytes, (reason, kind) => {
      metrics?.mqttRefused.inc({ reason: kind });
      const why = kind === 'packet-id-zero' ? 'packet identifier 0' : 'packet too large or malformed';
      log.warn({ address, reason }, `MQTT connection closed: ${why}`);
    });
    aedes.handle(guarded);
  };
  const server = net.createServer((socket) => accept(socket, socket.remoteAddress));
  const wsListener = createWebSocketListener({}, accept, log);
  let tlsListener: TlsListener | undefined;
  let stopped = false;

  return {
    aedes,
    accept,
    handleUpgrade: (req, socket, head) => wsListener.handleUpgrade(req, socket, head),
    publish,
    events,
    isOnline: (id) => online.has(id),
    isSubscribed: (id, topic) => {
      const entry = subscriptions.get(id);
      return !!entry?.ready && entry.topics.has(topic);
    },
    onlineCount: () => online.size,
    disconnect(id) {
      const c = online.get(id);
      c?.close();
      return !!c;
    },
    async start() {
      const tcp = await new Promise<{ host: string; port: number }>((resolve, reject) => {
        server.once('error', reject);
        // A deep accept queue: after an outage thousands of devices connect within a second, and SYNs dropped
        // from a full queue (Node's default is 511) come back only after the kernel's 1, 3, 7, 15 … s back-off.
        // The kernel caps it at net.core.somaxconn (npm run tune-host raises it).
        server.listen({ port: opts.port, host: opts.host, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          const a = server.address() as net.AddressInfo;
          const cap = somaxconn();
          const acceptQueue = cap === undefined ? LISTEN_BACKLOG : Math.min(cap, LISTEN_BACKLOG);
          log.info({ host: a.address, port: a.port, acceptQueue }, 'MQTT broker listening');
          if (acceptQueue < LISTEN_BACKLOG)
            log.info(
              { somaxconn: cap, wanted: LISTEN_BACKLOG },
              'the kernel caps the MQTT accept queue at net.core.somaxconn: devices reconnecting all at once after an outage will be dropped and retried (npm run tune-host raises it)',
            );
          resolve({ host: a.address, port: a.port });
        });
      });
      if (!opts.tls?.enabled) return tcp;
      const tlsOpts = { ...opts.tls, host: opts.host, selfSignedDir: opts.tlsSelfSignedDir, maxConnections: opts.maxConnections };
      tlsListener = await startTlsListener(tlsOpts, accept, { logger: log, metrics }).catch((err: unknown) => {
        server.close();
        throw err;
      });
      return { ...tcp, tls: { ...tlsListener.address, certFile: tlsListener.certFile } };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      guard.stop();
      const listenersClosed = Promise.all([tlsListener?.close(), wsListener.close()]);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      // A connection that never sent CONNECT is not an aedes client: it would hold server.close open.
      for (const s of streams) s.destroy();
      await closed;
      await listenersClosed;
    },
  };
}
