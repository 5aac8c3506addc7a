/**
 * The platform's settings and devices for a bench run, shared by the in-process runs (bench/e2e.ts) and the
 * platform process of the memory figures (bench/platform-host.ts), which loads nothing else of the bench.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Family } from '../core/contract.ts';
import { CONFIG_SCHEMA, type ConfigInput } from '../platform/config.ts';
import type { Platform } from '../platform/platform.ts';
import { leafZones } from '../registry/index.ts';
import type { BenchDevice } from './load.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));

/** The city profile of every bench run (its zones, and its fleet for the default mix of families, bench/families.ts). */
export const BENCH_CITY_PROFILE = join(REPO, 'cities/bac-giang.json');

/**
 * The per-device reading rate limit (ingest.maxReadingsPerSecond, when this version of the platform has it) is
 * switched off for the bench: 50 bench devices stand in for thousands of real ones, each sending hundreds to
 * thousands of readings a second, and a per-device policy would measure the policy, not the pipeline.
 */

export const RATE_LIMIT_OFF: boolean = 'maxReadingsPerSecond' in CONFIG_SCHEMA.properties.ingest.properties;
const benchIngest = (RATE_LIMIT_OFF ? { maxReadingsPerSecond: 0 } : {}) as ConfigInput['ingest'];

export interface PlatformOptions {
  /** durability.fsync of the platform (default: the shipped default, true). */
  fsync?: boolean;
  /** Keep the per-device rate limit at its default (the storm: a realistic backlog flush, within the burst). */
  rateLimit?: boolean;
  /** Broker options beside host and port (connection limits for thousands of bench devices from one address). */
  broker?: ConfigInput['broker'];

  /** Log lines the run causes on purpose (InfluxDB stopped): kept apart from the warnings. */
  expected?: RegExp;
}

/** The platform's settings for a bench run (serialisable: bench/platform-host.ts gets them over IPC). */
export function benchOverrides(influxUrl: string, dataDir: string, database: string, opts: PlatformOptions): ConfigInput {
  return {
    dataDir,
    cityProfile: BENCH_CITY_PROFILE,
    broker: { ...opts.broker, host: '127.0.0.1', port: 0 },
    // Up to 1,000 dashboard sockets (--sockets, --storm-sockets) and the measuring client, all from 127.0.0.1.
    api: { host: '127.0.0.1', port: 0, maxConnections: 1100, maxConnectionsPerAddress: 0 },
    influx: { url: influxUrl, database },
    log: { level: 'warn' },
    simulate: { enabled: false },
    // ingest and durability: defaults on purpose (the figures are for the shipped settings), but for the
    // fsync comparison and the per-device rate limit (RATE_LIMIT_OFF). The durable log is in dataDir/wal, on the file system of the temp folder.
    ...(opts.fsync === undefined ? {} : { durability: { fsync: opts.fsync } }),
    ...(opts.rateLimit ? {} : { ingest: benchIngest }),
    // CITYPULSE_BENCH_ANALYTICS_OFF_MAIN_THREAD=1: analytics on the store worker thread (analytics.offMainThread), to
    // compare with the default back to back.
    ...(process.env.CITYPULSE_BENCH_ANALYTICS_OFF_MAIN_THREAD === '1' ? { analytics: { offMainThread: true } } : {}),
  };
}

/** Id prefix of a bench device per family, as the simulated fleet names them. */
const PREFIX: Record<Family, string> = { airQuality: 'aq', traffic: 'tf', streetLight: 'sl' };

/**
 * One device per entry of `families` (bench/families.ts says which), in the first leaf zone, provisioned in the
 * platform's registry.
 */
export async function provisionBenchDevices(platform: Platform, families: readonly Family[]): Promise<BenchDevice[]> {
  const profile = platform.parts.profile;
  const zone = leafZones(profile)[0] ?? profile.zones[0];
  if (!zone) throw new Error('the city profile has no zones');
  const devices: BenchDevice[] = [];
  for (const [i, family] of families.entries()) {
    const { device, token } = await platform.parts.devices.provision({
      id: `${PREFIX[family]}-bench-${String(i).padStart(4, '0')}`,
      family,
      zone: zone.id,
      location: profile.centre,
    });
    devices.push({ id: device.id, token, family });
  }
  return devices;
}
