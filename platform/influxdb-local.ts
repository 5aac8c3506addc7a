/**
 * Run a private InfluxDB 1.x server (`influxd`) as a child process, for the platform (influx.url empty), dev
 * mode and tests.
 *
 * The Debian package's own service config listens on all interfaces and shares one data
 * directory, so instead each instance gets its own directory, its own config bound to one
 * host, and free ports for both the HTTP API and the RPC (backup) listener, which lets
 * several instances (parallel test files) run side by side.
 *
 * influxd gets SIGTERM when its parent process dies; one still running on the same directory at the next start
 * is ended first. superviseLocalInflux restarts an influxd that ended on its own, with back-off.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A running private InfluxDB. The caller owns it and must call `stop()`. */
export interface LocalInflux {
  /** Base URL of the v1 HTTP API, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  url: string;
  /** HTTP API port. */
  port: number;
  /** Process id of the `influxd` child. */
  pid: number;
  /** Absolute directory holding meta/, data/, wal/, influxdb.conf and influxd.log. */
  dir: string;
  /** Stops the server: SIGTERM, up to 10 s grace, then SIGKILL. Safe to call more than once. */
  stop(): Promise<void>;
  /** Resolves when this `influxd` process has ended, whatever ended it (stop(), a signal, a crash). */
  exited: Promise<InfluxExit>;
}

/** How an `influxd` process ended: its exit code, or the signal that ended it, or why it could not be spawned. */
export interface InfluxExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: string;
}

/** Options for {@link startLocalInflux}. */
export interface StartLocalInfluxOptions {
  /** Directory for this instance's data, config and log; created if missing, reused if present. */
  dir: string;
  /** HTTP port; 0 or undefined picks a free one. */
  port?: number;
  /** Interface to bind both listeners to (default 127.0.0.1). */
  host?: string;
  /** How long to wait for `/ping` to answer 204 (default 30000 ms). */
  readyTimeoutMs?: number;
  /** Receives progress messages (install, start, ready). */
  log?: (msg: string) => void;
}

const INSTALL_HINT = 'install the Debian packages as root: DEBIAN_FRONTEND=noninteractive apt-get install -y influxdb influxdb-client';

const STOP_GRACE_MS = 10_000;
const PING_INTERVAL_MS = 50;

/**
 * Returns the path of `influxd`, installing the Debian packages `influxdb` and
 * `influxdb-client` with apt-get when it is missing and we run as root.
 * Installing starts no service in a container; on a systemd host the package's own
 * service may start, which this module does not rely on or touch.
 * @throws Error naming the packages to install when not root or when apt-get fails.
 */
export async function ensureInfluxInstalled(log: (msg: string) => void = () => {}): Promise<string> {
  const found = await findInfluxd();
  if (found) return found;

  if (process.getuid?.() !== 0) {
    throw new Error(`influxd (InfluxDB 1.x) not found on PATH or at /usr/bin/influxd; ${INSTALL_HINT}`);
  }

  // Try without `apt-get update` first: when the package lists are already there, this
  // saves a network round trip; a stale or empty list makes install fail, then we update.
  const install = ['install', '-y', '--no-install-recommends', 'influxdb', 'influxdb-client'];
  log('influxd not found; installing influxdb influxdb-client with apt-get');
  try {
    await runApt(install);
  } catch {
    log('apt-get install failed; running apt-get update and retrying');
    try {
      await runApt(['update']);
      await runApt(install);
    } catch (err) {
      throw new Error(`installing InfluxDB failed (${(err as Error).message}); ${INSTALL_HINT}`, { cause: err });
    }
  }

  const installed = await findInfluxd();
  if (!installed) throw new Error(`apt-get reported success but influxd is still missing; ${INSTALL_HINT}`);
  log(`installed ${installed}`);
  return installed;
}

/**
 * Starts `influxd run` with a generated config in `opts.dir` and resolves once `/ping`
 * answers 204. Calls {@link ensureInfluxInstalled} first, so on a fresh machine running
 * as root this may install InfluxDB.
 * @throws Error with the tail of influxd.log when the process exits or is not ready in time,
 *   or when a fixed `port` is already in use.
 */
export async function startLocalInflux(opts: StartLocalInfluxOptions): Promise<LocalInflux> {
  const log = opts.log ?? (() => {});
  const host = opts.host ?? '127.0.0.1';
  const influxd = await ensureInfluxInstalled(log);
  const dir = resolve(opts.dir);
  await Promise.all(['meta', 'data', 'wal'].map((sub) => mkdir(join(dir, sub), { recursive: true })));
  // Before the port check: an influxd left running by a platform that was killed outright still holds the
  // fixed port, and it is ours to end (same folder), unlike any other process on that port.
  await killStale(join(dir, 'influxd.pid'), join(dir, 'influxdb.conf'), log);

  // Ports picked free can be taken by someone else before influxd binds them (the RPC port
  // always is picked, the HTTP port when none is given); retry with new ones in that case only.
  for (let attempt = 1; ; attempt++) {
    // A fixed port is checked up front because otherwise our readiness poll could be answered
    // by the InfluxDB already holding it while our own process dies on the bind error.
    if (opts.port && !(await isPortFree(host, opts.port))) {
      throw new Error(`cannot start InfluxDB: port ${opts.port} on ${host} is already in use`);
    }
    try {
      return await startOnce(influxd, dir, host, opts.port || (await freePort(host)), opts, log);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/i.test((err as Error).message)) throw err;
      log(`a port was taken before influxd bound it; retrying (attempt ${attempt + 1})`);
    }
  }
}

async function startOnce(
  influxd: string,
  dir: string,
  host: string,
  port: number,
  opts: StartLocalInfluxOptions,
  log: (msg: string) => void,
): Promise<LocalInflux> {
  const rpcPort = await freePort(host);
  const configPath = join(dir, 'influxdb.conf');
  await writeFile(configPath, renderConfig(dir, host, port, rpcPort));

  const logPath = join(dir, 'influxd.log');
  const logFile = await open(logPath, 'a');
  // The log is kept across restarts in a reused dir; errors quote only this run's part.
  const logStart = (await logFile.stat()).size;
  let child: ChildProcess;
  try {
    // Detached (own process group): Ctrl-C on the terminal must reach only the platform, which flushes its
    // buffered readings into this InfluxDB before stopping it. Through setpriv, influxd gets SIGTERM from the
    // kernel when its parent dies (killed outright, crashed); should it still outlive the parent, the pid file
    // lets the next start in the same dir end it (killStale).
    const [cmd, args] = await withParentDeathSignal(influxd, ['run', '-config', configPath]);
    child = spawn(cmd, args, { stdio: ['ignore', logFile.fd, logFile.fd], detached: true });
    child.unref();
    if (child.pid) await writeFile(join(dir, 'influxd.pid'), `${child.pid}\n`);
  } finally {
    await logFile.close(); // the child holds its own copy of the descriptor
  }

  let exitInfo: string | undefined;
  const exited = new Promise<InfluxExit>((res) => {
    child.once('exit', (code, signal) => {
      exitInfo = signal ? `signal ${signal}` : `code ${code}`;
      res({ code, signal });
    });
    // spawn failure (e.g. EACCES) emits 'error' and possibly no 'exit'.
    child.once('error', (err) => {
      exitInfo ??= `spawn error: ${err.message}`;
      res({ code: null, signal: null, error: err.message });
    });
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (exitInfo !== undefined) return;
      child.kill('SIGTERM');
      // The grace timer is cancelled on exit, or it would hold the event loop open for 10 s.
      const grace = new AbortController();
      const graceful = await Promise.race([
        exited.then(() => true),
        sleep(STOP_GRACE_MS, false, { signal: grace.signal }).catch(() => false),
      ]);
      grace.abort();
      if (!graceful) {
        log(`influxd pid ${child.pid} ignored SIGTERM for ${STOP_GRACE_MS} ms; sending SIGKILL`);
        child.kill('SIGKILL');
        await exited;
      }
    })());

  const urlHost = host.includes(':') ? `[${host}]` : host;
  const url = `http://${urlHost}:${port}`;
  log(`starting influxd (pid ${child.pid}) on ${url}, dir ${dir}`);

  const started = Date.now();
  const deadline = started + (opts.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (exitInfo !== undefined) {
      throw new Error(`influxd exited during start-up (${exitInfo}); ${await logTail(logPath, logStart)}`);
    }
    // Require our child to still be alive after the 204, so a foreign server on the port can't fool us.
    if ((await ping(url)) && exitInfo === undefined) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`influxd not ready on ${url} after ${opts.readyTimeoutMs ?? 30_000} ms; ${await logTail(logPath, logStart)}`);
    }
    await sleep(PING_INTERVAL_MS);
  }
  log(`influxd ready on ${url} in ${Date.now() - started} ms`);

  return { url, port, pid: child.pid!, dir, stop, exited };
}

/** Options for {@link superviseLocalInflux}. */
export interface SuperviseLocalInfluxOptions extends StartLocalInfluxOptions {
  /** Receives, at error level, an influxd that ended without stop() and each restart that failed. */
  onError?: (detail: Record<string, unknown>, msg: string) => void;
  /** Delay before the first restart (default 500 ms); it doubles after each restart, up to `maxRestartDelayMs`. */
  restartDelayMs?: number;
  /** Longest delay between restarts (default 30000 ms). */
  maxRestartDelayMs?: number;
  /** An influxd that stayed up this long (default 60000 ms) is restarted after `restartDelayMs` again. */
  stableAfterMs?: number;
}

/** A private InfluxDB that is restarted whenever it ends without `stop()`; `pid` is the current process. */
export interface SupervisedInflux extends LocalInflux {
  /** How many times influxd was restarted after ending on its own. */
  readonly restarts: number;
}

/**
 * Starts a private InfluxDB like {@link startLocalInflux} (a failed first start throws) and keeps it running:
 * an influxd that ends without `stop()` (killed, crashed) is reported through `onError` with its exit code or
 * signal and started again on the same dir and HTTP port, so the URL given to its clients stays valid. The
 * delay before a restart doubles from `restartDelayMs` to `maxRestartDelayMs` and goes back to the start once
 * influxd has stayed up `stableAfterMs`. `stop()` ends supervision first, so stopping restarts nothing.
 */
export async function superviseLocalInflux(opts: SuperviseLocalInfluxOptions): Promise<SupervisedInflux> {
  const log = opts.log ?? (() => {});
  const onError = opts.onError ?? ((detail, msg) => log(`${msg} ${JSON.stringify(detail)}`));
  const minDelay = opts.restartDelayMs ?? 500;
  const maxDelay = opts.maxRestartDelayMs ?? 30_000;
  const stableAfter = opts.stableAfterMs ?? 60_000;

  let current = await startLocalInflux(opts);
  // A port picked free at the first start is kept: ingest, analytics and the API already use this URL.
  const again: StartLocalInfluxOptions = { ...opts, port: current.port };
  let stopped = false;
  let restarts = 0;
  const cancelWait = new AbortController();

  const supervise = async (): Promise<void> => {
    let delay = minDelay;
    while (!stopped) {
      const instance = current;
      const upSince = Date.now();
      const exit = await instance.exited;
      if (stopped) return;
      const endedAt = Date.now();
      if (endedAt - upSince >= stableAfter) delay = minDelay;
      onError(
        // influxdPid: a logger's own `pid` field is the platform's.
        {
          influxdPid: instance.pid,
          code: exit.code,
          signal: exit.signal,
          ...(exit.error ? { error: exit.error } : {}),
          restartInMs: delay,
        },
        `local InfluxDB (influxd pid ${instance.pid}) ended unexpectedly (${exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`}); restarting it in ${delay} ms`,
      );
      for (;;) {
        await sleep(delay, undefined, { signal: cancelWait.signal }).catch(() => undefined);
        if (stopped) return;
        delay = Math.min(delay * 2, maxDelay);
        try {
          const next = await startLocalInflux(again);
          current = next;
          if (stopped) return void (await next.stop());
          restarts++;
          log(`influxd restarted (pid ${next.pid}, restart ${restarts}), ${Date.now() - endedAt} ms after it ended`);
          break;
        } catch (err) {
          if (stopped) return;
          onError({ err: (err as Error).message, restartInMs: delay }, 'restarting the local InfluxDB failed; trying again');
        }
      }
    }
  };
  const supervising = supervise().catch((err: unknown) => onError({ err: (err as Error).message }, 'InfluxDB supervision failed'));

  let stopping: Promise<void> | undefined;
  const first = current;
  return {
    url: first.url,
    port: first.port,
    dir: first.dir,
    get pid() {
      return current.pid;
    },
    get restarts() {
      return restarts;
    },
    get exited() {
      return current.exited;
    },
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        cancelWait.abort();
        await current.stop();
        await supervising; // a restart in progress stops its own influxd
        await current.stop();
      })()),
  };
}

/**
 * Ends an influxd left running by an earlier platform process on the same dir. Only the process named in the
 * dir's pid file, and only while its command line is `influxd … -config <this dir's config>`, so a reused pid
 * or anyone else's server is never touched. SIGTERM (influxd closes its files), SIGKILL after 10 s.
 */
async function killStale(pidFile: string, configPath: string, log: (msg: string) => void): Promise<void> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  const isOurs = async () => {
    // NUL-separated argv; empty for a zombie (already dead, port released) and missing once reaped.
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    return /(^|\/)influxd$/.test(argv[0] ?? '') && argv.includes(configPath);
  };
  if (!(await isOurs())) return;
  log(`ending influxd pid ${pid} left running by an earlier start`);
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      return; // already gone
    }
    for (let waited = 0; waited < STOP_GRACE_MS && (await isOurs()); waited += 50) await sleep(50);
    if (!(await isOurs())) return;
    log(`influxd pid ${pid} ignored SIGTERM for ${STOP_GRACE_MS} ms; sending SIGKILL`);
  }
}

let setprivPath: Promise<string | undefined> | undefined;

/**
 * The command that runs `cmd args` with SIGTERM as its parent-death signal (prctl PR_SET_PDEATHSIG, kept across
 * exec), through util-linux `setpriv` (Debian: always installed); the plain command where setpriv is missing.
 * The pid stays the same (setpriv execs the command). The kernel ties the signal to the spawning thread: influxd
 * is spawned from the main thread, whose end is the process's end.
 */
export async function withParentDeathSignal(cmd: string, args: string[]): Promise<[string, string[]]> {
  setprivPath ??= findExecutable('setpriv');
  const setpriv = await setprivPath;
  return setpriv ? [setpriv, ['--pdeathsig', 'TERM', '--', cmd, ...args]] : [cmd, args];
}

/** InfluxDB 1.x config for one private instance. Unlisted settings keep influxd's defaults. */
function renderConfig(dir: string, host: string, port: number, rpcPort: number): string {
  // JSON string literals are valid TOML basic strings (paths with quotes or backslashes stay intact).
  const s = (v: string) => JSON.stringify(v);
  const bind = (p: number) => s(`${host.includes(':') ? `[${host}]` : host}:${p}`);
  return `# Generated by citypulse platform/influxdb-local.ts; rewritten on every start.
# Debian's 1.6.7 build reads reporting-enabled, upstream 1.x reads reporting-disabled; unknown keys are ignored.
reporting-enabled = false
reporting-disabled = true
bind-address = ${bind(rpcPort)}

[meta]
  dir = ${s(join(dir, 'meta'))}

[data]
  dir = ${s(join(dir, 'data'))}
  wal-dir = ${s(join(dir, 'wal'))}
  index-version = "inmem"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = ${bind(port)}
  auth-enabled = false
  log-enabled = false

[logging]
  suppress-logo = true

[continuous_queries]
  enabled = true
`;
}

/** True when GET /ping answers 204; any network error or other status means "not yet". */
async function ping(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) });
    await res.body?.cancel();
    return res.status === 204;
  } catch {
    return false;
  }
}

/** Asks the OS for a free port by listening on port 0 and closing again. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? res(addr.port) : rej(new Error('no port assigned'))));
    });
  });
}

function isPortFree(host: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, host, () => srv.close(() => res(true)));
  });
}

function findInfluxd(): Promise<string | undefined> {
  return findExecutable('influxd');
}

async function findExecutable(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin'];
  for (const d of dirs) {
    const candidate = join(d, name);
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

function runApt(args: string[]): Promise<void> {
  return new Promise((res, rej) => {
    execFile(
      'apt-get',
      args,
      { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, maxBuffer: 64 * 1024 * 1024 },
      (err, _stdout, stderr) => {
        if (!err) return res();
        const tail = String(stderr).trim().split('\n').slice(-5).join(' | ');
        rej(new Error(`apt-get ${args[0]} failed: ${tail || err.message}`));
      },
    );
  });
}

async function logTail(logPath: string, fromByte: number): Promise<string> {
  try {
    const text = (await readFile(logPath)).subarray(fromByte).toString('utf8');
    const lines = text.trimEnd().split('\n').slice(-20).join('\n');
    return lines ? `last lines of ${logPath}:\n${lines}` : `${logPath} is empty`;
  } catch {
    return `no log at ${logPath}`;
  }
}
