/**
 * The batching InfluxDB writer against a real InfluxDB: a dead database (buffer, retry with back-off, drain
 * when it is back, nothing lost), a field type conflict (partial write: the good points stored, the bad one
 * handed to onRejected), an unparseable point (bisected out of its batch), and a missing database.
 *
 * Run: node --import tsx --test test/influx-writer.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InfluxWriter, createInfluxClient, ensureDatabase, type EnrichedReading, type PendingPoint } from '../ingest/index.ts';
import { startLocalInflux } from '../platform/influxdb-local.ts';
import { startTestInflux } from './helpers/influx.ts';

/** Recent times: a retention policy of 1 d refuses older points. */
const BASE = Date.now() - 3_600_000;
const OPTS = { batchSize: 100, batchMaxAgeMs: 20, writeConcurrency: 2, maxBufferedPoints: 100000, retryMaxDelayMs: 200 };

function reading(i: number, over: Partial<EnrichedReading> = {}): EnrichedReading {
  return { device: 'tf-1', family: 'traffic', zone: 'tran-phu', time: BASE + i * 1000, fields: { intensity: i, occupancy: 0.5 }, ...over };
}

async function count(query: (q: string, db?: string) => Promise<any>, db: string, where = ''): Promise<number> {
  const out = await query(`SELECT count("intensity") FROM "traffic" ${where}`, db);
  return out.results?.[0]?.series?.[0]?.values?.[0]?.[1] ?? 0;
}

async function until(fn: () => Promise<boolean> | boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('InfluxDB down: readings are buffered and retried, then all land once it is back', async (t) => {
  const influx = await startTestInflux(t);
  const target = { url: influx.url, database: 'outage', retentionPolicy: 'raw' };
  await ensureDatabase(createInfluxClient(target), target, '1d');
  const writer = new InfluxWriter(target, OPTS);
  t.after(() => writer.stop(1000));

  for (let i = 0; i < 50; i++) writer.write(reading(i));
  assert.equal(await writer.flush(5000), true);
  assert.equal(await count(influx.query, 'outage'), 50);

  await influx.stop();
  for (let i = 50; i < 300; i++) writer.write(reading(i));
  await until(() => !writer.state().healthy);
  assert.ok(writer.state().buffered > 0, 'readings are held while InfluxDB is down');
  assert.match(writer.state().lastError ?? '', /ECONNREFUSED|ECONNRESET|socket hang up/);

  // The same server comes back on the same folder and port.
  const again = await startLocalInflux({ dir: influx.dir, port: influx.port });
  t.after(() => again.stop());
  assert.equal(await writer.flush(15000), true);
  assert.equal(writer.state().healthy, true);
  assert.equal(await count(influx.query, 'outage'), 300);
  assert.equal(writer.state().dropped, 0);
});

test('a field type conflict keeps the good points and rejects only the conflicting one', async (t) => {
  const influx = await startTestInflux(t);
  const target = { url: influx.url, database: 'conflict', retentionPolicy: 'raw' };
  await ensureDatabase(createInfluxClient(target), target, '1d');
  // Someone stored `intensity` of another device as a float before: same shard, so an integer write conflicts.
  const pre = await fetch(`${influx.url}/write?db=conflict&precision=ms`, {
    method: 'POST',
    body: `traffic,device=old,zone=tran-phu intensity=1.5 ${BASE}`,
  });
  assert.equal(pre.status, 204);
  const rejected: { points: PendingPoint[]; reason: string }[] = [];
  const writer = new InfluxWriter(target, OPTS, { onRejected: (points, reason) => rejected.push({ points, reason }) });
  t.after(() => writer.stop(1000));
  writer.write(reading(1, { device: 'aq-1', family: 'airQuality', fields: { pm25: 10 } }));
  writer.write(reading(2));
  writer.write(reading(3, { device: 'aq-1', family: 'airQuality', fields: { pm25: 11 } }));
  assert.equal(await writer.flush(5000), true);
  assert.equal(rejected.length, 1);
  assert.match(rejected[0]?.reason ?? '', /field type conflict/);
  assert.deepEqual(
    rejected[0]?.points.map((p) => p.device),
    ['tf-1'],
  );
  const aq = await influx.query('SELECT count("pm25") FROM "airQuality"', 'conflict');
  assert.equal(aq.results[0].series[0].values[0][1], 2);
  assert.equal(writer.state().rejected, 1);
});

test('an unparseable point is bisected out of its batch; the others are stored', async (t) => {
  const influx = await startTestInflux(t);
  const target = { url: influx.url, database: 'bisect', retentionPolicy: 'raw' };
  await ensureDatabase(createInfluxClient(target), target, 'INF');
  const rejected: PendingPoint[] = [];
  const writer = new InfluxWriter(target, { ...OPTS, batchSize: 1000, batchMaxAgeMs: 50 }, { onRejected: (p) => rejected.push(...p) });
  t.after(() => writer.stop(1000));
  for (let i = 0; i < 20; i++) writer.write(i === 13 ? reading(i, { time: 9e18 }) : reading(i)); // beyond InfluxDB's time range
  assert.equal(await writer.flush(10000), true);
  assert.equal(rejected.length, 1);
  assert.match(rejected[0]?.line ?? '', /intensity=13i/);
  assert.equal(await count(influx.query, 'bisect'), 19);
});

test('a database that vanished is created again and the batch retried', async (t) => {
  const influx = await startTestInflux(t);
  const target = { url: influx.url, database: 'vanish', retentionPolicy: 'raw' };
  const client = createInfluxClient(target);
  let created = 0;
  const writer = new InfluxWriter(target, OPTS, {
    onDatabaseMissing: async () => {
      created++;
      await ensureDatabase(client, target, '1d');
    },
  });
  t.after(() => writer.stop(1000));
  for (let i = 0; i < 10; i++) writer.write(reading(i));
  assert.equal(await writer.flush(10000), true);
  assert.equal(created, 1);
  assert.equal(await count(influx.query, 'vanish'), 10);
});

test('a partial write that names none of its dropped points (beyond retention): bisected until each stands alone, dead-lettered; stored counts only what InfluxDB kept', async (t) => {
  const influx = await startTestInflux(t);
  const target = { url: influx.url, database: 'edge', retentionPolicy: 'raw' };
  await ensureDatabase(createInfluxClient(target), target, '1h');
  const rejected: { points: PendingPoint[]; reason: string }[] = [];
  let storedPoints = 0;
  // No retention check in the writer: InfluxDB itself drops the old points and names none of them.
  const writer = new InfluxWriter(
    target,
    { ...OPTS, batchSize: 200, batchMaxAgeMs: 1000 },
    { onRejected: (points, reason) => rejected.push({ points, reason }), onStored: (points) => (storedPoints += points.length) },
  );
  t.after(() => writer.stop(1000));
  const now = Date.now();
  const old = new Set([3, 17, 18, 50, 99, 100, 101, 150, 198, 199]);
  for (let i = 0; i < 200; i++) {
    // 10 points two hours old (beyond the 1 h policy), scattered; the rest 10 minutes old.
    writer.write(reading(i, { time: old.has(i) ? now - 7_200_000 - i : now - 600_000 - i * 10 }));
  }
  assert.equal(await writer.flush(15000), true);
  const refused = rejected.flatMap((r) => r.points);
  assert.equal(refused.length, 10, 'every dropped point is dead-lettered, one by one');
  assert.deepEqual(
    refused.map((p) => Number(/intensity=(\d+)/.exec(p.line)?.[1])).sort((a, b) => a - b),
    [...old].sort((a, b) => a - b),
  );
  assert.ok(
    rejected.every((r) => /beyond retention/.test(r.reason)),
    'with InfluxDB’s reason',
  );
  assert.equal(await count(influx.query, 'edge'), 190);
  assert.equal(writer.state().stored, 190, 'stored counts what InfluxDB kept, not the batch');
  assert.equal(storedPoints, 190);
});

test('the retention edge is checked again when a batch is sent: a point too close to it is dead-lettered with the reason, not sent', async (t) => {
  const influx = await startTestInflux(t);
  const target = { url: influx.url, database: 'margin', retentionPolicy: 'raw' };
  await ensureDatabase(createInfluxClient(target), target, '1h');
  const rejected: { points: PendingPoint[]; reason: string }[] = [];
  const writer = new InfluxWriter(
    target,
    { ...OPTS, retentionMs: 3_600_000 },
    { onRejected: (points, reason) => rejected.push({ points, reason }) },
  );
  t.after(() => writer.stop(1000));
  const now = Date.now();
  // Inside InfluxDB's own window by 20 s, so it would store them now and drop them moments later; and fresh points.
  for (let i = 0; i < 5; i++) writer.write(reading(i, { time: now - 3_600_000 + 20_000 + i }));
  for (let i = 5; i < 25; i++) writer.write(reading(i, { time: now - 60_000 + i }));
  assert.equal(await writer.flush(10000), true);
  assert.equal(rejected.flatMap((r) => r.points).length, 5);
  assert.match(rejected[0]?.reason ?? '', /retention policy's edge/);
  assert.equal(await count(influx.query, 'margin'), 20);
  assert.equal(writer.state().stored, 20);
});
