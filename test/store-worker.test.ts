/**
 * The store worker (ingest/store.ts + store-worker.ts): the durable log and the InfluxDB writer on a
 * thread of their own, against a real InfluxDB and real files. What used to be calls between objects is now
 * messages, so each crossing is checked: acknowledgements only for points on disk, a missing database created
 * by the main thread, refused points dead-lettered by the main thread and then confirmed, late readings
 * reported for the tiers, writer metrics and log records relayed; and a worker that dies refuses every
 * acknowledgement it had not given, is replaced by a new one that replays the log (three times a minute at most).
 *
 * Run: node --import tsx --test test/store-worker.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { createInfluxClient, ensureDatabase, type PendingPoint } from '../ingest/index.ts';
import type { LogPoint } from '../ingest/durable-log.ts';
import { ReadingStore } from '../ingest/store.ts';
import { createMetrics } from '../core/metrics.ts';
import { startTestInflux } from './helpers/influx.ts';

const NOW = Date.now();
const WRITER = { batchSize: 40, batchMaxAgeMs: 20, writeConcurrency: 2, maxBufferedPoints: 100000, retryMaxDelayMs: 200 };

async function tempDir(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'citypulse-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const point = (i: number, time = NOW - 60_000 + i): LogPoint => ({
  family: 'traffic',
  device: `tf-${i % 4}`,
  line: `traffic,device=tf-${i % 4},zone=z intensity=${i}i ${time}`,
});

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { lines, logger };
}

test('points reach InfluxDB through the worker; the main thread creates the database, dead-letters and hears of late readings', async (t) => {
  const influx = await startTestInflux(t);
  const dir = await tempDir(t);
  const target = { url: influx.url, database: 'store_worker', retentionPolicy: 'raw' };
  const metrics = createMetrics();
  const { lines, logger } = capture();
  let prepared = 0;
  const deadLettered: { points: PendingPoint[]; reason: string }[] = [];
  const late: [string, number][] = [];
  const store = new ReadingStore(
    {
      log: { dir, segmentBytes: 4096, maxBytes: 1 << 24, fsync: true },
      influx: target,
      writer: WRITER,
      shipper: { memoryPoints: 100000, chunk: WRITER.batchSize },
      lateAfterMs: 3_600_000,
    },
    {
      // The database does not exist yet: the worker's first write gets "database not found" and asks for it.
      prepareDatabase: async () => {
        prepared++;
        await ensureDatabase(createInfluxClient(target), target, 'INF');
      },
      deadLetter: (points, reason) => deadLettered.push({ points, reason }),
      late: (family, time) => late.push([family, time]),
    },
    { metrics, logger },
  );
  t.after(() => store.close());
  assert.deepEqual(await store.open(), { from: 0, to: 0, torn: 0 });
  // A thread of its own (the bench reads its CPU time by this id).
  assert.ok(Number.isInteger(store.osThreadId) && store.osThreadId !== process.pid, `store thread ${store.osThreadId}`);
  store.replay(0, 0);

  const fresh = Array.from({ length: 100 }, (_, i) => point(i));
  const old = Array.from({ length: 5 }, (_, i) => point(200 + i, NOW - 2 * 3_600_000 + i)); // older than lateAfterMs
  const refused = point(300, 9e18); // beyond InfluxDB's time range: refused for good
  // Several appends in one turn travel in one message, and each resolves on its own.
  const acks = [store.append(fresh.slice(0, 50)), store.append(fresh.slice(50)), store.append([...old, refused])];
  await Promise.all(acks);
  // Acknowledged means on disk: every record is in the log's segment files already.
  const onDisk = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
    .join('');
  for (const p of [...fresh, ...old, refused]) assert.ok(onDisk.includes(p.line), `on disk before the acknowledgement: ${p.line}`);

  assert.equal(await store.flush(20000), true, 'everything confirmed: stored, or dead-lettered and then confirmed');
  const count = await influx.query('SELECT count("intensity") FROM "traffic"', 'store_worker');
  assert.equal(count.results[0].series[0].values[0][1], 105);
  assert.ok(prepared >= 1, 'the main thread created the missing database');
  assert.equal(deadLettered.length, 1);
  assert.equal(deadLettered[0]?.points[0]?.line, refused.line);
  assert.equal(typeof deadLettered[0]?.points[0]?.seq, 'number');
  assert.match(deadLettered[0]?.reason ?? '', /HTTP 400/);
  assert.deepEqual(
    late.sort((a, b) => a[1] - b[1]),
    old.map((p) => ['traffic', Number(p.line.split(' ').at(-1))]),
  );
  const s = store.state();
  assert.equal(s.log.points, 0);
  assert.equal(s.writer.stored, 105);
  assert.equal(s.writer.rejected, 1);
  assert.equal(s.writer.healthy, true);
  // The writer's metrics and log records cross to the main thread.
  const stored = (await metrics.readingsStored.get()).values.find((v) => v.labels.family === 'traffic');
  assert.equal(stored?.value, 105);
  assert.ok(lines.some((l) => l.thread === 'store' && l.level === 40 && /refused points/.test(String(l.msg))));
});

test('a worker that dies refuses the acknowledgements it had not given, is restarted and replays the log; one that keeps dying is left down', async (t) => {
  const dir = await tempDir(t);
  const { lines, logger } = capture();
  const options = {
    log: { dir, segmentBytes: 1 << 20, maxBytes: 1 << 24, fsync: true },
    // Nothing listens there: points stay in the log, unconfirmed.
    influx: { url: 'http://127.0.0.1:9', database: 'none', retentionPolicy: 'raw' },
    writer: WRITER,
    shipper: { memoryPoints: 100000, chunk: WRITER.batchSize },
    lateAfterMs: 0,
  };
  const hooks = { prepareDatabase: async () => undefined, deadLetter: () => undefined, late: () => undefined };
  const store = new ReadingStore(options, hooks, { logger });
  t.after(() => store.close());
  await store.open();
  await store.append([point(0), point(1)]);
  // A message the worker cannot handle throws there: the thread ends with an uncaught error.
  const crash = () => (store as unknown as { worker: Worker }).worker.postMessage({ t: 'append', text: 42, lens: new Uint32Array(1) });
  const outcomes: ('acked' | 'refused')[] = [];
  const pending = Array.from({ length: 20 }, (_, i) =>
    store.append([point(10 + i)]).then(
      () => outcomes.push('acked'),
      () => outcomes.push('refused'),
    ),
  );
  await new Promise((r) => setImmediate(r));
  const firstThread = store.osThreadId;
  crash();
  await Promise.all(pending);
  assert.equal(outcomes.length, 20, 'every acknowledgement is settled, none left hanging');
  assert.ok(lines.some((l) => l.level === 50 && /store worker failed: .*restarting/.test(String(l.msg))));
  await assert.rejects(store.append([point(99)]), 'an append while no worker runs is refused at once');

  // A new worker opens the same log and replays it: what was acknowledged is there again, and appends work.
  const acked = 2 + outcomes.filter((o) => o === 'acked').length;
  await until(() => lines.some((l) => /store worker restarted/.test(String(l.msg))));
  assert.notEqual(store.osThreadId, firstThread, 'a new thread');
  await store.append([point(100), point(101)]);
  await until(() => store.state().log.points >= acked + 2);

  // Three restarts within the minute at most: the fourth failure leaves the store down (refusing, not hanging).
  for (let i = 0; i < 3; i++) {
    crash();
    await until(() => lines.filter((l) => /store worker failed/.test(String(l.msg))).length === i + 2);
    if (i < 2) await until(() => lines.filter((l) => /store worker restarted/.test(String(l.msg))).length === i + 2);
  }
  assert.ok(lines.some((l) => /not restarted/.test(String(l.msg))));
  await assert.rejects(store.append([point(200)]));
  assert.equal(await store.flush(1000), false);
  await store.close();

  const next = new ReadingStore(options, hooks, { logger });
  const replay = await next.open();
  await next.close();
  assert.ok(replay.to - replay.from >= acked + 2, `replays ${replay.to - replay.from} points, at least the ${acked + 2} acknowledged`);
});

async function until(fn: () => boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
