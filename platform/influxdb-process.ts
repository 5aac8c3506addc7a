/**
 * One private InfluxDB 1.x server (`influxd`) as a child process: its own directory and generated config bound
 * to one host, free ports for the HTTP API and the RPC (backup) listener, readiness by `/ping`, and stop (SIGTERM,
 * then SIGKILL). influxd gets SIGTERM when its parent process dies; one still running on the same directory at
 * the next start is ended first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureInfluxInstalled, findExecutable } from './influxdb-install.ts';

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

const STOP_GRACE_MS = 10_000;
const PING_INTERVAL_MS = 50;

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

/**
 * A free port below the kernel's ephemeral range (net.ipv4.ip_local_port_range), where no outgoing connection is
 * ever given a port: a port held across a restart (a crash test kills the platform and starts it on the same
 * ports) cannot be taken meanwhile by some client's connection, as a port from the ephemeral range can. Random
 * candidates are tried by listening on them; after 50 taken ones, the OS's choice (port 0).
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const low = ephemeralLow();
  for (let i = 0; i < 50 && low > 11000; i++) {
    const port = 10000 + Math.floor(Math.random() * (low - 10000));
    if (await isPortFree(host, port)) return port;
  }
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? res(addr.port) : rej(new Error('no port assigned'))));
    });
  });
}

function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

function isPortFree(host: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, host, () => srv.close(() => res(true)));
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
