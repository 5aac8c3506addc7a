/**
 * Creates the database and the raw retention policy at start (idempotent), through the `influx` package.
 */
import { InfluxDB } from 'influx';
import { scrubSecrets } from '../core/logger.ts';
import type { InfluxTarget } from './influx-writer.ts';

/**
 * An `influx` client for a target URL (admin statements and queries). Without a configured username it sends
 * no credentials at all (the package would otherwise send its default root:root). Its errors are replaced by
 * plain ones (see `safeInfluxError`), so whatever logs them logs no credential.
 */
export function createInfluxClient(target: InfluxTarget): InfluxDB {
  const u = new URL(target.url);
  const client = new InfluxDB({
    hosts: [
      {
        host: u.hostname,
        port: Number(u.port) || (u.protocol === 'https:' ? 443 : 80),
        protocol: u.protocol === 'https:' ? 'https' : 'http',
        options: {},
      },
    ],
    database: target.database,
    // The package fills undefined options with root:root and sends credentials whenever the username is a
    // string: null means none.
    username: (target.username || null) as string | undefined,
    password: (target.username ? (target.password ?? '') : null) as string | undefined,
  });
  return withSafeErrors(client);
}

/** Wraps every method of the client so that its thrown or rejected errors go through `safeInfluxError`. */
function withSafeErrors(client: InfluxDB): InfluxDB {
  return new Proxy(client, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        let out: unknown;
        try {
          out = (value as (...a: unknown[]) => unknown).apply(target, args);
        } catch (err) {
          throw safeInfluxError(err);
        }
        return out instanceof Promise
          ? out.catch((err: unknown) => {
              throw safeInfluxError(err);
            })
          : out;
      };
    },
  });
}

/**
 * A plain Error in place of one of the `influx` package: its RequestError carries the whole request (`req`,
 * with the `Authorization: Basic …` header) and response (`res`). Kept: name, message and stack (scrubbed),
 * a system error's `code` and the HTTP status (`status`).
 */
export function safeInfluxError(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(scrubSecrets(String(err)));
  const safe = new Error(scrubSecrets(err.message)) as Error & { code?: string; status?: number };
  safe.name = err.name;
  if (err.stack) safe.stack = scrubSecrets(err.stack);
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') safe.code = code;
  const status = (err as { res?: { statusCode?: unknown } }).res?.statusCode;
  if (typeof status === 'number') safe.status = status;
  return safe;
}

/** Creates the database and makes `retentionPolicy` (with `duration`) its default; safe to run on every start. */
export async function ensureDatabase(client: InfluxDB, target: InfluxTarget, duration: string): Promise<void> {
  await client.createDatabase(target.database);
  const policies = await client.showRetentionPolicies(target.database);
  const opts = { database: target.database, duration, replication: 1, isDefault: true };
  if (policies.some((p) => p.name === target.retentionPolicy)) await client.alterRetentionPolicy(target.retentionPolicy, opts);
  else await client.createRetentionPolicy(target.retentionPolicy, opts);
}
