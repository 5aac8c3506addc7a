/**
 * An engine as a child process of the platform (or of a test): its output appended to a log file of its own
 * folder, its own process group (Ctrl-C on the terminal reaches the platform, which stops its engines in order),
 * SIGTERM when its parent dies (setpriv), and a stop that escalates to SIGKILL after a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { withParentDeathSignal } from '../influxdb-local.ts';

export interface EngineChild {
  readonly child: ChildProcess;
  readonly pid: number;
  /** How it ended ("code 1", "signal SIGKILL", a spawn error), undefined while it runs. */
  exitInfo(): string | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `sig`, then SIGKILL if it has not ended within `graceMs`; resolves once it ended. */
  signal(sig: NodeJS.Signals, graceMs: number): Promise<void>;
  /** The last `lines` lines it wrote to its log since this start ('' when none). */
  logTail(lines: number): Promise<string>;
}

/** Starts `cmd args` with its output appended to `logPath`; `debianPackage` names what to install when it is missing. */
export async function spawnEngine(cmd: string, args: string[], logPath: string, debianPackage: string): Promise<EngineChild> {
  const logFile = await open(logPath, 'a');
  const logStart = (await logFile.stat()).size;
  let child: ChildProcess;
  try {
    const [c, a] = await withParentDeathSignal(cmd, args);
    child = spawn(c, a, { stdio: ['ignore', logFile.fd, logFile.fd], detached: true });
    child.unref();
  } finally {
    await logFile.close();
  }
  let exitInfo: string | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.once('exit', (code, signal) => {
      exitInfo = signal ? `signal ${signal}` : `code ${code}`;
      res({ code, signal });
    });
    child.once('error', (err) => {
      exitInfo ??= `spawn error: ${err.message} (install the Debian package ${debianPackage}: scripts/setup.sh)`;
      res({ code: null, signal: null });
    });
  });
  const signal = async (sig: NodeJS.Signals, graceMs: number) => {
    if (exitInfo !== undefined) return;
    child.kill(sig);
    const done = new AbortController();
    const ended = await Promise.race([exited.then(() => true), sleep(graceMs, false, { signal: done.signal }).catch(() => false)]);
    done.abort();
    if (!ended) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  const logTail = async (lines: number) => {
    const text = (await readFile(logPath).catch(() => Buffer.alloc(0))).subarray(logStart).toString('utf8').trim();
    return text ? text.split('\n').slice(-lines).join('\n') : '';
  };
  return { child, pid: child.pid as number, exitInfo: () => exitInfo, exited, signal, logTail };
}
