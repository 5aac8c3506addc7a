/**
 * `citypulse simulate` end to end: a simulated fleet of all three families, provisioned over REST against a
 * real platform and real InfluxDB, runs for a few seconds and its readings land in InfluxDB; the admin-only
 * provisioning refuses a missing token.
 *
 * Run: node --import tsx --test test/simulator-platform.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FAMILIES } from '../ingest/index.ts';
import { createFleet } from '../simulators/index.ts';
import { startTestPlatform } from './helpers/platform.ts';

test('a simulated fleet lands readings of all three families in InfluxDB', async (t) => {
  const p = await startTestPlatform(t);
  const headers = { authorization: `Bearer ${p.platform.adminToken}`, 'content-type': 'application/json' };
  let provisioned = 0;
  const fleet = createFleet({
    mqttUrl: p.addr.mqtt,
    profile: p.platform.parts.profile,
    counts: { airQuality: 2, traffic: 4, streetLight: 6 },
    seed: 7,
    intervalScale: 0.005, // 60 s → 300 ms, 30 s → 150 ms, 300 s → 1.5 s
    qos: 1,
    credentialsFile: join(p.dataDir, 'sim.json'),
    async provision(req) {
      const res = await fetch(`${p.addr.api}/api/v1/devices`, { method: 'POST', headers, body: JSON.stringify(req) });
      assert.equal(res.status, 201);
      provisioned++;
      return (await res.json()) as { token: string };
    },
    rotateToken: async () => assert.fail('no token should need rotating'),
  });
  t.after(() => fleet.stop());
  await fleet.start();
  assert.equal(provisioned, 12);
  await p.waitFor(() => fleet.progress().connected === 12, 5000, 'all simulated devices online');
  await p.waitFor(() => p.platform.parts.broker.onlineCount() === 12, 5000, 'broker sees 12 devices');
  await new Promise((r) => setTimeout(r, 3000));
  await fleet.stop();
  await p.platform.parts.ingest.flush();
  for (const family of FAMILIES) {
    const rows = await p.rows(`SELECT * FROM "${family}"`);
    assert.ok(rows.length > 0, `${family} readings stored`);
    assert.ok(rows.every((r) => typeof r.zone === 'string' && String(r.device).startsWith('sim-')));
  }
  const progress = fleet.progress();
  assert.equal(progress.rejected, 0);
  assert.equal(progress.publishErrors, 0);
  // Every acknowledged reading is stored, once (each has its own observation time).
  const always = { airQuality: 'pm25', traffic: 'intensity', streetLight: 'powerState' } as const;
  let stored = 0;
  for (const f of FAMILIES) stored += Number((await p.rows(`SELECT count("${always[f]}") FROM "${f}"`))[0]?.count ?? 0);
  // Publishes still in flight when the fleet stopped can be stored without their PUBACK having been counted.
  assert.ok(stored >= progress.published, `no acknowledged reading lost (${stored} stored, ${progress.published} acknowledged)`);
  assert.ok(stored <= progress.published + 50, `no more stored than sent (${stored} stored, ${progress.published} acknowledged)`);
});

test('provisioning without the admin token is refused with a problem document', async (t) => {
  const p = await startTestPlatform(t);
  const res = await fetch(`${p.addr.api}/api/v1/devices`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer nope' },
    body: JSON.stringify({ family: 'traffic', zone: 'tran-phu', location: { lat: 21.27, lon: 106.19 } }),
  });
  assert.equal(res.status, 401);
  assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/);
  assert.equal(((await res.json()) as { code: string }).code, 'CP_API_UNAUTHORIZED');
});
