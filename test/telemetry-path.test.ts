/**
 * The telemetry path end to end on real parts: a real platform (Aedes over TCP, ingest, Express +
 * socket.io) on ephemeral loopback ports, a real InfluxDB, real MQTT.js and mosquitto_pub devices and real
 * socket.io clients. Covers storage (measurement, tags, field types, time), live push, partial rejection with
 * dead letters and the errors topic, authentication and topic rules, and online/offline status.
 *
 * Run: node --import tsx --test test/telemetry-path.test.ts
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { io as ioClient, type Socket } from 'socket.io-client';
import type { MqttClient } from 'mqtt';
import { startTestInflux, type TestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const run = promisify(execFile);
let influx: TestInflux;
let p: TestPlatform;
const scope = fileScope();

before(async () => {
  influx = await startTestInflux(scope);
  p = await startTestPlatform(scope, {}, { influx });
});

/** A socket.io client subscribed to `sub`; resolves with the client and the ack. Closed after the file. */
async function liveClient(
  sub: Record<string, string>,
): Promise<{ socket: Socket; ack: any; events: { reading: any[]; status: any[]; rejected: any[] } }> {
  const token = await p.loginAs('viewer');
  const socket = ioClient(p.addr.api, { transports: ['websocket'], reconnection: false, auth: { token } });
  scope.after(() => socket.close());
  const events = { reading: [] as any[], status: [] as any[], rejected: [] as any[] };
  socket.on('reading', (r) => events.reading.push(r));
  socket.on('status', (s) => events.status.push(s));
  socket.on('rejected', (r) => events.rejected.push(r));
  const ack = await socket.timeout(5000).emitWithAck('subscribe', sub);
  return { socket, ack, events };
}

/** Resolves with the first message on `topic`, or rejects after `ms`. */
function nextMessage(client: MqttClient, topic: string, ms = 5000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message on ${topic}`)), ms);
    client.on('message', function onMessage(t, payload) {
      if (t !== topic) return;
      clearTimeout(timer);
      client.off('message', onMessage);
      resolve(JSON.parse(payload.toString()));
    });
  });
}

async function fieldTypes(measurement: string): Promise<Record<string, string>> {
  const rows = await p.rows(`SHOW FIELD KEYS FROM "${measurement}"`);
  return Object.fromEntries(rows.map((r) => [r.fieldKey, r.fieldType]));
}

describe('a reading travels device → broker → ingest → InfluxDB and sockets', () => {
  test('MQTT.js traffic reading: measurement, tags, typed fields, observation time, and the zone socket', async () => {
    const dev = await p.provision('traffic', { zone: 'tran-phu' });
    const live = await liveClient({ zone: 'tran-phu' });
    assert.equal(live.ack.ok, true);
    const client = await p.connect(dev.id, dev.token);
    const observed = '2026-11-25T07:30:00+07:00';
    const reading = {
      dateObserved: observed,
      intensity: 42,
      averageVehicleSpeed: 31.5,
      occupancy: 0.25,
      laneId: 2,
      congested: false,
      intensityByVehicleType: { motorcycle: 35, car: 6, bus: 1 },
    };
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(reading), { qos: 1 });

    // Until InfluxDB answered the write, a query can see a point's fields one by one (its cache takes each
    // field as a series of its own): wait for the write's confirmation, then read.
    assert.equal(await p.platform.parts.ingest.flush(), true);
    const rows = await p.rowsAtLeast(`SELECT * FROM "traffic" WHERE "device" = '${dev.id}'`);
    assert.equal(rows.length, 1);
    const row = rows[0] as Record<string, unknown>;
    assert.equal(row.time, Date.parse(observed));
    assert.equal(row.device, dev.id);
    assert.equal(row.zone, 'tran-phu');
    assert.equal(row.intensity, 42);
    assert.equal(row.intensityByVehicleType_motorcycle, 35);
    assert.equal(row.congested, false);
    const types = await fieldTypes('traffic');
    assert.equal(types.intensity, 'integer');
    assert.equal(types.intensityByVehicleType_motorcycle, 'integer');
    assert.equal(types.laneId, 'integer');
    assert.equal(types.averageVehicleSpeed, 'float');
    assert.equal(types.congested, 'boolean');
    const tagKeys = (await p.rows('SHOW TAG KEYS FROM "traffic"')).map((r) => r.tagKey);
    assert.deepEqual(tagKeys.sort(), ['device', 'zone']);

    const pushed = await p.waitFor(() => live.events.reading.find((r) => r.device === dev.id), 2000, 'socket reading');
    assert.equal(pushed.family, 'traffic');
    assert.equal(pushed.zone, 'tran-phu');
    assert.equal(pushed.time, Date.parse(observed));
    assert.equal(pushed.fields.intensity, 42);

    // Resending the same reading overwrites its point instead of duplicating it.
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(reading), { qos: 1 });
    await p.platform.parts.ingest.flush();
    assert.equal((await p.rows(`SELECT count("intensity") FROM "traffic" WHERE "device" = '${dev.id}'`))[0]?.count, 1);
  });

  test('mosquitto_pub (an independent client) publishes an air-quality reading that is stored', async () => {
    const dev = await p.provision('airQuality');
    const port = new URL(p.addr.mqtt).port;
    const t0 = Date.now() - 60_000;
    await run('mosquitto_pub', [
      '-h',
      '127.0.0.1',
      '-p',
      port,
      '-i',
      dev.id,
      '-u',
      dev.id,
      '-P',
      dev.token,
      '-q',
      '1',
      '-t',
      `devices/${dev.id}/telemetry`,
      '-m',
      JSON.stringify({ dateObserved: t0, pm25: 55.7, pm10: 80, temperature: 24.5 }),
    ]);
    const rows = await p.rowsAtLeast(`SELECT * FROM "airQuality" WHERE "device" = '${dev.id}'`);
    assert.equal(rows[0]?.time, t0);
    assert.equal(rows[0]?.pm25, 55.7);
    const types = await fieldTypes('airQuality');
    assert.equal(types.pm25, 'float');
  });

  test('an array with one invalid member: the valid ones stored, the invalid one dead-lettered and reported', async () => {
    const dev = await p.provision('streetLight');
    const live = await liveClient({ device: dev.id });
    const client = await p.connect(dev.id, dev.token);
    await client.subscribeAsync(`devices/${dev.id}/errors`, { qos: 1 });
    const errorMsg = nextMessage(client, `devices/${dev.id}/errors`);
    const base = Date.now() - 10 * 60_000;
    const batch = [
      { dateObserved: base, powerState: 'on', illuminanceLevel: 1, powerConsumption: 98.5, energyConsumed: 1200.25 },
      { dateObserved: base + 60_000, powerState: 'on', illuminanceLevel: 1.7, powerConsumption: 99 },
      { dateObserved: base + 120_000, powerState: 'low', illuminanceLevel: 0.5, powerConsumption: 49.1, energyConsumed: 1200.3 },
    ];
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(batch), { qos: 1 });

    const err = await errorMsg;
    assert.equal(err.code, 'CP_INGEST_INVALID_READING');
    assert.equal(err.index, 1);
    assert.match(err.reason, /illuminanceLevel/);
    const rows = await p.rowsAtLeast(`SELECT * FROM "streetLight" WHERE "device" = '${dev.id}'`, 2);
    await p.platform.parts.ingest.flush();
    assert.deepEqual(
      (await p.rows(`SELECT * FROM "streetLight" WHERE "device" = '${dev.id}'`)).map((r) => r.time),
      [base, base + 120_000],
    );
    assert.equal(rows[0]?.powerState, 'on');

    const dl = (await (await p.api(`/api/v1/dead-letters?device=${dev.id}`, { admin: true })).json()) as any[];
    assert.equal(dl.length, 1);
    assert.equal(dl[0].index, 1);
    assert.equal(dl[0].code, 'CP_INGEST_INVALID_READING');
    assert.deepEqual(JSON.parse(dl[0].payload), batch[1]);
    assert.equal((await p.api('/api/v1/dead-letters', { token: null })).status, 401);
    assert.equal((await p.api('/api/v1/dead-letters', { as: 'viewer' })).status, 403);

    await p.waitFor(() => live.events.rejected.length === 1, 2000, 'rejected event');
    assert.equal(live.events.reading.length, 2);
  });

  test('malformed JSON is rejected whole with a reason and the connection stays usable', async () => {
    const dev = await p.provision('airQuality');
    const client = await p.connect(dev.id, dev.token);
    await client.subscribeAsync(`devices/${dev.id}/errors`);
    const errorMsg = nextMessage(client, `devices/${dev.id}/errors`);
    await client.publishAsync(`devices/${dev.id}/telemetry`, '{"pm25": 12', { qos: 1 });
    const err = await errorMsg;
    assert.equal(err.code, 'CP_INGEST_BAD_JSON');
    assert.equal(err.index, undefined);
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 12 }), { qos: 1 });
    await p.rowsAtLeast(`SELECT * FROM "airQuality" WHERE "device" = '${dev.id}'`);
  });
});

describe('identity and topic rules', () => {
  test('unknown device and wrong token get CONNACK 4, a revoked device is refused', async () => {
    await assert.rejects(p.connect('nobody-here', 'x'.repeat(32)), (e: any) => e.code === 4);
    const dev = await p.provision('airQuality');
    await assert.rejects(p.connect(dev.id, 'wrong-token'), (e: any) => e.code === 4);
    const client = await p.connect(dev.id, dev.token);
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    const res = await p.api(`/api/v1/devices/${dev.id}/revoke`, { method: 'POST', admin: true });
    assert.equal(res.status, 200);
    await closed; // revoking disconnects at once
    await assert.rejects(p.connect(dev.id, dev.token), (e: any) => e.code === 5);
  });

  test("publishing to another device's topic and subscribing to # are refused; the message goes nowhere", async () => {
    const victim = await p.provision('traffic');
    const intruder = await p.provision('traffic');
    const live = await liveClient({});
    const client = await p.connect(intruder.id, intruder.token);

    // SUBACK 0x80 (failure) for each; MQTT.js turns it into an error carrying the packet.
    const refused = (e: any) => e.packet?.granted?.[0] === 128;
    await assert.rejects(client.subscribeAsync('#', { qos: 1 }), refused);
    await assert.rejects(client.subscribeAsync(`devices/${victim.id}/errors`, { qos: 1 }), refused);
    const own = await client.subscribeAsync(`devices/${intruder.id}/errors`, { qos: 1 });
    assert.equal(own[0]?.qos, 1);

    const closed = new Promise<void>((r) => client.once('close', () => r()));
    client.publish(`devices/${victim.id}/telemetry`, JSON.stringify({ intensity: 999 }), { qos: 1 });
    await closed; // MQTT 3.1.1 has no negative PUBACK: the connection is closed
    await p.platform.parts.ingest.flush();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await p.rows(`SELECT * FROM "traffic" WHERE "device" = '${victim.id}'`)).length, 0);
    assert.equal((await p.rows('SELECT * FROM "traffic" WHERE "intensity" = 999')).length, 0);
    assert.equal(live.events.reading.filter((r) => r.fields.intensity === 999).length, 0);
    const metrics = await (await p.api('/metrics')).text();
    assert.match(metrics, /citypulse_mqtt_unauthorized_total\{action="publish"\} [1-9]/);
  });

  test('client id must equal the username', async () => {
    const dev = await p.provision('airQuality');
    await assert.rejects(p.connect(dev.id, dev.token, { clientId: 'someone-else' }), (e: any) => e.code === 2);
  });
});

describe('online status', () => {
  async function retainedStatus(id: string): Promise<any> {
    const stream = (p.platform.parts.broker.aedes as any).persistence.createRetainedStream(`devices/${id}/status`);
    for await (const packet of stream) return JSON.parse(packet.payload.toString());
    return undefined;
  }

  test('connect and disconnect (clean, and a dropped TCP connection) change the retained status and emit socket events', async () => {
    const dev = await p.provision('streetLight');
    const live = await liveClient({ device: dev.id });
    const client = await p.connect(dev.id, dev.token);
    await p.waitFor(() => live.events.status.some((s) => s.state === 'online'), 2000, 'online event');
    assert.equal((await p.waitFor(() => retainedStatus(dev.id), 2000, 'retained')).state, 'online');
    const info = (await (await p.api(`/api/v1/devices/${dev.id}`)).json()) as any;
    assert.equal(info.online, true);

    await client.endAsync();
    await p.waitFor(() => live.events.status.some((s) => s.state === 'offline'), 2000, 'offline event');
    assert.equal((await retainedStatus(dev.id)).state, 'offline');

    // A dropped TCP connection (no DISCONNECT packet) is noticed too.
    const again = await p.connect(dev.id, dev.token);
    await p.waitFor(() => live.events.status.filter((s) => s.state === 'online').length === 2, 2000, 'second online');
    (again.stream as unknown as { destroy(): void }).destroy();
    await p.waitFor(() => live.events.status.filter((s) => s.state === 'offline').length === 2, 3000, 'offline after drop');
    assert.equal((await retainedStatus(dev.id)).state, 'offline');
    assert.equal(((await (await p.api(`/api/v1/devices/${dev.id}`)).json()) as any).online, false);
  });

  test('the subscribe ack carries a snapshot of the latest values', async () => {
    const dev = await p.provision('airQuality', { zone: 'da-mai' });
    const client = await p.connect(dev.id, dev.token);
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 33.3 }), { qos: 1 });
    await p.waitFor(() => p.platform.parts.api.latest.readings.get(dev.id), 2000, 'latest');
    const live = await liveClient({ zone: 'da-mai' });
    const mine = live.ack.snapshot.readings.find((r: any) => r.device === dev.id);
    assert.equal(mine.fields.pm25, 33.3);
    assert.ok(live.ack.snapshot.statuses.some((s: any) => s.device === dev.id && s.state === 'online'));
    const bad = await liveClient({ planet: 'mars' });
    assert.equal(bad.ack.ok, false);
  });
});

describe('REST API', () => {
  test('history over a range, aggregated per window, and raw', async () => {
    const dev = await p.provision('airQuality');
    const client = await p.connect(dev.id, dev.token);
    const start = Math.floor((Date.now() - 3_600_000) / 600_000) * 600_000; // a 10-minute boundary an hour ago
    // 20 readings a minute apart: two 10-minute windows of 10 readings each.
    const batch = Array.from({ length: 20 }, (_, i) => ({ dateObserved: start + i * 60_000, pm25: i, temperature: 20 }));
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(batch), { qos: 1 });
    await p.rowsAtLeast(`SELECT * FROM "airQuality" WHERE "device" = '${dev.id}'`, 20);
    const from = new Date(start).toISOString();
    const to = new Date(start + 20 * 60_000).toISOString();
    const agg = (await (await p.api(`/api/v1/devices/${dev.id}/readings?from=${from}&to=${to}&window=5m&fields=pm25`)).json()) as any;
    assert.equal(agg.window, '5m');
    assert.deepEqual(
      agg.points.map((x: any) => x.pm25),
      [2, 7, 12, 17],
    );
    assert.equal(agg.points[0].time, start);
    const raw = (await (await p.api(`/api/v1/devices/${dev.id}/readings?from=${from}&to=${to}&window=raw`)).json()) as any;
    assert.equal(raw.points.length, 20);
    assert.equal(raw.points[19].temperature, 20);
    const auto = (await (await p.api(`/api/v1/devices/${dev.id}/readings?from=${from}&to=${to}`)).json()) as any;
    assert.equal(auto.window, '10s'); // 20 minutes / 10 s = 120 points ≤ 500
  });

  test('requests that break their schema get a problem document listing every error', async () => {
    const res = await p.api('/api/v1/devices?family=spaceship&bogus=1');
    assert.equal(res.status, 400);
    assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/);
    const body = (await res.json()) as any;
    assert.equal(body.code, 'CP_API_VALIDATION');
    assert.equal(body.errors.length, 2);
    const bad = await p.api('/api/v1/devices', {
      method: 'POST',
      admin: true,
      body: JSON.stringify({ family: 'traffic', zone: 'atlantis', location: { lat: 1, lon: 2 } }),
    });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as any).code, 'CP_REGISTRY_UNKNOWN_ZONE');
    const missing = await p.api('/api/v1/devices/not-a-device');
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as any).code, 'CP_REGISTRY_DEVICE_NOT_FOUND');
  });

  test('health, OpenAPI document and metrics are served', async () => {
    const health = (await (await p.api('/api/v1/health')).json()) as any;
    assert.equal(health.status, 'ok');
    assert.equal(health.influx.status, 'ok');
    const doc = (await (await p.api('/api/v1/openapi.json')).json()) as any;
    assert.equal(doc.openapi, '3.1.0');
    assert.ok(doc.paths['/api/v1/devices/{id}/readings'].get);
    assert.deepEqual(doc.paths['/api/v1/devices'].post.security, [{ bearer: ['admin'] }]);
    assert.equal(doc.paths['/api/v1/devices'].post.requestBody.content['application/json'].schema.required.length, 3);
    const metrics = await (await p.api('/metrics')).text();
    assert.match(metrics, /citypulse_readings_stored_total\{family="traffic"\} [1-9]/);
    assert.match(metrics, /citypulse_readings_received_total\{family="traffic"\} [1-9]/);
    assert.match(metrics, /citypulse_nodejs_eventloop_lag_seconds/);
    assert.match(metrics, /citypulse_socket_clients/);
  });
});
