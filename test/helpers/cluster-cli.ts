/**
 * Test helper: `citypulse cluster` run as a user runs it (the command line under tsx, a child process with its own
 * environment), and what a test checks after it: the processes of its folder and the ports it held.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ClusterCommand {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** stdout and stderr so far. */
  output(): string;
  /** Exit code, or the signal that ended it. */
  exited: Promise<number | string>;
  /** Resolves once the banner ends ("Ctrl+C to stop."); throws when the command exits first or after `timeoutMs`. */
  started(timeoutMs: number): Promise<void>;
  /** The first word after a banner label (`dashboard`, `MQTT`, `admin token` …). */
  line(label: string): string | undefined;
  /** SIGINT when still running, SIGKILL if it has not ended after `graceMs`. */
  end(graceMs?: number): Promise<void>;
}

/** Spawns `node --import tsx bin/citypulse.ts cluster ...args` with exactly `env` (plus PATH). */
export function runClusterCommand(args: string[], env: Record<string, string>): ClusterCommand {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/citypulse.ts', 'cluster', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((res) => child.once('exit', (code, signal) => res(code ?? signal ?? -1)));
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    child,
    output: () => out,
    exited,
    async started(timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (!out.includes('Ctrl+C to stop.')) {
        if (!running()) throw new Error(`citypulse cluster exited during start:\n${out}`);
        if (Date.now() > until) throw new Error(`citypulse cluster not up after ${timeoutMs} ms:\n${out}`);
        await sleep(200);
      }
    },
    line: (label) => new RegExp(`^ {2}${label} +(\\S+)`, 'm').exec(out)?.[1],
    async end(graceMs = 120_000) {
      if (!running()) return;
      child.kill('SIGINT');
      if ((await Promise.race([exited, deadline(graceMs).then(() => undefined)])) === undefined) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A timeout for a race: its timer does not keep the test's process alive once the race is won. */
export function deadline(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Every process whose command line or environment names `dir` (the command, its engines and nodes). */
export async function processesOf(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const e of await readdir('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const [cmd, env] = await Promise.all([
      readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''),
      readFile(`/proc/${pid}/environ`, 'utf8').catch(() => ''),
    ]);
    if (cmd.includes(dir) || env.includes(dir)) pids.push(pid);
  }
  return pids;
}

/** `pid: command line` of each, for a failure message. */
export async function describeProcesses(pids: number[]): Promise<string> {
  const lines = await Promise.all(
    pids.map(async (p) => `${p}: ${(await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ')}`),
  );
  return lines.join('\n');
}

export function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const srv = net.createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });
}
