/**
 * Test helper: a throw-away InfluxDB per test file (or per test), on a free port in a fresh
 * temp dir, so test files can run in parallel without sharing state.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalInflux, type LocalInflux } from '../../platform/influxdb-local.ts';
import { onCleanup } from './scope.ts';

/** A test InfluxDB plus a small query shortcut. */
export type TestInflux = LocalInflux & {
  /**
   * Runs InfluxQL via `GET /query` with `epoch=ms` and returns the parsed JSON body.
   * Statement errors come back inside `results[i].error` (HTTP 200), as InfluxDB reports them;
   * a non-2xx answer (e.g. a parse error) throws.
   */
  query(q: string, db?: string): Promise<any>;
};

/**
 * Starts a private InfluxDB in a new `citypulse-influx-*` temp dir on a free port
 * (installing InfluxDB first when missing and running as root).
 * @param t node:test `TestContext` or anything with `after(fn)` (e.g. `{ after }` from
 *   node:test); when given, stop and removal of the temp dir are registered there.
 *   Without it, the caller must `stop()` and remove `dir` itself.
 */
export async function startTestInflux(t?: { after(fn: () => unknown): void }): Promise<TestInflux> {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-influx-'));
  let influx: LocalInflux;
  try {
    influx = await startLocalInflux({ dir });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  if (t)
    onCleanup(t, async () => {
      await influx.stop();
      await rm(dir, { recursive: true, force: true });
    });

  const query = async (q: string, db?: string): Promise<any> => {
    const params = new URLSearchParams({ q, epoch: 'ms' });
    if (db !== undefined) params.set('db', db);
    const res = await fetch(`${influx.url}/query?${params}`);
    const body = await res.text();
    if (!res.ok) throw new Error(`InfluxDB query failed (HTTP ${res.status}): ${body}\nquery: ${q}`);
    return JSON.parse(body);
  };
  return Object.assign(influx, { query });
}
