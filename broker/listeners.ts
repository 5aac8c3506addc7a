/**
 * The broker's other listeners. Every listener hands its connections to the same Aedes instance, so
 * the device rules (authenticate, authorizePublish, authorizeSubscribe hooks in broker.ts) are identical on
 * each of them:
 * - MQTT over TLS: a node:tls server on its own port (`broker.tls.*`). Optionally asks for a client certificate
 *   signed by `caFile`; with `requireClientCert` a client without one (or with one of another chain) fails the
 *   handshake. The device still authenticates with its token: the certificate is an extra gate, not the identity.
 * - MQTT over WebSocket: a `ws` server without its own port (`noServer`) that takes the HTTP upgrades of one
 *   path of the dashboard API server; each WebSocket becomes a stream (`createWebSocketStream`) for Aedes.
 * `ensureSelfSignedCert` makes the demo's certificate (openssl, once, reused).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import { PlatformError } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';

/** Hands one connection (a byte stream carrying MQTT) and its source address to the broker (`Broker.accept`). */
export type HandleConnection = (stream: Duplex, address: string | undefined) => void;

export interface TlsListenerOptions {
  host: string;
  /** 0 = any free port. */
  port: number;
  /** PEM files; both empty = a self-signed pair in `selfSignedDir` (see ensureSelfSignedCert). */
  certFile: string;
  keyFile: string;
  selfSignedDir?: string;
  /** CA (PEM) that signs client certificates; empty = client certificates are not asked for. */
  caFile?: string;
  /** A client without a certificate signed by caFile fails the handshake. Needs caFile. */
  requireClientCert?: boolean;
  /** A TLS handshake not finished within this time is dropped, ms (default 10000). */
  handshakeTimeoutMs?: number;
  /** Raw connections held at most, handshakes included (the broker's limits count only finished handshakes). */
  maxConnections?: number;
}

export interface TlsListener {
  readonly address: { host: string; port: number };
  /** The server certificate in use (the generated one when certFile was empty). */
  readonly certFile: string;
  /** Stops accepting; connections still in the handshake are dropped, the others are the broker's to close. */
  close(): Promise<void>;
}

/**
 * Starts the MQTT over TLS listener. A failed handshake (no or wrong client certificate, a client that does not
 * trust the server, a timeout) is counted in `citypulse_mqtt_auth_failures_total{reason="tls-handshake"}`.
 */
export async function startTlsListener(
  opts: TlsListenerOptions,
  handle: HandleConnection,
  deps: { logger?: Logger; metrics?: Metrics } = {},
): Promise<TlsListener> {
  const log = deps.logger ?? silentLogger;
  if (opts.requireClientCert && !opts.caFile) {
    throw new PlatformError('CP_CONFIG_INVALID', 'broker.tls.requireClientCert needs broker.tls.caFile (the CA of client certificates)');
  }
  let { certFile, keyFile } = opts;
  if (!certFile && !keyFile && opts.selfSignedDir) ({ certFile, keyFile } = await ensureSelfSignedCert(opts.selfSignedDir, log));
  if (!certFile || !keyFile) throw new PlatformError('CP_CONFIG_INVALID', 'broker.tls: give both certFile and keyFile, or neither');
  let files: [Buffer, Buffer, Buffer | undefined];
  try {
    files = await Promise.all([readFile(certFile), readFile(keyFile), opts.caFile ? readFile(opts.caFile) : undefined]);
  } catch (err) {
    throw new PlatformError('CP_CONFIG_INVALID', `broker.tls: cannot read a certificate file: ${(err as Error).message}`, { cause: err });
  }
  const [cert, key, ca] = files;
  let server: tls.Server;
  try {
    server = tls.createServer(
      {
        cert,
        key,
        ca,
        requestCert: !!ca,
        rejectUnauthorized: !!opts.requireClientCert,
        handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
        minVersion: 'TLSv1.2',
      },
      (socket) => handle(socket, socket.remoteAddress),
    );
  } catch (err) {
    // Not PEM, or a key that does not belong to the certificate.
    throw new PlatformError('CP_CONFIG_INVALID', `broker.tls: unusable certificate or key: ${(err as Error).message}`, { cause: err });
  }
  if (opts.maxConnections) server.maxConnections = opts.maxConnections;
  // Raw connections, so that close() is bounded even while handshakes are in progress.
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', (err, socket) => {
    deps.metrics?.mqttAuthFailures.inc({ reason: 'tls-handshake' });
    log.info({ remote: socket.remoteAddress, err: err.message }, 'MQTT over TLS: handshake failed');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as net.AddressInfo;
  const address = { host: a.address, port: a.port };
  log.info({ ...address, clientCert: opts.requireClientCert ? 'required' : ca ? 'optional' : 'none' }, 'MQTT over TLS listening');
  let closing: Promise<void> | undefined;
  return {
    address,
    certFile,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Aedes closes the connections it owns; what is left (handshakes, unauthenticated peers) goes now.
        setImmediate(() => {
          for (const s of sockets) s.destroy();
        });
      });
      return closing;
    },
  };
}

export interface WebSocketListenerOptions {
  /** Largest WebSocket message accepted, bytes (default 8 MiB; the MQTT packet limit is the broker's). */
  maxPayload?: number;
}

export interface WebSocketListener {
  /** Takes an HTTP upgrade request for the MQTT path (after close(): answered 503). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Refuses new upgrades and ends the WebSockets still open. Idempotent. */
  close(): Promise<void>;
}

const MQTT_SUBPROTOCOLS = ['mqtt', 'mqttv3.1'];

/** MQTT over WebSocket without a port of its own: the owner of the HTTP server routes upgrades to it. */
export function createWebSocketListener(opts: WebSocketListenerOptions, handle: HandleConnection, logger?: Logger): WebSocketListener {
  const log = logger ?? silentLogger;
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: opts.maxPayload ?? 8 * 1024 * 1024,
    // MQTT over WebSocket names its subprotocol ("mqtt"; "mqttv3.1" for old clients). A client offering none
    // is accepted; one offering only others is answered without a subprotocol (and gives up by itself).
    handleProtocols: (offered) => MQTT_SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  const open = new Set<WebSocket>();
  let closed = false;
  let closing: Promise<void> | undefined;
  return {
    handleUpgrade(req, socket, head) {
      if (closed) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        if (closed) return ws.terminate();
        open.add(ws);
        ws.once('close', () => open.delete(ws));
        const stream = createWebSocketStream(ws);
        // Aedes listens for errors once it has the stream; a frame error before that must not throw.
        stream.on('error', (err) => log.debug({ remote: req.socket.remoteAddress, err: err.message }, 'MQTT over WebSocket: stream error'));
        handle(stream, req.socket.remoteAddress);
      });
    },
    close() {
      closing ??= (async () => {
        closed = true;
        // The broker closes its clients (their streams end the WebSockets); give that a moment, then cut.
        const until = Date.now() + 1000;
        while (open.size && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        for (const ws of open) ws.terminate();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
      })();
      return closing;
    },
  };
}

/**
 * The demo's server certificate: a self-signed pair for `localhost` and 127.0.0.1 in `dir` (cert.pem, key.pem),
 * made by openssl at the first call and reused afterwards. Devices trust it by taking cert.pem as their CA.
 */
export async function ensureSelfSignedCert(dir: string, logger?: Logger): Promise<{ certFile: string; keyFile: string; created: boolean }> {
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  if (existsSync(certFile) && existsSync(keyFile)) return { certFile, keyFile, created: false };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `.tmp-${process.pid}-${Date.now()}`;
  const [tmpCert, tmpKey] = [path.join(dir, `cert${tmp}`), path.join(dir, `key${tmp}`)];
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-sha256',
      '-days',
      '825',
      '-subj',
      '/CN=localhost/O=citypulse demo',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
      '-keyout',
      tmpKey,
      '-out',
      tmpCert,
    ]);
    await chmod(tmpKey, 0o600);
    // Key first: a cert.pem without its key.pem never appears.
    await rename(tmpKey, keyFile);
    await rename(tmpCert, certFile);
  } catch (err) {
    await Promise.all([rm(tmpCert, { force: true }), rm(tmpKey, { force: true })]);
    throw new PlatformError(
      'CP_CONFIG_INVALID',
      `broker.tls: cannot make a self-signed certificate with openssl: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  (logger ?? silentLogger).info({ certFile, keyFile }, 'made a self-signed TLS certificate for localhost (demo); devices trust cert.pem');
  return { certFile, keyFile, created: true };
}
