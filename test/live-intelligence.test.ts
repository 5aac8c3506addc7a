/**
 * City intelligence on the live sockets: real socket.io clients receive the air-quality index and
 * the indicators of their zone, and every connected screen — whatever it subscribed to — receives a new
 * alarm and its acknowledgement.
 *
 * Run: node --import tsx --test test/live-intelligence.test.ts
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { io as ioClient, type Socket } from 'socket.io-client';
import { BatchPacker, type LiveBatchFrame, type UnpackedReading, unpackBatch } from '../dashboard-api/index.ts';
import type { ConfigInput } from '../platform/config.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const scope = fileScope();
let p: TestPlatform;

before(async () => {
  p = await startTestPlatform(scope, {
    analytics: { aqiEmitIntervalMs: 0, indicatorEmitIntervalMs: 0, storeIntervalMs: 0 },
    alarms: {
      rules: [{ id: 'pm25-very-high', kind: 'threshold', family: 'airQuality', field: 'pm25', op: '>=', value: 300, clearValue: 200 }],
    } as ConfigInput['alarms'],
  });
});

async function screen(sub: Record<string, string>): Promise<{ socket: Socket; events: Record<string, any[]> }> {
  const token = await p.loginAs('viewer');
  const socket = ioClient(p.addr.api, { transports: ['websocket'], reconnection: false, auth: { token } });
  scope.after(() => socket.close());
  const events: Record<string, any[]> = { aqi: [], indicator: [], alarm: [] };
  for (const name of Object.keys(events)) socket.on(name, (e: any) => events[name]?.push(e));
  const ack = await socket.timeout(5000).emitWithAck('subscribe', sub);
  assert.equal(ack.ok, true);
  return { socket, events };
}

test('a zone screen gets its stations’ AQI and indicators; every screen gets alarms', async () => {
  const tranPhu = await screen({ zone: 'tran-phu' });
  const otherZone = await screen({ zone: 'da-mai' });
  const station = await p.provision('airQuality', { zone: 'tran-phu' });
  const device = await p.connect(station.id, station.token);

  // 40 µg/m³ PM2.5 in this hour and the last: NowCast 40, between the breakpoints 25 (50) and 50 (100): 50 + 50/25 × 15 = 80.
  const hourStart = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  await device.publishAsync(
    `devices/${station.id}/telemetry`,
    JSON.stringify([
      { dateObserved: hourStart - 3_600_000 + 60_000, pm25: 40 },
      { dateObserved: Math.max(hourStart + 1000, Date.now() - 1000), pm25: 40 },
    ]),
    { qos: 1 },
  );
  const aqi = await p.waitFor(
    () => tranPhu.events.aqi?.find((e) => e.scope === 'station' && e.id === station.id && e.period === 'hour' && e.time === hourStart),
    5000,
    'station AQI on the zone screen',
  );
  assert.equal(aqi.vn.aqi, 80);
  assert.equal(aqi.vn.category, 'moderate');
  assert.ok(aqi.epa, 'the EPA index travels beside it');
  assert.notEqual(aqi.epa.aqi, aqi.vn.aqi);
  await p.waitFor(() => tranPhu.events.aqi?.find((e) => e.scope === 'zone' && e.id === 'tran-phu'), 5000, 'zone AQI');
  assert.ok(!otherZone.events.aqi?.some((e) => e.zone === 'tran-phu'), 'another zone’s screen does not get it');

  const light = await p.provision('streetLight', { zone: 'tran-phu' });
  const lamp = await p.connect(light.id, light.token);
  await lamp.publishAsync(`devices/${light.id}/telemetry`, JSON.stringify({ powerState: 'on', powerConsumption: 90, energyConsumed: 12 }), {
    qos: 1,
  });
  const ind = await p.waitFor(
    () => tranPhu.events.indicator?.find((e) => e.scope === 'device' && e.id === light.id),
    5000,
    'lamp indicators on the zone screen',
  );
  assert.equal(ind.values.on, true);
  assert.equal(ind.values.powerW, 90);

  // An alarm in tran-phu reaches the da-mai screen too.
  await device.publishAsync(`devices/${station.id}/telemetry`, JSON.stringify({ pm25: 350 }), { qos: 1 });
  const raised = await p.waitFor(
    () => otherZone.events.alarm?.find((a) => a.rule === 'pm25-very-high' && a.subject === station.id && a.state === 'active'),
    5000,
    'alarm on every screen',
  );
  assert.ok(tranPhu.events.alarm?.some((a) => a.id === raised.id));
  const res = await p.api(`/api/v1/alarms/${raised.id}/acknowledge`, {
    method: 'POST',
    as: 'operator',
    body: '{}',
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(res.status, 200);
  await p.waitFor(
    () => otherZone.events.alarm?.find((a) => a.id === raised.id && a.state === 'acknowledged'),
    5000,
    'acknowledgement on every screen',
  );
});

test('a batched socket (auth.batch) gets readings as arrays, never one event per reading', async () => {
  const token = await p.loginAs('viewer');
  const socket = ioClient(p.addr.api, { transports: ['websocket'], reconnection: false, auth: { token, batch: true } });
  scope.after(() => socket.close());
  const arrays: any[][] = [];
  const indicatorArrays: any[][] = [];
  const single: any[] = [];
  const singleIndicators: any[] = [];
  const statuses: any[] = [];
  const batchedStatuses: any[] = [];
  const batchedRejections: any[] = [];
  const singleRejections: any[] = [];
  const frames: LiveBatchFrame[] = [];
  socket.on('batch', (frame: LiveBatchFrame) => {
    frames.push(frame);
    const b = unpackBatch(frame);
    assert.ok(b.readings.length + b.indicators.length + b.statuses.length + b.rejections.length > 0, 'no empty batch');
    arrays.push(b.readings);
    indicatorArrays.push(b.indicators);
    batchedStatuses.push(...b.statuses);
    batchedRejections.push(...b.rejections);
  });
  socket.on('rejected', (r: any) => singleRejections.push(r));
  socket.on('reading', (r: any) => single.push(r));
  socket.on('indicator', (i: any) => singleIndicators.push(i));
  socket.on('status', (s: any) => statuses.push(s));
  assert.equal((await socket.timeout(5000).emitWithAck('subscribe', { zone: 'le-loi' })).ok, true);
  const dev = await p.provision('traffic', { zone: 'le-loi' });
  const client = await p.connect(dev.id, dev.token);
  // Ten readings in one message: they arrive within one batching interval, so in one or a few arrays.
  const batch = Array.from({ length: 10 }, (_, i) => ({ dateObserved: Date.now() - 10_000 + i, intensity: i }));
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(batch), { qos: 1 });
  await p.waitFor(() => arrays.flat().filter((r) => r.device === dev.id).length === 10, 5000, 'ten readings in arrays');
  assert.ok(arrays.length < 10, `${arrays.length} arrays for 10 readings`);
  const mine = arrays.flat().filter((r) => r.device === dev.id);
  assert.deepEqual(
    mine.map((r) => r.fields.intensity),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  // Unpacked, each is the reading as ingested: its observation time, zone, family and fields.
  assert.deepEqual(
    mine.map((r) => [r.time, r.zone, r.family]),
    batch.map((b) => [b.dateObserved, 'le-loi', 'traffic']),
  );
  // On the wire they travel packed: arrays, field names once per frame.
  const wire = frames.find((f) => f.readings.some((it) => it[0] === dev.id)) as LiveBatchFrame;
  assert.ok(Array.isArray(wire.readings[0]) && wire.shapes.some((keys) => keys.includes('intensity')), JSON.stringify(wire).slice(0, 300));
  assert.equal(single.length, 0, 'no per-reading events on a batched socket');
  // Each reading's device indicators come in the same batches, never as one event per reading.
  await p.waitFor(
    () => indicatorArrays.flat().some((i) => i.scope === 'device' && i.id === dev.id),
    5000,
    'device indicators in the batches',
  );
  assert.equal(singleIndicators.filter((i) => i.scope === 'device').length, 0, 'no per-reading device indicator events');
  // Status changes come in the batches too (they come in bursts after an outage), never one event per change.
  assert.ok(
    batchedStatuses.some((s) => s.device === dev.id && s.state === 'online' && s.zone === 'le-loi' && s.family === 'traffic'),
    'the online status in a batch',
  );
  // Rejections too (broken firmware can send garbage as fast as its link allows): with the reason and the index.
  await client.publishAsync(`devices/${dev.id}/telemetry`, '{not json', { qos: 1 });
  await client.publishAsync(
    `devices/${dev.id}/telemetry`,
    JSON.stringify([{ dateObserved: Date.now(), intensity: 1 }, { intensity: 'x' }]),
    {
      qos: 1,
    },
  );
  await p.waitFor(() => batchedRejections.filter((r) => r.device === dev.id).length >= 2, 5000, 'two rejections in batches');
  const rejections = batchedRejections.filter((r) => r.device === dev.id);
  assert.equal(rejections[0].index, undefined);
  assert.equal(rejections[1].index, 1);
  assert.ok(rejections.every((r) => r.zone === 'le-loi' && r.family === 'traffic' && r.code.startsWith('CP_') && r.reason));
  assert.equal(singleRejections.length, 0, 'no rejected events one by one on a batched socket');
  await client.endAsync();
  await p.waitFor(() => batchedStatuses.some((s) => s.device === dev.id && s.state === 'offline'), 5000, 'the offline status in a batch');
  const mineStatuses = batchedStatuses.filter((s) => s.device === dev.id);
  assert.deepEqual(
    mineStatuses.map((s) => s.state),
    ['online', 'offline'],
  );
  assert.ok(Date.parse(mineStatuses[1].at) >= Date.parse(mineStatuses[0].at));
  assert.equal(statuses.length, 0, 'no status events one by one on a batched socket');
});

test('a batch frame gives back exactly what was packed: mixed shapes, older and newer times, every value type', () => {
  const packer = new BatchPacker();
  const readings: UnpackedReading[] = [
    { device: 'tf-1', zone: 'z1', family: 'traffic', time: 1_790_000_000_500, fields: { intensity: 3, occupancy: 0.25 } },
    { device: 'aq-1', zone: 'z2', family: 'airQuality', time: 1_790_000_000_000, fields: { pm25: 41.5, status: 'ok' } },
    { device: 'tf-2', zone: 'z1', family: 'traffic', time: 1_790_000_003_000, fields: { intensity: 0 } },
    { device: 'sl-1', zone: 'z3', family: 'streetLight', time: 1_790_000_001_000, fields: { on: false, dimLevel: 40 } },
    { device: 'tf-1', zone: 'z1', family: 'traffic', time: 1_790_000_001_500, fields: { intensity: 4, occupancy: 0.5 } },
  ];
  const indicators = [
    {
      scope: 'device' as const,
      id: 'tf-1',
      zone: 'z1',
      family: 'traffic',
      time: 1_790_000_000_500,
      values: { congestionLevel: 2, intensity: 3 },
    },
  ];
  const statuses = [
    { device: 'tf-2', zone: 'z1', family: 'traffic', state: 'offline' as const, at: '2026-11-26T01:00:00.000Z' },
    { device: 'tf-2', zone: 'z1', family: 'traffic', state: 'online' as const, at: '2026-11-26T01:00:02.500Z' },
  ];
  packer.addStatus(statuses[0] as (typeof statuses)[0]);
  for (const r of readings) packer.addReading(r);
  for (const i of indicators) packer.addIndicator(i);
  packer.addStatus(statuses[1] as (typeof statuses)[0]);
  const rejections = [
    { device: 'tf-9', zone: 'z1', family: 'traffic', code: 'CP_INGEST_MALFORMED_JSON', reason: 'not JSON', at: '2026-11-26T01:00:01.000Z' },
    {
      device: 'tf-9',
      zone: 'z1',
      family: 'traffic',
      code: 'CP_INGEST_SCHEMA',
      reason: 'intensity: must be integer',
      at: '2026-11-26T01:00:01.100Z',
      index: 0,
    },
  ];
  for (const r of rejections) packer.addRejection(r);
  assert.equal(packer.empty, false);
  const frame: LiveBatchFrame = JSON.parse(JSON.stringify(packer.take()));
  assert.equal(packer.empty, true, 'take() starts a new frame');
  assert.deepEqual(unpackBatch(frame), { readings, indicators, statuses, rejections });
  // The time base is the first reading's, whatever came before it.
  assert.equal(frame.t0, readings[0]?.time);
  // Repeated field lists are listed once: four distinct lists among the five readings, one for the indicator.
  assert.equal(frame.shapes.length, 5);
  assert.ok(JSON.stringify(frame).length < JSON.stringify({ readings, indicators, statuses, rejections }).length * 0.75);
  // The next frame carries its own time base and field lists.
  packer.addReading({ device: 'tf-3', zone: 'z1', family: 'traffic', time: 5, fields: { intensity: 1 } });
  assert.deepEqual(unpackBatch(packer.take()), {
    readings: [{ device: 'tf-3', zone: 'z1', family: 'traffic', time: 5, fields: { intensity: 1 } }],
    indicators: [],
    statuses: [],
    rejections: [],
  });
});
