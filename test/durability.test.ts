/**
 * No acknowledged reading is ever lost, on real processes: the platform, a real InfluxDB and real
 * MQTT.js devices. Each test counts the readings the platform acknowledged (PUBACK) against the points in
 * InfluxDB and asserts loss 0 and duplicates 0:
 * - InfluxDB stopped under steady load, then restarted;
 * - the platform process SIGKILLed under steady load, then restarted on the same data folder;
 * - a disk budget small enough to fill: devices are slowed (acknowledgements withheld), nothing is lost, flow resumes;
 * - a torn final log record after a crash;
 * - a batch with one type-conflicting point: dead-lettered, the rest stored, the log not blocked;
 * - a frozen socket.io client is disconnected while another keeps receiving everything.
 *
 * Run: node --import tsx --test test/durability.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { io as ioClient } from 'socket.io-client';
import { startLocalInflux } from '../platform/influxdb-local.ts';
import { startTestInflux, type TestInflux } from './helpers/influx.ts';
import { compare, startLoad } from './helpers/load.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { freePort, startPlatformProcess } from './helpers/process.ts';
import { waitFor } from './helpers/wait.ts';

/** `intensity` of every traffic point in the database. */
async function storedIntensities(influx: TestInflux, db: string): Promise<number[]> {
  const out = await influx.query('SELECT "intensity" FROM "traffic"', db);
  return (out.results?.[0]?.series?.[0]?.values ?? []).map((v: unknown[]) => v[1] as number);
}

async function health(p: TestPlatform): Promise<any> {
  return (await p.api('/api/v1/health')).json();
}

test('InfluxDB stopped under steady load, then restarted: loss 0, duplicates 0', async (t) => {
  const influx = await startTestInflux(t);
  const p = await startTestPlatform(t, { ingest: { retryMaxDelayMs: 300 } }, { influx });
  const dev = await p.provision('traffic');
  const live = ioClient(p.addr.api, { transports: ['websocket'], reconnection: false, auth: { token: await p.loginAs('viewer') } });
  t.after(() => live.close());
  await live.timeout(5000).emitWithAck('subscribe', { device: dev.id });
  let pushed = 0;
  live.on('reading', () => pushed++);
  const load = startLoad(await p.connect(dev.id, dev.token), dev.id, { perSecond: 500 });
  await waitFor(() => load.acked.size > 200, 5000, 'load running');
  await influx.stop();
  const ackedAtStop = load.acked.size;
  await waitFor(async () => (await health(p)).status === 'degraded', 5000, 'degraded health');
  const pushedInOutage = pushed;
  await waitFor(() => load.acked.size > ackedAtStop + 500, 5000, 'acknowledgements continuing during the outage');
  assert.ok(pushed > pushedInOutage + 400, 'live sockets keep streaming while InfluxDB is down');
  const h = await health(p);
  assert.ok(h.durableLog.backlogReadings > 0, 'the backlog shows in health');
  const again = await startLocalInflux({ dir: influx.dir, port: influx.port });
  t.after(() => again.stop());
  await new Promise((r) => setTimeout(r, 500));
  await load.stop();
  assert.ok(await p.platform.parts.ingest.flush(20000), 'the backlog drains');
  const { missing, duplicates } = compare(load.acked, await storedIntensities(influx, p.platform.config.influx.database));
  assert.deepEqual(missing, []);
  assert.equal(duplicates, 0);
  assert.equal((await health(p)).durableLog.backlogReadings, 0);
});

test('the platform SIGKILLed under steady load, restarted on the same data folder: loss 0, duplicates 0', async (t) => {
  const influx = await startTestInflux(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'citypulse-kill-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const ports = { api: await freePort(), mqtt: await freePort() };
  const env = {
    CITYPULSE_DATA_DIR: dataDir,
    CITYPULSE_INFLUX_URL: influx.url,
    CITYPULSE_INFLUX_DATABASE: 'killed',
    CITYPULSE_API_ADMIN_TOKEN: 'test-admin-token-000000000000',
    // Batches wait long enough that a kill always finds acknowledged readings not yet in InfluxDB.
    CITYPULSE_INGEST_BATCH_MAX_AGE_MS: '5000',
    CITYPULSE_INGEST_MAX_READINGS_PER_SECOND: '0', // one device at 1,000 readings/s: far above a field device's limit
  };
  let proc = await startPlatformProcess(env, ports);
  t.after(() => proc.child.kill('SIGKILL'));
  const res = await fetch(`${proc.api}/api/v1/devices`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.CITYPULSE_API_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ family: 'traffic', zone: 'tran-phu', location: { lat: 21.27, lon: 106.19 } }),
  });
  const { device, token } = (await res.json()) as { device: { id: string }; token: string };
  const client = await mqtt.connectAsync(proc.mqtt, { clientId: device.id, username: device.id, password: token, reconnectPeriod: 0 });
  client.on('error', () => undefined);
  t.after(() => client.end(true));
  const load = startLoad(client, device.id, { perSecond: 1000 });
  await waitFor(() => load.acked.size > 1500, 10000, 'load running');
  proc.child.kill('SIGKILL');
  assert.equal(await proc.exited, 'SIGKILL');
  await load.stop();
  const acked = load.acked.size;
  const before = (await storedIntensities(influx, 'killed')).length;
  assert.ok(before < acked, `some acknowledged readings were not yet in InfluxDB at the kill (${before} of ${acked})`);

  proc = await startPlatformProcess(env, ports);
  await waitFor(async () => (await storedIntensities(influx, 'killed')).length >= acked, 20000, 'replay after restart');
  const { missing, duplicates } = compare(load.acked, await storedIntensities(influx, 'killed'));
  assert.deepEqual(missing, []);
  assert.equal(duplicates, 0);
  proc.child.kill('SIGTERM');
  assert.equal(await proc.exited, 0, 'SIGTERM exits 0');
});

test('a disk budget that fills: devices are slowed, nothing is lost, the flow resumes', async (t) => {
  const influx = await startTestInflux(t);
  const p = await startTestPlatform(
    t,
    { durability: { maxBytes: 65536, segmentBytes: 8192 }, ingest: { retryMaxDelayMs: 200 } },
    { influx },
  );
  const dev = await p.provision('traffic');
  const client = await p.connect(dev.id, dev.token);
  await influx.stop();
  const load = startLoad(client, dev.id, { perSecond: 2000 });
  await waitFor(async () => (await health(p)).durableLog.full === true, 10000, 'the log to fill');
  await new Promise((r) => setTimeout(r, 300)); // messages already past the budget check finish their append
  const h = await health(p);
  assert.equal(h.status, 'degraded');
  assert.equal(h.ingest.status, 'slowing-devices');
  // Acknowledgements stop while full, and the device stays connected (slowed, not dropped).
  const stalled = load.acked.size;
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(load.acked.size, stalled, 'no acknowledgement while the log is full');
  assert.equal(client.connected, true);
  const metrics = await (await p.api('/metrics')).text();
  assert.match(metrics, /citypulse_backpressure_waits_total [1-9]/);

  const again = await startLocalInflux({ dir: influx.dir, port: influx.port });
  t.after(() => again.stop());
  await waitFor(() => load.acked.size > stalled + 1000, 15000, 'acknowledgements to resume');
  await load.stop();
  assert.ok(await p.platform.parts.ingest.flush(20000));
  const { missing, duplicates } = compare(load.acked, await storedIntensities(influx, p.platform.config.influx.database));
  assert.deepEqual(missing, []);
  assert.equal(duplicates, 0);
  assert.equal((await health(p)).durableLog.full, false);
});

test('a torn final log record: the next start warns, skips it and stores every acknowledged reading', async (t) => {
  const influx = await startTestInflux(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'citypulse-torn-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  // First run: InfluxDB is down, so acknowledged readings stay in the log; stop does not wait for it.
  const down = { url: 'http://127.0.0.1:9', database: 'torn' };
  const first = await startTestPlatform(t, { dataDir, influx: down, ingest: { stopFlushTimeoutMs: 200 } }, { influx });
  const dev = await first.provision('traffic');
  const client = await first.connect(dev.id, dev.token);
  const base = Date.now() - 600_000;
  for (let i = 0; i < 30; i++)
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ dateObserved: base + i, intensity: i }), { qos: 1 });
  await first.platform.stop();
  const walDir = path.join(dataDir, 'wal');
  const last = fs
    .readdirSync(walDir)
    .filter((f) => f.endsWith('.log'))
    .sort()
    .pop() as string;
  const header = Buffer.alloc(8);
  header.writeUInt32LE(500, 0);
  fs.appendFileSync(path.join(walDir, last), Buffer.concat([header, Buffer.from('traffic\tdev\ttraffic,dev')])); // cut mid-record

  const second = await startTestPlatform(t, { dataDir, influx: { url: influx.url, database: 'torn' }, log: { level: 'warn' } }, { influx });
  await second.platform.parts.ingest.flush(10000);
  const stored = await storedIntensities(influx, 'torn');
  assert.deepEqual(
    [...stored].sort((a, b) => a - b),
    Array.from({ length: 30 }, (_, i) => i),
  );
});

test('a batch with one type-conflicting point: that point is dead-lettered, the others stored, the log drains', async (t) => {
  const influx = await startTestInflux(t);
  const p = await startTestPlatform(t, {}, { influx });
  const db = p.platform.config.influx.database;
  const base = Date.now() - 600_000;
  // Another writer stored `averageVehicleSpeed` as a string: a float now conflicts in this shard.
  await fetch(`${influx.url}/write?db=${db}&rp=raw&precision=ms`, {
    method: 'POST',
    body: `traffic,device=legacy,zone=x averageVehicleSpeed="fast" ${base}`,
  });
  const dev = await p.provision('traffic');
  const client = await p.connect(dev.id, dev.token);
  const batch = [
    { dateObserved: base + 1, intensity: 1 },
    { dateObserved: base + 2, intensity: 2, averageVehicleSpeed: 40.5 },
    { dateObserved: base + 3, intensity: 3 },
  ];
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(batch), { qos: 1 });
  assert.ok(await p.platform.parts.ingest.flush(10000), 'the log is not blocked by the bad point');
  const stored = (await storedIntensities(influx, db)).filter((n) => n !== null);
  assert.deepEqual(stored.sort(), [1, 3]);
  const dl = (await (await p.api('/api/v1/dead-letters', { admin: true })).json()) as any[];
  assert.equal(dl.length, 1);
  assert.equal(dl[0].code, 'CP_INGEST_STORE_REJECTED');
  assert.match(dl[0].reason, /field type conflict/);
  assert.match(dl[0].payload, /intensity=2i/);
  assert.equal((await health(p)).durableLog.backlogReadings, 0);
});

test('a frozen socket.io client is disconnected while another keeps receiving every reading', async (t) => {
  const p = await startTestPlatform(t, { api: { maxSocketBufferedPackets: 200 } });
  const connect = async () => {
    const s = ioClient(p.addr.api, { transports: ['websocket'], reconnection: false, auth: { token: await p.loginAs('viewer') } });
    t.after(() => s.close());
    await s.timeout(5000).emitWithAck('subscribe', {});
    return s;
  };
  const healthy = await connect();
  const frozen = await connect();
  let received = 0;
  healthy.on('reading', () => received++);
  let frozenDisconnected = false;
  frozen.on('disconnect', () => (frozenDisconnected = true));
  // Stop reading the frozen client's TCP socket: the server's send buffers fill up.
  const raw = (frozen.io.engine as any).transport.ws._socket;
  raw.pause();
  t.after(() => raw.destroy()); // a paused socket would hold a polite close for ws' 30 s close timeout

  const dev = await p.provision('traffic');
  const client = await p.connect(dev.id, dev.token);
  const base = Date.now() - 3_600_000;
  const total = 40000; // more than the loopback TCP buffers of a socket that does not read hold (a few MB)
  for (let m = 0; m < total / 1000; m++) {
    const batch = Array.from({ length: 1000 }, (_, i) => ({ dateObserved: base + m * 1000 + i, intensity: m * 1000 + i }));
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(batch), { qos: 1 });
  }
  await waitFor(() => received === total, 20000, `all ${total} readings on the healthy socket (got ${received})`);
  await waitFor(
    async () => /citypulse_socket_slow_disconnects_total [1-9]/.test(await (await p.api('/metrics')).text()),
    5000,
    'the frozen socket dropped by the server',
  );
  assert.equal(frozenDisconnected, false, 'the frozen client cannot even read its disconnect');
  assert.match(await (await p.api('/metrics')).text(), /citypulse_socket_clients 1\n/);
});
