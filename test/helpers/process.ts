/**
 * Test helper: the platform as a separate process (`citypulse start --no-simulate`), configured by
 * environment variables on free loopback ports, so that a test can SIGKILL it and start it again on the same
 * data folder.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export { freePort } from '../../platform/influxdb-local.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface PlatformProcess {
  child: ChildProcess;
  api: string;
  mqtt: string;
  /** stderr so far (logs at warn and above, and the start banner). */
  output(): string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | string>;
}

/** The command line's sources under tsx (the default), as `npm run dev` runs them. */
export const TSX_ENTRY: readonly string[] = ['--import', 'tsx', 'bin/citypulse.ts'];

/**
 * Starts the platform process and waits until /api/v1/health answers. `env` adds CITYPULSE_* options; `entry`
 * is what node runs before `start` (default {@link TSX_ENTRY}; a compiled build: `[<outDir>/bin/citypulse.js]`).
 */
export async function startPlatformProcess(
  env: Record<string, string>,
  ports: { api: number; mqtt: number },
  entry: readonly string[] = TSX_ENTRY,
): Promise<PlatformProcess> {
  const child = spawn(process.execPath, [...entry, 'start', '--no-simulate'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      CITYPULSE_LOG_LEVEL: 'warn',
      CITYPULSE_API_PORT: String(ports.api),
      CITYPULSE_BROKER_PORT: String(ports.mqtt),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const api = `http://127.0.0.1:${ports.api}`;
  const until = Date.now() + 30000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`platform process exited during start:\n${out}`);
    try {
      const res = await fetch(`${api}/api/v1/health`);
      if (res.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`platform process not ready after 30 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, api, mqtt: `mqtt://127.0.0.1:${ports.mqtt}`, output: () => out, exited };
}
