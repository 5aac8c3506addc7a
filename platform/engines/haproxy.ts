/**
 * The edge in front of cluster nodes: a private HAProxy (Debian haproxy 2.6) as a child process, with its own
 * folder (config, admin socket, log) and loopback ports, relaying
 * - MQTT (TCP) to N brokers, with a PROXY v2 header before the device's bytes (`send-proxy-v2`) so that each
 *   broker sees the device's address (broker.proxyProtocol), least-connections balancing (MQTT connections are
 *   long-lived: counting them spreads devices better than round robin after a node comes back);
 * - the API port (REST, socket.io, MQTT over WebSocket) to N API nodes in TCP mode with PROXY v2 as well
 *   (api.proxyProtocol), balanced by source address so that one browser's socket.io long-polling requests reach
 *   one node. TCP rather than HTTP mode with X-Forwarded-For: the address is then known when the connection
 *   opens, before any HTTP is parsed, so the API port's per-address connection caps, its header timeouts and
 *   MQTT over WebSocket all see the client; one mechanism serves both ports; HAProxy parses no HTTP and
 *   WebSocket upgrades pass through untouched. What is lost: no HTTP routing or cookies at the edge.
 * Health checks connect and send a PROXY v2 LOCAL header (`check-send-proxy`; the API nodes' also GET
 * /api/v1/health after it): the brokers serve such a connection without an address, so a check never counts
 * as a failed login.
 *
 * Descriptors: a relayed connection costs HAProxy two (the client's and the backend's), so its `maxconn` must
 * fit half its open-file limit, or HAProxy refuses to start. `fitEdgeMaxConnections` shares what fits between
 * the two frontends.
 *
 * Started with `-db` (foreground, no daemon) and ended by SIGTERM (HAProxy's hard stop: SIGUSR1's soft stop
 * would wait for every MQTT connection to close). HAProxy gets SIGTERM when its parent dies (setpriv).
 */
import { spawnEngine } from './child.ts';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PlatformError } from '../../core/errors.ts';
import { openFileLimit } from '../descriptor-budget.ts';
import { freePort } from '../influxdb-local.ts';

export interface EdgeBackend {
  host: string;
  port: number;
  /** Server name in HAProxy's config and stats (default node1, node2 …). */
  name?: string;
}

export interface EdgeFrontendOptions {
  /** Port to listen on; 0 or undefined = a free one. */
  port?: number;
  backends: readonly EdgeBackend[];
  /** Client connections held at most by this frontend (default: see fitEdgeMaxConnections). */
  maxConnections?: number;
}

export interface StartHaproxyOptions {
  /** Folder of this instance (haproxy.cfg, admin.sock, haproxy.log); created if missing. */
  dir: string;
  /** Address both frontends listen on (default 127.0.0.1). */
  host?: string;
  /** MQTT frontend (TCP, PROXY v2 to the brokers). */
  mqtt?: EdgeFrontendOptions;
  /** API frontend (TCP, PROXY v2 to the API nodes; HTTP health checks on /api/v1/health). */
  api?: EdgeFrontendOptions;
  /** Health check interval, ms (default 1000); a server is down after 2 failed checks and up after 1 good one. */
  checkIntervalMs?: number;
  /** HAProxy's open-file limit (default: this process's, which the child inherits). */
  openFileLimit?: number;
  /** How long to wait until the frontends listen (default 10000 ms). */
  readyTimeoutMs?: number;
  log?: (msg: string) => void;
}

export interface ServerState {
  backend: string;
  server: string;
  /** HAProxy's status: UP, DOWN, `UP 1/2` (going down), `DOWN 1/1` (going up), MAINT, no check … */
  status: string;
  /** Connections to it now. */
  current: number;
}

export interface Haproxy {
  readonly pid: number;
  readonly dir: string;
  readonly mqtt?: { host: string; port: number; url: string };
  readonly api?: { host: string; port: number; url: string };
  /** maxconn of each frontend and the global one, as written to the config. */
  readonly maxConnections: { mqtt: number; api: number; total: number };
  /** Every server's state, from the admin socket (`show stat`). */
  serverStates(): Promise<ServerState[]>;
  /** Resolves once every server is UP (or `atLeast` per backend are), throws after `timeoutMs`. */
  waitUntilUp(opts?: { timeoutMs?: number; atLeast?: number }): Promise<void>;
  /** SIGTERM (hard stop: open connections are cut), SIGKILL after 5 s. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL at once (a crashed edge, in tests). */
  kill(): Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Descriptors HAProxy needs besides two per relayed connection: listeners, health checks, admin socket, stdio. */
export const EDGE_DESCRIPTOR_HEADROOM = 200;
/** Default maxconn of the API frontend: one node's api.maxConnections default. */
export const EDGE_API_MAX_CONNECTIONS = 1000;
/**
 * Above MQTT's longest silence: a device may ask for a 1,800 s keepalive and is dropped after 1.5 × that; a
 * shorter client/server timeout would cut sleeping NB-IoT devices at the edge.
 */
export const EDGE_IDLE_TIMEOUT_S = 3000;

/**
 * maxconn of the two frontends within an open-file limit: 2 per connection plus EDGE_DESCRIPTOR_HEADROOM.
 * Unset: the API frontend gets EDGE_API_MAX_CONNECTIONS (when it exists) and MQTT the rest. Throws
 * CP_CONFIG_INVALID when given values do not fit (HAProxy would refuse to start).
 */
export function fitEdgeMaxConnections(o: { limit: number; mqtt?: number; api?: number; hasMqtt: boolean; hasApi: boolean }): {
  mqtt: number;
  api: number;
  total: number;
} {
  const room = Math.floor((o.limit - EDGE_DESCRIPTOR_HEADROOM) / 2);
  const api = o.hasApi ? (o.api ?? Math.min(EDGE_API_MAX_CONNECTIONS, Math.floor(room / 2))) : 0;
  const mqtt = o.hasMqtt ? (o.mqtt ?? room - api) : 0;
  if (mqtt + api > room || (o.hasMqtt && mqtt < 1) || (o.hasApi && api < 1)) {
    throw new PlatformError(
      'CP_CONFIG_INVALID',
      `edge proxy: ${mqtt} MQTT + ${api} API connections need ${2 * (mqtt + api) + EDGE_DESCRIPTOR_HEADROOM} descriptors (two per relayed connection), the open-file limit is ${o.limit}: at most ${room} in all. Run several HAProxy processes on the port, or raise the limit`,
    );
  }
  return { mqtt, api, total: mqtt + api };
}

/** The config file for one instance. Exported for the docs and tests. */
export function renderHaproxyConfig(c: {
  dir: string;
  host: string;
  mqtt?: { port: number; backends: readonly EdgeBackend[] };
  api?: { port: number; backends: readonly EdgeBackend[] };
  maxConnections: { mqtt: number; api: number; total: number };
  checkIntervalMs: number;
}): string {
  const bind = (p: number) => `${c.host.includes(':') ? `[${c.host}]` : c.host}:${p}`;
  const servers = (list: readonly EdgeBackend[], extra: string) =>
    list
      .map(
        (b, i) =>
          `  server ${b.name ?? `node${i + 1}`} ${b.host.includes(':') ? `[${b.host}]` : b.host}:${b.port} send-proxy-v2 check check-send-proxy inter ${c.checkIntervalMs} fall 2 rise 1${extra}`,
      )
      .join('\n');
  const lines = [
    '# Generated by citypulse platform/engines/haproxy.ts; rewritten on every start.',
    'global',
    `  maxconn ${c.maxConnections.total}`,
    `  stats socket ${join(c.dir, 'admin.sock')} mode 600 level admin`,
    '',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    `  timeout client ${EDGE_IDLE_TIMEOUT_S}s`,
    `  timeout server ${EDGE_IDLE_TIMEOUT_S}s`,
    '  timeout client-fin 30s',
    '  timeout server-fin 30s',
    '  timeout check 2s',
    // A backend refused at connect is retried once on another server.
    '  retries 1',
    '  option redispatch',
  ];
  if (c.mqtt) {
    lines.push(
      '',
      'frontend mqtt',
      `  bind ${bind(c.mqtt.port)}`,
      `  maxconn ${c.maxConnections.mqtt}`,
      '  default_backend brokers',
      '',
      'backend brokers',
      '  balance leastconn',
      servers(c.mqtt.backends, ''),
    );
  }
  if (c.api) {
    lines.push(
      '',
      'frontend api',
      `  bind ${bind(c.api.port)}`,
      `  maxconn ${c.maxConnections.api}`,
      '  default_backend api_nodes',
      '',
      'backend api_nodes',
      // socket.io's long-polling transport needs every request of a session on one node.
      '  balance source',
      '  hash-type consistent',
      '  option httpchk',
      '  http-check send meth GET uri /api/v1/health ver HTTP/1.1 hdr Host edge-check',
      // /api/v1/health answers 200 when degraded too (InfluxDB down, readings buffered): such a node still
      // serves the API and its live sockets, so only no answer or another status takes it out.
      '  http-check expect status 200',
      servers(c.api.backends, ''),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Starts HAProxy and waits until its frontends listen (not until the backends are UP: waitUntilUp). */
export async function startHaproxy(opts: StartHaproxyOptions): Promise<Haproxy> {
  if (!opts.mqtt && !opts.api) throw new PlatformError('CP_CONFIG_INVALID', 'edge proxy: neither an MQTT nor an API frontend');
  for (const f of [opts.mqtt, opts.api]) {
    if (f && f.backends.length === 0) throw new PlatformError('CP_CONFIG_INVALID', 'edge proxy: a frontend without backends');
  }
  const log = opts.log ?? (() => undefined);
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const limit = opts.openFileLimit ?? openFileLimit() ?? 1024;
  const maxConnections = fitEdgeMaxConnections({
    limit,
    mqtt: opts.mqtt?.maxConnections,
    api: opts.api?.maxConnections,
    hasMqtt: !!opts.mqtt,
    hasApi: !!opts.api,
  });
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts, dir, maxConnections, log);
    } catch (err) {
      // A free port taken by another process between freePort() and HAProxy's bind: try other ports.
      const given = opts.mqtt?.port || opts.api?.port;
      if (attempt >= 3 || given || !/cannot bind socket|Address already in use/i.test((err as Error).message)) throw err;
      log(`a port was taken before haproxy bound it; retrying (attempt ${attempt + 1})`);
    }
  }
}

async function startOnce(
  opts: StartHaproxyOptions,
  dir: string,
  maxConnections: { mqtt: number; api: number; total: number },
  log: (msg: string) => void,
): Promise<Haproxy> {
  const host = opts.host ?? '127.0.0.1';
  const mqttPort = opts.mqtt ? opts.mqtt.port || (await freePort(host)) : 0;
  const apiPort = opts.api ? opts.api.port || (await freePort(host)) : 0;
  const configFile = join(dir, 'haproxy.cfg');
  await writeFile(
    configFile,
    renderHaproxyConfig({
      dir,
      host,
      mqtt: opts.mqtt ? { port: mqttPort, backends: opts.mqtt.backends } : undefined,
      api: opts.api ? { port: apiPort, backends: opts.api.backends } : undefined,
      maxConnections,
      checkIntervalMs: opts.checkIntervalMs ?? 1000,
    }),
  );
  // Its own process group: Ctrl-C on the terminal reaches the platform, which stops the edge in its order.
  const engine = await spawnEngine('haproxy', ['-db', '-f', configFile], join(dir, 'haproxy.log'), 'haproxy');
  const { child, exited } = engine;
  const signal = engine.signal;
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= signal('SIGTERM', 5000));
  const tail = async () => (await engine.logTail(10)) || '(haproxy.log is empty)';

  const ports = [mqttPort, apiPort].filter((p) => p > 0);
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  for (;;) {
    if (engine.exitInfo() !== undefined) throw new Error(`haproxy exited during start-up (${engine.exitInfo()}): ${await tail()}`);
    // The admin socket answers once the config is read and every listener bound (HAProxy binds them all at
    // start or exits). Not a connection to a frontend: it would be relayed to a node as a client that fails.
    const info = await adminCommand(join(dir, 'admin.sock'), 'show info').catch(() => '');
    if (info.includes(`Pid: ${child.pid}`) && engine.exitInfo() === undefined) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`haproxy not accepting on ${ports.join(', ')} after ${opts.readyTimeoutMs ?? 10_000} ms: ${await tail()}`);
    }
    await sleep(20);
  }
  const urlHost = host.includes(':') ? `[${host}]` : host;
  log(`haproxy (pid ${child.pid}) relays ${ports.map((p) => `${urlHost}:${p}`).join(', ')}; maxconn ${JSON.stringify(maxConnections)}`);

  const serverStates = async (): Promise<ServerState[]> => {
    const csv = await adminCommand(join(dir, 'admin.sock'), 'show stat');
    const [head, ...rows] = csv.replace(/^# /, '').trim().split('\n');
    const cols = (head ?? '').split(',');
    const at = (name: string) => cols.indexOf(name);
    return rows
      .map((r) => r.split(','))
      .filter((f) => f[at('svname')] !== 'FRONTEND' && f[at('svname')] !== 'BACKEND')
      .map((f) => ({
        backend: f[at('pxname')] ?? '',
        server: f[at('svname')] ?? '',
        status: f[at('status')] ?? '',
        current: Number(f[at('scur')] ?? 0),
      }));
  };

  return {
    pid: child.pid as number,
    dir,
    mqtt: opts.mqtt ? { host, port: mqttPort, url: `mqtt://${urlHost}:${mqttPort}` } : undefined,
    api: opts.api ? { host, port: apiPort, url: `http://${urlHost}:${apiPort}` } : undefined,
    maxConnections,
    serverStates,
    async waitUntilUp(o = {}) {
      const until = Date.now() + (o.timeoutMs ?? 15_000);
      for (;;) {
        const states = await serverStates().catch(() => [] as ServerState[]);
        const byBackend = new Map<string, ServerState[]>();
        for (const s of states) byBackend.set(s.backend, [...(byBackend.get(s.backend) ?? []), s]);
        const ok =
          states.length > 0 &&
          [...byBackend.values()].every((list) => {
            const up = list.filter((s) => s.status === 'UP').length;
            return o.atLeast === undefined ? up === list.length : up >= o.atLeast;
          });
        if (ok) return;
        if (Date.now() > until) {
          throw new Error(
            `haproxy backends not up after ${o.timeoutMs ?? 15_000} ms: ${JSON.stringify(states.map((s) => `${s.backend}/${s.server} ${s.status}`))}`,
          );
        }
        await sleep(50);
      }
    },
    stop,
    kill: () => signal('SIGKILL', 5000),
    exited,
  };
}

/** One command on HAProxy's admin socket; its whole answer. */
function adminCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((res, rej) => {
    const s = net.connect(socketPath);
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.once('error', rej);
    s.once('connect', () => s.write(`${command}\n`));
    s.once('close', () => res(out));
    s.setTimeout(5000, () => s.destroy(new Error('haproxy admin socket timed out')));
  });
}
