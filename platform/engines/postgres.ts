/**
 * Run a private PostgreSQL server as a child process: cluster mode's shared state on one machine (tests, a lab,
 * the figures in docs/cluster-state.md). A production cluster points `state.postgresUrl` at a server run by
 * its operators instead.
 *
 * Each instance owns one folder: `data/` (initdb's cluster, mode 0700), `run/` (the Unix socket, never
 * /var/run/postgresql, which is Debian's own server's) and `postgres.log`. The server listens on 127.0.0.1 and a
 * free port, with one database and one login role with a random password (scram-sha-256 over TCP); local socket
 * connections are trusted (the superuser's way in, for set-up and tests).
 *
 * Debian's initdb and postgres refuse to run as root. As root, both run as the `postgres` system user (the
 * Debian package creates it) through util-linux `setpriv`, and the folder is handed to that user; as any other
 * user they run as that user. setpriv also gives the server SIGINT (a fast shutdown) when the process that
 * started it dies, and execs the server, so the child's pid is the postmaster's.
 *
 * A folder reused after a crash may hold a stale `postmaster.pid`: the server refuses to start while the pid
 * in it names a live process. A live postmaster of this very folder is shut down first; a pid that names
 * anything else (reused by another process since) is removed.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, chown, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from '../influxdb-local.ts';

/** Where Debian's postgresql-15 puts the server binaries (not on PATH). */
export const POSTGRES_BIN_DIR = '/usr/lib/postgresql/15/bin';

const INSTALL_HINT =
  'install the Debian package as root: DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql (or bash scripts/setup.sh)';
const STOP_GRACE_MS = 10_000;
const READY_TIMEOUT_MS = 30_000;

export interface StartLocalPostgresOptions {
  /** The instance's folder; created when missing, reused (initdb skipped) when it holds a cluster. */
  dir: string;
  /** TCP port on 127.0.0.1; 0 or absent picks a free one. */
  port?: number;
  /** Database created for the platform (default `citypulse`). */
  database?: string;
  /** Login role that owns it (default `citypulse`); its password is random, new at every start. */
  user?: string;
  /** Server settings passed as `-c name=value` (e.g. `{ fsync: 'off' }` for throw-away test data). */
  settings?: Record<string, string>;
  log?: (msg: string) => void;
}

/** A running private PostgreSQL. The caller owns it and must call `stop()`. */
export interface LocalPostgres {
  /** `postgres://user:password@127.0.0.1:port/database`: what `state.postgresUrl` takes. */
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** The postmaster's pid (changes with restart()). */
  readonly pid: number;
  /** Connection settings of the superuser over the Unix socket (set-up, tests). */
  superuser(database?: string): pg.ClientConfig;
  /** Creates a further database owned by the login role and returns its URL (one per test keeps tests apart). */
  createDatabase(name: string): Promise<string>;
  /** Fast shutdown (SIGINT: sessions are ended, then a checkpoint); SIGKILL after 10 s. Safe to call twice. */
  stop(): Promise<void>;
  /** SIGKILL to the postmaster, as a crash; returns once every server process of this folder is gone. */
  kill(): Promise<void>;
  /** Starts the server again on the same folder, port and password (after stop() or kill()). */
  restart(): Promise<void>;
  /**
   * SIGSTOP to every server process: connections stay open and nothing answers (a hung server). A detached
   * watchdog sends SIGCONT after `maxMs` (default 60 s) in any case, so a server frozen by a process that was
   * killed meanwhile does not stay stopped (and gets its parent-death signal).
   */
  freeze(maxMs?: number): Promise<void>;
  /** SIGCONT after freeze(). */
  thaw(): Promise<void>;
}

/** Starts PostgreSQL in `opts.dir` and resolves once the database and its role are ready. */
export async function startLocalPostgres(opts: StartLocalPostgresOptions): Promise<LocalPostgres> {
  const log = opts.log ?? (() => {});
  const dir = resolve(opts.dir);
  const database = opts.database ?? 'citypulse';
  const user = opts.user ?? 'citypulse';
  const password = randomBytes(18).toString('base64url');
  const dataDir = join(dir, 'data');
  const runDir = join(dir, 'run');
  const logPath = join(dir, 'postgres.log');
  await findBinaries();
  const owner = await serverUser();
  await mkdir(runDir, { recursive: true });
  if (owner) {
    await checkReachable(dir, owner);
    await chownTree(dir, owner.uid, owner.gid);
  }
  if (!(await exists(join(dataDir, 'PG_VERSION')))) await initdb(dataDir, owner, logPath, log);
  await endStale(dataDir, log);
  const port = opts.port || (await freePort('127.0.0.1'));

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stopping: Promise<void> | undefined;

  const launch = async () => {
    const settings: Record<string, string> = {
      listen_addresses: '127.0.0.1',
      port: String(port),
      unix_socket_directories: runDir,
      // The platform's pools are small (state.poolSize per node); a test cluster runs a few nodes.
      max_connections: '100',
      ...opts.settings,
    };
    const args = ['-D', dataDir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
    const logFile = await open(logPath, 'a');
    const logStart = (await logFile.stat()).size;
    try {
      // Detached (own process group): a Ctrl-C on the terminal reaches the platform only, which closes its pools first.
      child = spawn(...asServerUser(owner, join(POSTGRES_BIN_DIR, 'postgres'), args, 'INT'), {
        stdio: ['ignore', logFile.fd, logFile.fd],
        detached: true,
      });
      child.unref();
    } finally {
      await logFile.close();
    }
    const c = child;
    let exitInfo: string | undefined;
    exited = new Promise<void>((res) => {
      c.once('exit', (code, signal) => {
        exitInfo = signal ? `signal ${signal}` : `code ${code}`;
        res();
      });
      c.once('error', (err) => {
        exitInfo ??= `spawn error: ${err.message}`;
        res();
      });
    });
    log(`starting postgres (pid ${c.pid}) on 127.0.0.1:${port}, dir ${dir}`);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (exitInfo !== undefined) throw new Error(`postgres exited during start-up (${exitInfo}); ${await logTail(logPath, logStart)}`);
      if (await answers(superuser('postgres'))) break;
      if (Date.now() > deadline) {
        await halt();
        throw new Error(`postgres not ready on port ${port} after ${READY_TIMEOUT_MS} ms; ${await logTail(logPath, logStart)}`);
      }
      await sleep(50);
    }
  };

  const superuser = (db = database): pg.ClientConfig => ({ host: runDir, port, user: 'postgres', database: db });

  const asSuperuser = async <T>(db: string, fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client(superuser(db));
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };

  const createDatabase = async (name: string): Promise<string> => {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new TypeError(`database name ${name} must match ^[a-z_][a-z0-9_]{0,62}$`);
    await asSuperuser('postgres', async (c) => {
      const found = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (found.rowCount === 0) await c.query(`CREATE DATABASE "${name}" OWNER "${user}"`);
    });
    return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${name}`;
  };

  /** Every process of this server: the postmaster and its children. */
  const serverPids = async (): Promise<number[]> => {
    const root = child?.pid;
    if (!root || child?.exitCode !== null || child?.signalCode !== null) return [];
    const kids: number[] = [];
    for (const name of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(name)) continue;
      const s = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
      // Field 4 (ppid) follows the command name in parentheses, which may hold spaces.
      const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === root) kids.push(Number(name));
    }
    return [root, ...kids];
  };

  const signalAll = async (signal: NodeJS.Signals) => {
    for (const pid of await serverPids()) {
      try {
        process.kill(pid, signal);
      } catch {
        /* already gone */
      }
    }
  };

  /** Waits (bounded) until none of `pids` is alive. */
  const gone = async (pids: number[]) => {
    const until = Date.now() + STOP_GRACE_MS;
    while (Date.now() < until && (await Promise.all(pids.map(alive))).some(Boolean)) await sleep(20);
  };

  /** Resolves once the postmaster has exited; holds the event loop meanwhile (the child is unref'd). */
  const ended = async () => {
    child?.ref();
    await exited;
    child?.unref();
  };

  /** Thaw watchdogs still sleeping (see freeze); ended once the server is thawed or stopped. */
  const watchdogs: ChildProcess[] = [];
  const endWatchdogs = () => {
    for (const w of watchdogs.splice(0)) {
      if (w.exitCode !== null || w.signalCode !== null || !w.pid) continue;
      try {
        process.kill(-w.pid, 'SIGKILL'); // its process group: the shell and its sleep
      } catch {
        /* already gone */
      }
    }
  };

  const halt = async () => {
    endWatchdogs();
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await signalAll('SIGCONT'); // a frozen server cannot shut down
    c.kill('SIGINT');
    const grace = new AbortController();
    const done = await Promise.race([ended().then(() => true), sleep(STOP_GRACE_MS, false, { signal: grace.signal }).catch(() => false)]);
    grace.abort();
    if (!done) {
      log(`postgres pid ${c.pid} still running ${STOP_GRACE_MS} ms after SIGINT; sending SIGKILL`);
      c.kill('SIGKILL');
      await ended();
    }
  };

  const instance: LocalPostgres = {
    get url() {
      return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
    },
    port,
    dir,
    get pid() {
      return child?.pid ?? 0;
    },
    superuser,
    createDatabase,
    stop: () => (stopping ??= halt()),
    async kill() {
      const pids = await serverPids();
      await signalAll('SIGCONT');
      endWatchdogs();
      child?.kill('SIGKILL');
      await ended();
      // Backends end once they notice the postmaster is gone; a new postmaster refuses to start while they
      // still hold the old shared memory.
      await gone(pids.slice(1));
    },
    async restart() {
      await halt();
      stopping = undefined;
      await launch();
    },
    async freeze(maxMs = 60_000) {
      const pids = await serverPids();
      const watchdog = spawn('sh', ['-c', `sleep ${Math.ceil(maxMs / 1000)}; kill -CONT ${pids.join(' ')} 2>/dev/null`], {
        detached: true,
        stdio: 'ignore',
      });
      watchdog.unref();
      watchdogs.push(watchdog);
      await signalAll('SIGSTOP');
    },
    async thaw() {
      await signalAll('SIGCONT');
      endWatchdogs();
    },
  };

  await launch();
  try {
    await asSuperuser('postgres', async (c) => {
      const role = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [user]);
      // The password is a literal in DDL (no parameters there); base64url has no quote to escape.
      const verb = role.rowCount === 0 ? 'CREATE' : 'ALTER';
      await c.query(`${verb} ROLE "${user}" LOGIN PASSWORD '${password}'`);
    });
    await createDatabase(database);
  } catch (err) {
    await halt();
    throw err;
  }
  log(`postgres ready: database ${database}, role ${user}, port ${port}`);
  return instance;
}

async function findBinaries(): Promise<void> {
  for (const bin of ['initdb', 'postgres']) {
    try {
      await access(join(POSTGRES_BIN_DIR, bin), fsConstants.X_OK);
    } catch {
      throw new Error(`${join(POSTGRES_BIN_DIR, bin)} not found; ${INSTALL_HINT}`);
    }
  }
}

/** As root: the `postgres` system user the server runs as. Otherwise undefined (the server runs as us). */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const passwd = await readFile('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error(`running as root, and there is no postgres system user to run the server as; ${INSTALL_HINT}`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * `cmd args` as the server's user, with `deathSignal` sent to it when this process dies (setpriv: the signal is
 * set after the change of user, which would otherwise clear it).
 */
function asServerUser(
  owner: { uid: number; gid: number } | undefined,
  cmd: string,
  args: string[],
  deathSignal?: string,
): [string, string[]] {
  const pre = owner ? [`--reuid=${owner.uid}`, `--regid=${owner.gid}`, '--init-groups'] : [];
  const death = deathSignal ? ['--pdeathsig', deathSignal] : [];
  if (!owner && !deathSignal) return [cmd, args];
  return ['setpriv', [...pre, ...death, '--', cmd, ...args]];
}

async function initdb(dataDir: string, owner: { uid: number; gid: number } | undefined, logPath: string, log: (m: string) => void) {
  log(`initdb ${dataDir}`);
  const [cmd, args] = asServerUser(owner, join(POSTGRES_BIN_DIR, 'initdb'), [
    '-D',
    dataDir,
    '-U',
    'postgres',
    '--auth-local=trust',
    '--auth-host=scram-sha-256',
    '--encoding=UTF8',
    '--no-locale',
    '--no-instructions',
  ]);
  try {
    await promisify(execFile)(cmd, args, { cwd: '/' });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    await rm(dataDir, { recursive: true, force: true });
    throw new Error(`initdb failed (log ${logPath}): ${(e.stderr || e.message).trim().slice(-2000)}`);
  }
}

/** A `postmaster.pid` left by a crashed run: its postmaster shut down when still alive, else the file removed. */
async function endStale(dataDir: string, log: (m: string) => void): Promise<void> {
  const file = join(dataDir, 'postmaster.pid');
  const pid = Number((await readFile(file, 'utf8').catch(() => '')).split('\n')[0]?.trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  const ours = /(^|\/)postgres$/.test(argv[0] ?? '') && argv.includes(dataDir);
  if (ours) {
    log(`shutting down postgres pid ${pid} left running on ${dataDir} by an earlier start`);
    for (const signal of ['SIGINT', 'SIGKILL'] as const) {
      try {
        process.kill(pid, signal);
      } catch {
        break;
      }
      const until = Date.now() + STOP_GRACE_MS;
      while ((await alive(pid)) && Date.now() < until) await sleep(50);
      if (!(await alive(pid))) break;
    }
    // Its backends leave within moments of the postmaster; the new one checks the shared memory they held.
    await sleep(100);
  }
  if (await exists(file)) {
    log(`removing stale ${file} (pid ${pid} is not a server of this folder)`);
    await rm(file, { force: true });
  }
}

/** True while `pid` runs. A zombie has ended (its parent, init here for orphaned backends, reaps it when it gets to it). */
async function alive(pid: number): Promise<boolean> {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const state = s.slice(s.lastIndexOf(')') + 2).split(' ')[0];
  return s !== '' && state !== 'Z' && state !== 'X';
}

/** Every folder above `dir` must let the server's user through (search permission), or initdb fails obscurely. */
async function checkReachable(dir: string, owner: { uid: number; gid: number }): Promise<void> {
  for (let p = dirname(dir); ; p = dirname(p)) {
    const s = await stat(p);
    const through = s.uid === owner.uid ? s.mode & 0o100 : s.gid === owner.gid ? s.mode & 0o010 : s.mode & 0o001;
    if (!through) {
      throw new Error(
        `the postgres user cannot reach ${dir}: ${p} (mode ${(s.mode & 0o777).toString(8)}) does not let it through; use a folder whose parents it may search (e.g. a new folder in ${tmpdir()}), or chmod o+x ${p}`,
      );
    }
    if (p === dirname(p)) return;
  }
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  const s = await stat(path);
  if (s.uid !== uid || s.gid !== gid) await chown(path, uid, gid);
  if (!s.isDirectory()) return;
  for (const e of await readdir(path)) await chownTree(join(path, e), uid, gid);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** True when the server accepts a connection and answers a query. */
async function answers(config: pg.ClientConfig): Promise<boolean> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 1000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function logTail(path: string, from: number): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const tail = text.slice(from).trim().split('\n').slice(-15).join('\n');
  return tail ? `postgres.log:\n${tail}` : 'postgres.log is empty';
}
