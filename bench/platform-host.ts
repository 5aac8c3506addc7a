/**
 * A platform in a process of its own, for the memory figures of `npm run bench -- connections`: forked by
 * bench/e2e.ts (PlatformProcess), started with the same settings as the in-process runs, and measured from the
 * outside (/proc/<pid>/status). Nothing else lives in this process: no bench harness, no earlier runs' garbage,
 * as when `npm start` runs the platform. Commands arrive one at a time over IPC.
 */
import { loadConfig, type ConfigInput } from '../platform/config.ts';
import { createPlatform, type Platform } from '../platform/platform.ts';
import type { BenchDevice } from './load.ts';
import { provisionBenchDevices } from './settings.ts';

export type HostRequest =
  | { id: number; cmd: 'start'; overrides: ConfigInput; devices: number }
  | { id: number; cmd: 'online' }
  | { id: number; cmd: 'heap' }
  | { id: number; cmd: 'stop' };

export type HostResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export interface HostStarted {
  mqtt: string;
  devices: BenchDevice[];
}

let platform: Platform | undefined;
const warnings: string[] = [];

async function handle(req: HostRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'start': {
      const config = loadConfig({ env: {}, overrides: req.overrides });
      platform = createPlatform(config, { logDestination: { write: (line: string) => void warnings.push(line.trimEnd()) } });
      const addr = await platform.start();
      // Idle devices send nothing: their family does not matter (traffic counters, as before families were loaded).
      const devices = await provisionBenchDevices(
        platform,
        Array.from({ length: req.devices }, () => 'traffic' as const),
      );
      return { mqtt: addr.mqtt, devices } satisfies HostStarted;
    }
    case 'online':
      return platform?.parts.broker.onlineCount() ?? 0;
    case 'heap':
      return process.memoryUsage().heapUsed;
    case 'stop':
      await platform?.stop();
      platform = undefined;
      return warnings;
  }
}

process.on('message', (req: HostRequest) => {
  handle(req).then(
    (result) => process.send?.({ id: req.id, ok: true, result } satisfies HostResponse),
    (err: Error) => process.send?.({ id: req.id, ok: false, error: err.stack ?? String(err) } satisfies HostResponse),
  );
});
// The parent going away ends this process (no orphaned platform).
process.on('disconnect', () => {
  void (platform?.stop() ?? Promise.resolve()).finally(() => process.exit(0));
});
