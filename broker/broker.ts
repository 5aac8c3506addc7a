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
 *
 * This file wires aedes to the broker's parts and owns the listeners and the lifecycle: who may connect and what
 * they may do (device-auth.ts), the order of acknowledgements and back-pressure (ack-order.ts), devices' status,
 * subscriptions and deliveries (sessions.ts).
 */
import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { Aedes, type Client } from 'aedes';
import type { DeviceMeta } from '../ingest/index.ts';
import { excerpt } from '../core/log-excerpt.ts';
import { silentLogger } from '../core/logger.ts';
import { PROXY_HEADER_TIMEOUT_MS, readProxiedConnection, trustedPeers } from '../core/proxy-protocol.ts';
import { createAckOrder } from './ack-order.ts';
import { startClusterTakeover, type ClusterTakeover } from './cluster-takeover.ts';
import { ConnectionGuard, LIMIT_DEFAULTS, limitPacketSize } from './connection-guard.ts';
import { createDeviceAuth } from './device-auth.ts';
import { createWebSocketListener, startTlsListener, type TlsListener } from './listeners.ts';
import { createDeviceSessions } from './sessions.ts';
import type { BrokerDeps, BrokerEvents, BrokerOptions } from './types.ts';

export type { BrokerDeps, BrokerEvents, BrokerOptions } from './types.ts';

export interface Broker {
  /** Starts the TCP listener (and the TLS one when tls.enabled); `tls` = its address and server certificate. */
  start(): Promise<{ host: string; port: number; tls?: { host: string; port: number; certFile: string } }>;
  stop(): Promise<void>;
  /** Publishes as the platform (no client: not subject to device rules). */
  publish(topic: string, payload: string | Buffer, opts?: { qos?: 0 | 1; retain?: boolean }): Promise<void>;
  /**
   * Takes a new connection from any listener (TCP, TLS, WebSocket): admission limits, the packet size guard,
   * then aedes. `address` is the source address for the per-address attempt limit (undefined: none to limit by,
   * as for the edge proxy's health checks); `head`: bytes already read from it (after a PROXY header).
   */
  accept(stream: Duplex, address: string | undefined, head?: Buffer): void;
  /** MQTT over WebSocket: takes an HTTP upgrade request routed to the broker's path (refused after stop()). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Closes the connection of a device, if it is connected. */
  disconnect(deviceId: string): boolean;
  isOnline(deviceId: string): boolean;
  /** True while the device's current connection holds a granted subscription to exactly `topic` (after its CONNACK). */
  isSubscribed(deviceId: string, topic: string): boolean;
  onlineCount(): number;
  /** The ids of the devices connected now. */
  onlineIds(): string[];
  /**
   * The ids of the devices connected now to any node of the cluster (broker.redisUrl: cluster-presence.ts); this
   * node's alone on one node, or while Redis is unreachable.
   */
  clusterOnlineIds(): Promise<string[]>;
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

export async function createBroker(options: BrokerOptions, deps: BrokerDeps): Promise<Broker> {
  const opts = { ...LIMIT_DEFAULTS, ...options };
  const log = deps.logger ?? silentLogger;
  const metrics = deps.metrics;
  /** The connections admitted as devices (device-auth.ts), and which device each is. */
  const devices = new WeakMap<Client, DeviceMeta>();

  const guard = new ConnectionGuard({
    maxConnections: opts.maxConnections,
    maxAttemptsPerAddress: opts.maxConnectionAttemptsPerAddress,
    attemptWindowMs: opts.connectionAttemptWindowMs,
    maxPacketBytes: opts.maxPacketBytes,
  });
  const lab = opts.labMode === true;
  if (lab) {
    log.warn(
      'LAB MODE IS ON: anonymous MQTT clients and free topics are allowed. For conformance suites and tools only, never in production (broker.labMode)',
    );
  }
  /** Source address of each accepted connection (the device's, behind the edge proxy), for log lines. */
  const addresses = new WeakMap<object, string>();
  const auth = createDeviceAuth(opts, deps, devices, log, (client) => addresses.get(client.conn));
  const acks = createAckOrder(deps, log);
  const sessions = createDeviceSessions(deps, devices, log);
  /** Device telemetry and acks taken by ingest in authorizePublish, which nobody may subscribe to (see below). */
  const consumed = new WeakSet<object>();
  const aedes = await Aedes.createBroker({
    drainTimeout: opts.drainTimeoutMs,
    // No keepaliveLimit: aedes would answer keepalive 0 (which MQTT 3.1.1 allows) and one over the limit with
    // CONNACK 6, a code MQTT 3.1.1 reserves. Both are handled in preConnect.
    preConnect: auth.preConnect,
    authenticate: auth.authenticate,
    authorizePublish(client, packet, cb) {
      const allowed = auth.authorizePublish(client, packet);
      if (allowed === 'free') return cb(null);
      if (allowed instanceof Error) return cb(allowed);
      packet.retain = false; // telemetry and acks are a stream, not state: never kept by the broker
      if (!lab) consumed.add(packet);
      // Ingest runs here, not in the `published` hook: aedes 1.2 writes a QoS 1 PUBACK *before* it calls
      // `published` (lib/handlers/publish.js), while authorizePublish completes before the PUBACK is sent.
      // So a device is told "received" only once onMessage's promise says the reading is durable.
      acks.take(client as Client, allowed.device, allowed.kind, packet, cb);
    },
    authorizeForward(client, packet) {
      sessions.trackForward(client, packet);
      return packet;
    },
    authorizeSubscribe: auth.authorizeSubscribe,
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

  sessions.attach(aedes, publish);
  /** Takeover across nodes (broker.redisUrl), from start() on. */
  let cluster: ClusterTakeover | undefined;
  aedes.on('client', (client) => {
    const device = devices.get(client);
    if (device) cluster?.connected(device, client);
  });
  aedes.on('clientDisconnect', (client) => {
    acks.abortWaiting(client);
    const device = devices.get(client);
    if (device) cluster?.disconnected(device.id, client);
    sessions.forgetSubscriptions(client, device);
    acks.connectionClosed(client, device);
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
  const accept = (stream: Duplex, address: string | undefined, head?: Buffer) => {
    const refused = guard.admit(address);
    if (refused) {
      metrics?.mqttRefused.inc({ reason: refused });
      log.warn({ address, reason: refused, connections: guard.connections }, 'MQTT connection refused by a limit');
      stream.destroy();
      return;
    }
    streams.add(stream);
    unauthenticated.set(stream, address);
    if (address) addresses.set(stream, address);
    stream.once('close', () => {
      streams.delete(stream);
      guard.closed(address, !unauthenticated.delete(stream));
    });
    const guarded = limitPacketSize(
      stream,
      opts.maxPacketBytes,
      (reason, kind) => {
        metrics?.mqttRefused.inc({ reason: kind });
        const why = kind === 'packet-id-zero' ? 'packet identifier 0' : 'packet too large or malformed';
        log.warn({ address, reason }, `MQTT connection closed: ${why}`);
      },
      head,
    );
    if (!stream.destroyed) aedes.handle(guarded);
  };
  // Behind the edge proxy (broker.proxyProtocol): every connection of the TCP listener starts with a PROXY v2
  // header from a trusted peer, and the device's address in it is the one limits and logs see. Connections
  // still waiting for theirs are not admitted yet; stop() ends them.
  const proxy = opts.proxyProtocol?.enabled
    ? trustedPeers(opts.proxyProtocol.trustedPeers, 'broker.proxyProtocol.trustedPeers')
    : undefined;
  const awaitingHeader = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    if (!proxy) return accept(socket, socket.remoteAddress);
    awaitingHeader.add(socket);
    readProxiedConnection(
      socket,
      { trusted: proxy, timeoutMs: opts.proxyHeaderTimeoutMs ?? PROXY_HEADER_TIMEOUT_MS },
      (address, rest) => {
        awaitingHeader.delete(socket);
        // LOCAL (address undefined): the proxy's own connection, its health check. It is served like any
        // other, but with no device address it never counts as a failed attempt of one.
        if (!address) log.debug({ peer: socket.remoteAddress }, 'edge proxy connection (PROXY v2 LOCAL)');
        accept(socket, address, rest);
      },
      (reason, detail, peer) => {
        awaitingHeader.delete(socket);
        metrics?.mqttRefused.inc({ reason });
        log.warn({ peer, reason, detail }, 'MQTT connection refused: broker.proxyProtocol expects a PROXY v2 header from a trusted peer');
      },
    );
  });
  const wsListener = createWebSocketListener({}, accept, log);
  let tlsListener: TlsListener | undefined;
  let stopped = false;

  return {
    aedes,
    accept,
    handleUpgrade: (req, socket, head) => wsListener.handleUpgrade(req, socket, head),
    publish,
    events: sessions.events,
    isOnline: sessions.isOnline,
    isSubscribed: sessions.isSubscribed,
    onlineCount: sessions.onlineCount,
    onlineIds: sessions.onlineIds,
    async clusterOnlineIds() {
      if (!cluster) return sessions.onlineIds();
      try {
        return await cluster.onlineIds();
      } catch (err) {
        log.debug({ err: (err as Error).message }, 'cluster presence unreadable (Redis): devices of this node only');
        return sessions.onlineIds();
      }
    },
    disconnect: sessions.disconnect,
    async start() {
      if (opts.redisUrl) {
        cluster = await startClusterTakeover(
          { redisUrl: opts.redisUrl, presenceTtlMs: opts.presenceTtlMs },
          {
            logger: log,
            // A node died without a word: its devices are offline for every screen and alarm (said once, from here).
            onGone: (entries) => {
              const at = new Date().toISOString();
              for (const e of entries) deps.bus?.emit('status', { device: e.device, family: e.family, zone: e.zone, state: 'offline', at });
            },
          },
        );
      }
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
      }).catch(async (err: unknown) => {
        await cluster?.stop(); // its Redis connections would keep the process alive
        throw err;
      });
      if (!opts.tls?.enabled) return tcp;
      const tlsOpts = { ...opts.tls, host: opts.host, selfSignedDir: opts.tlsSelfSignedDir, maxConnections: opts.maxConnections };
      tlsListener = await startTlsListener(tlsOpts, accept, { logger: log, metrics }).catch(async (err: unknown) => {
        server.close();
        await cluster?.stop();
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
      for (const s of awaitingHeader) s.destroy();
      await closed;
      await listenersClosed;
      await cluster?.stop();
    },
  };
}
