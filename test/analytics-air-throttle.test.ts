/**
 * What an air-quality reading costs analytics: a reading only adds to its hour's sums; the station's indices
 * (12 NowCast hours and a day's 24 per pollutant) are computed from them at most once per
 * `analytics.aqiEmitIntervalMs` while readings arrive — not per reading — and what is published and stored once
 * the interval has passed is the index computed from scratch from every reading, late ones included. A REST
 * reader gets the index of every reading received, without waiting for the interval.
 * Real platform: broker over TCP, MQTT.js devices, real InfluxDB.
 *
 * Run: node --import tsx --test test/analytics-air-throttle.test.ts
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { epaHourlyAqi, vnHourlyAqi, type HourlySeries } from '../analytics/aqi.ts';
import type { AqiEvent } from '../core/bus.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const HOUR = 3_600_000;
/** Long enough that the readings of a test are stored well inside it (the computation it defers comes after). */
const INTERVAL = 4000;

const scope = fileScope();
let p: TestPlatform;
const events: AqiEvent[] = [];

before(async () => {
  p = await startTestPlatform(scope, { analytics: { aqiEmitIntervalMs: INTERVAL, storeIntervalMs: 0, writeMaxAgeMs: 20 } });
  p.platform.bus.on('aqi', (e) => events.push(e));
});

/** Publishes readings as one array message (QoS 1) and waits until InfluxDB holds `total` of the device's. */
async function send(dev: { id: string; token: string }, readings: { dateObserved: number; [k: string]: number }[], total: number) {
  const client = await p.connect(dev.id, dev.token);
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(readings), { qos: 1 });
  await p.rowsAtLeast(`SELECT "pm25" FROM "airQuality" WHERE "device" = '${dev.id}'`, total, 10_000);
  await client.endAsync();
}

/** The current hour's start, once at least a second of it has passed (readings of this hour are then in the past). */
async function currentHour(): Promise<number> {
  if (Date.now() % HOUR < 1000) await sleep(1000);
  return Math.floor(Date.now() / HOUR) * HOUR;
}

const stationHourEvents = (id: string) => events.filter((e) => e.scope === 'station' && e.id === id && e.period === 'hour');

test('a burst of readings is computed once per interval, and then equals the index computed from scratch', async () => {
  const dev = await p.provision('airQuality', { zone: 'xuong-giang' });
  const h0 = await currentHour();
  // PM2.5 hourly means: h−2 20; h−1 first (10..50) → 30, then 20 late readings of 90 → (40·30 + 20·90) / 60 = 50;
  // h0 (40, 55, 70) → 55, NO2 120. 130 readings in one message, in this order (the late ones last).
  const readings = [
    ...Array.from({ length: 10 }, (_, i) => ({ dateObserved: h0 - 2 * HOUR + i * 1000, pm25: 20 })),
    ...Array.from({ length: 40 }, (_, i) => ({ dateObserved: h0 - HOUR + i * 1000, pm25: 10 + (i % 5) * 10 })),
    ...Array.from({ length: 60 }, (_, i) => ({ dateObserved: h0 + i, pm25: 40 + (i % 3) * 15, no2: 120 })),
    ...Array.from({ length: 20 }, (_, i) => ({ dateObserved: h0 - HOUR + (100 + i) * 1000, pm25: 90 })),
  ];
  // From scratch, with the index functions alone: c1 is the newest hour.
  const now: HourlySeries = { pm25: [55, 50, 20], no2: [120] };
  const lateHour: HourlySeries = { pm25: [50, 20] };
  const expected = { vn: vnHourlyAqi(now)?.aqi, epa: epaHourlyAqi(now)?.aqi, lateVn: vnHourlyAqi(lateHour)?.aqi };
  // Without the late readings h−1 would be 30, and every reading on its own gives another index: the numbers
  // tell a stale or a partial index from the full one.
  assert.notEqual(vnHourlyAqi({ pm25: [55, 30, 20], no2: [120] })?.aqi, expected.vn);
  assert.notEqual(vnHourlyAqi({ pm25: [30, 20] })?.aqi, expected.lateVn);

  const analytics = p.platform.parts.analytics;
  const before = analytics.airComputations();
  await send(dev, readings, readings.length);
  // The first reading was computed at once (the station had never been): an index of h−2 alone.
  const first = stationHourEvents(dev.id)[0];
  assert.equal(first?.time, h0 - 2 * HOUR);

  // After the interval, one computation covers the other 129 readings.
  const last = (await p.waitFor(
    () => stationHourEvents(dev.id).find((e) => e.time === h0),
    INTERVAL + 5000,
    'the deferred computation of the burst',
  )) as AqiEvent;
  assert.equal(last.vn?.aqi, expected.vn);
  assert.equal(last.epa?.aqi, expected.epa);
  assert.deepEqual(last.vn?.subIndices, vnHourlyAqi(now)?.subIndices);
  const computations = analytics.airComputations() - before;
  assert.ok(computations >= 2 && computations <= 3, `${computations} computations for ${readings.length} readings`);
  assert.ok(stationHourEvents(dev.id).length <= 3, `${stationHourEvents(dev.id).length} hourly events`);
  // The current index, through REST, and the stored points: h0, and h−1 with its late readings.
  const cur = (await (await p.api('/api/v1/aqi?zone=xuong-giang')).json()) as { stations: { id: string; hour: { vn: { aqi: number } } }[] };
  assert.equal(cur.stations.find((s) => s.id === dev.id)?.hour.vn.aqi, expected.vn);
  const point = (t: number, vn: number | undefined) =>
    p.rowsAtLeast(
      `SELECT "vn_aqi" FROM "aqi" WHERE "scope" = 'station' AND "id" = '${dev.id}' AND "period" = 'hour' AND time = ${t}ms AND "vn_aqi" = ${vn}`,
    );
  await point(h0, expected.vn);
  await point(h0 - HOUR, expected.lateVn);
});

test('a REST reader gets the index of every reading received, before the interval has passed', async () => {
  const dev = await p.provision('airQuality', { zone: 'tho-xuong' });
  const h0 = await currentHour();
  const analytics = p.platform.parts.analytics;
  await send(dev, [{ dateObserved: h0 - HOUR + 1000, pm25: 30 }], 1); // computed at once: the station's first reading
  const sentAt = Date.now();
  const afterFirst = analytics.airComputations();
  await send(
    dev,
    Array.from({ length: 30 }, (_, i) => ({ dateObserved: h0 + i, pm25: 60 })),
    31,
  );
  // NowCast c = 60, 30: w* = 0.5; (60 + 0.5·30) / 1.5 = 50 µg/m³ → VN 100.
  const expected = vnHourlyAqi({ pm25: [60, 30] })?.aqi;
  assert.equal(expected, 100);
  if (Date.now() - sentAt < INTERVAL - 500) {
    // Still inside the interval: nothing computed the 30 readings yet, so the reader is what computes them.
    assert.equal(analytics.airComputations(), afterFirst);
    assert.ok(!stationHourEvents(dev.id).some((e) => e.time === h0));
  }
  const cur = (await (await p.api('/api/v1/aqi?zone=tho-xuong')).json()) as {
    stations: { id: string; hour: { time: string; vn: { aqi: number } } }[];
  };
  const st = cur.stations.find((s) => s.id === dev.id);
  assert.equal(st?.hour.time, new Date(h0).toISOString());
  assert.equal(st?.hour.vn.aqi, expected);
});
