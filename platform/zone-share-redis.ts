/**
 * Cluster mode's share of ward results (analytics/zone-share.ts) on Redis (`analytics.redisUrl`): each result is
 * kept in one hash per cluster (`citypulse:<database>:zones`, field = ward, so a node that starts reads the newest
 * of every ward) and published on the channel of the same name to the nodes running. Results are small (a few
 * hundred bytes a ward) and published at most every 100 ms a ward. The hash expires an hour after the last
 * result (Redis keeps nothing here that the nodes cannot compute again).
 *
 * Redis unreachable: a publish is dropped at once (no offline queue: results are superseded anyway), logged once
 * per outage; each node goes on serving its own wards and the last results it heard of the others'.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { createClient } from 'redis';
import type { ZoneResult, ZoneShare } from '../analytics/index.ts';
import type { Logger } from '../core/logger.ts';

const TTL_MS = 3_600_000;
/** How long start waits for Redis before going on without it (it keeps trying), ms. */
const CONNECT_WAIT_MS = 2000;

export function createRedisZoneShare(url: string, opts: { database: string; logger: Logger }): ZoneShare {
  const key = `citypulse:${opts.database}:zones`;
  const node = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const log = opts.logger;
  let failing = false;
  const onError = (err: Error) => {
    if (failing) return;
    failing = true;
    log.warn({ err: err.message }, 'Redis of the ward results unreachable: serving the results heard so far');
  };
  const reconnectStrategy = (retries: number) => Math.min(100 * (retries + 1), 2000);
  const pub = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy } });
  const sub = createClient({ url, socket: { reconnectStrategy } });
  for (const c of [pub, sub]) {
    c.on('error', onError);
    c.on('ready', () => {
      if (failing) log.info('Redis of the ward results reachable again');
      failing = false;
    });
  }
  const connected = (c: typeof pub | typeof sub) =>
    Promise.race([
      c.connect().then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((r) => setTimeout(() => r(false), CONNECT_WAIT_MS).unref()),
    ]);

  return {
    node,
    publish(r: ZoneResult) {
      if (!pub.isReady) return;
      const json = JSON.stringify(r);
      pub
        .multi()
        .hSet(key, r.zone, json)
        .pExpire(key, TTL_MS)
        .publish(key, json)
        .exec()
        .catch((err: Error) => onError(err));
    },
    async subscribe(onResult) {
      const [up] = await Promise.all([connected(pub), connected(sub)]);
      // Resubscribed by the client itself after a reconnection.
      sub
        .subscribe(key, (message) => {
          try {
            onResult(JSON.parse(message) as ZoneResult);
          } catch (err) {
            log.warn({ err: (err as Error).message }, 'unreadable ward result ignored');
          }
        })
        .catch((err: Error) => onError(err));
      if (!up) return [];
      const all = await pub.hGetAll(key);
      const out: ZoneResult[] = [];
      for (const json of Object.values(all)) {
        try {
          out.push(JSON.parse(json) as ZoneResult);
        } catch {
          /* a field that is not a result: ignored */
        }
      }
      return out;
    },
    async close() {
      for (const c of [pub, sub]) {
        try {
          if (c.isOpen) await c.close();
        } catch {
          c.destroy();
        }
      }
    },
  };
}
