// Covers platform/influxdb-local.ts through test/helpers/influx.ts: a private influxd starts on
// a free port, accepts a line-protocol write with ms precision, keeps the integer field type,
// refuses a second start on a port in use, and stops cleanly (process gone, stop() idempotent).
// Needs influxd (Debian `influxdb`; installed automatically when running as root).
// Run: cd /work/main && node --import tsx --test test/influxdb-local.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalInflux } from '../platform/influxdb-local.ts';
import { startTestInflux } from './helpers/influx.ts';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

test('local influxd: write, read back, integer type, port clash, stop', async (t) => {
  const influx = await startTestInflux(t);
  assert.ok(isAlive(influx.pid));

  const created = await influx.query('CREATE DATABASE citypulse_test');
  assert.equal(created.results[0].error, undefined);

  // A fixed, recent ms timestamp: without precision=ms it would be read as ns and land in 1970.
  const ts = Date.now() - 60_000;
  const write = await fetch(`${influx.url}/write?db=citypulse_test&precision=ms`, {
    method: 'POST',
    body: `m,device=d1 v=1i ${ts}`,
  });
  assert.equal(write.status, 204, await write.text());

  const read = await influx.query("SELECT v FROM m WHERE device = 'd1'", 'citypulse_test');
  assert.deepEqual(read.results[0].series[0].values, [[ts, 1]]);

  const fields = await influx.query('SHOW FIELD KEYS FROM m', 'citypulse_test');
  assert.deepEqual(fields.results[0].series[0].values, [['v', 'integer']]);

  // A fixed port already held by this server must fail fast rather than "succeed" via its /ping.
  const otherDir = await mkdtemp(join(tmpdir(), 'citypulse-influx-'));
  t.after(() => rm(otherDir, { recursive: true, force: true }));
  await assert.rejects(startLocalInflux({ dir: otherDir, port: influx.port }), /already in use/);

  await influx.stop();
  assert.equal(isAlive(influx.pid), false);
  await assert.rejects(fetch(`${influx.url}/ping`));
  await influx.stop(); // second stop is a no-op
});

test('an influxd left running on the same folder (a SIGKILLed platform) is ended by the next start', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-influx-stale-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const orphan = await startLocalInflux({ dir });
  t.after(() => orphan.stop());
  // The owner died without stopping it; a new start on the same folder finds it by its pid file.
  const next = await startLocalInflux({ dir });
  t.after(() => next.stop());
  assert.notEqual(next.pid, orphan.pid);
  assert.throws(() => process.kill(orphan.pid, 0), /ESRCH/);
  assert.equal((await fetch(`${next.url}/ping`)).status, 204);
});
