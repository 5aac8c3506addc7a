/**
 * The dashboard API server: Express (REST) and socket.io (live) on one HTTP port.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { createApp } from './app.ts';
import { createAuth, type SessionsEnded } from './auth.ts';
import { HTTP_LIMIT_DEFAULTS, httpServerOptions, limitConnections, type HttpLimits } from './connection-limits.ts';
import { attachLive, LatestValues } from './live.ts';
import { routeUpgrades, type UpgradeHandler } from './upgrades.ts';
import type { DashboardOptions } from './static.ts';
import type { ApiDeps } from './route-kit.ts';
import type { LiveBus } from '../core/bus.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { PROXY_HEADER_TIMEOUT_MS, readProxiedConnection, trustedPeers } from '../core/proxy-protocol.ts';
import type { Metrics } from '../core/metrics.ts';
import type { OperatorStore } from '../registry/index.ts';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import { createAdapterRedis } from './redis-client.ts';

export interface DashboardApiOptions {
  host: string;
  /** 0 = any free port. */
  port: number;
  /** Slow-consumer bound per socket, packets (default 2000). */
  maxSocketBufferedPackets?: number;
  /** Frames a second to unbatched sockets before the newest broad ones are shed (default 20,000; 0 = none). */
  maxUnbatchedFramesPerSecond?: number;
  /** Browser origins allowed to call the REST API (CORS); default none. */
  corsOrigins?: readonly string[];
  /** Session lifetime, ms (default 12 h). */
  sessionTtlMs?: number;
  /** Failed logins per username / per source address within `loginWindowMs` before 429 (default 5 / 20, 15 min). */
  loginMaxFailuresPerUser?: number;
  loginMaxFailuresPerAddress?: number;
  loginWindowMs?: number;
  /** The operations dashboard served on the same port (static.ts); absent = not served. */
  dashboard?: DashboardOptions;
  /** Bounds on the port's connections (connection-limits.ts); each defaults to HTTP_LIMIT_DEFAULTS. */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  /**
   * Behind the edge proxy: every connection must start with a PROXY v2 header from one of `trustedPeers`, else
   * it is closed; the client's address in it is the socket's remoteAddress for everything after (req.ip, login
   * limits, audit, per-address caps, socket.io, MQTT over WebSocket). Off by default.
   */
  proxyProtocol?: { enabled: boolean; trustedPeers: readonly string[] };
  /** A PROXY header not complete within this time closes the connection, ms (default PROXY_HEADER_TIMEOUT_MS). */
  proxyHeaderTimeoutMs?: number;
  /**
   * Several API nodes: the Redis (redis://host:port) through which socket.io broadcasts reach the sockets of every
   * node (@socket.io/redis-streams-adapter), so a screen connected to one node sees what another ingested.
   * Empty or absent = a single node.
   */
  redisUrl?: string;
}

export interface DashboardApi {
  start(): Promise<{ host: string; port: number }>;
  stop(): Promise<void>;
  readonly latest: LatestValues;
  /** Hands HTTP upgrades of `path` to `handler` (MQTT over WebSocket); other unknown paths get 404. */
  addUpgradeRoute(path: string, handler: UpgradeHandler): void;
  /** Sessions ended elsewhere (another node of a cluster): their live sockets here are closed. */
  endSessions(e: SessionsEnded): void;
  /** Checks every live session socket's session again (after news of other nodes may have been missed). */
  recheckSessions(): Promise<void>;
}

export function createDashboardApi(
  opts: DashboardApiOptions,
  deps: Omit<ApiDeps, 'latest' | 'auth'> & {
    bus: LiveBus;
    metrics?: Metrics;
    logger?: Logger;
    version?: string;
    /** Operator accounts, sessions and the audit log. */
    operators: OperatorStore;
    /** The service token: acts with the admin role (automation). */
    adminToken: string;
  },
): DashboardApi {
  const log = deps.logger ?? silentLogger;
  const latest = new LatestValues();
  const auth = createAuth(deps.operators, deps.adminToken, opts);
  const app = createApp(
    { ...deps, latest, auth },
    { metrics: deps.metrics, logger: log, version: deps.version, corsOrigins: opts.corsOrigins, dashboard: opts.dashboard },
  );
  const limits: HttpLimits = {
    headersTimeoutMs: opts.headersTimeoutMs ?? HTTP_LIMIT_DEFAULTS.headersTimeoutMs,
    requestTimeoutMs: opts.requestTimeoutMs ?? HTTP_LIMIT_DEFAULTS.requestTimeoutMs,
    // Idle keep-alive sockets must not hold stop() open.
    keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? HTTP_LIMIT_DEFAULTS.keepAliveTimeoutMs,
    maxConnections: opts.maxConnections ?? HTTP_LIMIT_DEFAULTS.maxConnections,
    maxConnectionsPerAddress: opts.maxConnectionsPerAddress ?? HTTP_LIMIT_DEFAULTS.maxConnectionsPerAddress,
  };
  // Half-open requests, idle connections and floods from one address are shed (see connection-limits.ts).
  const server = http.createServer(httpServerOptions(limits), app);
  // Behind the edge proxy, a plain TCP listener takes the connections and hands each one to the HTTP server
  // once its PROXY header is read (the same 'connection' event the HTTP server's own listener would emit).
  const trusted = opts.proxyProtocol?.enabled ? trustedPeers(opts.proxyProtocol.trustedPeers, 'api.proxyProtocol.trustedPeers') : undefined;
  const front = trusted ? net.createServer() : undefined;
  const listener: net.Server = front ?? server;
  const limiter = limitConnections(server, limits, { metrics: deps.metrics, logger: log, listener });
  const awaitingHeader = new Set<net.Socket>();
  front?.on('connection', (socket) => {
    awaitingHeader.add(socket);
    readProxiedConnection(
      socket,
      { trusted: trusted as net.BlockList, timeoutMs: opts.proxyHeaderTimeoutMs ?? PROXY_HEADER_TIMEOUT_MS },
      (_address, rest) => {
        awaitingHeader.delete(socket);
        // Put back before the HTTP server reads: its parser starts with the bytes after the header.
        if (rest.length) socket.unshift(rest);
        server.emit('connection', socket);
      },
      (reason, _detail, peer) => {
        awaitingHeader.delete(socket);
        limiter.shed(reason, peer);
      },
    );
  });
  // Every raw connection, so that stop() is bounded: a client that stopped reading would otherwise hold the
  // websocket close handshake (and so server.close) for ws' 30 s close timeout.
  const connections = new Set<import('node:net').Socket>();
  server.on('connection', (c) => {
    connections.add(c);
    c.once('close', () => connections.delete(c));
  });
  // Several nodes: the Redis streams adapter (it survives Redis restarts and keeps socket.io's connection state
  // recovery, which @socket.io/redis-adapter lacks), on a client shaped for Redis outages (redis-client.ts).
  let redisError = '';
  const redis = opts.redisUrl
    ? createAdapterRedis(opts.redisUrl, (err) => {
        if (err.message === redisError) return; // one line per kind of failure, not one per reconnect attempt
        redisError = err.message;
        log.warn({ err: err.message }, 'socket.io across nodes: Redis unreachable; sockets get this node’s events only until it is back');
      })
    : undefined;
  redis?.client.on('ready', () => (redisError = ''));
  const redisReady = redis?.ready;
  const live = attachLive(server, {
    // XREAD blocks 1 s at most (default 5 s): the reader notices a close within a second.
    adapter: redis ? createAdapter(redis.client, { blockTimeInMs: 1000 }) : undefined,
    bus: deps.bus,
    latest,
    auth,
    metrics: deps.metrics,
    logger: log,
    maxSocketBufferedPackets: opts.maxSocketBufferedPackets,
    maxUnbatchedFramesPerSecond: opts.maxUnbatchedFramesPerSecond,
  });
  const upgrades = routeUpgrades(server, { passThrough: [`${live.io.path()}/`] });
  let started = false;
  let stopped = false;
  return {
    latest,
    addUpgradeRoute: (path, handler) => upgrades.add(path, handler),
    endSessions: (e) => auth.ended(e),
    recheckSessions: () => live.recheckSessions(),
    async start() {
      if (redisReady !== undefined) {
        // Bounded: an optional part that fails is logged and the rest runs (the client keeps reconnecting).
        const timeout = new Promise<false>((r) => setTimeout(() => r(false), 2000).unref());
        if (!(await Promise.race([redisReady, timeout])))
          log.warn({ redisUrl: opts.redisUrl }, 'socket.io across nodes: Redis not reachable at start');
      }
      return new Promise((resolve, reject) => {
        const failed = (err: Error) => {
          // Not started, so never stopped: the Redis clients (the adapter's too) would keep the process alive.
          if (!redis) return reject(err);
          live.close().then(
            () => {
              redis.close();
              reject(err);
            },
            () => reject(err),
          );
        };
        listener.once('error', failed);
        listener.listen(opts.port, opts.host, () => {
          listener.off('error', failed);
          started = true;
          // The HTTP server starts tracking its connections' header and request timeouts (and engine.io sets up
          // its WebSocket server) on its own 'listening', which it never emits when another server accepts.
          if (front) server.emit('listening');
          const a = listener.address() as AddressInfo;
          log.info({ host: a.address, port: a.port, ...limits, proxyProtocol: !!front }, 'API and socket.io listening');
          resolve({ host: a.address, port: a.port });
        });
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const closed = live.close(); // tells clients "offline" first, then closes sockets and the HTTP server
      const grace = new Promise<void>((r) => setTimeout(r, 1000).unref());
      await Promise.race([closed, grace]);
      for (const c of connections) c.destroy();
      for (const c of awaitingHeader) c.destroy();
      await closed;
      if (started && listener.listening) await new Promise<void>((r) => listener.close(() => r()));
      redis?.close();
      limiter.stop();
    },
  };
}
