/**
 * GET /api/v1/devices with search, filters, sorting and paging, against a whole platform: the answer without
 * any of the new parameters is the list it always was (every device, by id, each with its online state); q finds
 * words in the id or the name; online (from the broker) and openAlarm (from the alarm engine) page like any other
 * filter, counted in X-Total-Count; format=csv is the same list as CSV, every match, for a viewer.
 *
 * Run: node --import tsx --test test/devices-api.test.ts
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type { ConfigInput } from '../platform/config.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const scope = fileScope();
let p: TestPlatform;
const ZONES = ['tran-phu', 'le-loi'];

before(async () => {
  p = await startTestPlatform(scope, {
    alarms: { tickMs: 50, defaults: { 'lamp-fault': { forMs: 200, clearForMs: 500 } } } as ConfigInput['alarms'],
  });
  const { devices } = p.platform.parts;
  for (let i = 0; i < 30; i++) {
    await devices.provision({
      id: `api-${String(i).padStart(2, '0')}`,
      family: i % 3 === 0 ? 'traffic' : 'streetLight',
      zone: ZONES[i % 2] as string,
      location: { lat: 21.27, lon: 106.19 },
      name: i === 7 ? 'Đèn cổng chợ, "số 7"' : i === 8 ? '=HYPERLINK("x")' : undefined,
    });
  }
  // Two devices online; one of them with an open lamp-fault alarm.
  const online = await p.provision('streetLight', { id: 'api-online-ok', zone: 'tran-phu' });
  const faulty = await p.provision('streetLight', { id: 'api-online-fault', zone: 'tran-phu' });
  await p.connect(online.id, online.token);
  const c = await p.connect(faulty.id, faulty.token);
  const until = Date.now() + 10_000;
  while (!(await p.platform.parts.alarms?.list({ state: 'open', subject: faulty.id, limit: 1 }))?.length) {
    assert.ok(Date.now() < until, 'the lamp fault raised');
    await c.publishAsync(`devices/${faulty.id}/telemetry`, JSON.stringify({ powerState: 'on', powerConsumption: 0.2, status: 'ok' }), {
      qos: 1,
    });
    await new Promise((r) => setTimeout(r, 100));
  }
});

async function get(query: string): Promise<{ ids: string[]; total: number; body: { id: string; online: boolean }[] }> {
  const res = await p.api(`/api/v1/devices${query}`);
  assert.equal(res.status, 200, await res.clone().text());
  const body = (await res.json()) as { id: string; online: boolean }[];
  return { ids: body.map((d) => d.id), total: Number(res.headers.get('x-total-count')), body };
}

describe('GET /api/v1/devices', () => {
  test('without the new parameters: every device, by id, with its online state, as before', async () => {
    const { body, total } = await get('');
    assert.equal(body.length, 32);
    assert.equal(total, 32);
    assert.deepEqual(
      body.map((d) => d.id),
      body.map((d) => d.id).sort(),
    );
    assert.equal(body.find((d) => d.id === 'api-online-ok')?.online, true);
    assert.equal(body.find((d) => d.id === 'api-00')?.online, false);
    assert.deepEqual((await get('?family=traffic')).ids.length, 10);
    assert.deepEqual((await get('?online=true')).ids, ['api-online-fault', 'api-online-ok']);
  });

  test('search, filters, sorting and paging, with the total', async () => {
    assert.deepEqual(await get('?q=API-1&limit=3'), {
      ...(await get('?q=API-1&limit=3')),
      ids: ['api-10', 'api-11', 'api-12'],
      total: 10,
    });
    assert.deepEqual((await get('?q=c%E1%BB%95ng')).ids, ['api-07'], 'a word of a Vietnamese name');
    const page = await get('?family=streetLight&zone=le-loi&sort=id&order=desc&limit=5&offset=5');
    assert.deepEqual(page.ids, ['api-13', 'api-11', 'api-07', 'api-05', 'api-01']);
    assert.equal(page.total, 10);
    const seen = await get('?sort=lastSeen&order=desc&limit=2');
    assert.deepEqual(seen.ids.sort(), ['api-online-fault', 'api-online-ok'], 'the devices seen come first');
    assert.equal(seen.total, 32);
    assert.equal((await p.api('/api/v1/devices?limit=0')).status, 400);
    assert.equal((await p.api('/api/v1/devices?sort=token')).status, 400);
  });

  test('online and open-alarm filters page in the database like the others', async () => {
    assert.deepEqual(await get('?online=true&openAlarm=true'), {
      ...(await get('?online=true&openAlarm=true')),
      ids: ['api-online-fault'],
      total: 1,
    });
    const offline = await get('?online=false&limit=4&offset=28');
    assert.deepEqual(offline.ids, ['api-28', 'api-29']);
    assert.equal(offline.total, 30);
    const noAlarm = await get('?openAlarm=false&q=online');
    assert.deepEqual(noAlarm.ids, ['api-online-ok']);
    assert.equal((await get('?openAlarm=true')).total, 1);
  });

  test('format=csv: the filtered list (every match), CSV-safe, for a viewer', async () => {
    const res = await p.api('/api/v1/devices?zone=le-loi&family=streetLight&limit=2&format=csv');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/csv/);
    assert.match(res.headers.get('content-disposition') ?? '', /attachment; filename="devices.csv"/);
    const lines = (await res.text())
      .replace(/^\ufeff/, '')
      .trimEnd()
      .split('\r\n');
    assert.equal(lines[0], 'id,name,family,zone,online,lastSeenAt,createdAt,lat,lon');
    assert.equal(lines.length - 1, 2, 'limit applies to CSV too');
    const all = await p.api('/api/v1/devices?zone=le-loi&family=streetLight&format=csv');
    const rows = (await all.text())
      .replace(/^\ufeff/, '')
      .trimEnd()
      .split('\r\n')
      .slice(1);
    assert.deepEqual(
      rows.map((r) => r.split(',')[0]),
      (await get('?zone=le-loi&family=streetLight')).ids,
    );
    assert.match(rows.find((r) => r.startsWith('api-07,')) as string, /^api-07,"Đèn cổng chợ, ""số 7""",streetLight,le-loi,false,/);
    const formula = (await (await p.api('/api/v1/devices?q=api-08&format=csv')).text()).split('\r\n')[1];
    assert.match(formula as string, /^api-08,"'=HYPERLINK\(""x""\)",streetLight,/);
    assert.equal((await p.api('/api/v1/devices?format=csv', { token: null })).status, 401);
  });

  test('documented in the OpenAPI description', async () => {
    const doc = (await (await p.api('/api/v1/openapi.json', { token: null })).json()) as {
      paths: Record<string, { get?: { parameters?: { name: string }[] } }>;
    };
    const names = doc.paths['/api/v1/devices']?.get?.parameters?.map((x) => x.name) ?? [];
    for (const n of ['q', 'zone', 'family', 'online', 'openAlarm', 'sort', 'order', 'limit', 'offset', 'format']) {
      assert.ok(names.includes(n), n);
    }
  });
});

describe('GET /api/v1/map/devices', () => {
  test('every device in compact rows, the same as the full list says, gzipped for a client that accepts it', async () => {
    const res = await p.api('/api/v1/map/devices', { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-encoding'), 'gzip');
    const m = (await res.json()) as { fields: string[]; families: string[]; zones: string[]; devices: unknown[][] };
    assert.deepEqual(m.fields, ['id', 'family', 'zone', 'lat', 'lon', 'online', 'name', 'lastSeenAt']);
    const full = (await get('')).body as unknown as {
      id: string;
      family: string;
      zone: string;
      location: { lat: number; lon: number };
      online: boolean;
      name?: string;
      lastSeenAt?: string;
    }[];
    assert.equal(m.devices.length, full.length);
    const byId = new Map(m.devices.map((r) => [r[0] as string, r]));
    for (const d of full) {
      const [, f, z, lat, lon, online, name, seen] = byId.get(d.id) ?? [];
      assert.equal(m.families[f as number], d.family, d.id);
      assert.equal(m.zones[z as number], d.zone, d.id);
      assert.deepEqual([lat, lon], [d.location.lat, d.location.lon], d.id);
      assert.equal(online, d.online ? 1 : 0, d.id);
      assert.equal(name ?? undefined, d.name, d.id);
      assert.equal(seen === undefined ? undefined : new Date(seen as number).toISOString(), d.lastSeenAt, d.id);
    }
    const plain = await p.api('/api/v1/map/devices', { headers: { 'accept-encoding': 'identity' } });
    assert.equal(plain.headers.get('content-encoding'), null);
    assert.equal(((await plain.json()) as { devices: unknown[] }).devices.length, full.length);
  });
});
