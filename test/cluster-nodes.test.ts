/**
 * Two platform nodes sharing a real Redis (platform/engines/redis.ts) through api.redisUrl and broker.redisUrl:
 * a dashboard socket on node A receives what node B ingested (socket.io over @socket.io/redis-streams-adapter),
 * batched and unbatched; a device connecting to node B closes its connection on node A and the other way round
 * (takeover across nodes, broker/cluster-takeover.ts).
 *
 * The device registry is still one per node: the test gives node B the device's credentials by copying its
 * salted token hash from node A's registry.
 *
 * Needs the Debian package redis-server (scripts/setup.sh installs it).
 * Run: node --import tsx --test test/cluster-nodes.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createClient } from 'redis';
import { io as ioClient, type Socket } from 'socket.io-client';
import { unpackBatch } from '../dashboard-api/batch-frame.ts';
import type { LiveBatchFrame } from '../dashboard-api/batch-frame.ts';
import { startRedis, type LocalRedis } from '../platform/engines/redis.ts';
import { startTestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope, onCleanup } from './helpers/scope.ts';

const scope = fileScope();
let nodes: Promise<{ a: TestPlatform; b: TestPlatform; redis: LocalRedis }> | undefined;

/** Redis, one InfluxDB and two nodes using both, for the whole file. */
function setup() {
  nodes ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'citypulse-redis-'));
    const redis = await startRedis({ dir });
    onCleanup(scope, async () => {
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    });
    const influx = await startTestInflux(scope);
    const cluster = { api: { redisUrl: redis.url }, broker: { redisUrl: redis.url } };
    const a = await startTestPlatform(scope, cluster, { influx });
    const b = await startTestPlatform(scope, cluster, { influx });
    return { a, b, redis };
  })();
  return nodes;
}

/** A device provisioned on node A, known to node B with the same token. */
async function sharedDevice(a: TestPlatform, b: TestPlatform, family: 'airQuality' | 'traffic') {
  const dev = await a.provision(family);
  await b.provision(family, { id: dev.id });
  const row = new Database(join(a.dataDir, 'registry.db'), { readonly: true })
    .prepare('SELECT token_salt, token_hash FROM devices WHERE id = ?')
    .get(dev.id) as { token_salt: Buffer; token_hash: Buffer };
  const db = new Database(join(b.dataDir, 'registry.db'));
  db.prepare('UPDATE devices SET token_salt = ?, token_hash = ? WHERE id = ?').run(row.token_salt, row.token_hash, dev.id);
  db.close();
  return dev;
}

/** A socket.io client of `p` subscribed to `sub` (default everything); closed at the end. */
async function watch(p: TestPlatform, batch: boolean, sub: Record<string, string> = {}): Promise<Socket> {
  const socket = ioClient(p.addr.api, { transports: ['websocket'], auth: { token: p.platform.adminToken, batch }, reconnection: false });
  onCleanup(scope, () => socket.close());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  const ack = (await socket.timeout(5000).emitWithAck('subscribe', sub)) as { ok: boolean };
  assert.equal(ack.ok, true);
  return socket;
}

test('a socket on node A receives the readings node B ingested, batched and not', async () => {
  const { a, b } = await setup();
  const plain = await watch(a, false);
  const batched = await watch(a, true);
  const seenPlain: { device: string }[] = [];
  const seenBatched: { device: string }[] = [];
  plain.on('reading', (r: { device: string }) => seenPlain.push(r));
  batched.on('batch', (f: LiveBatchFrame) => seenBatched.push(...(unpackBatch(f).readings as { device: string }[])));
  // Node A announces its watched rooms within ROOMS_ANNOUNCE_MS (20 ms) through Redis; room to spare.
  await new Promise((r) => setTimeout(r, 300));

  const dev = await b.provision('airQuality');
  const client = await b.connect(dev.id, dev.token);
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 21.5, pm10: 40 }), { qos: 1 });
  await a.waitFor(() => seenPlain.some((r) => r.device === dev.id), 5000, 'the reading on node A (unbatched)');
  await a.waitFor(() => seenBatched.some((r) => r.device === dev.id), 5000, 'the reading on node A (batched)');
  // Once each: node A did not ingest it, so only node B's broadcast carried it.
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(seenPlain.filter((r) => r.device === dev.id).length, 1);
  assert.equal(seenBatched.filter((r) => r.device === dev.id).length, 1);
  await client.endAsync();
  plain.close();
  batched.close();
});

test('nothing goes through Redis for rooms no node watches', async () => {
  const { a, b, redis } = await setup();
  const r = createClient({ url: redis.url });
  r.on('error', () => undefined); // the last test stops Redis
  await r.connect();
  onCleanup(scope, () => r.destroy());
  // Entries ever added to the adapter's stream (its length is capped).
  const entries = async () => ((await r.exists('socket.io')) ? Number((await r.xInfoStream('socket.io'))['entries-added']) : 0);
  // The sockets of the test before are gone: wait until the nodes' announcements say so.
  await new Promise((res) => setTimeout(res, 300));
  const before = await entries();
  const dev = await b.provision('airQuality');
  const client = await b.connect(dev.id, dev.token);
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 11, pm10: 22 }), { qos: 1 });
  await b.rowsAtLeast(`SELECT * FROM "airQuality" WHERE "device" = '${dev.id}'`);
  assert.equal(await entries(), before, 'no broadcast without a watcher');
  // A screen on node A watching the device's zone: now its readings cross.
  const zone = b.platform.parts.profile.zones.find((z) => z.centre)?.id as string;
  const socket = await watch(a, false, { zone });
  const seen: string[] = [];
  socket.on('reading', (x: { device: string }) => seen.push(x.device));
  await new Promise((res) => setTimeout(res, 300));
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 12, pm10: 23 }), { qos: 1 });
  await a.waitFor(() => seen.includes(dev.id), 5000, 'the reading on node A');
  assert.ok((await entries()) > before);
  socket.close();
  await client.endAsync();
});

test('takeover across nodes: the device connecting to node B closes its connection on node A, and back', async () => {
  const { a, b } = await setup();
  const dev = await sharedDevice(a, b, 'traffic');
  const onA = await a.connect(dev.id, dev.token);
  const aClosed = new Promise<void>((r) => onA.once('close', () => r()));
  await a.waitFor(() => a.platform.parts.broker.isOnline(dev.id), 2000, 'online on A');
  const onB = await b.connect(dev.id, dev.token);
  const t0 = Date.now();
  await aClosed;
  const takeoverMs = Date.now() - t0;
  assert.ok(onB.connected, 'the newer connection stays');
  await a.waitFor(() => !a.platform.parts.broker.isOnline(dev.id), 2000, 'offline on A');
  assert.ok(b.platform.parts.broker.isOnline(dev.id));
  // And back: connecting to A again closes the one on B.
  const bClosed = new Promise<void>((r) => onB.once('close', () => r()));
  const again = await a.connect(dev.id, dev.token);
  await bClosed;
  assert.ok(again.connected);
  // A wrong token on node B takes nothing over.
  await assert.rejects(b.connect(dev.id, 'wrong-token'));
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(again.connected, 'a refused login on another node does not take over');
  console.log(`# takeover across nodes: old connection closed ${takeoverMs} ms after the new CONNACK`);
});

test('logins on two nodes at once leave exactly one connection', async () => {
  const { a, b } = await setup();
  const dev = await sharedDevice(a, b, 'traffic');
  for (let round = 0; round < 5; round++) {
    const [ca, cb] = await Promise.all([a.connect(dev.id, dev.token), b.connect(dev.id, dev.token)]);
    await a.waitFor(() => Number(ca.connected) + Number(cb.connected) === 1, 3000, 'one connection left');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(Number(ca.connected) + Number(cb.connected), 1, `round ${round + 1}`);
    await Promise.all([ca.endAsync(true), cb.endAsync(true)]);
  }
});

test('figures: publish on node B → a socket on node B and one on node A', async () => {
  const { a, b } = await setup();
  const here = await watch(b, false);
  const there = await watch(a, false);
  await new Promise((r) => setTimeout(r, 300)); // node A's rooms announced to node B
  const dev = await b.provision('airQuality');
  const client = await b.connect(dev.id, dev.token);
  const sent = new Map<number, number>();
  const lat = { here: [] as number[], there: [] as number[] };
  const record = (list: number[]) => (r: { device: string; time: number }) => {
    const t0 = sent.get(r.time);
    if (r.device === dev.id && t0 !== undefined) list.push(performance.now() - t0);
  };
  here.on('reading', record(lat.here));
  there.on('reading', record(lat.there));
  const base = Date.now() - 60_000;
  const n = 100;
  for (let i = 0; i < n; i++) {
    const time = base + i;
    sent.set(time, performance.now());
    await client.publishAsync(
      `devices/${dev.id}/telemetry`,
      JSON.stringify({ dateObserved: new Date(time).toISOString(), pm25: 10 + i / 10 }),
      { qos: 1 },
    );
    await new Promise((r) => setTimeout(r, 20));
  }
  await a.waitFor(() => lat.there.length === n && lat.here.length === n, 5000, 'every reading on both sockets');
  const p = (list: number[], q: number) => [...list].sort((x, y) => x - y)[Math.ceil((q / 100) * list.length) - 1] as number;
  const line = (name: string, list: number[]) => `${name} p50 ${p(list, 50).toFixed(1)} ms, p99 ${p(list, 99).toFixed(1)} ms`;
  console.log(`# publish (QoS 1) → socket.io, ${n} readings at 50/s: ${line('same node', lat.here)}; ${line('other node', lat.there)}`);
  await client.endAsync();
});

test('Redis lost: each node still serves its own sockets and devices; back again, readings cross nodes again', async () => {
  const { a, b, redis } = await setup();
  const onB = await watch(b, false);
  const onA = await watch(a, false);
  const seenB: string[] = [];
  const seenA: string[] = [];
  onB.on('reading', (x: { device: string }) => seenB.push(x.device));
  onA.on('reading', (x: { device: string }) => seenA.push(x.device));
  await new Promise((r) => setTimeout(r, 300));
  const dev = await b.provision('airQuality');
  const client = await b.connect(dev.id, dev.token);

  await redis.kill();
  const t0 = Date.now();
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 30, pm10: 40 }), { qos: 1 });
  await b.waitFor(() => seenB.includes(dev.id), 3000, 'the reading on node B’s own socket while Redis is down');
  console.log(`# Redis down: reading on the same node's socket ${Date.now() - t0} ms after the publish`);
  // A device logs in on node A meanwhile: no takeover across nodes, but nothing breaks.
  const other = await a.provision('traffic');
  const ca = await a.connect(other.id, other.token);
  assert.ok(ca.connected);
  await ca.endAsync();

  // Redis back on the same port: the clients reconnect by themselves.
  const again = await startRedis({ dir: await mkdtemp(join(tmpdir(), 'citypulse-redis-')), port: redis.port });
  onCleanup(scope, () => again.stop());
  await a.waitFor(
    async () => {
      await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 31, pm10: 41 }), { qos: 1 });
      await new Promise((r) => setTimeout(r, 200));
      return seenA.includes(dev.id);
    },
    20_000,
    'readings of node B on node A’s socket after Redis is back',
  );
  await client.endAsync();
});
