/**
 * Retention tiers and downsampling on a real platform and a real InfluxDB: the platform
 * creates the `minute` and `hour` retention policies and their continuous queries; a year of readings sent
 * late (a backlog) is recomputed into the tiers; the history API reads a 1-year range from the hourly tier
 * with a bounded number of points whose values are the true daily means; a live reading reaches the minute
 * tier through InfluxDB's own continuous query.
 *
 * Run: node --import tsx --test test/downsampling.test.ts
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const scope = fileScope();
let p: TestPlatform;
const DAY = 86_400_000;
const HOUR = 3_600_000;

before(async () => {
  p = await startTestPlatform(scope, {
    // Raw kept longer than a year so a year-old backlog is accepted (maxPastMs follows the raw retention).
    influx: { retentionDuration: '60w', downsample: { catchUpIntervalMs: 200 } },
  });
});

test('the platform creates the retention tiers and one continuous query per tier and measurement', async () => {
  const rps = await p.rows('SHOW RETENTION POLICIES');
  const byName = Object.fromEntries(rps.map((r) => [r.name, r]));
  assert.equal(byName.raw?.duration, '10080h0m0s');
  assert.equal(byName.raw?.default, true);
  assert.equal(byName.minute?.duration, '8736h0m0s'); // 52w
  assert.equal(byName.hour?.duration, '43680h0m0s'); // 260w
  const db = p.platform.config.influx.database;
  const cqs = (await p.rows('SHOW CONTINUOUS QUERIES')).filter((r) => String(r.query).includes(`ON ${db}`));
  const names = cqs.map((r) => r.name).sort();
  for (const tier of ['minute', 'hour'])
    for (const m of ['airQuality', 'streetLight', 'traffic']) assert.ok(names.includes(`cp_${tier}_${m}`), `cp_${tier}_${m}`);
  const lightCq = String(cqs.find((r) => r.name === 'cp_hour_streetLight')?.query);
  assert.match(lightCq, /last\(energyConsumed\) AS energyConsumed/, 'a cumulative counter is downsampled with last()');
  assert.match(lightCq, /mean\(powerConsumption\) AS powerConsumption/);
  assert.match(lightCq, /GROUP BY time\(1h\), \*/);
});

test('a year of late readings is recomputed into the tiers and a 1-year chart reads a bounded number of hourly points', async () => {
  const { id, token } = await p.provision('airQuality');
  const device = await p.connect(id, token);
  const now = Date.now();
  // One reading every 6 hours for 365 days, oldest first, sent as a backlog in arrays of 730.
  const start = Math.floor((now - 365 * DAY) / DAY) * DAY + DAY;
  const readings: { dateObserved: number; pm25: number }[] = [];
  for (let t = start; t < now - 2 * HOUR; t += 6 * HOUR) readings.push({ dateObserved: t, pm25: 10 + ((t / HOUR) % 97) });
  for (let i = 0; i < readings.length; i += 730)
    await device.publishAsync(`devices/${id}/telemetry`, JSON.stringify(readings.slice(i, i + 730)), { qos: 1 });

  // Every reading sits in its own hour: the hour tier ends up with one mean per reading.
  const hourCount = async () => Number((await p.rows(`SELECT count(pm25) FROM "hour"."airQuality" WHERE device = '${id}'`))[0]?.count ?? 0);
  await p.waitFor(async () => (await hourCount()) === readings.length, 30000, 'hour tier filled by the catch-up');
  const minuteRows = await p.rows(`SELECT count(pm25) FROM "minute"."airQuality" WHERE device = '${id}'`);
  // The minute tier keeps 52 weeks: readings older than that are not in it.
  const inMinuteRetention = readings.filter((r) => r.dateObserved >= now - 52 * 7 * DAY + 60_000).length;
  assert.equal(Number(minuteRows[0]?.count), inMinuteRetention);

  // A reading now, with a value no backlog reading has: it is in raw only (the tiers lag), yet on the chart.
  await device.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ pm25: 999 }), { qos: 1 });

  const from = new Date(now - 365 * DAY).toISOString();
  const res = await p.api(`/api/v1/devices/${id}/readings?from=${from}&fields=pm25`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { window: string; tier: string; points: { time: number; pm25: number }[] };
  assert.equal(body.window, '1d');
  assert.equal(body.tier, 'hour', 'a 1-year range reads the hourly tier');
  assert.ok(body.points.length <= 367, `${body.points.length} points`);
  assert.ok(body.points.length >= 360, `${body.points.length} points`);

  // Every daily point is the mean of that city day's readings (Asia/Ho_Chi_Minh, UTC+7 all year: a day starts at
  // 17:00 UTC the evening before).
  const CITY = 7 * HOUR;
  const cityDay = (t: number) => Math.floor((t + CITY) / DAY) * DAY - CITY;
  const perDay = new Map<number, number[]>();
  for (const r of readings) {
    const d = cityDay(r.dateObserved);
    perDay.set(d, [...(perDay.get(d) ?? []), r.pm25]);
  }
  const today = cityDay(Date.now());
  let compared = 0;
  for (const pt of body.points) {
    if (pt.time >= today - DAY) continue; // today's and yesterday's buckets may mix tier and raw
    const vals = perDay.get(pt.time);
    assert.ok(vals, `a point for a day with readings (${new Date(pt.time).toISOString()})`);
    const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
    assert.ok(Math.abs(pt.pm25 - mean) < 1e-6, `${new Date(pt.time).toISOString()}: ${pt.pm25} vs ${mean}`);
    compared++;
  }
  assert.ok(compared >= 360, `${compared} daily means compared`);
  const last = body.points[body.points.length - 1] as { pm25: number };
  assert.ok(last.pm25 > 10 + 97, 'the newest bucket includes the reading sent now (raw after the tier)');

  // A week reads the minute tier, an hour reads raw.
  const week = (await (await p.api(`/api/v1/devices/${id}/readings?from=${new Date(now - 7 * DAY).toISOString()}&fields=pm25`)).json()) as {
    window: string;
    tier: string;
  };
  assert.equal(week.window, '1h');
  assert.equal(week.tier, 'hour');
  const day = (await (await p.api(`/api/v1/devices/${id}/readings?from=${new Date(now - DAY).toISOString()}&window=5m`)).json()) as {
    tier: string;
  };
  assert.equal(day.tier, 'minute');
  const hour = (await (await p.api(`/api/v1/devices/${id}/readings?window=10s`)).json()) as { tier: string };
  assert.equal(hour.tier, 'raw');
});

test('a live reading reaches the minute tier through InfluxDB’s continuous query', async () => {
  const { id, token } = await p.provision('streetLight');
  const device = await p.connect(id, token);
  const t0 = Date.now();
  await device.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ dateObserved: t0, powerConsumption: 80, energyConsumed: 5 }), {
    qos: 1,
  });
  await device.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ dateObserved: t0 + 1, powerConsumption: 60, energyConsumed: 6 }), {
    qos: 1,
  });
  // Not late: only the continuous query (run by InfluxDB at the next minute boundary) can write this.
  const rows = await p.rowsAtLeast(`SELECT powerConsumption, energyConsumed FROM "minute"."streetLight" WHERE device = '${id}'`, 1, 75_000);
  const minuteOf = (t: number) => Math.floor(t / 60_000) * 60_000;
  const row = rows.find((r) => r.time === minuteOf(t0));
  assert.ok(row, 'the minute of the readings');
  assert.equal(row.powerConsumption, 70, 'mean of the minute');
  assert.equal(row.energyConsumed, 6, 'last value of the counter');
});

test('stopping waits for a running catch-up: no SELECT … INTO of the platform outlives its stop', async () => {
  // A platform of its own (this test stops it) on the same InfluxDB; its timer never starts a catch-up itself.
  const q = await startTestPlatform(
    scope,
    { influx: { retentionDuration: '60w', downsample: { catchUpIntervalMs: 3_600_000 } } },
    { influx: p.influx },
  );
  const { id, token } = await q.provision('airQuality');
  const device = await q.connect(id, token);
  const now = Date.now();
  // One late reading an hour for most of a year: a catch-up with a year of hours to recompute per tier.
  const readings: { dateObserved: number; pm25: number }[] = [];
  for (let t = now - 360 * DAY; t < now - 2 * HOUR; t += HOUR) readings.push({ dateObserved: t, pm25: 10 + ((t / HOUR) % 53) });
  for (let i = 0; i < readings.length; i += 1000)
    await device.publishAsync(`devices/${id}/telemetry`, JSON.stringify(readings.slice(i, i + 1000)), { qos: 1 });
  assert.equal(await q.platform.parts.ingest.flush(30_000), true);
  const ds = q.platform.parts.ingest.downsampler;
  assert.ok(ds && ds.pending() > 0, 'late hours are marked');
  // What the catch-up timer does, just before an operator stops the platform.
  void ds.catchUp();
  assert.equal(ds.pending(), 0, 'the marked hours are now being recomputed, not pending');
  await q.platform.stop();

  const db = q.platform.config.influx.database;
  const running = (await q.rows('SHOW QUERIES')).filter((r) => /\bINTO\b/.test(String(r.query)) && String(r.query).includes(db));
  assert.deepEqual(running, [], 'no catch-up query still running after the stop');
  const inHourTier = await q.rows(`SELECT count(pm25) FROM "hour"."airQuality" WHERE device = '${id}'`);
  assert.equal(Number(inHourTier[0]?.count), readings.length, 'the catch-up finished before the stop returned');
});
