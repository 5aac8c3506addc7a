/**
 * The simulated city looks alive at once: each device sends its last day of history (observation-timed readings
 * over MQTT, through ingest's normal checks and rate limit) when it first connects, so the platform has VN_AQI
 * per station and energy today within a minute of the start; demo devices carry the city profile's names.
 *
 * Run: node --import tsx --test test/simulator-backfill.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createFleet } from '../simulators/index.ts';
import { startTestPlatform } from './helpers/platform.ts';

test('a simulated fleet with a day of history gives VN_AQI and energy within a minute', async (t) => {
  // The field rate limit stays on: history must fit a device's burst like a real backlog flush.
  const p = await startTestPlatform(t, { ingest: { maxReadingsPerSecond: 20 } });
  const headers = { authorization: `Bearer ${p.platform.adminToken}`, 'content-type': 'application/json' };
  const profile = p.platform.parts.profile;
  const fleet = createFleet({
    mqttUrl: p.addr.mqtt,
    profile: { ...profile, fleet: { ...profile.fleet, names: { airQuality: 'Trạm quan trắc {zone}' } } },
    counts: { airQuality: 2, traffic: 2, streetLight: 4 },
    seed: 3,
    intervalScale: 1,
    qos: 1,
    backfillMs: 24 * 3_600_000,
    credentialsFile: join(p.dataDir, 'sim.json'),
    async provision(req) {
      const res = await fetch(`${p.addr.api}/api/v1/devices`, { method: 'POST', headers, body: JSON.stringify(req) });
      assert.equal(res.status, 201);
      return (await res.json()) as { token: string };
    },
    rotateToken: async () => assert.fail('no token should need rotating'),
  });
  t.after(() => fleet.stop());
  const started = Date.now();
  await fleet.start();
  type Aqi = { stations: { id: string; hour: { vn: { aqi: number } | null } }[] };
  const aqi = (await p.waitFor(
    async () => {
      const body = (await (await p.api('/api/v1/aqi')).json()) as Aqi;
      return body.stations.length === 2 && body.stations.every((s) => typeof s.hour.vn?.aqi === 'number') ? body : undefined;
    },
    60_000,
    'VN_AQI of both stations',
  )) as Aqi;
  type Indicator = { scope: string; values: Record<string, number> };
  const city = (await p.waitFor(
    async () => {
      const list = (await (await p.api('/api/v1/indicators?scope=city&family=streetLight')).json()) as Indicator[];
      const c = list.find((i) => i.scope === 'city');
      return c && c.values.energyTodayKWh! > 0 ? c : undefined;
    },
    Math.max(1000, 60_000 - (Date.now() - started)),
    'energy today > 0',
  )) as Indicator;
  console.log(
    `history shown after ${((Date.now() - started) / 1000).toFixed(1)} s: VN_AQI ${aqi.stations.map((s) => s.hour.vn?.aqi).join(', ')}, energy today ${city.values.energyTodayKWh?.toFixed(2)} kWh, ${fleet.progress().published} readings`,
  );
  assert.equal(fleet.progress().rejected, 0, 'no reading refused');
  const dev = (await (await p.api(`/api/v1/devices/${aqi.stations[0]!.id}`, { admin: true })).json()) as { name: string };
  assert.match(dev.name, /^Trạm quan trắc Phường /);
});
