/**
 * Operator reports on a real platform (broker, ingest, InfluxDB, API) fed a city day of KNOWN readings over MQTT
 * (arrays with their observation times, as a device flushing its backlog sends them): the last day of the previous
 * city month, so that its end is a month boundary too.
 * - energy per lamp and ward from the lamps' counters (one counter restarting at noon), a counter reading exactly
 *   at the city's midnight closing the day (and month) it ends; burning and fault hours; days per VN_AQI and US
 *   EPA category of a station with a known daily mean (the decision's worked example, 55.7 µg/m³ of PM2.5) and of
 *   a station with too few hours; congestion hours of a junction. Expected figures are worked out here from the
 *   lamps' schedules and the rules in ../shared/domain.md and docs/api.md, not taken from the implementation;
 * - CSV equals JSON; bad day, month and ward get 400 CP_API_VALIDATION with a reason;
 * - a month of a city of ~300 devices (written straight into InfluxDB on a second platform) answers in seconds:
 *   the time is printed;
 * - the Reports page in headless chromium shows the same figures, its CSV download is the API's, and its print
 *   view has no navigation. Screenshot: reports.png (docs/screenshots with CITYPULSE_SCREENSHOTS_TO_DOCS=1).
 *
 * Run: node --import tsx --test test/reports.test.ts
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { toLine, type EnrichedReading } from '../ingest/index.ts';
import { launchBrowser, login, openPage, passwordOf, screenshot } from './helpers/browser.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const scope = fileScope();
const H = 3_600_000;
const MIN = 60_000;
/** Asia/Ho_Chi_Minh: UTC+7, no daylight saving (domain.md). */
const TZ = 7 * H;
const dayKey = (t: number) => new Date(t + TZ).toISOString().slice(0, 10);
const localMinute = (t: number) => Math.round(((((t + TZ) % 86_400_000) + 86_400_000) % 86_400_000) / MIN);

// The city month now, the first day of it (F) and the last day of the month before (L).
const nowLocal = new Date(Date.now() + TZ);
const F0 = Date.UTC(nowLocal.getUTCFullYear(), nowLocal.getUTCMonth(), 1) - TZ;
const L0 = F0 - 86_400_000;
const L = dayKey(L0);
const F = dayKey(F0);
const M = L.slice(0, 7);
const CUR = F.slice(0, 7);
const daysInM = Number(L.slice(8, 10));

let p: TestPlatform;
let browser: Browser;
const ids: Record<string, string> = {};

// ---- Known data ----

interface LampPlan {
  watts: number;
  /** Minute of the day from which the lamp is on in the evening (it is on from midnight until 06:00 too). */
  onFrom: number;
  counterStart: number;
  /** The counter restarts from 0 at this minute of day L (a replaced meter). */
  resetAt?: number;
  /** On but drawing nothing in this hour of day L (a fault by the 1 W rule). */
  deadHour?: number;
  /** status defectiveLamp in these hours of day L. */
  defectiveHours?: number[];
}

const LAMPS: Record<string, { zone: string; plan: LampPlan }> = {
  lampA: { zone: 'tran-phu', plan: { watts: 100, onFrom: 18 * 60, counterStart: 1000 } },
  lampB: { zone: 'tran-phu', plan: { watts: 50, onFrom: 18 * 60 + 30, counterStart: 500, resetAt: 12 * 60 } },
  lampC: { zone: 'le-loi', plan: { watts: 100, onFrom: 18 * 60, counterStart: 0, deadHour: 2, defectiveHours: [20, 21] } },
};

/** Readings every 10 minutes from 23:50 the day before L to 00:00 of F (the midnight reading). */
function lampReadings(plan: LampPlan) {
  const out: { t: number; on: boolean; w: number; counter: number; status: string }[] = [];
  let counter = plan.counterStart;
  for (let t = L0 - 10 * MIN; t <= F0; t += 10 * MIN) {
    const prev = out[out.length - 1];
    if (prev?.on) counter += (prev.w * 10) / 60 / 1000;
    const inL = t >= L0 && t < F0;
    const m = localMinute(t);
    if (inL && plan.resetAt !== undefined && m === plan.resetAt) counter = 0;
    const on = m < 6 * 60 || m >= plan.onFrom;
    const hour = Math.floor(m / 60);
    const w = on && !(inL && hour === plan.deadHour) ? plan.watts : 0;
    const status = inL && plan.defectiveHours?.includes(hour) ? 'defectiveLamp' : 'ok';
    out.push({ t, on, w, counter, status });
  }
  return out;
}

/** Physics: Wh drawn between readings a and b (the power of a reading holds until the next). */
function energyKWh(plan: LampPlan, from: number, to: number): number {
  const rs = lampReadings(plan);
  let wh = 0;
  for (let i = 1; i < rs.length; i++) {
    const a = rs[i - 1] as (typeof rs)[number];
    const b = rs[i] as (typeof rs)[number];
    if (b.t > from && b.t <= to && a.t >= from - 10 * MIN) wh += a.on ? (a.w * (b.t - a.t)) / H : 0;
  }
  return wh / 1000;
}

/** VN_AQI of a 24-hour PM2.5 mean, from the breakpoint table of Decision 1459 (domain.md), rounded half up. */
function vnPm25(c: number): number {
  const bp = [0, 25, 50, 80, 150, 250, 350, 500];
  const ii = [0, 50, 100, 150, 200, 300, 400, 500];
  for (let i = 0; i + 1 < bp.length; i++) {
    if (c <= (bp[i + 1] as number)) {
      const x =
        (((ii[i + 1] as number) - (ii[i] as number)) / ((bp[i + 1] as number) - (bp[i] as number))) * (c - (bp[i] as number)) +
        (ii[i] as number);
      return Math.floor(x + 0.5 + 1e-9);
    }
  }
  return 500;
}
/** US EPA AQI of a 24-hour PM2.5 mean (2024 rows, truncated to 0.1 µg/m³). */
function epaPm25(c: number): number {
  const t = Math.floor(c * 10 + 1e-9) / 10;
  const rows = [
    [0, 9, 0, 50],
    [9.1, 35.4, 51, 100],
    [35.5, 55.4, 101, 150],
    [55.5, 125.4, 151, 200],
    [125.5, 225.4, 201, 300],
    [225.5, 325.4, 301, 500],
  ] as const;
  for (const [cl, ch, il, ih] of rows) if (t <= ch) return Math.round(((ih - il) / (ch - cl)) * (t - cl) + il);
  return 501;
}
const vnLevel = (aqi: number) => [50, 100, 150, 200, 300, 500].findIndex((max) => aqi <= max) + 1;
const VN_KEYS = ['good', 'moderate', 'poor', 'bad', 'veryBad', 'hazardous'];
const EPA_KEYS = ['good', 'moderate', 'unhealthyForSensitiveGroups', 'unhealthy', 'veryUnhealthy', 'hazardous'];

/** The junction: a reading every 5 minutes through day L, plus one at 00:00 of F. */
function junctionReadings() {
  const out: { t: number; intensity: number; averageVehicleSpeed: number; occupancy: number; congested: boolean }[] = [];
  for (let t = L0; t <= F0; t += 5 * MIN) {
    const m = localMinute(t);
    const hour = Math.floor(m / 60);
    const min = m % 60;
    let r = { t, intensity: 20, averageVehicleSpeed: 40, occupancy: 0.1, congested: false };
    if (t === F0) r = { ...r, occupancy: 0.9 };
    else if (hour === 7 || hour === 8) r = { ...r, intensity: 30, averageVehicleSpeed: 15, occupancy: 0.7 };
    else if (hour === 17)
      r = { ...r, averageVehicleSpeed: 25, occupancy: 0.3, congested: min < 30 }; // 6 of 12
    else if (hour === 12 && min < 25) r = { ...r, intensity: 10, averageVehicleSpeed: 5 }; // 5 of 12
    out.push(r);
  }
  return out;
}
/** Congestion level 3 by analytics' rule with the default thresholds (docs/city-intelligence.md). */
const jammed = (r: ReturnType<typeof junctionReadings>[number]) =>
  r.congested || r.occupancy >= 0.6 || (r.intensity > 0 && r.averageVehicleSpeed <= 10);

/** Hours of day L in which at least half of the junction's readings were congested. */
function expectedCongestedHours(): number[] {
  const hours: number[] = [];
  const rs = junctionReadings().filter((r) => r.t < F0);
  for (let h = 0; h < 24; h++) {
    const inHour = rs.filter((r) => r.t >= L0 + h * H && r.t < L0 + (h + 1) * H);
    if (inHour.filter(jammed).length * 2 >= inHour.length) hours.push(h);
  }
  return hours;
}

async function device(family: string, zone: string, name: string): Promise<{ id: string; token: string }> {
  const res = await p.api('/api/v1/devices', {
    method: 'POST',
    admin: true,
    body: JSON.stringify({ family, zone, name, location: p.platform.parts.profile.zones.find((z) => z.id === zone)?.centre }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const b = (await res.json()) as { device: { id: string }; token: string };
  return { id: b.device.id, token: b.token };
}

async function send(family: string, zone: string, name: string, readings: object[]): Promise<string> {
  const { id, token } = await device(family, zone, name);
  const c = await p.connect(id, token);
  for (let i = 0; i < readings.length; i += 200) {
    await c.publishAsync(`devices/${id}/telemetry`, JSON.stringify(readings.slice(i, i + 200)), { qos: 1 });
  }
  await c.endAsync();
  return id;
}

const iso = (t: number) => new Date(t).toISOString();
let sent = 0;

before(async () => {
  [p, browser] = await Promise.all([startTestPlatform(scope), launchBrowser(scope)]);
  for (const [key, { zone, plan }] of Object.entries(LAMPS)) {
    const rs = lampReadings(plan).map((r) => ({
      dateObserved: iso(r.t),
      powerState: r.on ? 'on' : 'off',
      powerConsumption: r.w,
      energyConsumed: Math.round(r.counter * 1e6) / 1e6,
      status: r.status,
    }));
    sent += rs.length;
    ids[key] = await send('streetLight', zone, `Đèn ${key}`, rs);
  }
  // Station 1: two readings an hour of 55.7 µg/m³ through day L and one at its midnight start; a high reading at
  // 00:00 of F belongs to F. Station 2: ten hours only.
  const s1: object[] = [{ dateObserved: iso(L0), pm25: 55.7 }];
  for (let h = 0; h < 24; h++)
    s1.push({ dateObserved: iso(L0 + h * H + 15 * MIN), pm25: 55.7 }, { dateObserved: iso(L0 + h * H + 45 * MIN), pm25: 55.7 });
  s1.push({ dateObserved: iso(F0), pm25: 400 });
  ids.station1 = await send('airQuality', 'tran-phu', 'Trạm Trần Phú', s1);
  ids.station2 = await send(
    'airQuality',
    'le-loi',
    'Trạm Lê Lợi',
    Array.from({ length: 10 }, (_, h) => ({ dateObserved: iso(L0 + h * H + 30 * MIN), pm25: 20 })),
  );
  const js = junctionReadings().map(({ t, ...r }) => ({ dateObserved: iso(t), ...r }));
  ids.junction = await send('traffic', 'tran-phu', 'Nút giao Trần Phú', js);
  sent += s1.length + 10 + js.length;
  // Everything acknowledged is on its way to InfluxDB: wait until all of it is stored.
  const stored = async () => {
    let n = 0;
    for (const [m, f] of [
      ['streetLight', 'powerState'],
      ['airQuality', 'pm25'],
      ['traffic', 'intensity'],
    ]) {
      const r = await p.rows(`SELECT count("${f}") AS n FROM "${m}"`);
      n += (r[0]?.n as number) ?? 0;
    }
    return n >= sent;
  };
  await p.waitFor(stored, 60_000, 'the known readings in InfluxDB');
});

async function json(path: string): Promise<any> {
  const res = await p.api(path);
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

const near = (actual: number, expected: number, tol: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual}, expected ${expected} ± ${tol}`);

describe('a day of known data', () => {
  test('energy per lamp and ward from the counters; a midnight reading closes the day it ends; a restarted counter', async () => {
    const r = await json(`/api/v1/reports?day=${L}`);
    assert.equal(r.period.period, 'day');
    assert.equal(r.period.from, iso(L0), 'the day starts at the city midnight');
    const e = r.energy;
    const want: Record<string, number> = {};
    for (const [k, { plan }] of Object.entries(LAMPS)) want[k] = energyKWh(plan, L0, F0);
    // Worked by hand: A 72 lit intervals × 100 W × 10 min = 1.2 kWh; B 69 × 50 W = 0.575 kWh; C 66 × 100 W = 1.1 kWh.
    near(want.lampA as number, 1.2, 1e-9, 'physics of lamp A');
    near(want.lampB as number, 0.575, 1e-9, 'physics of lamp B');
    near(want.lampC as number, 1.1, 1e-9, 'physics of lamp C');
    for (const k of Object.keys(LAMPS)) {
      const lamp = e.lamps.find((l: { id: string }) => l.id === ids[k]);
      assert.ok(lamp, `${k} in the energy report`);
      near(lamp.energyKWh, want[k] as number, 0.0015, `energy of ${k}`);
    }
    const ward = (z: string) => e.wards.find((w: { zone: string }) => w.zone === z);
    near(ward('tran-phu').energyKWh, 1.775, 0.002, 'energy of Trần Phú');
    assert.equal(ward('tran-phu').lamps, 2);
    assert.equal(ward('tran-phu').name.vi, 'Phường Trần Phú');
    near(ward('le-loi').energyKWh, 1.1, 0.002, 'energy of Lê Lợi');
    near(e.total.energyKWh, 2.875, 0.003, 'energy of the city');
    assert.equal(e.series.length, 24, 'one bucket per hour of the day');
    near(
      e.series.reduce((a: number, s: { energyKWh: number }) => a + s.energyKWh, 0),
      2.875,
      0.01,
      'hourly energy adds up to the day',
    );
    // The hour ending at midnight (23:00-24:00) holds the midnight reading's energy: A 100 W + B 50 W + C 100 W for
    // the last 10 minutes, as every other full evening hour: 6 × 250 W × 10 min = 0.25 kWh.
    near(e.series[23].energyKWh, 0.25, 0.002, 'the last hour keeps the midnight reading');

    // The next day starts from the midnight reading: nothing of day L leaks into it.
    const next = await json(`/api/v1/reports/energy?day=${F}`);
    assert.equal(next.report, 'energy');
    assert.equal(next.energy.total.energyKWh, 0, 'day F has no energy of day L');
  });

  test('burning and fault hours per lamp and ward', async () => {
    const g = (await json(`/api/v1/reports?day=${L}`)).lighting;
    const lamp = (k: string) => g.lamps.find((l: { id: string }) => l.id === ids[k]);
    // Share of each hour's readings with the lamp on: A and C 00-06 and 18-24 (12 h); B switches on at 18:30
    // (hour 18 half) = 11.5 h. C: on at 0 W in hour 02 and defectiveLamp in hours 20 and 21 = 3 fault hours.
    near(lamp('lampA').burningHours, 12, 0.001, 'burning hours of A');
    near(lamp('lampB').burningHours, 11.5, 0.001, 'burning hours of B');
    near(lamp('lampC').burningHours, 12, 0.001, 'burning hours of C');
    assert.equal(lamp('lampA').faulty, false);
    assert.equal(lamp('lampA').faultHours, 0);
    assert.equal(lamp('lampC').faulty, true);
    near(lamp('lampC').faultHours, 3, 0.001, 'fault hours of C');
    const ward = (z: string) => g.wards.find((w: { zone: string }) => w.zone === z);
    near(ward('tran-phu').burningHours, 23.5, 0.001, 'burning hours of Trần Phú');
    assert.equal(ward('tran-phu').faultyLamps, 0);
    assert.equal(ward('le-loi').faultyLamps, 1);
    near(ward('le-loi').faultHours, 3, 0.001, 'fault hours of Lê Lợi');
    assert.deepEqual(g.total, { lamps: 3, burningHours: 35.5, faultyLamps: 1, faultHours: 3 });
    near(g.series[18].burningHours, 2.5, 0.001, 'hour 18: A and C on, B half');
  });

  test('days per VN_AQI and US EPA category; a day with too few hours is "no data"; a midnight reading starts its day', async () => {
    const a = (await json(`/api/v1/reports?day=${L}`)).aqi;
    const vn = vnPm25(55.7);
    const epa = epaPm25(55.7);
    assert.equal(vn, 110, 'the decision’s worked example');
    assert.equal(epa, 151);
    const vnKey = VN_KEYS[vnLevel(vn) - 1] as string;
    const epaKey = EPA_KEYS[vnLevel(epa) - 1] as string;
    assert.equal(a.days, 1);
    assert.equal(a.minHours, 18);
    const s1 = a.stations.find((s: { id: string }) => s.id === ids.station1);
    assert.equal(s1.daily[0].date, L);
    assert.equal(s1.daily[0].hours, 24);
    assert.equal(s1.daily[0].vn.aqi, vn, 'the 00:00 reading of the next day (400 µg/m³) is not in day L');
    assert.equal(s1.daily[0].epa.aqi, epa);
    assert.equal(s1.vn[vnKey], 1);
    assert.equal(s1.epa[epaKey], 1);
    assert.equal(s1.vn.noData, 0);
    const s2 = a.stations.find((s: { id: string }) => s.id === ids.station2);
    assert.equal(s2.daily[0].hours, 10);
    assert.equal(s2.daily[0].vn, null);
    assert.equal(s2.vn.noData, 1, '10 of 24 hours: no daily index');
    assert.equal(s2.epa.noData, 1);
    const ward = (z: string) => a.wards.find((w: { zone: string }) => w.zone === z);
    assert.equal(ward('tran-phu').vn[vnKey], 1);
    assert.equal(ward('le-loi').vn.noData, 1);
    assert.equal(a.total.vn[vnKey], 1);
    assert.equal(a.total.vn.noData, 1);
  });

  test('congestion hours per junction and ward', async () => {
    const c = (await json(`/api/v1/reports?day=${L}`)).congestion;
    const hours = expectedCongestedHours();
    assert.deepEqual(hours, [7, 8, 17], 'the plan: 07 and 08 occupied, 17 half flagged, 12 under half');
    const j = c.junctions.find((x: { id: string }) => x.id === ids.junction);
    assert.equal(j.congestedHours, hours.length);
    assert.equal(c.wards.find((w: { zone: string }) => w.zone === 'tran-phu').congestedHours, hours.length);
    assert.deepEqual(
      c.series.flatMap((s: { congestedHours: number }, i: number) => (s.congestedHours ? [i] : [])),
      hours,
    );
    assert.equal(c.total.congestedHours, hours.length);
  });

  test('a month: its last day counts, the next month’s first day does not; the midnight reading closes the month', async () => {
    const r = await json(`/api/v1/reports?month=${M}`);
    assert.equal(r.period.period, 'month');
    assert.equal(r.energy.series.length, daysInM);
    // A month of lamp A: from its first reading in the month (23:50 the day before L) to the midnight reading.
    const a = r.energy.lamps.find((l: { id: string }) => l.id === ids.lampA);
    near(a.energyKWh, energyKWh(LAMPS.lampA?.plan as LampPlan, L0 - 10 * MIN, F0), 0.0015, 'lamp A in the month');
    assert.equal(r.aqi.days, daysInM);
    const s1 = r.aqi.stations.find((s: { id: string }) => s.id === ids.station1);
    assert.equal(s1.vn.poor, 1);
    assert.equal(s1.vn.noData, daysInM - 1);
    assert.equal(r.aqi.total.vn.noData, 2 * daysInM - 1);
    assert.equal(r.congestion.total.congestedHours, 3);
    const cur = await json(`/api/v1/reports?month=${CUR}`);
    assert.equal(cur.energy.total.energyKWh, 0, 'the midnight reading belongs to the month it ends');
    assert.equal(cur.congestion.total.congestedHours, 1, 'the 00:00 reading of F (occupancy 0.9) is the whole hour');
    const curS1 = cur.aqi.stations.find((s: { id: string }) => s.id === ids.station1);
    assert.equal(curS1.vn.noData, cur.aqi.days, 'one hour on the first day: no data');
  });

  test('a ward filter keeps that ward only', async () => {
    const r = await json(`/api/v1/reports?day=${L}&ward=le-loi`);
    assert.equal(r.ward, 'le-loi');
    assert.deepEqual(
      r.energy.wards.map((w: { zone: string }) => w.zone),
      ['le-loi'],
    );
    near(r.energy.total.energyKWh, 1.1, 0.002, 'energy of Lê Lợi alone');
    assert.equal(r.congestion.total.junctions, 0);
  });
});

/** CSV (RFC 4180 as the API writes it: quotes only around fields that need them) into rows of strings. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n') {
      row.push(field.replace(/\r$/, ''));
      rows.push(row);
      row = [];
      field = '';
    } else field += ch;
  }
  return rows;
}

describe('CSV', () => {
  test('each report’s CSV holds the JSON’s figures (format=csv and Accept: text/csv)', async () => {
    const r = await json(`/api/v1/reports?day=${L}`);
    for (const kind of ['energy', 'lighting', 'aqi', 'congestion']) {
      const res = await p.api(`/api/v1/reports/${kind}?day=${L}&format=csv`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/csv/);
      assert.match(res.headers.get('content-disposition') ?? '', new RegExp(`citypulse-${kind}-${L}\\.csv`));
      const text = await res.text();
      const viaAccept = await p.api(`/api/v1/reports/${kind}?day=${L}`, { headers: { accept: 'text/csv' } });
      assert.equal(await viaAccept.text(), text, 'Accept: text/csv gives the same CSV');
      const [header, ...rows] = parseCsv(text);
      const col = (name: string) => (header as string[]).indexOf(name);
      const find = (level: string, id: string, scale?: string) =>
        rows.find((x) => x[0] === level && x[1] === id && (scale === undefined || x[col('scale')] === scale));
      if (kind === 'energy') {
        for (const l of r.energy.lamps) assert.equal(Number(find('lamp', l.id)?.[col('energyKWh')]), l.energyKWh);
        for (const w of r.energy.wards) assert.equal(Number(find('ward', w.zone)?.[col('energyKWh')]), w.energyKWh);
        assert.equal(Number(find('total', '')?.[col('energyKWh')]), r.energy.total.energyKWh);
        assert.equal(rows.length, r.energy.lamps.length + r.energy.wards.length + 1);
      } else if (kind === 'lighting') {
        for (const l of r.lighting.lamps) {
          const row = find('lamp', l.id);
          assert.equal(Number(row?.[col('burningHours')]), l.burningHours);
          assert.equal(Number(row?.[col('faultHours')]), l.faultHours);
          assert.equal(row?.[col('name')], l.name);
        }
        const t = find('total', '');
        assert.equal(Number(t?.[col('faultyLamps')]), r.lighting.total.faultyLamps);
        assert.equal(Number(t?.[col('burningHours')]), r.lighting.total.burningHours);
      } else if (kind === 'aqi') {
        for (const s of r.aqi.stations) {
          for (const [scale, key, keys] of [
            ['vn_aqi', 'vn', r.aqi.categories.vn],
            ['us_epa_aqi', 'epa', r.aqi.categories.epa],
          ] as const) {
            const row = find('station', s.id, scale) as string[];
            assert.deepEqual(
              [...keys, 'noData'].map((_k: string, i: number) => Number(row[col('category1') + i])),
              [...keys, 'noData'].map((k: string) => s[key][k]),
            );
          }
        }
        assert.equal(rows.length, 2 * (r.aqi.stations.length + r.aqi.wards.length + 1));
      } else {
        for (const j of r.congestion.junctions) assert.equal(Number(find('junction', j.id)?.[col('congestedHours')]), j.congestedHours);
        assert.equal(Number(find('total', '')?.[col('congestedHours')]), r.congestion.total.congestedHours);
      }
    }
  });
});

describe('validation', () => {
  test('a bad day, month or ward is 400 CP_API_VALIDATION with a reason; never 500', async () => {
    const future = dayKey(Date.now() + 3 * 86_400_000);
    for (const q of [
      'day=2026-02-30',
      'day=2026-13-01',
      'day=03/12/2026',
      'day=yesterday',
      'month=2026-13',
      'month=2026-00',
      'month=2026',
      `day=${L}&month=${M}`,
      '',
      `day=${future}`,
      'day=1999-12-31',
      `day=${L}&ward=nowhere`,
      `day=${L}&ward=${'x'.repeat(65)}`,
      `day=${L}&format=xml`,
      `day=${L}&unknown=1`,
    ]) {
      for (const path of ['/api/v1/reports', '/api/v1/reports/energy']) {
        if (path === '/api/v1/reports' && q.includes('format')) continue;
        const res = await p.api(`${path}?${q}`);
        assert.equal(res.status, 400, `${path}?${q}: ${res.status}`);
        const b = (await res.json()) as { code: string; errors?: string[] };
        assert.equal(b.code, 'CP_API_VALIDATION', q);
        assert.ok(b.errors?.length && b.errors.every((e) => e.length > 5), `${q} has a reason: ${JSON.stringify(b)}`);
      }
    }
    assert.equal((await p.api(`/api/v1/reports/nonsense?day=${L}`)).status, 400);
    assert.equal((await p.api(`/api/v1/reports?day=${L}`, { token: null })).status, 401, 'reports need a viewer');
  });

  test('the OpenAPI document describes the reports, JSON and CSV', async () => {
    const doc = await json('/api/v1/openapi.json');
    const op = doc.paths['/api/v1/reports/{report}'].get;
    assert.ok(op.responses['200'].content['text/csv']);
    assert.deepEqual(
      op.parameters.map((x: { name: string }) => x.name),
      ['report', 'day', 'month', 'ward', 'format'],
    );
    assert.equal(op['x-citypulse-role'], 'viewer');
    assert.ok(doc.paths['/api/v1/reports'].get.responses['200'].content['application/json'].schema.properties.aqi);
  });
});

describe('a month of a city of ~300 devices', () => {
  test('answers in seconds (the time is printed)', async (t) => {
    // A second platform on the same InfluxDB, its month written straight into InfluxDB as ingest's writer writes
    // it: 250 lamps every 15 min, 40 junctions every 5 min, 8 stations every 10 min (the profile's fleet).
    const q = await startTestPlatform(t, {}, { influx: p.influx });
    const target = q.platform.parts.influxTarget;
    const zones = ['tran-phu', 'le-loi', 'ngo-quyen', 'dinh-ke', 'da-mai', 'tho-xuong', 'xuong-giang', 'hoang-van-thu'];
    const from = F0 - daysInM * 86_400_000;
    const lines: string[] = [];
    const started = Date.now();
    let points = 0;
    const inFlight = new Set<Promise<void>>();
    const flush = async (force = false) => {
      if (!force && lines.length < 10_000) return;
      const body = lines.splice(0).join('\n');
      if (body) {
        const w: Promise<void> = fetch(`${p.influx.url}/write?db=${target.database}&rp=${target.retentionPolicy}&precision=ms`, {
          method: 'POST',
          body,
        })
          .then(async (res) => assert.equal(res.status, 204, await res.text()))
          .finally(() => inFlight.delete(w));
        inFlight.add(w);
      }
      // Two requests in flight at most (InfluxDB's sizing guidance: batches of 5,000-10,000 points).
      while (inFlight.size >= (force ? 1 : 2)) await Promise.race(inFlight);
    };
    const add = async (r: EnrichedReading) => {
      lines.push(toLine(r));
      points++;
      await flush();
    };
    for (let i = 0; i < 250; i++) {
      const zone = zones[i % zones.length] as string;
      let counter = 0;
      for (let t0 = from; t0 < F0; t0 += 15 * MIN) {
        const m = localMinute(t0);
        const on = m < 360 || m >= 1080;
        if (on) counter += 0.025;
        await add({
          device: `sl-perf${i}`,
          zone,
          family: 'streetLight',
          time: t0,
          fields: { powerState: on ? 'on' : 'off', powerConsumption: on ? 100 : 0, energyConsumed: counter, status: 'ok' },
        });
      }
    }
    for (let i = 0; i < 40; i++) {
      for (let t0 = from; t0 < F0; t0 += 5 * MIN) {
        const h = Math.floor(localMinute(t0) / 60);
        await add({
          device: `tf-perf${i}`,
          zone: zones[i % zones.length] as string,
          family: 'traffic',
          time: t0,
          fields: { intensity: 20, averageVehicleSpeed: h === 7 ? 8 : 35, occupancy: 0.2 },
        });
      }
    }
    for (let i = 0; i < 8; i++) {
      for (let t0 = from; t0 < F0; t0 += 10 * MIN) {
        await add({
          device: `aq-perf${i}`,
          zone: zones[i] as string,
          family: 'airQuality',
          time: t0,
          fields: { pm25: 30 + i * 10, pm10: 50 },
        });
      }
    }
    await flush(true);
    const wrote = Date.now() - started;
    const timings: number[] = [];
    let r: any;
    for (let run = 0; run < 2; run++) {
      const t1 = performance.now();
      const res = await q.api(`/api/v1/reports?month=${M}`);
      r = await res.json();
      assert.equal(res.status, 200, JSON.stringify(r));
      timings.push(performance.now() - t1);
    }
    console.log(
      `# month report of ${M}: ${points.toLocaleString('en')} readings of 298 devices (written in ${(wrote / 1000).toFixed(1)} s); ` +
        `answered in ${((timings[0] as number) / 1000).toFixed(2)} s, again (kept, the month has ended) in ${((timings[1] as number) / 1000).toFixed(3)} s`,
    );
    assert.equal(r.energy.total.lamps, 250);
    // Each lamp: 12 h lit a day at 100 W = 1.2 kWh a day, less the first reading of the month (no counter before it).
    near(r.energy.total.energyKWh, 250 * (1.2 * daysInM - 0.025), 0.5, 'the month’s energy');
    near(r.lighting.total.burningHours, 250 * 12 * daysInM, 1, 'burning hours');
    assert.equal(r.congestion.total.congestedHours, 40 * daysInM);
    assert.equal(r.aqi.total.vn.noData, 0);
    assert.equal(r.aqi.stations.length, 8);
    // Generous: a loaded 2-core machine; the figure itself is the printed one.
    assert.ok((timings[0] as number) < 60_000, `a month report took ${timings[0]} ms`);
    assert.ok((timings[1] as number) < (timings[0] as number), 'an ended month is kept');
  });
});

describe('the Reports page', () => {
  test('shows the API’s figures, downloads the API’s CSV, and prints without navigation', async () => {
    await p.loginAs('viewer');
    const { page, errors } = await openPage(browser, `${p.addr.api}/reports`, {
      initScript: () => {
        // window.print() opens a dialog headless chromium cannot show: count the calls instead.
        const w = globalThis as unknown as { print: () => void; printed?: number };
        w.print = () => {
          w.printed = (w.printed ?? 0) + 1;
        };
      },
    });
    await login(page, 'test-viewer', passwordOf('viewer'));
    assert.equal((await page.getByTestId('nav-reports').textContent())?.trim(), 'Báo cáo');
    const shown = `${L.slice(8, 10)}/${L.slice(5, 7)}/${L.slice(0, 4)}`;
    await page.getByTestId('report-day').fill(shown);
    await page.getByTestId('report-day').press('Enter');
    await page.getByTestId('report-day').blur();
    await page.locator(`[data-testid="reports"][data-period="${L}"][data-busy="no"]`).waitFor({ timeout: 30_000 });
    const r = await json(`/api/v1/reports?day=${L}`);
    assert.match((await page.getByTestId('report-period').textContent()) ?? '', new RegExp(shown.replaceAll('/', '\\/')));
    const vi = (x: number, digits: number) => new Intl.NumberFormat('vi-VN', { maximumFractionDigits: digits }).format(x);
    const text = async (testid: string) => ((await page.getByTestId(testid).textContent()) ?? '').trim();
    assert.equal(await text('report-energy-total'), vi(r.energy.total.energyKWh, 3), 'energy total in vi-VN format');
    assert.equal(await text('report-energy-total'), '2,875');
    for (const w of r.energy.wards) {
      const cells = await page.locator(`[data-testid="report-energy-ward"][data-zone="${w.zone}"] td`).allTextContents();
      assert.equal(cells[0], w.name.vi);
      assert.equal(cells[2], vi(w.energyKWh, 3));
    }
    assert.equal(await text('report-lighting-total'), vi(r.lighting.total.burningHours, 2));
    assert.equal(await text('report-lighting-faulty'), String(r.lighting.total.faultyLamps));
    assert.equal(await page.getByTestId('report-faulty-lamp').count(), 1);
    const aqiTotal = await page.locator('[data-testid="report-aqi-total"] td').allTextContents();
    assert.deepEqual(
      aqiTotal.map(Number),
      [...r.aqi.categories.vn, 'noData'].map((k: string) => r.aqi.total.vn[k]),
    );
    assert.equal(await text('report-congestion-total'), String(r.congestion.total.congestedHours));
    for (const chart of ['chart-energy', 'chart-lighting', 'chart-aqi', 'chart-congestion']) {
      assert.ok(await page.locator(`[data-testid="${chart}"] canvas`).count(), `${chart} is drawn`);
    }
    await screenshot(page, 'reports');

    // "Xuất CSV": the file the browser saves is the API's CSV of that report.
    for (const kind of ['energy', 'aqi']) {
      const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId(`csv-${kind}`).click()]);
      assert.equal(dl.suggestedFilename(), `citypulse-${kind}-${L}.csv`);
      const saved = await readFile((await dl.path()) as string, 'utf8');
      const fromApi = await (await p.api(`/api/v1/reports/${kind}?day=${L}&format=csv`)).text();
      assert.equal(saved, fromApi);
    }

    // "In báo cáo" prints; the print view has no navigation and no controls, and keeps the reports.
    await page.getByTestId('report-print').click();
    assert.equal(await page.evaluate(() => (globalThis as unknown as { printed?: number }).printed), 1);
    await page.emulateMedia({ media: 'print' });
    assert.equal(await page.locator('header.top').isVisible(), false, 'no header in print');
    assert.equal(await page.getByTestId('nav-reports').isVisible(), false, 'no navigation in print');
    assert.equal(await page.getByTestId('report-controls').isVisible(), false, 'no controls in print');
    assert.equal(await page.getByTestId('csv-energy').isVisible(), false);
    assert.equal(await page.getByTestId('report-energy').isVisible(), true);
    assert.equal(await page.getByTestId('report-congestion').isVisible(), true);
    await page.emulateMedia({ media: 'screen' });

    // English on the switch; numbers follow the language.
    await page.getByTestId('lang-switch').first().click();
    await page.getByText('Energy used per ward (kWh)').waitFor();
    assert.equal(
      await text('report-energy-total'),
      new Intl.NumberFormat('en-GB', { maximumFractionDigits: 3 }).format(r.energy.total.energyKWh),
    );
    assert.deepEqual(errors, []);
  });
});
