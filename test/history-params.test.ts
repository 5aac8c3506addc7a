/**
 * History and AQI query parameters (dashboard-api/history.ts): fields are checked against the device contract,
 * times must lie between 2000-01-01 and now + 1 day with from before to, and an explicit window may not cut the
 * range into more than 10,000 windows. Whatever a viewer sends, the answer is 2xx or 4xx with a reason, never 5xx,
 * and the OpenAPI document says so.
 *
 * Run: node --import tsx --test test/history-params.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform } from './helpers/platform.ts';

const DAY = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString();

test('bad parameters of every history and AQI route answer 4xx with a reason, never 5xx', async (t) => {
  const p = await startTestPlatform(t);
  const dev = await p.provision('airQuality');
  const now = Date.now();
  const readings = `/api/v1/devices/${dev.id}/readings`;
  const aqi = `/api/v1/aqi/history?scope=station&id=${dev.id}`;

  const bad: [string, RegExp?][] = [
    // Fields not in the family's contract (an empty SELECT and a prototype key reached InfluxDB before).
    [`${readings}?fields=nope`, /nope/],
    [`${readings}?fields=pm25,nope`, /nope/],
    [`${readings}?fields=constructor`, /constructor/],
    [`${readings}?fields=__proto__`],
    [`${readings}?fields=intensity`, /intensity/], // a traffic field, not airQuality
    [`${readings}?fields=${'x'.repeat(3000)}`],
    [`${readings}?fields=pm25&fields=pm10`],
    // Times InfluxDB cannot take, or out of the sane range.
    [`${readings}?from=1600-01-01T00:00:00Z`, /2000-01-01/],
    [`${readings}?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z`, /2000-01-01/],
    [`${readings}?to=9999-12-31T23:59:59Z`],
    [`${readings}?from=1999-12-31T23:59:59Z&to=2000-01-02T00:00:00Z`],
    [`${readings}?to=2000-01-01T00:00:00Z`],
    [`${readings}?to=${iso(now + 2 * DAY)}`],
    [`${readings}?from=${iso(now + 2 * DAY)}`],
    [`${readings}?from=${iso(now)}&to=${iso(now - 3600_000)}`, /before/],
    [`${readings}?from=${iso(now)}&to=${iso(now)}`, /before/],
    [`${readings}?from=yesterday`],
    [`${readings}?from=2024-02-30T00:00:00Z`],
    [`${readings}?from=2016-12-31T23:59:60Z&to=2017-01-01T01:00:00Z`],
    [`${readings}?from=1e12`],
    [`${readings}?from=`],
    // Windows: unknown, or far too small for the range.
    [`${readings}?window=2s`],
    [`${readings}?window=10s&from=${iso(now - 365 * DAY)}`, /window/],
    [`${readings}?window=1m&from=2000-01-01T00:00:00Z`, /window/],
    [`${readings}?nope=1`],
    [`/api/v1/devices/..%2F..%2Fetc/readings`],
    [`/api/v1/devices/aq-doesnotexist/readings?fields=nope`],
    // AQI history.
    [`${aqi}&from=1600-01-01T00:00:00Z`, /2000-01-01/],
    [`${aqi}&from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z`],
    [`${aqi}&to=${iso(now + 2 * DAY)}`],
    [`${aqi}&from=${iso(now)}&to=${iso(now - DAY)}`, /before/],
    [`${aqi}&from=2024-02-30T00:00:00Z`],
    [`${aqi}&from=2016-12-31T23:59:60Z&to=2017-01-01T01:00:00Z`],
    [`${aqi}&period=week`],
    [`/api/v1/aqi/history?scope=city&id=x`],
    [`/api/v1/aqi/history?scope=zone`],
    [`/api/v1/aqi/history?scope=zone&id=${'z'.repeat(5000)}`],
    [`${aqi}&window=1m`],
    // Current AQI and indicators.
    [`/api/v1/aqi?zone=${'z'.repeat(100)}`],
    [`/api/v1/aqi?nope=1`],
    [`/api/v1/indicators?scope=planet`],
    [`/api/v1/indicators?family=airQuality`],
  ];
  const answers: string[] = [];
  for (const [path, reason] of bad) {
    const res = await p.api(path);
    const body = await res.text();
    answers.push(`${res.status} ${path.slice(0, 120)}`);
    assert.ok(res.status >= 400 && res.status < 500, `${path.slice(0, 120)} → ${res.status} ${body.slice(0, 200)}`);
    const problem = JSON.parse(body) as { code: string; detail: string; errors?: string[] };
    assert.match(problem.code, /^CP_(API_VALIDATION|REGISTRY_DEVICE_NOT_FOUND|API_NOT_FOUND)$/, path);
    if (reason) assert.match(`${problem.detail} ${(problem.errors ?? []).join(' ')}`, reason, path);
  }

  // Good ones still answer 200, at the edges of the range too.
  const good = [
    `${readings}`,
    `${readings}?fields=pm25,pm10,pm25`,
    `${readings}?fields=pm25&window=raw&from=2000-01-01T00:00:00Z`,
    `${readings}?window=auto&from=2000-01-01T00:00:00Z&to=${iso(now + DAY - 60_000)}`,
    `${readings}?window=1d&from=2000-01-01T00:00:00Z`,
    `${readings}?window=10s&from=${iso(now - DAY)}`,
    `${readings}?to=2000-01-01T00:30:00Z`,
    `${aqi}`,
    `${aqi}&period=day&from=2000-01-01T00:00:00Z&to=${iso(now)}`,
  ];
  for (const path of good) {
    const res = await p.api(path);
    assert.equal(res.status, 200, `${path} → ${res.status} ${await res.text()}`);
  }
  const pts = (await (await p.api(`${readings}?fields=pm25,pm10,pm25`)).json()) as { points: unknown[] };
  assert.ok(Array.isArray(pts.points));
});

test('the OpenAPI document states the bounds of the history parameters', async (t) => {
  const p = await startTestPlatform(t);
  const doc = (await (await p.api('/api/v1/openapi.json')).json()) as any;
  for (const path of ['/api/v1/devices/{id}/readings', '/api/v1/aqi/history']) {
    const op = doc.paths[path].get;
    const params = Object.fromEntries(op.parameters.map((x: any) => [x.name, x]));
    for (const name of ['from', 'to'])
      assert.match(params[name].schema.description, /2000-01-01T00:00:00Z and now \+ 1 day/, `${path} ${name}`);
    assert.match(op.responses['400'].description, /2000-01-01/);
  }
  const readings = doc.paths['/api/v1/devices/{id}/readings'].get;
  const fields = readings.parameters.find((x: any) => x.name === 'fields');
  assert.match(fields.schema.description, /family/);
  assert.equal(fields.schema.maxLength, 2000);
  assert.match(readings.responses['400'].description, /field the family does not have/);
  assert.match(readings.parameters.find((x: any) => x.name === 'window').schema.description, /10000 windows/);
});
