/**
 * Analytics on a real platform: real broker over TCP, MQTT.js devices, real InfluxDB.
 * Air readings spread over past hours give the station's and the zone's VN_AQI (NowCast) and US EPA AQI through
 * REST, `aqi` points in InfluxDB and `aqi` events on the bus; traffic vehicles per hour over the sliding window;
 * street-light energy per day across a counter reset; a lamp lit at local noon (daylight) and at night; and a
 * restart on the same data folder and InfluxDB keeps the hour's NowCast and the day's energy. Daily values are
 * dated by their city day (REST, history, 1d windows of readings); a day needs 18 of its 24 hours; a late
 * reading recomputes every stored hour and day it changes (NowCast, the next day's O3 8-hour means).
 * Expected numbers are worked out by hand in the comments next to them, or, for long series, by the pure
 * index functions of analytics/aqi.ts on the test's own data.
 *
 * Run: node --import tsx --test test/analytics.test.ts
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { DAY_MIN_HOURS, epaDailyAqi, epaHourlyAqi, vnDailyAqi, vnHourlyAqi } from '../analytics/index.ts';
import type { AqiEvent, IndicatorEvent } from '../core/bus.ts';
import type { ConfigInput } from '../platform/config.ts';
import { startTestInflux, type TestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope, onCleanup } from './helpers/scope.ts';

const HOUR = 3_600_000;
const MIN = 60_000;
/** Asia/Ho_Chi_Minh is UTC+7 without daylight saving: the city-local day starts at 17:00 UTC. */
const TZ_OFFSET = 7 * HOUR;
const localDayStart = (t: number) => Math.floor((t + TZ_OFFSET) / 86_400_000) * 86_400_000 - TZ_OFFSET;

const FAST: ConfigInput['analytics'] = { aqiEmitIntervalMs: 0, indicatorEmitIntervalMs: 0, storeIntervalMs: 0, writeMaxAgeMs: 20 };

let influx: TestInflux;
let p: TestPlatform;
const scope = fileScope();
const aqiEvents: AqiEvent[] = [];
const indicatorEvents: IndicatorEvent[] = [];

before(async () => {
  influx = await startTestInflux(scope);
  // Four days of hourly means: the late-reading test reaches back to the evening before yesterday.
  p = await startTestPlatform(scope, { analytics: { ...FAST, airHoursKept: 96 } }, { influx });
  // A socket-less listener, as the alarms engine is.
  p.platform.bus.on('aqi', (e) => aqiEvents.push(e));
  p.platform.bus.on('indicator', (e) => indicatorEvents.push(e));
});

/**
 * Publishes readings (one array message, QoS 1) and waits until InfluxDB holds them (`storedBefore` + these), so
 * the bus delivered them (ingest emits before it stores).
 */
async function send(
  tp: TestPlatform,
  dev: { id: string; token: string },
  family: string,
  readings: Record<string, unknown>[],
  storedBefore = 0,
) {
  const client = await tp.connect(dev.id, dev.token);
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(readings), { qos: 1 });
  await tp.rowsAtLeast(`SELECT * FROM "${family}" WHERE "device" = '${dev.id}'`, storedBefore + readings.length, 10000);
  await client.endAsync();
}

async function json(tp: TestPlatform, path: string): Promise<any> {
  const res = await tp.api(path);
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  return res.json();
}

const iso = (t: number) => new Date(t).toISOString();
const DAY = 86_400_000;
/** The city date (YYYY-MM-DD) of a city-local day start. */
const cityDate = (dayStart: number) => new Date(dayStart + TZ_OFFSET).toISOString().slice(0, 10);

describe('air-quality index per station and zone', () => {
  test('hourly VN_AQI (NowCast) and EPA AQI of a station and its zone, through REST, InfluxDB and the bus', async () => {
    const a = await p.provision('airQuality', { zone: 'tran-phu' });
    const b = await p.provision('airQuality', { zone: 'tran-phu' });
    const h0 = Math.floor(Date.now() / HOUR) * HOUR;
    // Station A, PM2.5 hourly means: h−3 30; h−2 (40, 50) → 45; h−1 60; h0 (20, 40) → 30; NO2 in h0: 150.
    await send(p, a, 'airQuality', [
      { dateObserved: iso(h0 - 3 * HOUR + 5 * MIN), pm25: 30 },
      { dateObserved: iso(h0 - 2 * HOUR + 5 * MIN), pm25: 40 },
      { dateObserved: iso(h0 - 2 * HOUR + 35 * MIN), pm25: 50 },
      { dateObserved: iso(h0 - HOUR + 5 * MIN), pm25: 60 },
      { dateObserved: iso(h0), pm25: 20, no2: 150 },
      { dateObserved: iso(h0 + 1000), pm25: 40 },
    ]);
    // NowCast: c = 30, 60, 45, 30; w* = 30/60 = 0.5 → w = 0.5;
    //   (30 + 0.5·60 + 0.25·45 + 0.125·30) / (1 + 0.5 + 0.25 + 0.125) = 75 / 1.875 = 40 µg/m³.
    // VN: 40 in [25, 50] → 50 + 50/25·15 = 80 (NO2 150 → 75): 80, moderate, dominant pm25.
    // EPA: 40 in [35.5, 55.4] → 101 + 49/19.9·4.5 = 112.08 → 112, Unhealthy for Sensitive Groups.
    // Station B: h−1 10, h0 12: w* = 10/12; (12 + 10·10/12) / (1 + 10/12) = 11.09 → VN 22, EPA 51 + 49/26.3·2 = 54.7 → 55.
    await send(p, b, 'airQuality', [
      { dateObserved: iso(h0 - HOUR + 10 * MIN), pm25: 10 },
      { dateObserved: iso(h0 + 2000), pm25: 12 },
    ]);

    const cur = await json(p, '/api/v1/aqi?zone=tran-phu');
    const sa = cur.stations.find((s: any) => s.id === a.id);
    assert.equal(sa.hour.time, iso(h0));
    assert.equal(sa.hour.vn.aqi, 80);
    assert.equal(sa.hour.vn.scale, 'vn_aqi');
    assert.equal(sa.hour.vn.category, 'moderate');
    assert.equal(sa.hour.vn.name.vi, 'Trung bình');
    assert.equal(sa.hour.vn.color, '#ffff00');
    assert.equal(sa.hour.vn.dominant, 'pm25');
    assert.deepEqual(sa.hour.vn.subIndices, { pm25: 80, no2: 75 });
    assert.equal(sa.hour.epa.aqi, 112);
    assert.equal(sa.hour.epa.scale, 'us_epa_aqi');
    assert.equal(sa.hour.epa.category, 'unhealthyForSensitiveGroups');
    assert.equal(sa.hour.epa.color, '#ff7e00');
    const sb = cur.stations.find((s: any) => s.id === b.id);
    assert.equal(sb.hour.vn.aqi, 22);
    assert.equal(sb.hour.epa.aqi, 55);
    // The zone is its worst station.
    const zone = cur.zones.find((z: any) => z.id === 'tran-phu');
    assert.equal(zone.hour.vn.aqi, 80);
    assert.equal(zone.hour.epa.aqi, 112);
    assert.equal(zone.hour.time, iso(h0));

    // Stored in InfluxDB, measurement aqi, typed integer.
    const rows = await p.rowsAtLeast(
      `SELECT "vn_aqi", "vn_category", "epa_aqi" FROM "aqi" WHERE "scope" = 'station' AND "id" = '${a.id}' AND "period" = 'hour' AND time = ${h0}ms AND "vn_aqi" = 80`,
    );
    assert.equal(rows[0]?.vn_category, 'moderate');
    assert.equal(rows[0]?.epa_aqi, 112);
    const zoneRows = await p.rowsAtLeast(
      `SELECT "vn_aqi" FROM "aqi" WHERE "scope" = 'zone' AND "id" = 'tran-phu' AND "period" = 'hour' AND time = ${h0}ms AND "vn_aqi" = 80`,
    );
    assert.equal(zoneRows.length, 1);
    const kinds = Object.fromEntries((await p.rows('SHOW FIELD KEYS FROM "aqi"')).map((r) => [r.fieldKey, r.fieldType]));
    assert.equal(kinds.vn_aqi, 'integer');
    assert.equal(kinds.epa_aqi, 'integer');
    assert.equal(kinds.vn_category, 'string');

    // The bus carried the events to a listener without any socket.
    const last = aqiEvents.filter((e) => e.scope === 'station' && e.id === a.id && e.period === 'hour').at(-1);
    assert.equal(last?.vn?.aqi, 80);
    assert.equal(last?.epa?.aqi, 112);
    assert.ok(aqiEvents.some((e) => e.scope === 'zone' && e.id === 'tran-phu' && e.vn?.aqi === 80));

    // History through REST: the stored hourly index.
    const hist = await json(p, `/api/v1/aqi/history?scope=station&id=${a.id}&from=${iso(h0 - 4 * HOUR)}&to=${iso(h0 + HOUR)}`);
    const at = hist.points.find((x: any) => x.time === h0);
    assert.equal(at.vn.aqi, 80);
    assert.equal(at.epa.aqi, 112);
  });

  test('daily index of a city-local day: the decision’s example, PM2.5 day mean 55.7 → 110, dated by the city date', async () => {
    const c = await p.provision('airQuality', { zone: 'ngo-quyen' });
    const yesterday = localDayStart(Date.now()) - 86_400_000;
    const date = cityDate(yesterday);
    // Every hour of yesterday (local): hourly means 50.7 and 60.7 by turns → day mean 55.7 →
    // VN 100 + 50/30·5.7 = 109.5 → 110 (poor); EPA 151 + 49/69.9·0.2 = 151.1 → 151 (unhealthy).
    const readings = Array.from({ length: 24 }, (_, i) => ({
      dateObserved: iso(yesterday + i * HOUR + 10 * MIN),
      pm25: i % 2 ? 60.7 : 50.7,
    }));
    await send(p, c, 'airQuality', readings);
    const cur = await json(p, '/api/v1/aqi?zone=ngo-quyen');
    const st = cur.stations.find((s: any) => s.id === c.id);
    assert.equal(st.day.time, iso(yesterday));
    assert.equal(st.day.date, date);
    assert.equal(st.day.hours, 24);
    assert.equal(st.day.reason, undefined);
    assert.equal(st.day.vn.aqi, 110);
    assert.equal(st.day.vn.category, 'poor');
    assert.equal(st.day.vn.name.vi, 'Kém');
    assert.equal(st.day.epa.aqi, 151);
    assert.equal(st.day.epa.category, 'unhealthy');
    const zone = cur.zones.find((z: any) => z.id === 'ngo-quyen');
    assert.equal(zone.day.vn.aqi, 110);
    assert.equal(zone.day.date, date);
    await p.rowsAtLeast(
      `SELECT "vn_aqi" FROM "aqi" WHERE "id" = '${c.id}' AND "period" = 'day' AND time = ${yesterday}ms AND "vn_aqi" = 110`,
    );

    // History of the daily index: one point, at the start of the city day (17:00 UTC the day before), with its
    // city date; grouped by UTC days it would come back at the UTC midnight before the city day.
    const range = `from=${iso(yesterday - 3 * DAY)}&to=${iso(yesterday + 2 * DAY)}`;
    const hist = await json(p, `/api/v1/aqi/history?scope=station&id=${c.id}&period=day&${range}`);
    assert.equal(hist.window, '1d');
    assert.deepEqual(
      hist.points.map((x: any) => [x.time, x.date, x.vn.aqi, x.epa.aqi]),
      [[yesterday, date, 110, 151]],
    );
    const zoneHist = await json(p, `/api/v1/aqi/history?scope=zone&id=ngo-quyen&period=day&${range}`);
    assert.deepEqual(
      zoneHist.points.map((x: any) => [x.time, x.date, x.vn.aqi]),
      [[yesterday, date, 110]],
    );

    // The readings themselves in 1d windows: one window for the city day (7 of its hours fall in the UTC day
    // before), its mean the day mean.
    const days = await json(p, `/api/v1/devices/${c.id}/readings?${range}&window=1d&fields=pm25`);
    assert.equal(days.points.length, 1, JSON.stringify(days.points));
    assert.equal(days.points[0].time, yesterday);
    assert.ok(Math.abs(days.points[0].pm25 - 55.7) < 1e-9, `${days.points[0].pm25}`);
  });

  test('a day needs 18 of its 24 hours: three readings in one hour give no daily index yet, and say so', async () => {
    const c = await p.provision('airQuality', { zone: 'tho-xuong' });
    const yesterday = localDayStart(Date.now()) - 86_400_000;
    const pm = (hour: number, minute: number) => ({ dateObserved: iso(yesterday + hour * HOUR + minute * MIN), pm25: 80 });
    // Three readings at 20:xx local: one hourly mean of 80 µg/m³ (alone it would read as VN 150).
    await send(p, c, 'airQuality', [pm(20, 5), pm(20, 25), pm(20, 45)]);
    const dayOf = async () => (await json(p, '/api/v1/aqi?zone=tho-xuong')).stations.find((s: any) => s.id === c.id).day;
    const zoneDay = async () => (await json(p, '/api/v1/aqi?zone=tho-xuong')).zones.find((z: any) => z.id === 'tho-xuong').day;
    const one = await dayOf();
    assert.deepEqual(
      { date: one.date, hours: one.hours, minHours: one.minHours, reason: one.reason, vn: one.vn, epa: one.epa },
      { date: cityDate(yesterday), hours: 1, minHours: DAY_MIN_HOURS, reason: 'incompleteDay', vn: null, epa: null },
    );
    assert.equal((await zoneDay()).reason, 'incompleteDay');
    assert.equal((await zoneDay()).hours, 1);
    // The live event says so too: no index, one hour.
    const ev = aqiEvents.filter((e) => e.scope === 'station' && e.id === c.id && e.period === 'day').at(-1);
    assert.deepEqual([ev?.vn, ev?.epa, ev?.hours], [null, null, 1]);
    // No daily point stored for it.
    assert.equal((await p.rows(`SELECT "vn_aqi" FROM "aqi" WHERE "id" = '${c.id}' AND "period" = 'day'`)).length, 0);

    // 17 hours (00:00-15:00 and 20:00 local): still none; the 18th: 80 µg/m³ → VN 150, EPA 151 + 49/69.9·24.5 = 168.2 → 168.
    await send(
      p,
      c,
      'airQuality',
      Array.from({ length: 16 }, (_, h) => pm(h, 10)),
      3,
    );
    const seventeen = await dayOf();
    assert.deepEqual([seventeen.hours, seventeen.reason, seventeen.vn], [DAY_MIN_HOURS - 1, 'incompleteDay', null]);
    await send(p, c, 'airQuality', [pm(16, 10)], 19);
    const full = await dayOf();
    assert.deepEqual([full.hours, full.reason, full.vn?.aqi, full.epa?.aqi], [DAY_MIN_HOURS, undefined, 150, 168]);
    assert.equal((await zoneDay()).vn.aqi, 150);
  });

  test('a late reading recomputes every hour whose NowCast holds it, its day, and the next day’s O3 8-hour means', async () => {
    const c = await p.provision('airQuality', { zone: 'xuong-giang' });
    const yesterday = localDayStart(Date.now()) - 86_400_000;
    // Hourly means from 17:00 local the day before yesterday to the end of yesterday (hours k = −7 .. 23 of
    // yesterday): PM2.5 varying, O3 100 µg/m³ in the evening and 50 in the day; one reading now (the newest hour,
    // today). The hour 21:00-22:00 of the evening (k = −3) arrives last, late: PM2.5 150, O3 800 µg/m³.
    const LATE = -3;
    const hourOf = (k: number) => yesterday + k * HOUR;
    const pm25 = (k: number) => (k === LATE ? 150 : 20 + (((k + 7) * 13) % 45));
    const o3 = (k: number) => (k === LATE ? 800 : k < 0 ? 100 : 50);
    const reading = (k: number) => ({ dateObserved: iso(hourOf(k) + 10 * MIN), pm25: pm25(k), o3: o3(k) });
    const ks = Array.from({ length: 31 }, (_, i) => i - 7);
    const h0 = Math.floor(Date.now() / HOUR) * HOUR;
    await send(p, c, 'airQuality', [...ks.filter((k) => k !== LATE).map(reading), { dateObserved: iso(h0), pm25: 20, o3: 50 }]);

    // Expected from the whole series (the late hour in place), by the pure index functions.
    const mean = (k: number, f: (k: number) => number) => (k >= -7 && k <= 23 ? f(k) : undefined);
    const hourly = (k: number) => {
      const series = {
        pm25: Array.from({ length: 12 }, (_, i) => mean(k - i, pm25)),
        o3: Array.from({ length: 12 }, (_, i) => mean(k - i, o3)),
      };
      return [vnHourlyAqi(series)?.aqi ?? null, epaHourlyAqi(series)?.aqi ?? null];
    };
    const daySeries = {
      pm25: Array.from({ length: 24 }, (_, k) => pm25(k)),
      o3: Array.from({ length: 24 }, (_, k) => o3(k)),
      o3PreviousEvening: Array.from({ length: 7 }, (_, i) => o3(i - 7)),
    };
    const expectedDay = [vnDailyAqi(daySeries)?.aqi, epaDailyAqi(daySeries)?.aqi];

    const stored = async (scope: string, id: string, period: string) => {
      const rows = await p.rows(
        `SELECT "vn_aqi", "epa_aqi" FROM "aqi" WHERE "scope" = '${scope}' AND "id" = '${id}' AND "period" = '${period}' AND time >= ${hourOf(-7)}ms AND time < ${hourOf(24)}ms`,
      );
      return new Map(rows.map((r) => [r.time as number, [r.vn_aqi ?? null, r.epa_aqi ?? null]]));
    };
    // Affected: the hourly index of the late hour and the 11 after it (21:00 the day before .. 08:00 yesterday),
    // and yesterday's daily index (its first 8-hour O3 means reach back to 17:00 the day before).
    const affected = Array.from({ length: 12 }, (_, i) => LATE + i);
    const expectedHours = new Map(affected.map((k) => [hourOf(k), hourly(k)]));
    const pick = (m: Map<number, unknown>) => new Map(affected.map((k) => [hourOf(k), m.get(hourOf(k))]));

    // Every hour but the first (NowCast needs 2 of its 3 newest hours) and the missing one has a stored index.
    await p.waitFor(async () => (await stored('station', c.id, 'hour')).has(hourOf(23)), 5000, 'the hourly indices');
    const before = await stored('station', c.id, 'hour');
    const dayBefore = (await stored('station', c.id, 'day')).get(yesterday);
    // The late hour changes most of the hours after it (its NowCast weight halves each hour; else this test
    // would prove nothing) and the day.
    const changed = affected.slice(1).filter((k) => !isDeepStrictEqual(before.get(hourOf(k)), expectedHours.get(hourOf(k))));
    assert.ok(changed.length >= 6, `changed hours: ${changed}`);
    assert.notDeepEqual(dayBefore, expectedDay);

    await send(p, c, 'airQuality', [reading(LATE)], 31);
    const settled = async () => {
      const hours = pick(await stored('station', c.id, 'hour'));
      const zoneHours = pick(await stored('zone', 'xuong-giang', 'hour'));
      const day = (await stored('station', c.id, 'day')).get(yesterday);
      const zoneDay = (await stored('zone', 'xuong-giang', 'day')).get(yesterday);
      return { hours, zoneHours, day, zoneDay };
    };
    const want = { hours: expectedHours, zoneHours: expectedHours, day: expectedDay, zoneDay: expectedDay };
    // Stored asynchronously: wait (bounded) until they match, then compare for the report.
    await p.waitFor(async () => isDeepStrictEqual(await settled(), want), 5000).catch(() => undefined);
    assert.deepEqual(await settled(), want);
    // Hours before the late one and after its NowCast window are as they were.
    const after = await stored('station', c.id, 'hour');
    for (const k of ks.filter((k) => k < LATE || k > LATE + 11)) assert.deepEqual(after.get(hourOf(k)), before.get(hourOf(k)), `hour ${k}`);
  });

  test('the scales: both, with breakpoints, names and colours', async () => {
    const s = await json(p, '/api/v1/aqi/scales');
    assert.deepEqual(s.vn.breakpoints.pm25, [0, 25, 50, 80, 150, 250, 350, 500]);
    assert.deepEqual(
      s.vn.categories.map((c: any) => c.name.vi),
      ['Tốt', 'Trung bình', 'Kém', 'Xấu', 'Rất xấu', 'Nguy hại'],
    );
    assert.equal(s.epa.categories[2].name.en, 'Unhealthy for Sensitive Groups');
    assert.deepEqual(s.epa.breakpoints.pm25[1], { cLo: 9.1, cHi: 35.4, iLo: 51, iHi: 100 });
    const bad = await p.api('/api/v1/aqi/history?scope=planet&id=x');
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { code: string }).code, 'CP_API_VALIDATION');
  });
});

describe('traffic indicators', () => {
  test('vehicles per hour over the sliding 60-minute window, speed, congestion, zone sums', async () => {
    const j1 = await p.provision('traffic', { zone: 'le-loi' });
    const j2 = await p.provision('traffic', { zone: 'le-loi' });
    const now = Date.now();
    await send(p, j1, 'traffic', [
      { dateObserved: iso(now - 75 * MIN), intensity: 100, averageVehicleSpeed: 20 }, // outside the window
      { dateObserved: iso(now - 50 * MIN), intensity: 30, averageVehicleSpeed: 30, occupancy: 0.1 },
      { dateObserved: iso(now - 30 * MIN), intensity: 40, averageVehicleSpeed: 40, occupancy: 0.1 },
      {
        dateObservedFrom: iso(now - 20 * MIN),
        dateObservedTo: iso(now - 10 * MIN),
        intensity: 50,
        averageVehicleSpeed: 50,
        occupancy: 0.1,
      },
    ]);
    await send(p, j2, 'traffic', [{ dateObserved: iso(now - 5 * MIN), intensity: 20, averageVehicleSpeed: 8, occupancy: 0.7 }]);
    // j1: window (now−70, now−10] → 30 + 40 + 50 = 120 vehicles/h; speed (30·30 + 40·40 + 50·50) / 120 = 41.67;
    // latest occupancy 0.1 and 50 km/h → level 0. j2: 20 vehicles, occupancy 0.7 → level 3.
    const dev = await json(p, '/api/v1/indicators?scope=device&family=traffic&zone=le-loi');
    const v1 = dev.find((x: any) => x.id === j1.id).values;
    assert.equal(v1.vehiclesPerHour, 120);
    assert.ok(Math.abs(v1.averageSpeed - 5000 / 120) < 1e-9);
    assert.equal(v1.congestionLevel, 0);
    assert.equal(dev.find((x: any) => x.id === j2.id).values.congestionLevel, 3);
    // Zone: 140 vehicles/h; speed weighted by vehicles (41.67·120 + 8·20) / 140 = 36.86; one congested junction.
    const [zone] = await json(p, '/api/v1/indicators?scope=zone&family=traffic&zone=le-loi');
    assert.equal(zone.values.vehiclesPerHour, 140);
    assert.ok(Math.abs(zone.values.averageSpeed - (5000 + 160) / 140) < 1e-9);
    assert.equal(zone.values.congestedJunctions, 1);
    const ev = indicatorEvents.filter((e) => e.scope === 'device' && e.id === j1.id).at(-1);
    assert.equal(ev?.values.vehiclesPerHour, 120);
    const rows = await p.rowsAtLeast(
      `SELECT "vehiclesPerHour" FROM "indicators" WHERE "scope" = 'zone' AND "id" = 'le-loi' AND "family" = 'traffic' AND "vehiclesPerHour" = 140`,
    );
    assert.equal(rows.length >= 1, true);
    const kinds = Object.fromEntries((await p.rows('SHOW FIELD KEYS FROM "indicators"')).map((r) => [r.fieldKey, r.fieldType]));
    assert.equal(kinds.vehiclesPerHour, 'integer');

    // Resent readings (an older one, out of order, and the newest one twice) are not counted again: window
    // (now−68, now−8] → 30 + 40 + 50 + 10 = 130 (170 if the resent 40 counted twice, 140 the 10).
    await send(
      p,
      j1,
      'traffic',
      [
        { dateObserved: iso(now - 30 * MIN), intensity: 40, averageVehicleSpeed: 40, occupancy: 0.1 },
        { dateObserved: iso(now - 8 * MIN), intensity: 10, averageVehicleSpeed: 40, occupancy: 0.1 },
        { dateObserved: iso(now - 8 * MIN), intensity: 10, averageVehicleSpeed: 40, occupancy: 0.1 },
      ],
      2, // 4 rows before, 5 after: resent readings overwrite their points (send waits for 2 + 3)
    );
    const again = await json(p, '/api/v1/indicators?scope=device&family=traffic&zone=le-loi');
    assert.equal(again.find((x: any) => x.id === j1.id).values.vehiclesPerHour, 130);
  });
});

/** n distinct observation times today (city-local), ascending, all in the past. */
function todayTimes(n: number): number[] {
  const now = Date.now() - 1000;
  const from = Math.max(localDayStart(now) + 1000, now - 30 * MIN);
  const step = Math.floor((now - from) / n);
  return Array.from({ length: n }, (_, i) => from + step * (i + 1));
}

describe('street-light indicators', () => {
  test('energy today from the cumulative counter, across a counter reset, ignoring an older reading', async () => {
    const lamp = await p.provision('streetLight', { zone: 'dinh-ke' });
    const t = todayTimes(7);
    await send(p, lamp, 'streetLight', [
      { dateObserved: t[0], energyConsumed: 100.0 }, // the first value is the baseline
      { dateObserved: t[1], energyConsumed: 100.5 }, // +0.5
      { dateObserved: t[3], energyConsumed: 101.2 }, // +0.7
      { dateObserved: t[2], energyConsumed: 50 }, // older than the last one: ignored
      { dateObserved: t[4], energyConsumed: 0.3 }, // the counter restarted: +0.3
      { dateObserved: t[5], energyConsumed: 0.8 }, // +0.5
      { dateObserved: t[6], energyConsumed: 1.0 }, // +0.2
    ]);
    // 0.5 + 0.7 + 0.3 + 0.5 + 0.2 = 2.2 kWh
    const [zone] = await json(p, '/api/v1/indicators?scope=zone&family=streetLight&zone=dinh-ke');
    assert.ok(Math.abs(zone.values.energyTodayKWh - 2.2) < 1e-9, `${zone.values.energyTodayKWh}`);
    assert.ok(Math.abs(zone.values.energyMonthKWh - 2.2) < 1e-9);
    const [dev] = await json(p, '/api/v1/indicators?scope=device&family=streetLight&zone=dinh-ke');
    assert.ok(Math.abs(dev.values.energyTodayKWh - 2.2) < 1e-9);
  });

  test('a lamp on at local noon is on in daylight, at night it is not; a lit lamp drawing nothing is a fault', async () => {
    const noonLamp = await p.provision('streetLight', { zone: 'da-mai' });
    const nightLamp = await p.provision('streetLight', { zone: 'da-mai' });
    const deadLamp = await p.provision('streetLight', { zone: 'da-mai' });
    const now = Date.now();
    let noon = localDayStart(now) + 12 * HOUR;
    if (noon > now) noon -= 86_400_000;
    let night = localDayStart(now) + 23 * HOUR;
    if (night > now) night -= 86_400_000;
    const lit = { powerState: 'on', illuminanceLevel: 1, powerConsumption: 60, status: 'ok' };
    await send(p, noonLamp, 'streetLight', [{ dateObserved: noon, ...lit }]);
    await send(p, nightLamp, 'streetLight', [{ dateObserved: night, ...lit, illuminanceLevel: 0.5 }]);
    await send(p, deadLamp, 'streetLight', [{ dateObserved: night, ...lit, powerConsumption: 0 }]);
    const list = await json(p, '/api/v1/indicators?scope=device&family=streetLight&zone=da-mai');
    const of = (id: string) => list.find((x: any) => x.id === id).values;
    assert.deepEqual(of(noonLamp.id), {
      on: true,
      dimmed: false,
      fault: false,
      onInDaylight: true,
      powerW: 60,
      burningHoursToday: 0,
      energyTodayKWh: 0,
      energyMonthKWh: 0,
    });
    assert.equal(of(nightLamp.id).onInDaylight, false);
    assert.equal(of(nightLamp.id).on, true);
    assert.equal(of(nightLamp.id).dimmed, true);
    assert.equal(of(deadLamp.id).fault, true);
    assert.equal(of(nightLamp.id).fault, false);
    const [zone] = await json(p, '/api/v1/indicators?scope=zone&family=streetLight&zone=da-mai');
    assert.equal(zone.values.lampsOn, 3);
    assert.equal(zone.values.lampsOnInDaylight, 1);
    assert.equal(zone.values.lampsDimmed, 1);
    assert.equal(zone.values.lampsFaulty, 1);
    assert.equal(zone.values.powerNowW, 120);
    const ev = indicatorEvents.filter((e) => e.scope === 'device' && e.id === noonLamp.id).at(-1);
    assert.equal(ev?.values.onInDaylight, true);
  });
});

describe('restart', () => {
  test('a second platform on the same data keeps the hour’s NowCast and the day’s energy', async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-analytics-'));
    onCleanup(t, () => rm(dataDir, { recursive: true, force: true }));
    // Stored once a minute: the last state reaches InfluxDB when the platform stops.
    const overrides: ConfigInput = {
      dataDir,
      influx: { database: 'trestart' },
      analytics: { ...FAST, storeIntervalMs: 60000 },
    };
    const p1 = await startTestPlatform(t, overrides, { influx });
    const station = await p1.provision('airQuality', { zone: 'hoang-van-thu' });
    const lamp = await p1.provision('streetLight', { zone: 'hoang-van-thu' });
    const h0 = Math.floor(Date.now() / HOUR) * HOUR;
    await send(p1, station, 'airQuality', [
      { dateObserved: iso(h0 - 2 * HOUR + MIN), pm25: 20 },
      { dateObserved: iso(h0 - HOUR + MIN), pm25: 30 },
      { dateObserved: iso(h0), pm25: 25 },
    ]);
    const times = todayTimes(4);
    await send(p1, lamp, 'streetLight', [
      { dateObserved: times[0], energyConsumed: 10.0 },
      { dateObserved: times[1], energyConsumed: 10.4 },
      { dateObserved: times[2], energyConsumed: 10.9 },
    ]);
    // NowCast c = 25, 30, 20: w = 20/30; (25 + 20 + 8.889) / 2.111 = 25.53 → 50 + 2·0.53 = 51.05 → 51.
    const before1 = (await json(p1, '/api/v1/aqi?zone=hoang-van-thu')).stations[0];
    assert.equal(before1.hour.vn.aqi, 51);
    const zoneBefore = (await json(p1, '/api/v1/indicators?scope=zone&family=streetLight&zone=hoang-van-thu'))[0];
    assert.ok(Math.abs(zoneBefore.values.energyTodayKWh - 0.9) < 1e-9);
    await p1.platform.stop();

    const p2 = await startTestPlatform(t, overrides, { influx });
    const after1 = (await json(p2, '/api/v1/aqi?zone=hoang-van-thu')).stations[0];
    assert.equal(after1.id, station.id);
    assert.equal(after1.hour.time, iso(h0));
    assert.equal(after1.hour.vn.aqi, 51);
    const zoneAfter = (await json(p2, '/api/v1/indicators?scope=zone&family=streetLight&zone=hoang-van-thu'))[0];
    assert.ok(Math.abs(zoneAfter.values.energyTodayKWh - 0.9) < 1e-9, `${zoneAfter.values.energyTodayKWh}`);

    // New readings go on from the restored state: hour h0 mean (25 + 35) / 2 = 30; c = 30, 30, 20 →
    // (30 + 20 + 8.889) / 2.111 = 27.89 → 50 + 2·2.89 = 55.8 → 56. The counter 11.3 adds 0.4 → 1.3 kWh.
    await send(p2, station, 'airQuality', [{ dateObserved: iso(h0 + 1000), pm25: 35 }], 3);
    await send(p2, lamp, 'streetLight', [{ dateObserved: times[3], energyConsumed: 11.3 }], 3);
    assert.equal((await json(p2, '/api/v1/aqi?zone=hoang-van-thu')).stations[0].hour.vn.aqi, 56);
    const zoneLater = (await json(p2, '/api/v1/indicators?scope=zone&family=streetLight&zone=hoang-van-thu'))[0];
    assert.ok(Math.abs(zoneLater.values.energyTodayKWh - 1.3) < 1e-9, `${zoneLater.values.energyTodayKWh}`);
  });
});
