/**
 * A RabbitMQ cluster of 1 or 3 nodes on loopback, run as the project's own child processes in a private folder:
 * cluster mode's replicated log (quorum queues, ingest/replicated-log.ts) for tests, benchmarks and a local
 * cluster. Debian's `rabbitmq-server` (3.10) is used as installed; its service unit is not (policy-rc.d blocks it
 * in containers, and it would share /var/lib/rabbitmq with anyone else's node).
 *
 * Every node gets its own name (r1@localhost …), config file, data (mnesia) and log folders, pid file and
 * distribution port; all share one HOME (the Erlang cookie lives there) and a private epmd started here on its
 * own port, bound to 127.0.0.1 (ERL_EPMD_ADDRESS, ERL_EPMD_PORT), so clusters of parallel runs never see each
 * other's node names. Distribution listens on 127.0.0.1 only (`inet_dist_use_interface`), AMQP on
 * 127.0.0.1:PORT with free ports; no plugin is enabled (management off). Nodes 2 and 3 join node 1 with
 * rabbitmqctl (stop_app, join_cluster, start_app), and the cluster counts as formed once node 1 lists every
 * node as running.
 *
 * The folder keeps `cluster.json` (node names and AMQP ports): a later start in the same folder ends whatever an
 * earlier run left running there (a crashed test, a killed platform: every process whose environment carries
 * this folder's HOME), then starts the nodes again on their data and ports, so acknowledged readings still in
 * the queues survive; `fresh: true` wipes the folder's data first.
 *
 * Each node runs under util-linux `setpriv --pdeathsig TERM`: when the process that started it dies, the node's
 * start script gets SIGTERM and stops RabbitMQ cleanly.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, chmod, mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Debian's rabbitmq-server package: the scripts themselves (the /usr/sbin wrappers switch to the rabbitmq user). */
const RABBITMQ_BIN = '/usr/lib/rabbitmq/bin';
const EPMD_CANDIDATES = ['/usr/bin/epmd', '/usr/lib/erlang/bin/epmd'];
const INSTALL_HINT = 'install the Debian package as root: apt-get install -y rabbitmq-server (scripts/setup.sh does)';

export interface RabbitClusterOptions {
  /** Private folder for the cookie, configs, data, logs and pid files; created when missing. */
  dir: string;
  /** Nodes in the cluster: 1, or 3 (a quorum survives one node down). */
  nodes: 1 | 3;
  /** Wipe the data of an earlier run in `dir` first (default false: the nodes start again on it). */
  fresh?: boolean;
  /** How long the whole start may take, ms (default 120000). */
  startTimeoutMs?: number;
  /** Progress messages. */
  log?: (msg: string) => void;
}

export interface RabbitNode {
  /** Erlang node name, e.g. r1@localhost. */
  name: string;
  amqpPort: number;
  /** Erlang distribution port of the node's current process (a new one at every start of the node). */
  distPort: number;
  /** amqp://127.0.0.1:PORT (the default guest user, which RabbitMQ accepts from loopback only). */
  url: string;
}

export interface RabbitCluster {
  readonly dir: string;
  readonly nodes: readonly RabbitNode[];
  /** The nodes' AMQP URLs, node 1 first. */
  readonly urls: string[];
  /** How long start took, ms: nodes booted, joined and listed as running by node 1. */
  readonly startedInMs: number;
  /** True while node `i` (0-based) has a process. */
  isRunning(i: number): boolean;
  /** Stops node `i` cleanly (SIGTERM: RabbitMQ closes connections and its queues' files); resolves once it exited. */
  stopNode(i: number): Promise<void>;
  /** Kills node `i` outright (SIGKILL to the Erlang VM), as a crash or a power cut of one machine would. */
  killNode(i: number): Promise<void>;
  /** Starts node `i` again on its data; resolves once it runs and is back in the cluster. */
  restartNode(i: number): Promise<void>;
  /** rabbitmqctl against node `i` (e.g. ['list_queues', 'name', 'messages']); resolves with its stdout. */
  ctl(i: number, args: string[], timeoutMs?: number): Promise<string>;
  /** Stops every node and the epmd started here. Idempotent. */
  stop(): Promise<void>;
}

/** What a later start in the same folder keeps: the node names (their data) and AMQP ports (clients' URLs). */
interface Manifest {
  nodes: { name: string; amqpPort: number }[];
}

interface NodeProcess {
  child: ChildProcess;
  exited: Promise<void>;
}

const STOP_GRACE_MS = 30_000;

/** Starts (or starts again, see the file comment) a cluster of `nodes` nodes in `dir`; resolves once it is formed. */
export async function startRabbitCluster(opts: RabbitClusterOptions): Promise<RabbitCluster> {
  const started = Date.now();
  const log = opts.log ?? (() => {});
  const dir = resolve(opts.dir);
  const home = join(dir, 'home');
  const deadline = started + (opts.startTimeoutMs ?? 120_000);
  await requireInstalled();
  await mkdir(home, { recursive: true });
  const ended = await endStale(home);
  if (ended) log(`ended ${ended} process(es) left running in ${dir} by an earlier run`);

  const manifestFile = join(dir, 'cluster.json');
  let manifest = opts.fresh ? undefined : await readManifest(manifestFile);
  if (manifest && manifest.nodes.length !== opts.nodes) {
    throw new Error(
      `${dir} holds a ${manifest.nodes.length}-node cluster, not ${opts.nodes}: start it with nodes: ${manifest.nodes.length}, or with fresh: true to wipe it`,
    );
  }
  const reused = manifest !== undefined;
  if (!manifest) {
    for (const e of await readdir(dir)) if (e !== 'home') await rm(join(dir, e), { recursive: true, force: true });
    const ports = await freePortsBelowEphemeral(opts.nodes);
    manifest = { nodes: ports.map((amqpPort, i) => ({ name: `r${i + 1}@localhost`, amqpPort })) };
    await writeFile(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
  }
  await ensureCookie(home, !reused);
  await writeFile(
    join(dir, 'rabbitmq-env.conf'),
    '# Empty on purpose: every setting comes from the environment (platform/engines/rabbitmq.ts).\n',
  );
  const m = manifest;
  for (const n of m.nodes) {
    if (!(await portFree(n.amqpPort)))
      throw new Error(`AMQP port ${n.amqpPort} of ${n.name} (kept in ${manifestFile}) is taken by another process`);
  }
  const nodes: RabbitNode[] = m.nodes.map((n) => ({ ...n, distPort: 0, url: `amqp://127.0.0.1:${n.amqpPort}` }));
  // epmd and distribution ports need not survive a restart (nodes find each other by name through epmd): picked
  // anew at every start, so a port some other socket took meanwhile never stops a node.
  const epmdPort = (await freePortsBelowEphemeral(1))[0] as number;
  for (const n of nodes) await writeNodeFiles(dir, n);

  const baseEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: home,
    LC_ALL: 'C.UTF-8',
    ERL_EPMD_ADDRESS: '127.0.0.1',
    ERL_EPMD_PORT: String(epmdPort),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
  };
  const nodeEnv = (n: RabbitNode) => {
    const nd = join(dir, short(n.name));
    return {
      ...baseEnv,
      RABBITMQ_NODENAME: n.name,
      RABBITMQ_CONFIG_FILE: join(nd, 'rabbitmq.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(nd, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(nd, 'enabled_plugins'),
      RABBITMQ_MNESIA_BASE: join(nd, 'mnesia'),
      RABBITMQ_LOG_BASE: join(nd, 'log'),
      RABBITMQ_PID_FILE: join(nd, 'rabbitmq.pid'),
      RABBITMQ_DIST_PORT: String(n.distPort),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
  };

  const running: (NodeProcess | undefined)[] = nodes.map(() => undefined);
  let epmd: NodeProcess | undefined;
  let stopping: Promise<void> | undefined;

  const ctl = (i: number, args: string[], timeoutMs = 60_000): Promise<string> =>
    new Promise((res, rej) => {
      const n = nodes[i] as RabbitNode;
      execFile(
        join(RABBITMQ_BIN, 'rabbitmqctl'),
        ['-n', n.name, ...args],
        { env: nodeEnv(n), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (err) rej(new Error(`rabbitmqctl -n ${n.name} ${args.join(' ')} failed: ${String(stderr || stdout || err.message).trim()}`));
          else res(String(stdout));
        },
      );
    });

  const startNode = async (i: number): Promise<void> => {
    const n = nodes[i] as RabbitNode;
    const nd = join(dir, short(n.name));
    const others = nodes.filter((o) => o !== n).map((o) => o.distPort);
    do n.distPort = (await freePortsBelowEphemeral(1))[0] as number;
    while (others.includes(n.distPort));
    await rm(join(nd, 'rabbitmq.pid'), { force: true });
    const out = await open(join(nd, 'console.log'), 'a');
    try {
      const [cmd, args] = await withParentDeathSignal(join(RABBITMQ_BIN, 'rabbitmq-server'), []);
      // Own process group: a Ctrl-C on the terminal reaches the platform or the test, which stop the nodes.
      const child = spawn(cmd, args, {
        cwd: nd,
        env: { ...nodeEnv(n), ERL_CRASH_DUMP: join(nd, 'erl_crash.dump') },
        stdio: ['ignore', out.fd, out.fd],
        detached: true,
      });
      child.unref();
      const exited = new Promise<void>((r) => {
        child.once('exit', () => r());
        child.once('error', () => r());
      });
      running[i] = { child, exited };
      void exited.then(() => {
        if (running[i]?.child === child) running[i] = undefined;
      });
    } finally {
      await out.close();
    }
  };

  /**
   * Waits until node `i` has booted: RabbitMQ writes its pid file early in the boot, then `rabbitmqctl wait`
   * follows the VM until RabbitMQ runs in it, then the AMQP listener answers. Fails as soon as the node exits.
   */
  const awaitBooted = async (i: number, until: number): Promise<void> => {
    const n = nodes[i] as RabbitNode;
    const r = running[i];
    if (!r) throw new Error(`${n.name} is not running`);
    const pidFile = join(dir, short(n.name), 'rabbitmq.pid');
    let exited = false;
    const exit = r.exited.then(() => {
      exited = true;
    });
    const failed = async (what: string) => new Error(`${n.name} ${what}; ${await consoleTail(dir, n)}`);
    while (!(await exists(pidFile))) {
      if (exited) throw await failed('exited during start-up');
      if (Date.now() > until) throw await failed('wrote no pid file in time');
      await sleep(100);
    }
    const left = Math.max(5, Math.round((until - Date.now()) / 1000));
    const waited = ctl(i, ['wait', pidFile, '--timeout', String(left)], left * 1000 + 5000).then(
      () => true,
      (err: Error) => err,
    );
    const outcome = await Promise.race([waited, exit.then(() => false as const)]);
    if (outcome === false || exited) throw await failed('exited during start-up');
    if (outcome instanceof Error) throw outcome;
    await waitForPort(n.amqpPort, until);
  };

  /** The names node 1 (or the first running node) lists as running cluster members. */
  const runningMembers = async (): Promise<string[]> => {
    const at = running.findIndex((r) => r !== undefined);
    if (at < 0) return [];
    const status = JSON.parse(await ctl(at, ['cluster_status', '--formatter', 'json'])) as { running_nodes?: string[] };
    return status.running_nodes ?? [];
  };

  const awaitMembers = async (names: string[]): Promise<void> => {
    for (;;) {
      const members = await runningMembers().catch(() => [] as string[]);
      if (names.every((x) => members.includes(x))) return;
      if (Date.now() > deadline) throw new Error(`cluster not formed in time: running ${members.join(', ') || 'none'}`);
      await sleep(250);
    }
  };

  const vmPid = async (i: number): Promise<number | undefined> => {
    const pid = Number((await readFile(join(dir, short((nodes[i] as RabbitNode).name), 'rabbitmq.pid'), 'utf8').catch(() => '')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  };

  const stopNode = async (i: number): Promise<void> => {
    const r = running[i];
    if (!r) return;
    r.child.ref(); // held until it exited: the owner's process waits for it
    r.child.kill('SIGTERM'); // the start script passes it to the VM, which stops RabbitMQ cleanly
    const grace = new AbortController();
    const clean = await Promise.race([r.exited.then(() => true), sleep(STOP_GRACE_MS, false, { signal: grace.signal }).catch(() => false)]);
    grace.abort();
    if (!clean) await killNode(i);
  };

  const killNode = async (i: number): Promise<void> => {
    const r = running[i];
    if (!r) return;
    r.child.ref();
    const pid = await vmPid(i);
    if (pid !== undefined && (await environHas(pid, `HOME=${home}`))) signal(pid, 'SIGKILL');
    r.child.kill('SIGKILL');
    await r.exited;
    // The VM's helpers (erl_child_setup, inet_gethost) end with it; anything of this node still alive is ended.
    await endStale(home, (env) => env.includes(`RABBITMQ_NODENAME=${(nodes[i] as RabbitNode).name}`));
  };

  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      await Promise.all(nodes.map((_, i) => stopNode(i)));
      if (epmd) {
        epmd.child.ref();
        epmd.child.kill('SIGTERM');
        await epmd.exited;
      }
      await endStale(home);
    })());

  try {
    epmd = await startEpmd(dir, epmdPort, baseEnv);
    log(`starting ${nodes.length} RabbitMQ node(s) in ${dir}${reused ? ' on the data of an earlier run' : ''}`);
    for (let i = 0; i < nodes.length; i++) await startNode(i);
    await Promise.all(nodes.map((_, i) => awaitBooted(i, deadline)));
    log(`${nodes.length} node(s) booted after ${Date.now() - started} ms`);
    const names = nodes.map((n) => n.name);
    const members = await runningMembers();
    // Nodes started again on their data rejoin by themselves; fresh ones join node 1.
    const joining = nodes.map((_, i) => i).filter((i) => i > 0 && !members.includes((nodes[i] as RabbitNode).name));
    // One after the other: two nodes joining at once can fail to start RabbitMQ again (mnesia refuses to start
    // in the second one), measured here with 3.10.
    for (const i of joining) {
      await ctl(i, ['stop_app']);
      await ctl(i, ['join_cluster', (nodes[0] as RabbitNode).name]);
      await ctl(i, ['start_app']);
    }
    await awaitMembers(names);
    await Promise.all(nodes.map((n) => waitForPort(n.amqpPort, deadline)));
  } catch (err) {
    await stopAll();
    throw err;
  }
  const startedInMs = Date.now() - started;
  log(`RabbitMQ cluster of ${nodes.length} formed in ${startedInMs} ms: ${nodes.map((n) => n.url).join(' ')}`);

  return {
    dir,
    nodes,
    urls: nodes.map((n) => n.url),
    startedInMs,
    isRunning: (i) => running[i] !== undefined,
    stopNode,
    killNode,
    async restartNode(i) {
      if (running[i]) return;
      const n = nodes[i] as RabbitNode;
      const until = Date.now() + (opts.startTimeoutMs ?? 120_000);
      await startNode(i);
      await awaitBooted(i, until);
      for (;;) {
        const members = await runningMembers().catch(() => [] as string[]);
        if (members.includes(n.name)) return;
        if (Date.now() > until) throw new Error(`${n.name} did not rejoin the cluster in time`);
        await sleep(250);
      }
    },
    ctl,
    stop: stopAll,
  };
}

function short(name: string): string {
  return name.split('@')[0] as string;
}

async function requireInstalled(): Promise<void> {
  for (const f of ['rabbitmq-server', 'rabbitmqctl']) {
    if (!(await exists(join(RABBITMQ_BIN, f)))) throw new Error(`RabbitMQ not found (${join(RABBITMQ_BIN, f)}); ${INSTALL_HINT}`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

async function readManifest(file: string): Promise<Manifest | undefined> {
  try {
    const m = JSON.parse(await readFile(file, 'utf8')) as Manifest;
    return Array.isArray(m.nodes) && m.nodes.length > 0 && m.nodes.every((n) => Number.isInteger(n.amqpPort)) ? m : undefined;
  } catch {
    return undefined;
  }
}

/** The Erlang cookie nodes and rabbitmqctl share (owner-only, as Erlang requires); a new one for a new cluster. */
async function ensureCookie(home: string, renew: boolean): Promise<void> {
  const file = join(home, '.erlang.cookie');
  if (!renew && (await exists(file))) return;
  await rm(file, { force: true });
  await writeFile(file, randomBytes(24).toString('hex').toUpperCase(), { mode: 0o400 });
  await chmod(file, 0o400);
}

async function writeNodeFiles(dir: string, n: RabbitNode): Promise<void> {
  const nd = join(dir, short(n.name));
  await mkdir(join(nd, 'log'), { recursive: true });
  await mkdir(join(nd, 'mnesia'), { recursive: true });
  await writeFile(join(nd, 'enabled_plugins'), '[].\n'); // management and every other plugin off
  await writeFile(
    join(nd, 'rabbitmq.conf'),
    `# Generated by platform/engines/rabbitmq.ts; rewritten on every start.
listeners.tcp.default = 127.0.0.1:${n.amqpPort}
cluster_name = citypulse
log.console = false
log.file.level = warning
# A node of a shared machine: its memory alarm (publishers blocked, acknowledgements wait) at 1 GiB, and the
# quorum queues' write-ahead log rolled over at 64 MB instead of 512 MB (its memtables are held in memory).
vm_memory_high_watermark.absolute = 1GiB
raft.wal_max_size_bytes = 64000000
`,
  );
}

/**
 * `count` distinct free ports on 127.0.0.1 below the ephemeral range (32768-60999 here): a port inside it can
 * be taken by any outgoing socket while a node is down, and a node's AMQP port must stay the same across its
 * restarts.
 */
async function freePortsBelowEphemeral(count: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let tries = 0; ports.size < count; tries++) {
    if (tries > 500) throw new Error('no free port found in 20000-32767 on 127.0.0.1');
    const p = 20000 + Math.floor(Math.random() * 12768);
    if (!ports.has(p) && (await portFree(p))) ports.add(p);
  }
  return [...ports];
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}

/** The private epmd: in the foreground, so that it is ours to stop (a node would otherwise start a daemon of its own). */
async function startEpmd(dir: string, port: number, env: Record<string, string>): Promise<NodeProcess> {
  let bin: string | undefined;
  for (const c of EPMD_CANDIDATES) if (await exists(c)) bin = c;
  if (!bin) throw new Error(`epmd not found; ${INSTALL_HINT}`);
  const out = await open(join(dir, 'epmd.log'), 'a');
  let child: ChildProcess;
  try {
    const [cmd, args] = await withParentDeathSignal(bin, ['-port', String(port), '-address', '127.0.0.1']);
    child = spawn(cmd, args, { env, stdio: ['ignore', out.fd, out.fd], detached: true });
    child.unref();
  } finally {
    await out.close();
  }
  const exited = new Promise<void>((r) => {
    child.once('exit', () => r());
    child.once('error', () => r());
  });
  let gone = false;
  void exited.then(() => (gone = true));
  const until = Date.now() + 10_000;
  for (;;) {
    if (gone) throw new Error(`epmd exited during start-up (port ${port}); see ${join(dir, 'epmd.log')}`);
    if (await portOpen(port)) return { child, exited };
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`epmd not listening on 127.0.0.1:${port} after 10 s`);
    }
    await sleep(20);
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

async function waitForPort(port: number, deadline: number): Promise<void> {
  while (!(await portOpen(port))) {
    if (Date.now() > deadline) throw new Error(`nothing listening on 127.0.0.1:${port} in time`);
    await sleep(50);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** The NUL-separated environment of a process ('' when it is gone or not readable). */
async function environOf(pid: number): Promise<string> {
  return readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
}

async function environHas(pid: number, entry: string): Promise<boolean> {
  return (await environOf(pid)).split('\0').includes(entry);
}

/**
 * Ends every process whose environment carries `HOME=<home>` (and matches `filter`): the nodes, their start
 * scripts and helpers, the epmd and any rabbitmqctl started for this folder, by this run or a crashed earlier one.
 * The folder is private, so nothing else carries it. SIGTERM first (RabbitMQ stops cleanly), SIGKILL after the
 * grace time. Returns how many processes were found.
 */
async function endStale(home: string, filter: (env: string[]) => boolean = () => true): Promise<number> {
  const mark = `HOME=${home}`;
  const find = async (): Promise<number[]> => {
    const pids: number[] = [];
    for (const e of await readdir('/proc').catch(() => [] as string[])) {
      const pid = Number(e);
      if (!Number.isInteger(pid) || pid === process.pid) continue;
      const env = (await environOf(pid)).split('\0');
      if (env.includes(mark) && filter(env)) pids.push(pid);
    }
    return pids;
  };
  const found = await find();
  if (!found.length) return 0;
  for (const pid of found) signal(pid, 'SIGTERM');
  for (let waited = 0; waited < STOP_GRACE_MS; waited += 100) {
    if (!(await find()).length) return found.length;
    await sleep(100);
  }
  for (const pid of await find()) signal(pid, 'SIGKILL');
  await sleep(200);
  return found.length;
}

async function consoleTail(dir: string, n: RabbitNode): Promise<string> {
  const file = join(dir, short(n.name), 'console.log');
  const text = await readFile(file, 'utf8').catch(() => '');
  const tail = text.trimEnd().split('\n').slice(-15).join('\n');
  return tail ? `last lines of ${file}:\n${tail}` : `${file} is empty`;
}

let setprivPath: Promise<string | undefined> | undefined;

/** `cmd args` with SIGTERM as its parent-death signal (util-linux setpriv, as platform/influxdb-local.ts does). */
async function withParentDeathSignal(cmd: string, args: string[]): Promise<[string, string[]]> {
  setprivPath ??= (async () => {
    for (const c of ['/usr/bin/setpriv', '/bin/setpriv']) if (await exists(c)) return c;
    return undefined;
  })();
  const setpriv = await setprivPath;
  return setpriv ? [setpriv, ['--pdeathsig', 'TERM', '--', cmd, ...args]] : [cmd, args];
}
