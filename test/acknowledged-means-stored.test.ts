/**
 * An acknowledged reading is stored or dead-lettered with a reason, never dropped, never stored twice, and the
 * durable log never stalls; on real processes (the platform, a real InfluxDB, MQTT.js, mosquitto_pub, raw
 * MQTT connections):
 * - readings near the retention edge while InfluxDB is down past their edge: each is stored or dead-lettered
 *   with its reason, and `citypulse_readings_stored_total` equals the points in InfluxDB;
 * - readings without a time, the platform SIGKILLed while PUBACKs are in flight, the device resending: no
 *   duplicate, none lost (three kills under MQTT.js load; and 50 readings stored whose PUBACKs were lost with the
 *   connection, the platform killed, the messages sent again);
 * - the same bytes and packet id again: a resend on a new connection after a broken one is the same point, a new
 *   run of mosquitto_pub (clean DISCONNECT) and a reused id on the same connection are new points;
 * - a 4 MiB disk budget with the default 16 MiB segments: acknowledgements go on while InfluxDB is healthy,
 *   stop and resume around an outage, nothing is lost, and a device that floods while the log is full is no
 *   longer read (the messages taken in stay bounded).
 *
 * Run: node --import tsx --test test/acknowledged-means-stored.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { startLocalInflux } from '../platform/influxdb-local.ts';
import { startTestInflux, type TestInflux } from './helpers/influx.ts';
import { compare, startLoad } from './helpers/load.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { freePort, startPlatformProcess, type PlatformProcess } from './helpers/process.ts';
import { connectPacket, rawConnect } from './helpers/raw-mqtt.ts';
import { waitFor } from './helpers/wait.ts';

const run = promisify(execFile);

/** `intensity` of every traffic point in the database. */
async function intensities(influx: TestInflux, db: string): Promise<number[]> {
  const out = await influx.query('SELECT "intensity" FROM "traffic"', db);
  return (out.results?.[0]?.series?.[0]?.values ?? []).map((v: unknown[]) => v[1] as number);
}

function metric(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

test('readings near the retention edge, InfluxDB down past their edge: each is stored or dead-lettered with its reason; stored_total equals InfluxDB', async (t) => {
  const influx = await startTestInflux(t);
  const p = await startTestPlatform(t, { influx: { retentionDuration: '1h' }, ingest: { retryMaxDelayMs: 300 } }, { influx });
  const db = p.platform.config.influx.database;
  const dev = await p.provision('traffic');
  const client = await p.connect(dev.id, dev.token);
  const publish = (time: number, intensity: number) =>
    client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ dateObserved: time, intensity }), { qos: 1 });

  // Accepted only while newer than the retention less twice the writer's margin (2 min): 5 s inside it.
  const edge = () => Date.now() - 3_600_000 + 125_000;
  await influx.stop();
  const acked: number[] = [];
  for (let i = 0; i < 40; i++) {
    // Distinct times: two readings of one device in the same millisecond would be one point.
    await publish((i < 20 ? edge() : Date.now() - 60_000) + i, i);
    acked.push(i);
  }
  // Past the writer's edge (1 h less 60 s) by the time InfluxDB is back: 66 s from the first edge reading.
  await new Promise((r) => setTimeout(r, 68_000));
  const again = await startLocalInflux({ dir: influx.dir, port: influx.port });
  t.after(() => again.stop());
  assert.ok(await p.platform.parts.ingest.flush(30_000), 'the log drains');

  const stored = await intensities(influx, db);
  const letters = await p.platform.parts.ingest.deadLetters.list({ limit: 1000 });
  const lettered = letters.map((d) => Number(/intensity=(\d+)/.exec(d.payload)?.[1]));
  assert.deepEqual(
    [...stored].sort((a, b) => a - b),
    Array.from({ length: 20 }, (_, i) => 20 + i),
    'the recent readings are stored',
  );
  assert.deepEqual(
    [...lettered].sort((a, b) => a - b),
    Array.from({ length: 20 }, (_, i) => i),
    'the edge readings are dead-lettered',
  );
  assert.ok(
    letters.every((d) => d.code === 'CP_INGEST_STORE_REJECTED' && /retention/.test(d.reason)),
    'with the reason',
  );
  const m = await (await p.api('/metrics', { admin: true })).text();
  assert.equal(metric(m, 'citypulse_readings_stored_total{'), stored.length, 'stored_total counts what InfluxDB holds');
  assert.equal(stored.length + lettered.length, acked.length, 'every acknowledged reading is accounted for');
});

test('readings without a time, the platform SIGKILLed while PUBACKs are in flight, the device resending: 0 duplicates, 0 lost', async (t) => {
  const influx = await startTestInflux(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'citypulse-resend-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const ports = { api: await freePort(), mqtt: await freePort() };
  const env = {
    CITYPULSE_DATA_DIR: dataDir,
    CITYPULSE_INFLUX_URL: influx.url,
    CITYPULSE_INFLUX_DATABASE: 'resent',
    CITYPULSE_API_ADMIN_TOKEN: 'test-admin-token-000000000000',
    CITYPULSE_INGEST_MAX_READINGS_PER_SECOND: '0',
  };
  let proc: PlatformProcess = await startPlatformProcess(env, ports);
  t.after(() => proc.child.kill('SIGKILL'));
  const res = await fetch(`${proc.api}/api/v1/devices`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.CITYPULSE_API_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ family: 'traffic', zone: 'tran-phu', location: { lat: 21.27, lon: 106.19 } }),
  });
  const { device, token } = (await res.json()) as { device: { id: string }; token: string };
  // MQTT.js keeps unacknowledged publishes and sends them again, same packet id and bytes, after it reconnects.
  const client = await mqtt.connectAsync(proc.mqtt, { clientId: device.id, username: device.id, password: token, reconnectPeriod: 200 });
  client.on('error', () => undefined);
  t.after(() => client.end(true));
  const acked = new Set<number>();
  let n = 0;
  let inFlight = 0;
  let sending = true;
  const pump = setInterval(() => {
    while (sending && inFlight < 20) {
      const seq = n++;
      inFlight++;
      client.publish(`devices/${device.id}/telemetry`, JSON.stringify({ intensity: seq }), { qos: 1 }, (err) => {
        inFlight--;
        if (!err) acked.add(seq);
      });
    }
  }, 5);
  t.after(() => clearInterval(pump));
  for (let kill = 0; kill < 3; kill++) {
    const before = acked.size;
    await waitFor(() => acked.size > before + 800, 20_000, 'load running');
    proc.child.kill('SIGKILL');
    await proc.exited;
    proc = await startPlatformProcess(env, ports);
  }
  await waitFor(() => acked.size > 3000, 20_000, 'load after the last restart');
  sending = false;
  await waitFor(() => inFlight === 0, 20_000, 'every publish answered');
  const sent = n;
  await waitFor(async () => new Set(await intensities(influx, 'resent')).size >= sent, 20_000, 'every reading stored');
  const stored = await intensities(influx, 'resent');
  const { missing, duplicates } = compare(acked, stored);
  assert.deepEqual(missing, []);
  assert.equal(duplicates, 0, `${duplicates} duplicates of ${sent} readings`);
  assert.equal(stored.length, sent);
});

test('readings without a time stored, their PUBACKs lost with the connection, the platform SIGKILLed, the messages sent again: the same points', async (t) => {
  const influx = await startTestInflux(t);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'citypulse-lost-ack-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const ports = { api: await freePort(), mqtt: await freePort() };
  const env = {
    CITYPULSE_DATA_DIR: dataDir,
    CITYPULSE_INFLUX_URL: influx.url,
    CITYPULSE_INFLUX_DATABASE: 'lostack',
    CITYPULSE_API_ADMIN_TOKEN: 'test-admin-token-000000000000',
    CITYPULSE_INGEST_MAX_READINGS_PER_SECOND: '0',
  };
  let proc: PlatformProcess = await startPlatformProcess(env, ports);
  t.after(() => proc.child.kill('SIGKILL'));
  const res = await fetch(`${proc.api}/api/v1/devices`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.CITYPULSE_API_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ family: 'traffic', zone: 'tran-phu', location: { lat: 21.27, lon: 106.19 } }),
  });
  const { device, token } = (await res.json()) as { device: { id: string }; token: string };
  const topic = `devices/${device.id}/telemetry`;
  const messages = Array.from({ length: 50 }, (_, i) =>
    mqttPacket.generate({
      cmd: 'publish',
      topic,
      payload: Buffer.from(`{"intensity":${i}}`),
      qos: 1,
      messageId: i + 1,
      retain: false,
      dup: false,
    } as Packet),
  );
  // The device sends 50 time-less readings and never reads the PUBACKs: they are lost with the connection.
  let conn = await rawConnect(proc.mqtt);
  conn.send(connectPacket(device.id, token));
  await conn.next('connack');
  conn.socket.pause();
  for (const m of messages) conn.send(m);
  await waitFor(async () => (await intensities(influx, 'lostack')).length >= 50, 20_000, 'the readings stored');
  conn.socket.destroy();
  proc.child.kill('SIGKILL');
  await proc.exited;
  proc = await startPlatformProcess(env, ports);
  // It sends them again, same packet ids and bytes, and this time reads every PUBACK.
  conn = await rawConnect(proc.mqtt);
  conn.send(connectPacket(device.id, token));
  await conn.next('connack');
  for (const m of messages) conn.send(m);
  await waitFor(() => conn.packets.filter((x) => x.cmd === 'puback').length === 50, 10_000, '50 PUBACKs');
  conn.socket.destroy();
  await new Promise((r) => setTimeout(r, 1500)); // a second point would have reached InfluxDB by now
  const stored = await intensities(influx, 'lostack');
  assert.equal(stored.length, 50, `${stored.length - 50} duplicates`);
  assert.deepEqual(
    [...stored].sort((a, b) => a - b),
    Array.from({ length: 50 }, (_, i) => i),
  );
});

/** Publishes one QoS 1 message on a raw connection and waits for its PUBACK. */
async function rawPublish(conn: Awaited<ReturnType<typeof rawConnect>>, topic: string, payload: string, messageId: number) {
  conn.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, messageId, retain: false, dup: false } as Packet);
  const ack = await conn.next('puback', 5000);
  assert.equal((ack as { messageId?: number } | undefined)?.messageId, messageId);
}

test('the same bytes and packet id again: a resend after a broken connection is the same point; after a clean DISCONNECT or on the same connection, a new one', async (t) => {
  const p: TestPlatform = await startTestPlatform(t);
  const db = p.platform.config.influx.database;
  const dev = await p.provision('traffic');
  const topic = `devices/${dev.id}/telemetry`;
  const points = async () => (await intensities(p.influx, db)).length;

  // Acknowledged, then the connection breaks (no DISCONNECT): the PUBACK may have been lost, so the same
  // message on the next connection is a resend.
  let conn = await rawConnect(p.addr.mqtt);
  conn.send(connectPacket(dev.id, dev.token));
  await conn.next('connack');
  await rawPublish(conn, topic, '{"intensity":1}', 7);
  conn.socket.destroy();
  conn = await rawConnect(p.addr.mqtt);
  conn.send(connectPacket(dev.id, dev.token));
  await conn.next('connack');
  await rawPublish(conn, topic, '{"intensity":1}', 7);
  // The same packet id on the same connection after its PUBACK: a new message.
  await rawPublish(conn, topic, '{"intensity":1}', 7);
  conn.send(mqttPacket.generate({ cmd: 'disconnect' } as Packet));
  await conn.closed(5000);
  assert.ok(await p.platform.parts.ingest.flush(10_000));
  assert.equal(await points(), 2, 'the resend overwrote its first delivery; the reused id made a second point');

  // mosquitto_pub starts at packet id 1 on every run and disconnects cleanly: each run is a new reading.
  const u = new URL(p.addr.mqtt);
  for (let i = 0; i < 2; i++) {
    await run('mosquitto_pub', [
      '-h',
      u.hostname,
      '-p',
      u.port,
      '-i',
      dev.id,
      '-u',
      dev.id,
      '-P',
      dev.token,
      '-q',
      '1',
      '-t',
      topic,
      '-m',
      '{"intensity":2}',
    ]);
  }
  assert.ok(await p.platform.parts.ingest.flush(10_000));
  assert.equal(await points(), 4, 'two runs of mosquitto_pub with the same bytes: two points');
});

test('a 4 MiB disk budget with the default 16 MiB segments: no stall while InfluxDB is healthy; a flooding device is not read while full; nothing lost', async (t) => {
  const influx = await startTestInflux(t);
  const p = await startTestPlatform(t, { durability: { maxBytes: 4 * 1024 * 1024 }, ingest: { retryMaxDelayMs: 200 } }, { influx });
  assert.equal(p.platform.config.durability.segmentBytes, 16 * 1024 * 1024, 'the default segment size');
  const db = p.platform.config.influx.database;
  const health = async () => (await p.api('/api/v1/health')).json() as Promise<any>;
  const devs = await Promise.all(Array.from({ length: 4 }, () => p.provision('traffic')));
  const loads: { load: ReturnType<typeof startLoad> }[] = [];
  for (let i = 0; i < devs.length; i++) {
    const d = devs[i] as { id: string; token: string };
    loads.push({
      load: startLoad(await p.connect(d.id, d.token), d.id, { perSecond: 3000, window: 40, base: Date.now() - 3_600_000 + i * 1000 }),
    });
  }
  // More than the budget passes through the log (records of ~120 bytes): the active segment must rotate.
  const total = () => loads.reduce((s, l) => s + l.load.acked.size, 0);
  await waitFor(() => total() > 45_000, 60_000, 'more than 4 MiB of readings acknowledged');

  // InfluxDB down: the log fills, acknowledgements stop, and a device that sends without waiting for them is
  // no longer read: the messages taken in while full stay bounded.
  await influx.stop();
  await waitFor(async () => (await health()).durableLog.full === true, 60_000, 'the log to fill');
  const flooder = await p.provision('traffic');
  const raw = await rawConnect(p.addr.mqtt);
  // Keepalive 4 s: a paused socket reads nothing, not even its end, so a device that has gone is found by its
  // keep-alive timer (1.5 × keepalive without a packet), which then lets go of its waiting messages.
  raw.send(connectPacket(flooder.id, flooder.token, { keepalive: 4 }));
  await raw.next('connack');
  const waitsBefore = metric(await (await p.api('/metrics', { admin: true })).text(), 'citypulse_backpressure_waits_total');
  // Memory while full: the platform runs in this process; what a flood adds to it is what the platform holds.
  const rssBefore = process.memoryUsage().rss;
  let written = 0;
  const payload = Buffer.from('{"intensity":5}');
  const flood = async () => {
    const until = Date.now() + 3000;
    while (Date.now() < until && !raw.socket.destroyed) {
      const ok = raw.socket.write(
        mqttPacket.generate({
          cmd: 'publish',
          topic: `devices/${flooder.id}/telemetry`,
          payload,
          qos: 1,
          messageId: (written % 65000) + 1,
          retain: false,
          dup: false,
        } as Packet),
      );
      written++;
      if (!ok) await Promise.race([new Promise((r) => raw.socket.once('drain', r)), new Promise((r) => setTimeout(r, 200))]);
    }
  };
  await flood();
  const waitsAfter = metric(await (await p.api('/metrics', { admin: true })).text(), 'citypulse_backpressure_waits_total');
  const takenIn = waitsAfter - waitsBefore;
  const rssGrowth = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  t.diagnostic(
    `flooder wrote ${written} messages into its socket in 3 s; the platform took in ${takenIn} while full; RSS grew ${rssGrowth.toFixed(1)} MiB`,
  );
  // Held messages cost a few KiB each (a reading, its promise, its PUBACK callback): 64 MiB bounds the flood's
  // cost far below what reading it all would hold (~300 MiB for these 78k messages).
  assert.ok(rssGrowth < 64, `RSS grew ${rssGrowth.toFixed(1)} MiB while the budget was full`);
  assert.ok(written > 5000, 'the flooder got its messages into the kernel buffers');
  assert.ok(takenIn < 5000, `a paused device is not read: ${takenIn} messages taken in while full`);
  // A QoS 0 device too; then both connections break while their messages wait: the platform lets go of them
  // (the QoS 1 device sends its messages again, never acknowledged; the QoS 0 ones are counted).
  const quiet = await p.provision('traffic');
  const raw0 = await rawConnect(p.addr.mqtt);
  raw0.send(connectPacket(quiet.id, quiet.token, { keepalive: 2 }));
  await raw0.next('connack');
  for (let i = 0; i < 50; i++)
    raw0.send({
      cmd: 'publish',
      topic: `devices/${quiet.id}/telemetry`,
      payload: Buffer.from(`{"intensity":${i}}`),
      qos: 0,
      retain: false,
      dup: false,
    } as Packet);
  let waits = 0;
  await waitFor(
    async () => {
      waits = metric(await (await p.api('/metrics', { admin: true })).text(), 'citypulse_backpressure_waits_total');
      return waits > waitsAfter;
    },
    10_000,
    'the QoS 0 messages waiting',
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${waits - waitsAfter}`);
  });
  // Paused after its first message: the rest stay in its socket.
  const heldQos0 = waits - waitsAfter;
  assert.ok(heldQos0 < 50, `${heldQos0} of the 50 QoS 0 messages taken in while full`);
  raw.socket.destroy();
  raw0.socket.destroy();
  let abandoned = 0;
  await waitFor(
    async () => {
      abandoned = metric(await (await p.api('/metrics', { admin: true })).text(), 'citypulse_readings_abandoned_total{');
      return abandoned === heldQos0;
    },
    10_000,
    'the QoS 0 readings let go and counted',
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${abandoned} of ${heldQos0}`);
  });
  // The flooder's end too (its keep-alive timer, 1.5 × 4 s): its waiting messages are let go as it goes offline.
  const online = async (id: string) =>
    ((await (await p.api(`/api/v1/devices/${id}`, { admin: true })).json()) as { online: boolean }).online;
  await waitFor(async () => !(await online(flooder.id)) && !(await online(quiet.id)), 15_000, 'both connections ended');

  const stalled = total();
  const again = await startLocalInflux({ dir: influx.dir, port: influx.port });
  t.after(() => again.stop());
  await waitFor(() => total() > stalled + 5000, 60_000, 'acknowledgements to resume');
  await Promise.all(loads.map((l) => l.load.stop()));
  assert.ok(await p.platform.parts.ingest.flush(60_000), 'the log drains');
  const stored = await intensities(influx, db);
  // Each device sends intensities 0, 1, 2, …: compared device by device.
  const out = await influx.query('SELECT "intensity", "device" FROM "traffic"', db);
  const rows: [number, number, string][] = out.results?.[0]?.series?.[0]?.values ?? [];
  for (let i = 0; i < devs.length; i++) {
    const id = (devs[i] as { id: string }).id;
    const mine = rows.filter((r) => r[2] === id).map((r) => r[1]);
    const { missing, duplicates } = compare((loads[i] as { load: ReturnType<typeof startLoad> }).load.acked, mine);
    assert.deepEqual(missing, [], `device ${i}: none lost`);
    assert.equal(duplicates, 0, `device ${i}: none twice`);
  }
  assert.ok(stored.length >= 45_000);
  const gone = rows.filter((r) => r[2] === flooder.id || r[2] === quiet.id).length;
  assert.equal(gone, 0, 'messages of connections that closed while waiting for room were let go, not stored');
  const h = await health();
  assert.equal(h.durableLog.full, false);
  assert.equal(h.durableLog.backlogReadings, 0);
});
