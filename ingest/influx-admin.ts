/**
 * Creates the database and the raw retention policy at start (idempotent), through the `influx` package.
 */
import { InfluxDB } from 'influx';
import type { InfluxTarget } from './influx-writer.ts';

/** An `influx` client for a target URL (admin statements and queries). */
export function createInfluxClient(target: InfluxTarget): InfluxDB {
  const u = new URL(target.url);
  return new InfluxDB({
    hosts: [
      {
        host: u.hostname,
        port: Number(u.port) || (u.protocol === 'https:' ? 443 : 80),
        protocol: u.protocol === 'https:' ? 'https' : 'http',
        options: {},
      },
    ],
    database: target.database,
    username: target.username || 'root',
    password: target.password || 'root',
  });
}

/** Creates the database and makes `retentionPolicy` (with `duration`) its default; safe to run on every start. */
export async function ensureDatabase(client: InfluxDB, target: InfluxTarget, duration: string): Promise<void> {
  await client.createDatabase(target.database);
  const policies = await client.showRetentionPolicies(target.database);
  const opts = { database: target.database, duration, replication: 1, isDefault: true };
  if (policies.some((p) => p.name === target.retentionPolicy)) await client.alterRetentionPolicy(target.retentionPolicy, opts);
  else await client.createRetentionPolicy(target.retentionPolicy, opts);
}
