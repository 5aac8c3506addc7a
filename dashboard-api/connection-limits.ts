/**
 * Bounds on the connections of the API port (REST, socket.io and MQTT over WebSocket share it). Each connection
 * holds a file descriptor until it closes, and with Node's defaults a client that never finishes its request
 * headers is dropped only after 60 s (checked every 30 s), so a few thousand such clients could take every
 * descriptor of the process, and with them the MQTT listener's. Here:
 * - a connection whose request headers are not complete within `headersTimeoutMs` (one that sends nothing, or
 *   half a request) is answered 408 and closed; so is one whose request body is not in within
 *   `requestTimeoutMs`. Node checks both only every `connectionsCheckingInterval`: set to a tenth of the
 *   headers timeout (at most 1 s), so that a connection goes at most that much after its timeout;
 * - an idle keep-alive connection is closed after `keepAliveTimeoutMs`;
 * - connections held at most in total (`net.Server.maxConnections`: the kernel's connection is closed before
 *   any socket object exists) and per source address.
 * Each connection shed is counted in `citypulse_api_connections_shed_total{reason}`; the log gets one line per
 * interval with the counts (a flood of them writes a few lines, not one per socket).
 */
import type http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';

/** Defaults of the API port's bounds (options.ts declares them as the defaults of the api.* options). */
export const HTTP_LIMIT_DEFAULTS = {
  /** Ample for any client on a slow cellular link; a connection that sends nothing goes after this too. */
  headersTimeoutMs: 10_000,
  /** The largest body the API takes is 64 KiB. */
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  /** With broker.maxConnections (18,000) and the platform's own files (platform/descriptor-budget.ts), 19,500. */
  maxConnections: 1_000,
  /** A browser holds ~7 (socket.io and up to 6 parallel requests): an office behind one NAT fits. */
  maxConnectionsPerAddress: 100,
} as const;

export interface HttpLimits {
  headersTimeoutMs: number;
  /** At least headersTimeoutMs (a smaller value is raised to it). */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
  /** 0 = no limit (behind a reverse proxy every connection has the proxy's address). */
  maxConnectionsPerAddress: number;
}

export type ShedReason =
  | 'headers-timeout'
  | 'request-timeout'
  | 'max-connections'
  | 'max-connections-per-address'
  /** api.proxyProtocol: a peer not allowed to send PROXY headers, or a header absent, malformed or late. */
  | 'proxy-untrusted'
  | 'proxy-header';

/** Options of http.createServer for these bounds (connectionsCheckingInterval can only be given there). */
export function httpServerOptions(l: HttpLimits): http.ServerOptions {
  return {
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: Math.max(l.requestTimeoutMs, l.headersTimeoutMs),
    keepAliveTimeout: l.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(l.headersTimeoutMs / 10))),
  };
}

/** What Node itself answers on a client error when no 'clientError' listener is there (lib/_http_server.js). */
const ANSWERS: Record<string, string> = {
  ERR_HTTP_REQUEST_TIMEOUT: 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n',
  HPE_HEADER_OVERFLOW: 'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n',
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 'HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n',
};
const BAD_REQUEST = 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n';

/** Least time between two log lines about shed connections, ms. */
export const SHED_LOG_INTERVAL_MS = 10_000;

export interface ConnectionLimiter {
  /** Connections held now (admitted, not yet closed). */
  readonly connections: number;
  /** Counts and reports a connection closed before it reached the HTTP server (the PROXY header's refusals). */
  shed(reason: ShedReason, address: string | undefined): void;
  /** Logs the counts not logged yet and stops the log timer. */
  stop(): void;
}

/**
 * Applies the connection caps to `server` (created with httpServerOptions) and reports what is shed. `listener`:
 * the server that accepts the connections when it is not `server` itself (behind the edge proxy, a net.Server
 * reads each one's PROXY header first), where the total cap is enforced.
 */
export function limitConnections(
  server: http.Server,
  limits: HttpLimits,
  deps: { metrics?: Metrics; logger?: Logger; logIntervalMs?: number; listener?: net.Server } = {},
): ConnectionLimiter {
  const log = deps.logger ?? silentLogger;
  let open = 0;
  const report = shedReporter(log, deps.logIntervalMs ?? SHED_LOG_INTERVAL_MS, () => open);
  const shed = (reason: ShedReason, address: string | undefined) => {
    deps.metrics?.apiConnectionsShed.inc({ reason });
    report.note(reason, address);
  };
  const listener = deps.listener ?? server;
  listener.maxConnections = limits.maxConnections;
  listener.on('drop', (d) => shed('max-connections', d?.remoteAddress));
  const perAddress = new Map<string, number>();
  const cap = limits.maxConnectionsPerAddress;
  server.on('connection', (socket: net.Socket) => {
    const address = socket.remoteAddress;
    if (cap > 0 && address !== undefined) {
      const n = perAddress.get(address) ?? 0;
      if (n >= cap) {
        shed('max-connections-per-address', address);
        socket.destroy();
        return;
      }
      perAddress.set(address, n + 1);
    }
    open++;
    deps.metrics?.apiConnections.inc();
    socket.once('close', () => {
      open--;
      deps.metrics?.apiConnections.dec();
      if (cap > 0 && address !== undefined) {
        const n = (perAddress.get(address) ?? 1) - 1;
        if (n > 0) perAddress.set(address, n);
        else perAddress.delete(address);
      }
    });
  });
  // Node reports its own headers and request timeouts as client errors; with a listener here it no longer
  // answers and closes by itself, so this does what it would (and counts the timeouts).
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const s = socket as net.Socket & { parser?: { incoming?: unknown } | null; _httpMessage?: { headersSent?: boolean } | null };
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') shed(s.parser?.incoming ? 'request-timeout' : 'headers-timeout', s.remoteAddress);
    if (s.writable && !s._httpMessage?.headersSent) s.write((err.code && ANSWERS[err.code]) || BAD_REQUEST);
    s.destroy();
  });
  return {
    get connections() {
      return open;
    },
    shed,
    stop: () => report.stop(),
  };
}

/**
 * One log line for the first connection shed, then at most one per `intervalMs` with the counts since the last
 * line (by reason, and the addresses with the most), as long as connections are shed.
 */
function shedReporter(log: Logger, intervalMs: number, connections: () => number) {
  const counts = new Map<ShedReason, number>();
  // Bounded: a scan from many addresses keeps only the first ones of each interval.
  const byAddress = new Map<string, number>();
  const MAX_ADDRESSES = 1000;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (counts.size === 0) return false;
    const top = [...byAddress].sort((a, b) => b[1] - a[1]).slice(0, 5);
    log.warn(
      { shed: Object.fromEntries(counts), topAddresses: Object.fromEntries(top), connections: connections(), intervalMs },
      'API connections shed (counts since the last such line)',
    );
    counts.clear();
    byAddress.clear();
    return true;
  };
  return {
    note(reason: ShedReason, address: string | undefined) {
      counts.set(reason, (counts.get(reason) ?? 0) + 1);
      if (address !== undefined && (byAddress.has(address) || byAddress.size < MAX_ADDRESSES)) {
        byAddress.set(address, (byAddress.get(address) ?? 0) + 1);
      }
      if (timer) return;
      flush();
      timer = setInterval(() => {
        if (!flush()) {
          clearInterval(timer);
          timer = undefined;
        }
      }, intervalMs);
      timer.unref();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
      flush();
    },
  };
}
