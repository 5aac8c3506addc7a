/**
 * Simulated fleet (simulators/fleet.ts) against a real broker (broker/index.ts) and an in-memory registry:
 * the device plan is deterministic and places devices inside their wards; every device connects with its own
 * credentials and publishes readings that validate against the device contract for all three families;
 * platform messages on a device's errors topic count as rejected; the credentials file is written privately and
 * a second run reuses its tokens without provisioning; a lost file leads to token rotation; a wiped registry
 * leads to re-provisioning after the "bad username or password" refusal; stop() leaves no sockets or timers.
 *
 * Run: cd /work/main && node --import tsx --test test/simulator-fleet.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { createBroker, type Broker } from '../broker/index.ts';
import { FAMILIES, READING_SCHEMAS, TOPICS, type Family } from '../core/contract.ts';
import type { DeviceMeta } from '../ingest/index.ts';
import { SqliteDeviceStore, leafZones, loadCityProfile } from '../registry/index.ts';
import { createFleet, formatProgress, planFleet, pointInPolygon, type Fleet, type FleetOptions } from '../simulators/fleet.ts';
import { waitFor } from './helpers/wait.ts';

const profile = loadCityProfile(fileURLToPath(new URL('../cities/bac-giang.json', import.meta.url)));
const leafIds = new Set(leafZones(profile).map((z) => z.id));
const zoneExists = (zone: string) => leafIds.has(zone);
const COUNTS = { airQuality: 3, traffic: 3, streetLight: 3 };
const SEED = 42;

const ajv = new Ajv({ allErrors: true });
addFormats.default(ajv);
const validators = Object.fromEntries(FAMILIES.map((f) => [f, ajv.compile(READING_SCHEMAS[f])])) as Record<
  Family,
  ReturnType<typeof ajv.compile>
>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Received {
  device: DeviceMeta;
  kind: string;
  payload: Buffer;
}

async function startPlatform(t: { after: (fn: () => unknown) => void }) {
  const store = new SqliteDeviceStore(':memory:', zoneExists);
  const received: Received[] = [];
  const broker: Broker = await createBroker(
    { host: '127.0.0.1', port: 0, drainTimeoutMs: 5000 },
    { devices: store, onMessage: (device, kind, payload) => received.push({ device, kind, payload }) },
  );
  const { port } = await broker.start();
  t.after(async () => {
    await broker.stop();
    await store.close();
  });
  return { store, broker, received, url: `mqtt://127.0.0.1:${port}` };
}

type Platform = Awaited<ReturnType<typeof startPlatform>>;

function fleetFor(
  t: { after: (fn: () => unknown) => void },
  platform: Platform,
  credentialsFile: string,
  overrides: Partial<FleetOptions> = {},
) {
  const calls = { provision: 0, rotate: 0 };
  const fleet: Fleet = createFleet({
    mqttUrl: platform.url,
    profile,
    counts: COUNTS,
    seed: SEED,
    intervalScale: 0.002, // air 120 ms, traffic 60 ms, lights 600 ms
    qos: 1,
    credentialsFile,
    connectConcurrency: 4,
    provision: async (req) => {
      calls.provision++;
      return { token: (await platform.store.provision(req)).token };
    },
    rotateToken: async (id) => {
      calls.rotate++;
      return platform.store.rotateToken(id);
    },
    ...overrides,
  });
  t.after(() => fleet.stop());
  return { fleet, calls };
}

const readCredentials = async (file: string): Promise<Record<string, string>> => JSON.parse(await readFile(file, 'utf8'));

test('fleet plan: deterministic ids, zones spread over wards, locations inside the ward polygon', () => {
  const plan = planFleet(profile, COUNTS, SEED);
  assert.deepEqual(planFleet(profile, COUNTS, SEED), plan);
  assert.notDeepEqual(
    planFleet(profile, COUNTS, SEED + 1).map((d) => d.location),
    plan.map((d) => d.location),
  );
  assert.deepEqual(
    plan.map((d) => d.id),
    ['sim-aq-0001', 'sim-aq-0002', 'sim-aq-0003', 'sim-tf-0001', 'sim-tf-0002', 'sim-tf-0003', 'sim-sl-0001', 'sim-sl-0002', 'sim-sl-0003'],
  );
  assert.equal(planFleet(profile, COUNTS, SEED, 'load')[0]?.id, 'load-aq-0001');
  // A device keeps its zone and location when the fleet grows.
  assert.deepEqual(planFleet(profile, { airQuality: 10, traffic: 3, streetLight: 3 }, SEED)[0], plan[0]);

  for (const family of FAMILIES) {
    const zones = plan.filter((d) => d.family === family).map((d) => d.zone);
    assert.equal(new Set(zones).size, 3, `${family}: three devices in three different wards`);
  }
  for (const d of plan) {
    const zone = profile.zones.find((z) => z.id === d.zone);
    assert.ok(zone?.shape, `${d.id}: placed in a leaf zone with a shape`);
    const ring = zone.shape.coordinates[0]!;
    const lons = ring.map((c) => c[0]!);
    const lats = ring.map((c) => c[1]!);
    assert.ok(d.location.lon >= Math.min(...lons) && d.location.lon <= Math.max(...lons), `${d.id} lon in bbox`);
    assert.ok(d.location.lat >= Math.min(...lats) && d.location.lat <= Math.max(...lats), `${d.id} lat in bbox`);
    assert.ok(pointInPolygon(d.location, zone.shape.coordinates), `${d.id} inside ${d.zone}`);
  }
  assert.deepEqual(
    plan.filter((d) => d.family === 'traffic').map((d) => d.laneId),
    [1, 2, 3],
  );

  // The polygon test itself, on a square with a square hole.
  const square = [
    [0, 0],
    [4, 0],
    [4, 4],
    [0, 4],
    [0, 0],
  ];
  const hole = [
    [1, 1],
    [3, 1],
    [3, 3],
    [1, 3],
    [1, 1],
  ];
  assert.ok(pointInPolygon({ lon: 0.5, lat: 0.5 }, [square, hole]));
  assert.ok(!pointInPolygon({ lon: 2, lat: 2 }, [square, hole]));
  assert.ok(!pointInPolygon({ lon: 5, lat: 2 }, [square, hole]));
});

test('fleet: publishes valid readings, reuses credentials, rotates lost ones, re-provisions after a wipe', {
  timeout: 60_000,
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-fleet-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const credentialsFile = join(dir, 'state', 'nested', 'credentials.json'); // folders do not exist yet
  const platform = await startPlatform(t);
  const baseline = process.getActiveResourcesInfo();
  const count = (list: string[], kind: string) => list.filter((r) => r === kind).length;
  const plan = planFleet(profile, COUNTS, SEED);
  const ids = plan.map((d) => d.id).sort();

  // --- First run: provisions everything, publishes, writes the credentials file.
  const first = fleetFor(t, platform, credentialsFile);
  await first.fleet.start();
  await waitFor(() => first.fleet.progress().connected === 9 && platform.broker.onlineCount() === 9, 5_000, 'all devices online', {
    every: 20,
  });
  assert.equal(first.calls.provision, 9);
  assert.equal(first.calls.rotate, 0);
  await sleep(1_500);

  await platform.broker.publish(
    TOPICS.errors('sim-tf-0002'),
    JSON.stringify({ code: 'CP_INGEST_INVALID_READING', reason: 'test', at: new Date().toISOString() }),
  );
  await waitFor(() => first.fleet.progress().rejected === 1, 5_000, 'rejection counted', { every: 20 });

  const p = first.fleet.progress();
  assert.equal(p.devices, 9);
  assert.equal(p.publishErrors, 0);
  assert.equal(p.connectErrors, 0);
  assert.ok(p.published >= 20, `published ${p.published}`);
  assert.ok(p.readingsPerSecond > 5, `rate ${p.readingsPerSecond}`);
  const line = formatProgress(p);
  assert.match(line, /^devices 9\/9 online · \d+\.\d readings\/s · \d+ sent · 1 rejected · 0 errors$/);

  const seen = new Set<string>();
  for (const m of platform.received) {
    assert.equal(m.kind, 'telemetry');
    const reading: unknown = JSON.parse(m.payload.toString('utf8'));
    const validate = validators[m.device.family];
    assert.ok(validate(reading), `${m.device.id}: ${ajv.errorsText(validate.errors)}`);
    seen.add(m.device.id);
  }
  assert.deepEqual([...seen].sort(), ids, 'every device of every family reported');
  const lanes = platform.received.filter((m) => m.device.family === 'traffic').map((m) => JSON.parse(m.payload.toString()).laneId);
  assert.deepEqual([...new Set(lanes)].sort(), [1, 2, 3]);

  // The registry got the planned placement.
  const registered = await platform.store.list();
  for (const d of plan) {
    const r = registered.find((x) => x.id === d.id);
    assert.equal(r?.family, d.family);
    assert.equal(r?.zone, d.zone);
    assert.deepEqual(r?.location, d.location);
  }

  await first.fleet.stop();
  await first.fleet.stop(); // idempotent
  await waitFor(() => platform.broker.onlineCount() === 0, 5_000, 'devices offline', { every: 20 });
  const creds1 = await readCredentials(credentialsFile);
  assert.deepEqual(Object.keys(creds1).sort(), ids);
  assert.equal((await stat(credentialsFile)).mode & 0o777, 0o600);
  for (const [id, token] of Object.entries(creds1)) assert.equal((await platform.store.checkToken(id, token)).result, 'ok');

  // No socket or timer of the fleet outlives stop() (the broker's own stay: it is still running).
  await waitFor(
    () => {
      const now = process.getActiveResourcesInfo();
      return count(now, 'TCPSocketWrap') <= count(baseline, 'TCPSocketWrap') && count(now, 'Timeout') <= count(baseline, 'Timeout');
    },
    5_000,
    'fleet handles released',
    { every: 20 },
  );

  // --- Second run, same file: no provisioning, same tokens.
  const second = fleetFor(t, platform, credentialsFile);
  await second.fleet.start();
  await waitFor(() => second.fleet.progress().connected === 9, 5_000, 'second run online', { every: 20 });
  assert.deepEqual(second.calls, { provision: 0, rotate: 0 });
  assert.equal(second.fleet.progress().connectErrors, 0);
  await second.fleet.stop();
  assert.deepEqual(await readCredentials(credentialsFile), creds1);

  // --- Lost credentials file: provisioning finds the ids taken and rotates their tokens.
  await rm(credentialsFile);
  const third = fleetFor(t, platform, credentialsFile);
  await third.fleet.start();
  await waitFor(() => third.fleet.progress().connected === 9, 5_000, 'third run online', { every: 20 });
  assert.deepEqual(third.calls, { provision: 9, rotate: 9 });
  await third.fleet.stop();
  const creds3 = await readCredentials(credentialsFile);
  assert.deepEqual(Object.keys(creds3).sort(), ids);
  for (const id of ids) assert.notEqual(creds3[id], creds1[id]);
  assert.equal((await platform.store.list()).length, 9, 'no duplicate devices');

  // --- Wiped registry: a new platform knows none of the tokens in the file.
  await platform.broker.stop();
  const wiped = await startPlatform(t);
  const fourth = fleetFor(t, wiped, credentialsFile);
  await fourth.fleet.start();
  await waitFor(() => fourth.fleet.progress().connected === 9 && wiped.broker.onlineCount() === 9, 5_000, 'online after re-provisioning', {
    every: 20,
  });
  assert.deepEqual(fourth.calls, { provision: 9, rotate: 0 });
  assert.equal(fourth.fleet.progress().connectErrors, 9, 'one refusal per device, then success');
  await waitFor(() => new Set(wiped.received.map((m) => m.device.id)).size === 9, 5_000, 'telemetry on the new platform', { every: 20 });
  await fourth.fleet.stop();
  const creds4 = await readCredentials(credentialsFile);
  for (const id of ids) {
    assert.notEqual(creds4[id], creds3[id]);
    assert.equal((await wiped.store.checkToken(id, creds4[id]!)).result, 'ok');
  }
  assert.equal((await stat(credentialsFile)).mode & 0o777, 0o600);
});

test('fleet: a device refused again after re-provisioning gives up instead of hammering the broker', { timeout: 30_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-fleet-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const platform = await startPlatform(t);
  // The registry hands out tokens the broker never accepts (e.g. a provisioning API pointed at another platform).
  const { fleet, calls } = fleetFor(t, platform, join(dir, 'credentials.json'), {
    counts: { airQuality: 1, traffic: 0, streetLight: 0 },
    provision: async () => {
      calls.provision++;
      return { token: 'not-the-right-token' };
    },
  });
  await fleet.start();
  await waitFor(() => fleet.progress().connectErrors >= 2, 5_000, 'refused twice', { every: 20 });
  await sleep(300);
  assert.equal(calls.provision, 2, 'provisioned once, re-provisioned once');
  assert.equal(fleet.progress().connected, 0);
  assert.equal(fleet.progress().connectErrors, 2);
  assert.match(formatProgress(fleet.progress()), /· 2 errors \(2 connect, 0 publish\)$/);
  await fleet.stop();
});
