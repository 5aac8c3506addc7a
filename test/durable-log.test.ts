/**
 * The durable log on real files: appends become durable in groups, are read back in order,
 * confirmed segments are deleted, a reopened log hands back what was not confirmed, a torn last record is cut
 * off with a warning instead of failing the start, and the disk budget reports full until space is freed.
 *
 * Run: node --import tsx --test test/durable-log.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DurableLog, type LogPoint } from '../ingest/durable-log.ts';

async function tempDir(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'citypulse-log-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const point = (i: number): LogPoint => ({
  family: 'traffic',
  device: `tf-${i % 3}`,
  line: `traffic,device=tf-${i % 3},zone=z intensity=${i}i ${1_790_000_000_000 + i}`,
});
const segmentsIn = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.log'));

test('appends are durable in groups, read back in order, and confirmed segments are deleted', async (t) => {
  const dir = await tempDir(t);
  const log = new DurableLog({ dir, segmentBytes: 2048, maxBytes: 1 << 20, fsync: true });
  assert.deepEqual(log.open(), { from: 0, to: 0, torn: 0 });
  // 50 appends at once share a few groups; 50 more one by one roll the 2 KiB segments over.
  const appends = Array.from({ length: 50 }, (_, i) => log.append([point(i)]));
  await Promise.all(appends.map((a) => a.durable));
  for (let i = 50; i < 100; i++) appends.push(log.append([point(i)]));
  for (const a of appends.slice(50)) await a.durable;
  assert.deepEqual(
    appends.map((a) => a.seqs[0]),
    Array.from({ length: 100 }, (_, i) => i),
  );
  assert.equal(log.durableEnd, 100);
  const back = log.read(0, 100, 1000);
  assert.deepEqual(
    back.map((p) => p.seq),
    Array.from({ length: 100 }, (_, i) => i),
  );
  assert.deepEqual({ ...back[42] }, { ...point(42), seq: 42 });
  assert.deepEqual(
    log.read(10, 20, 5).map((p) => p.seq),
    [10, 11, 12, 13, 14],
  );
  const before = segmentsIn(dir).length;
  assert.ok(before > 2, 'several segments at 2 KiB each');
  assert.equal(log.usage().points, 100);

  log.confirm(Array.from({ length: 100 }, (_, i) => i));
  assert.equal(segmentsIn(dir).length, 1, 'only the active segment is left');
  assert.equal(log.usage().points, 0);
  assert.deepEqual(log.read(0, 100, 1000), []);
  await log.close();
  assert.equal(segmentsIn(dir).length, 0, 'a clean close leaves nothing to replay');
});

test('a reopened log hands back every point not confirmed, and continues the sequence', async (t) => {
  const dir = await tempDir(t);
  const log = new DurableLog({ dir, segmentBytes: 1024, maxBytes: 1 << 20, fsync: false });
  log.open();
  const { durable } = log.append(Array.from({ length: 60 }, (_, i) => point(i)));
  await durable;
  log.confirm(Array.from({ length: 30 }, (_, i) => i)); // the first segments go, the rest stays
  await log.close();

  const again = new DurableLog({ dir, segmentBytes: 1024, maxBytes: 1 << 20, fsync: false });
  const range = again.open();
  assert.equal(range.to, 60);
  assert.ok(range.from <= 30, 'every unconfirmed point is in the replay range');
  const replay = again.read(range.from, range.to, 1000);
  for (let i = 30; i < 60; i++)
    assert.ok(
      replay.some((p) => p.seq === i && p.line === point(i).line),
      `point ${i} replayed`,
    );
  const next = again.append([point(60)]);
  assert.deepEqual(next.seqs, [60]);
  await next.durable;
  await again.close();
});

test('a torn last record is cut off with a warning; the log opens and keeps the good records', async (t) => {
  const dir = await tempDir(t);
  const log = new DurableLog({ dir, segmentBytes: 1 << 20, maxBytes: 1 << 20, fsync: true });
  log.open();
  await log.append(Array.from({ length: 10 }, (_, i) => point(i))).durable;
  await log.close();
  const [file] = segmentsIn(dir);
  const full = path.join(dir, file as string);
  const size = fs.statSync(full).size;
  // A power cut in the middle of the 11th record: its header promises 200 bytes, 7 arrived.
  const header = Buffer.alloc(8);
  header.writeUInt32LE(200, 0);
  header.writeUInt32LE(12345, 4);
  fs.appendFileSync(full, Buffer.concat([header, Buffer.from('traffic')]));

  const warnings: unknown[] = [];
  const logger = { warn: (o: unknown) => warnings.push(o), info() {}, error() {}, debug() {} } as never;
  const again = new DurableLog({ dir, segmentBytes: 1 << 20, maxBytes: 1 << 20, fsync: true, logger });
  const range = again.open();
  assert.deepEqual(range, { from: 0, to: 10, torn: 1 });
  assert.equal(warnings.length, 1);
  assert.equal(fs.statSync(full).size, size, 'the torn bytes are cut off');
  assert.equal(again.read(0, 10, 100).length, 10);
  // A corrupted middle byte (bad CRC) is caught the same way.
  await again.close();
  const bytes = fs.readFileSync(full);
  bytes[bytes.length - 5] = (bytes[bytes.length - 5] as number) ^ 0xff;
  fs.writeFileSync(full, bytes);
  const third = new DurableLog({ dir, segmentBytes: 1 << 20, maxBytes: 1 << 20, fsync: true, logger });
  assert.deepEqual(third.open(), { from: 0, to: 9, torn: 1 });
  await third.close();
});

test('the disk budget: full() until confirmed segments are deleted, then whenSpace() resolves', async (t) => {
  const dir = await tempDir(t);
  const log = new DurableLog({ dir, segmentBytes: 4096, maxBytes: 16384, fsync: false });
  log.open();
  let seq = 0;
  while (!log.full()) await log.append([point(seq++)]).durable;
  assert.ok(log.usage().bytes >= 16384);
  let released = false;
  const space = log.whenSpace().then(() => {
    released = true;
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(released, false);
  log.confirm(Array.from({ length: seq }, (_, i) => i));
  await space;
  assert.equal(log.full(), false);
  await log.close();
});
