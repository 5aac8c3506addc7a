/**
 * A whole cluster on one machine, as `citypulse cluster` runs it and as whole-cluster tests start it: the
 * engines (a 3-node RabbitMQ cluster, PostgreSQL, Redis, one InfluxDB shared by every node), N platform nodes as
 * child processes, HAProxy in TCP mode with PROXY v2 in front of their brokers (MQTT) and APIs (HTTP and
 * socket.io), and a simulated city that connects through HAProxy.
 *
 * ```ts
 * const c = await startCluster({ dir: '/tmp/c', nodes: 3 });
 * // c.mqtt, c.api: HAProxy's addresses; c.nodes[i].api / .mqtt: each node's own (PROXY v2 only, see nodeRequest)
 * await c.killNode(1);      // SIGKILL platform node 2
 * await c.startNode(1);     // again on its data and ports, resolves once its health answers
 * await c.rabbit.stopNode(0); await c.rabbit.startNode(0);
 * await c.stopInflux(); await c.startInflux();
 * await c.restartPostgres();
 * await c.stop();           // everything it started, nodes first (they flush), then the edge and the engines
 * ```
 *
 * Each platform node is the command a user runs (`node dist/bin/citypulse.js start --no-simulate --config FILE`
 * when this module runs compiled, `node --import tsx bin/citypulse.ts …` when it runs from the sources; `entry`
 * chooses) with its own data folder, ports and config file (`dir/nodeN/config.json`: the base configuration with
 * what differs per node), sharing one service token (`api.adminToken`), the InfluxDB, PostgreSQL, Redis and the
 * RabbitMQ nodes. Nodes listen on 127.0.0.1 only, behind the edge (`broker.proxyProtocol`, `api.proxyProtocol`):
 * a client reaches a node directly only by sending a PROXY v2 header first, as `nodeRequest` does.
 *
 * The folder keeps everything: `rabbitmq/`, `postgres/`, `redis/`, `influxdb/`, `haproxy/`, `node1/` … (each a
 * node's dataDir, config and `platform.log`), `admin-token`, `simulator-credentials.json` and `cluster.json`
 * (the ports, kept for the next start). A later start in the same folder starts the engines again on their data
 * and ends what a crashed earlier run left running there (nodes carry their folder in their environment; the
 * engines' launchers end their own leftovers).
 *
 * Every child gets SIGTERM when the process that started it dies (util-linux setpriv): killing the owner leaves
 * nothing behind for long.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { encodeProxyV2 } from '../core/proxy-protocol.ts';
import { ensureInitialAdmin } from '../registry/operators.ts';
import { type CityProfile, loadCityProfile } from '../registry/index.ts';
import type { Family } from '../ingest/index.ts';
import { createFleet, type Fleet, restRegistry } from '../simulators/index.ts';
import { type Config, type ConfigInput, loadConfig } from './config.ts';
import { type Haproxy, startHaproxy } from './engines/haproxy.ts';
import { type LocalPostgres, startLocalPostgres } from './engines/postgres.ts';
import { type RabbitCluster, startRabbitCluster } from './engines/rabbitmq.ts';
import { type LocalRedis, startRedis } from './engines/redis.ts';
import { freePort, type LocalInflux, startLocalInflux, withParentDeathSignal } from './influxdb-local.ts';
import { openStateStores } from './state.ts';

export interface StartClusterOptions {
  /** The cluster's folder (see the file comment); created when missing, reused when it holds an earlier run. */
  dir: string;
  /** Platform nodes (default 3). */
  nodes?: number;
  /** RabbitMQ nodes: 3 (default; a quorum survives one down) or 1. */
  rabbitNodes?: 1 | 3;
  /** Run the simulated city (`simulate.*` of `config`) through HAProxy once the nodes are up (default true). */
  simulate?: boolean;
  /**
   * Base configuration of every node (a file's or `loadConfig()`'s content); what the cluster sets per node
   * (dataDir, ports, hosts, engines' URLs, PROXY v2, the service token) replaces it. Its `simulate.*` sizes the
   * city, `api.adminToken` (when set) is the shared service token, `api.initialAdminPassword` the first admin's.
   */
  config?: ConfigInput;
  /** HAProxy's MQTT port (0 or absent: a free one, kept in cluster.json for the next start). */
  mqttPort?: number;
  /** HAProxy's API port (0 or absent: a free one, kept in cluster.json for the next start). */
  apiPort?: number;
  /** Address HAProxy listens on (default 127.0.0.1; the nodes and engines always listen on 127.0.0.1). */
  host?: string;
  /** How nodes run: the compiled build (dist/) or the sources under tsx; default: as this module runs. */
  entry?: 'compiled' | 'sources';
  /** Wipe the engines' data of an earlier run in `dir` (RabbitMQ's queues; default false). */
  fresh?: boolean;
  /** How long one platform node may take until its health answers, ms (default 120000). */
  nodeStartTimeoutMs?: number;
  /** Progress messages. */
  log?: (msg: string) => void;
}

export interface ClusterNode {
  /** 0-based, as killNode(i) takes it. */
  readonly index: number;
  /** node1, node2 … (HAProxy's server names). */
  readonly name: string;
  /** The node's dataDir (its config.json and platform.log are in it). */
  readonly dataDir: string;
  readonly configFile: string;
  /** stdout and stderr of the node's process, appended across starts. */
  readonly logFile: string;
  /** The node's own API, `http://127.0.0.1:PORT` (PROXY v2 first: see ClusterHandle.nodeRequest). */
  readonly api: string;
  /** The node's own broker, `mqtt://127.0.0.1:PORT` (PROXY v2 first). */
  readonly mqtt: string;
  readonly apiPort: number;
  readonly mqttPort: number;
  /** The node process's pid while it runs. */
  readonly pid: number | undefined;
  readonly running: boolean;
}

/** One RabbitMQ node at a time, for fault tests: what RabbitCluster offers, with startNode for restartNode. */
export interface ClusterRabbit {
  readonly urls: readonly string[];
  /** The launcher's own handle (ctl, node names, ports). */
  readonly cluster: RabbitCluster;
  isRunning(i: number): boolean;
  /** Clean stop of RabbitMQ node `i` (SIGTERM); resolves once it exited. */
  stopNode(i: number): Promise<void>;
  /** SIGKILL to RabbitMQ node `i`'s VM. */
  killNode(i: number): Promise<void>;
  /** Starts node `i` again on its data; resolves once it is back in the cluster. */
  startNode(i: number): Promise<void>;
}

export interface NodeResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface ClusterHandle {
  readonly dir: string;
  /** HAProxy's MQTT address, `mqtt://host:port`: where devices connect. */
  readonly mqtt: string;
  /** HAProxy's API address, `http://host:port`: the dashboard, REST and socket.io. */
  readonly api: string;
  readonly nodes: readonly ClusterNode[];
  /** The service token every node accepts (role admin). */
  readonly adminToken: string;
  /** True when this start created the service token (print it once); it is kept in `dir/admin-token`. */
  readonly adminTokenCreated: boolean;
  /** Set when this start created the first operator `admin` (the password only when it was generated). */
  readonly initialAdmin: { username: string; password?: string } | undefined;
  readonly rabbit: ClusterRabbit;
  readonly postgres: LocalPostgres;
  readonly redis: LocalRedis;
  readonly haproxy: Haproxy;
  /** The shared InfluxDB's URL (the same port across stopInflux/startInflux). */
  readonly influxUrl: string;
  /** The simulated city, when `simulate` (its progress: devices online, readings sent, errors). */
  readonly fleet: Fleet | undefined;
  /** SIGKILL to platform node `i` (0-based), as a crash; resolves once it is gone. */
  killNode(i: number): Promise<void>;
  /** SIGTERM to platform node `i` (it stops gracefully, flushing); SIGKILL after 30 s; resolves once it is gone. */
  stopNode(i: number): Promise<void>;
  /** Starts platform node `i` again on its data, ports and config; resolves once its health answers 200. */
  startNode(i: number): Promise<void>;
  /** A request straight to node `i`'s API, PROXY v2 LOCAL header first (as HAProxy's health check does). */
  nodeRequest(
    i: number,
    urlPath: string,
    init?: { method?: string; headers?: Record<string, string>; body?: string },
  ): Promise<NodeResponse>;
  /** Node `i`'s `GET /api/v1/health`: status code and report. */
  nodeHealth(i: number): Promise<{ status: number; report: Record<string, unknown> | undefined }>;
  /** Stops the shared InfluxDB (SIGTERM, SIGKILL after 10 s). */
  stopInflux(): Promise<void>;
  /** Starts the shared InfluxDB again on its data and port. */
  startInflux(): Promise<void>;
  /** Fast shutdown of PostgreSQL, then a start on the same folder, port and password. */
  restartPostgres(): Promise<void>;
  /** Ends everything it started: the fleet, the nodes (gracefully), HAProxy, RabbitMQ, Redis, PostgreSQL, InfluxDB. Idempotent. */
  stop(): Promise<void>;
}

/** What a later start in the same folder keeps: ports (the addresses printed last time stay valid when free). */
interface Manifest {
  mqttPort?: number;
  apiPort?: number;
  influxPort?: number;
  postgresPort?: number;
  nodes?: { apiPort: number; mqttPort: number }[];
}

/** Marks a node process with its folder, so that a later start ends what a crashed run left (not CITYPULSE_*: an option). */
const NODE_MARK = 'CP_CLUSTER_NODE_DIR';
const NODE_STOP_GRACE_MS = 30_000;

const HERE = fileURLToPath(import.meta.url);
const COMPILED = HERE.endsWith('.js');
/** The project's root: cluster.ts is in platform/, cluster.js in dist/platform/. */
const ROOT = path.resolve(path.dirname(HERE), COMPILED ? '../..' : '..');

export async function startCluster(opts: StartClusterOptions): Promise<ClusterHandle> {
  const log = opts.log ?? (() => undefined);
  const dir = path.resolve(opts.dir);
  const count = opts.nodes ?? 3;
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`nodes must be a whole number ≥ 1, got ${count}`);
  // Searchable by others, not listable: PostgreSQL runs as its own system user when the owner is root and must
  // reach postgres/ (platform/engines/postgres.ts); the secrets in the folder are files of mode 0600.
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o711);
  const manifestFile = path.join(dir, 'cluster.json');
  const manifest: Manifest = await readJson<Manifest>(manifestFile).then((m) => m ?? {});
  const host = opts.host ?? '127.0.0.1';
  // The base configuration, validated once here (a wrong option fails before any engine starts).
  const base = loadConfig({ env: {}, overrides: opts.config ?? {} });
  const entry = opts.entry ?? (COMPILED ? 'compiled' : 'sources');
  const nodeArgs =
    entry === 'compiled' ? [path.join(ROOT, 'dist', 'bin', 'citypulse.js')] : ['--import', 'tsx', path.join(ROOT, 'bin', 'citypulse.ts')];
  if (entry === 'compiled' && !existsSync(nodeArgs[0] as string))
    throw new Error(`${nodeArgs[0]} is missing: build it (npm run build:platform) or use entry: 'sources'`);

  // Fixed edge ports are checked before anything starts (HAProxy binds them last, after a minute of start-up).
  for (const [what, port] of [
    ['MQTT', opts.mqttPort],
    ['API', opts.apiPort],
  ] as const) {
    if (port && (await reusablePort(port, host)) === undefined)
      throw new Error(`the edge's ${what} port ${host}:${port} is taken by another process: choose another (broker.port, api.port)`);
  }

  const nodeDirs = Array.from({ length: count }, (_, i) => path.join(dir, `node${i + 1}`));
  const ended = await endStaleNodes(dir);
  if (ended) log(`ended ${ended} platform node process(es) an earlier run left in ${dir}`);

  // Everything started so far, stopped in reverse by stopAll (also when the start fails half-way).
  let rabbit: RabbitCluster | undefined;
  let postgres: LocalPostgres | undefined;
  let redis: LocalRedis | undefined;
  let influx: LocalInflux | undefined;
  let haproxy: Haproxy | undefined;
  let fleet: Fleet | undefined;
  const procs: (NodeProc | undefined)[] = nodeDirs.map(() => undefined);
  let stopping: Promise<void> | undefined;

  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      const quietly = async (what: string, fn: (() => Promise<void>) | undefined) => {
        try {
          await fn?.();
        } catch (err) {
          log(`stopping ${what} failed: ${(err as Error).message}`);
        }
      };
      await quietly('the simulated city', fleet && (() => (fleet as Fleet).stop()));
      // Nodes first: each stops taking messages and writes what it holds while the engines are still there.
      await Promise.all(procs.map((_, i) => quietly(`node${i + 1}`, () => stopProc(i))));
      await quietly('haproxy', haproxy && (() => (haproxy as Haproxy).stop()));
      await Promise.all([
        quietly('rabbitmq', rabbit && (() => (rabbit as RabbitCluster).stop())),
        quietly('redis', redis && (() => (redis as LocalRedis).stop())),
        quietly('postgres', postgres && (() => (postgres as LocalPostgres).stop())),
        quietly('influxdb', influx && (() => (influx as LocalInflux).stop())),
      ]);
      // Nothing of the nodes may outlive the cluster (a node that ignored its stop, a helper it left).
      await endStaleNodes(dir);
    })());

  const stopProc = async (i: number, sig: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const p = procs[i];
    if (!p) return;
    p.child.kill(sig);
    if (sig !== 'SIGKILL') {
      const grace = new AbortController();
      const clean = await Promise.race([
        p.exited.then(() => true),
        sleep(NODE_STOP_GRACE_MS, false, { signal: grace.signal }).catch(() => false),
      ]);
      grace.abort();
      if (!clean) p.child.kill('SIGKILL');
    }
    await p.exited;
  };

  try {
    // The engines side by side: RabbitMQ's start (22-42 s for 3 nodes here) dominates.
    const influxPort = (await reusablePort(manifest.influxPort, '127.0.0.1')) ?? (await freePort('127.0.0.1'));
    const postgresPort = (await reusablePort(manifest.postgresPort, '127.0.0.1')) ?? (await freePort('127.0.0.1'));
    const engines = await Promise.allSettled([
      startRabbitCluster({ dir: path.join(dir, 'rabbitmq'), nodes: opts.rabbitNodes ?? 3, fresh: opts.fresh, log }).then(
        (r) => (rabbit = r),
      ),
      startLocalPostgres({ dir: path.join(dir, 'postgres'), port: postgresPort, log }).then((p) => (postgres = p)),
      startRedis({ dir: path.join(dir, 'redis'), log }).then((r) => (redis = r)),
      startLocalInflux({ dir: path.join(dir, 'influxdb'), port: influxPort, log }).then((x) => (influx = x)),
    ]);
    const failed = engines.find((e): e is PromiseRejectedResult => e.status === 'rejected');
    if (failed) throw failed.reason;
    const r = rabbit as RabbitCluster;
    const pg = postgres as LocalPostgres;
    const rd = redis as LocalRedis;
    const ix = influx as LocalInflux;
    const influxUrl = ix.url;

    // One service token for every node: the configured one, else the folder's (created at the first start).
    let adminToken = base.api.adminToken;
    let adminTokenCreated = false;
    if (!adminToken) ({ token: adminToken, created: adminTokenCreated } = await loadOrCreateToken(path.join(dir, 'admin-token')));

    // Ports: those of the last start where still free, new ones otherwise.
    const taken = new Set<number>();
    const pick = async (kept: number | undefined): Promise<number> => {
      const k = kept && !taken.has(kept) ? await reusablePort(kept, '127.0.0.1') : undefined;
      let p = k;
      while (p === undefined || taken.has(p)) p = await freePort('127.0.0.1');
      taken.add(p);
      return p;
    };
    const nodePorts: { apiPort: number; mqttPort: number }[] = [];
    for (let i = 0; i < count; i++) {
      const kept = manifest.nodes?.[i];
      nodePorts.push({ apiPort: await pick(kept?.apiPort), mqttPort: await pick(kept?.mqttPort) });
    }
    const cityProfile = path.resolve(ROOT, base.cityProfile);
    const nodeConfigs: Readonly<Config>[] = nodePorts.map((ports, i) =>
      loadConfig({
        env: {},
        overrides: deepMerge(base, {
          dataDir: nodeDirs[i],
          cityProfile,
          influx: { url: influxUrl },
          state: { postgresUrl: pg.url },
          // Every node lists every RabbitMQ node; its connections start at a random one (ingest/amqp-link.ts).
          ingest: { cluster: { amqpUrls: [...r.urls] } },
          broker: { host: '127.0.0.1', port: ports.mqttPort, redisUrl: rd.url, proxyProtocol: { enabled: true }, tls: { enabled: false } },
          api: { host: '127.0.0.1', port: ports.apiPort, redisUrl: rd.url, proxyProtocol: { enabled: true }, adminToken },
          simulate: { enabled: false },
        }) as ConfigInput,
      }),
    );

    // Migrations and the first operator once, before the nodes start side by side.
    const zones = new Set(loadCityProfile(cityProfile).zones.map((z) => z.id));
    const state = await openStateStores(nodeConfigs[0] as Config, { zoneExists: (z) => zones.has(z) });
    let initialAdmin: ClusterHandle['initialAdmin'];
    try {
      const first = await ensureInitialAdmin(state.operators, base.api.initialAdminPassword);
      if (first.created) initialAdmin = { username: first.username, password: first.generatedPassword };
    } finally {
      await state.close();
    }

    const nodes: ClusterNode[] = nodeDirs.map((d, i) => {
      const ports = nodePorts[i] as { apiPort: number; mqttPort: number };
      return {
        index: i,
        name: `node${i + 1}`,
        dataDir: d,
        configFile: path.join(d, 'config.json'),
        logFile: path.join(d, 'platform.log'),
        api: `http://127.0.0.1:${ports.apiPort}`,
        mqtt: `mqtt://127.0.0.1:${ports.mqttPort}`,
        apiPort: ports.apiPort,
        mqttPort: ports.mqttPort,
        get pid() {
          return procs[i]?.child.pid;
        },
        get running() {
          return procs[i] !== undefined;
        },
      };
    });
    for (const [i, n] of nodes.entries()) {
      await mkdir(n.dataDir, { recursive: true, mode: 0o700 });
      // Holds the service token and PostgreSQL's password: the owner's alone.
      await writeFile(n.configFile, `${JSON.stringify(nodeConfigs[i], null, 2)}\n`, { mode: 0o600 });
    }
    const saved: Manifest = {
      mqttPort: manifest.mqttPort,
      apiPort: manifest.apiPort,
      influxPort: ix.port,
      postgresPort: pg.port,
      nodes: nodePorts,
    };
    await writeFile(manifestFile, `${JSON.stringify(saved, null, 2)}\n`);

    const nodeRequest: ClusterHandle['nodeRequest'] = (i, urlPath, init = {}) => {
      const n = nodes[i];
      if (!n) return Promise.reject(new RangeError(`no node ${i}`));
      return proxiedRequest(n.apiPort, urlPath, init);
    };
    const nodeHealth: ClusterHandle['nodeHealth'] = async (i) => {
      const res = await nodeRequest(i, '/api/v1/health');
      let report: Record<string, unknown> | undefined;
      try {
        report = JSON.parse(res.body) as Record<string, unknown>;
      } catch {
        report = undefined;
      }
      return { status: res.status, report };
    };

    const startNode = async (i: number): Promise<void> => {
      const n = nodes[i];
      if (!n) throw new RangeError(`no node ${i}`);
      if (procs[i]) return;
      const out = await open(n.logFile, 'a');
      let child: ChildProcess;
      try {
        const [cmd, args] = await withParentDeathSignal(process.execPath, [
          ...nodeArgs,
          'start',
          '--no-simulate',
          '--config',
          n.configFile,
        ]);
        // Own process group: a Ctrl+C on the terminal reaches the owner, which stops the nodes in its order.
        child = spawn(cmd, args, { cwd: ROOT, env: nodeEnv(n.dataDir), stdio: ['ignore', out.fd, out.fd], detached: true });
      } finally {
        await out.close();
      }
      const exited = new Promise<void>((res) => {
        child.once('exit', () => res());
        child.once('error', () => res());
      });
      const proc: NodeProc = { child, exited };
      procs[i] = proc;
      void exited.then(() => {
        if (procs[i] === proc) procs[i] = undefined;
      });
      const until = Date.now() + (opts.nodeStartTimeoutMs ?? 120_000);
      for (;;) {
        if (procs[i] !== proc) throw new Error(`${n.name} exited during start-up; ${await logTail(n.logFile)}`);
        const h = await nodeHealth(i).catch(() => undefined);
        if (h?.status === 200) break;
        if (Date.now() > until) {
          await stopProc(i, 'SIGKILL');
          throw new Error(`${n.name}'s health did not answer 200 in time; ${await logTail(n.logFile)}`);
        }
        await sleep(200);
      }
      log(`${n.name} (pid ${child.pid}) up: API ${n.api}, MQTT ${n.mqtt}`);
    };

    await Promise.all(nodes.map((_, i) => startNode(i)));

    const backends = (port: (n: ClusterNode) => number) => nodes.map((n) => ({ name: n.name, host: '127.0.0.1', port: port(n) }));
    const mqttPort = opts.mqttPort || (await reusablePort(manifest.mqttPort, host)) || 0;
    const apiPort = opts.apiPort || (await reusablePort(manifest.apiPort, host)) || 0;
    const hx = await startHaproxy({
      dir: path.join(dir, 'haproxy'),
      host,
      mqtt: { port: mqttPort, backends: backends((n) => n.mqttPort) },
      api: { port: apiPort, backends: backends((n) => n.apiPort) },
      log,
    });
    haproxy = hx;
    await hx.waitUntilUp({ timeoutMs: 30_000 });
    await writeFile(
      manifestFile,
      `${JSON.stringify({ ...saved, mqttPort: hx.mqtt?.port, apiPort: hx.api?.port } satisfies Manifest, null, 2)}\n`,
    );
    const edgeMqtt = hx.mqtt?.url as string;
    const edgeApi = hx.api?.url as string;

    if (opts.simulate ?? true) {
      const profile = loadCityProfile(cityProfile);
      const f = createFleet({
        mqttUrl: edgeMqtt,
        profile,
        counts: fleetCounts(base.simulate, profile),
        seed: base.simulate.seed,
        intervalScale: base.simulate.intervalScale,
        qos: base.simulate.qos as 0 | 1,
        backfillMs: base.simulate.backfillHours * 3_600_000,
        credentialsFile: path.join(dir, 'simulator-credentials.json'),
        ...restRegistry(edgeApi, adminToken),
      });
      fleet = f;
      await f.start();
    }

    return {
      dir,
      mqtt: edgeMqtt,
      api: edgeApi,
      nodes,
      adminToken,
      adminTokenCreated,
      initialAdmin,
      rabbit: {
        urls: r.urls,
        cluster: r,
        isRunning: (i) => r.isRunning(i),
        stopNode: (i) => r.stopNode(i),
        killNode: (i) => r.killNode(i),
        startNode: (i) => r.restartNode(i),
      },
      postgres: pg,
      redis: rd,
      haproxy: hx,
      influxUrl,
      fleet,
      killNode: (i) => stopProc(i, 'SIGKILL'),
      stopNode: (i) => stopProc(i, 'SIGTERM'),
      startNode,
      nodeRequest,
      nodeHealth,
      async stopInflux() {
        await influx?.stop();
      },
      async startInflux() {
        const current = influx;
        // Still running: nothing to do (its exited promise settles once the process ended).
        if (current && !(await Promise.race([current.exited.then(() => true), sleep(0, false)]))) return;
        influx = await startLocalInflux({ dir: path.join(dir, 'influxdb'), port: ix.port, log });
      },
      async restartPostgres() {
        await pg.stop();
        await pg.restart();
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

interface NodeProc {
  child: ChildProcess;
  exited: Promise<void>;
}

/** The simulated city's size: `simulate.*`, -1 meaning the city profile's fleet (as `citypulse start`). */
function fleetCounts(s: Readonly<Config>['simulate'], profile: CityProfile): Record<Family, number> {
  const pick = (n: number, f: Family) => (n >= 0 ? n : (profile.fleet?.[f] ?? 0));
  return {
    airQuality: pick(s.airQuality, 'airQuality'),
    traffic: pick(s.traffic, 'traffic'),
    streetLight: pick(s.streetLight, 'streetLight'),
  };
}

/**
 * A node's environment: the owner's, without CITYPULSE_* (the node's config file says everything; an inherited
 * variable would override it, e.g. the edge's port), with the node's mark.
 */
function nodeEnv(nodeDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CITYPULSE_') && !k.startsWith('NODE_TEST')) env[k] = v;
  env[NODE_MARK] = nodeDir;
  return env;
}

/**
 * Ends every process whose environment carries a node mark under `dir` (a node of a crashed earlier run, or one
 * that outlived its stop): SIGTERM, SIGKILL after the grace time. Returns how many were found.
 */
async function endStaleNodes(dir: string): Promise<number> {
  const prefix = `${NODE_MARK}=${dir}${path.sep}`;
  const find = async (): Promise<number[]> => {
    const pids: number[] = [];
    for (const e of await readdir('/proc').catch(() => [] as string[])) {
      const pid = Number(e);
      if (!Number.isInteger(pid) || pid === process.pid) continue;
      const env = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
      if (env.split('\0').some((x) => x.startsWith(prefix))) pids.push(pid);
    }
    return pids;
  };
  const found = await find();
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  };
  if (!found.length) return 0;
  for (const pid of found) signal(pid, 'SIGTERM');
  for (let waited = 0; waited < NODE_STOP_GRACE_MS; waited += 200) {
    if (!(await find()).length) return found.length;
    await sleep(200);
  }
  for (const pid of await find()) signal(pid, 'SIGKILL');
  await sleep(200);
  return found.length;
}

/** An HTTP request to a node's API port with a PROXY v2 LOCAL header first (the node accepts nothing else). */
function proxiedRequest(
  port: number,
  urlPath: string,
  init: { method?: string; headers?: Record<string, string>; body?: string },
): Promise<NodeResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: urlPath,
        method: init.method ?? 'GET',
        headers: { ...init.headers, connection: 'close' },
        timeout: 10_000,
        // No agent: with one, http ignores createConnection.
        createConnection: () => {
          const s = net.connect(port, '127.0.0.1');
          s.write(encodeProxyV2());
          return s;
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from 127.0.0.1:${port}${urlPath} within 10 s`)));
    req.on('error', reject);
    req.end(init.body);
  });
}

/** `port` when it is given and free on `host` now, else undefined. */
async function reusablePort(port: number | undefined, host: string): Promise<number | undefined> {
  if (!port) return undefined;
  return new Promise((res) => {
    const srv = net.createServer();
    srv.once('error', () => res(undefined));
    srv.listen(port, host, () => srv.close(() => res(port)));
  });
}

async function loadOrCreateToken(file: string): Promise<{ token: string; created: boolean }> {
  const kept = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (kept) return { token: kept, created: false };
  const token = randomBytes(24).toString('base64url');
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  return { token, created: true };
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `over` on top of `base`, objects merged key by key, anything else (lists too) replaced. */
function deepMerge(base: unknown, over: unknown): unknown {
  if (!isPlain(base) || !isPlain(over)) return over === undefined ? base : over;
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

async function logTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const tail = text.trimEnd().split('\n').slice(-20).join('\n');
  return tail ? `last lines of ${file}:\n${tail}` : `${file} is empty`;
}
