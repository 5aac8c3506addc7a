/**
 * Commands to street lights and schedules on a real platform (broker over TCP, real InfluxDB) with a
 * real simulated fleet (simulators/createFleet, one MQTT.js connection per light) and raw MQTT.js devices:
 * acknowledged commands whose next reading shows the new state, offline lights served when they connect,
 * expiry, zone batches, the command history (one entry per batch, its filters), failed acks with their reason,
 * roles and bad requests, schedules whose edges the lights obey, and pending commands and schedules that survive
 * a restart.
 *
 * Run: node --import tsx --test --test-timeout=240000 test/commands.test.ts
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { io as ioClient } from 'socket.io-client';
import { type BatchSummary, latestEdge } from '../commands/index.ts';
import type { EnrichedReading } from '../ingest/index.ts';
import type { CommandRecord } from '../core/bus.ts';
import { createFleet, createRng, createStreetLightModel, type Fleet } from '../simulators/index.ts';
import { startTestInflux, type TestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope, onCleanup } from './helpers/scope.ts';

type After = { after(fn: () => unknown): void };
interface Created {
  batch: string;
  commands: CommandRecord[];
}

const scope = fileScope();
let influx: TestInflux;
let p: TestPlatform;
/** Street lights and one traffic counter, all online. */
let fleet: Fleet;
let lights: { id: string; zone: string }[];
let trafficId: string;
const commandEvents: CommandRecord[] = [];
const readings: EnrichedReading[] = [];

const COMMANDS = { scheduleTickMs: 100, expiryCheckMs: 100 };
const json = (body: unknown) => JSON.stringify(body);

/** A fleet provisioned over REST with the service token; the credentials file lets a later fleet reuse the devices. */
function fleetOf(tp: TestPlatform, counts: { traffic?: number; streetLight: number }, idPrefix: string, credentialsFile: string): Fleet {
  const headers = { authorization: `Bearer ${tp.platform.adminToken}`, 'content-type': 'application/json' };
  return createFleet({
    mqttUrl: tp.addr.mqtt,
    profile: tp.platform.parts.profile,
    counts: { airQuality: 0, traffic: counts.traffic ?? 0, streetLight: counts.streetLight },
    seed: 11,
    // Street lights report every 300 s by themselves: a reading seen right after a command is the command's own.
    intervalScale: 1,
    qos: 1,
    idPrefix,
    credentialsFile,
    async provision(req) {
      const res = await fetch(`${tp.addr.api}/api/v1/devices`, { method: 'POST', headers, body: json(req) });
      assert.equal(res.status, 201, await res.clone().text());
      return (await res.json()) as { token: string };
    },
    rotateToken: async () => assert.fail('no token should need rotating'),
  });
}

async function startFleet(t: After, f: Fleet, tp: TestPlatform, n: number): Promise<void> {
  onCleanup(t, () => f.stop());
  await f.start();
  await tp.waitFor(() => f.progress().connected === n, 10_000, `${n} simulated devices online`);
}

async function send(tp: TestPlatform, body: unknown, as: 'operator' | 'viewer' = 'operator'): Promise<Response> {
  return tp.api('/api/v1/commands', { method: 'POST', as, body: json(body) });
}

async function created(res: Response): Promise<Created> {
  assert.equal(res.status, 202, await res.clone().text());
  return (await res.json()) as Created;
}

async function commandOf(tp: TestPlatform, id: string): Promise<CommandRecord> {
  const res = await tp.api(`/api/v1/commands/${id}`);
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as CommandRecord;
}

async function stateIs(tp: TestPlatform, id: string, state: CommandRecord['state'], timeoutMs = 8000): Promise<CommandRecord> {
  return tp.waitFor(
    async () => {
      const c = await commandOf(tp, id);
      return c.state === state ? c : undefined;
    },
    timeoutMs,
    `command ${id} ${state}`,
  ) as Promise<CommandRecord>;
}

async function problemOf(res: Response, status: number, code: string): Promise<void> {
  assert.equal(res.status, status, await res.clone().text());
  assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/);
  assert.equal(((await res.json()) as { code: string }).code, code);
}

/** The first reading of a device observed at or after `sinceMs`, as streamed on the live bus. */
function readingAfter(tp: TestPlatform, device: string, sinceMs: number): Promise<EnrichedReading> {
  return tp.waitFor(
    () => readings.find((r) => r.device === device && r.time >= sinceMs),
    8000,
    `a reading of ${device}`,
  ) as Promise<EnrichedReading>;
}

/** The first stored reading of a device at or after `sinceMs`. */
async function storedAfter(tp: TestPlatform, device: string, sinceMs: number): Promise<Record<string, unknown>> {
  const rows = await tp.rowsAtLeast(
    `SELECT illuminanceLevel, powerState, powerConsumption, status FROM "streetLight" WHERE device = '${device}' AND time >= ${sinceMs}ms ORDER BY time ASC LIMIT 1`,
    1,
    8000,
  );
  return rows[0] as Record<string, unknown>;
}

/** Local HH:MM:SS in the city's zone, computed here (not with the code under test). */
function localTime(ms: number, timeZone: string): string {
  const f = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  return f.format(new Date(ms));
}

before(async () => {
  influx = await startTestInflux(scope);
  p = await startTestPlatform(scope, { commands: COMMANDS }, { influx });
  p.platform.bus.on('command', (c) => commandEvents.push(structuredClone(c)));
  p.platform.bus.on('reading', (r) => readings.push(r));
  fleet = fleetOf(p, { traffic: 1, streetLight: 10 }, 'cmd', join(p.dataDir, 'sim.json'));
  await startFleet(scope, fleet, p, 11);
  const devices = (await (await p.api('/api/v1/devices')).json()) as { id: string; family: string; zone: string }[];
  lights = devices.filter((d) => d.family === 'streetLight' && d.id.startsWith('cmd-'));
  trafficId = (devices.find((d) => d.family === 'traffic') as { id: string }).id;
  assert.equal(lights.length, 10);
  await p.waitFor(
    () => lights.every((l) => p.platform.parts.broker.isSubscribed(l.id, `devices/${l.id}/commands`)),
    5000,
    'lights subscribed',
  );
});

describe('commands to online street lights', () => {
  test('a dim command is acknowledged and the next reading, streamed and stored, shows the new level', async (t) => {
    const light = lights[0] as { id: string };
    // A dashboard watching the light gets the command's states over socket.io.
    const socket = ioClient(p.addr.api, { transports: ['websocket'], reconnection: false, auth: { token: await p.loginAs('viewer') } });
    t.after(() => socket.close());
    const streamedStates: CommandRecord[] = [];
    socket.on('command', (c: CommandRecord) => streamedStates.push(c));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect_error', reject);
      socket.emit('subscribe', { device: light.id }, (a: { ok: boolean }) => (a.ok ? resolve() : reject(new Error('subscribe refused'))));
    });
    const before = Date.now();
    const out = await created(await send(p, { target: { devices: [light.id] }, action: { illuminanceLevel: 0.3 } }));
    assert.equal(out.commands.length, 1);
    const [c] = out.commands as [CommandRecord];
    assert.equal(c.device, light.id);
    assert.equal(c.batch, out.batch);
    assert.deepEqual(c.action, { illuminanceLevel: 0.3 });
    assert.equal(c.createdBy, 'test-operator');
    assert.ok(Date.parse(c.expiresAt) - Date.parse(c.createdAt) === 3_600_000, 'default TTL of one hour');

    const done = await stateIs(p, c.id, 'acknowledged');
    assert.ok(done.deliveredAt && done.acknowledgedAt, 'delivery and answer times kept');
    assert.ok(Date.parse(done.acknowledgedAt as string) >= Date.parse(done.createdAt));
    const seen = commandEvents.filter((e) => e.id === c.id).map((e) => e.state);
    assert.equal(seen[0], 'pending', 'creation emitted on the bus');
    assert.equal(seen.at(-1), 'acknowledged', 'the answer emitted on the bus');
    await p.waitFor(
      () => streamedStates.some((x) => x.id === c.id && x.state === 'acknowledged'),
      5000,
      'the command streamed to the socket',
    );
    assert.equal(streamedStates.find((x) => x.id === c.id)?.state, 'pending');

    const streamed = await readingAfter(p, light.id, before);
    assert.equal(streamed.fields.illuminanceLevel, 0.3);
    assert.equal(streamed.fields.powerState, 'low');
    const stored = await storedAfter(p, light.id, before);
    assert.equal(stored.illuminanceLevel, 0.3);
    assert.equal(stored.powerState, 'low');
    if (stored.status === 'ok') assert.ok((stored.powerConsumption as number) > 1, 'a lit lamp draws power');

    // Switched off: the next reading says so and draws standby power only.
    const offAt = Date.now();
    const off = await created(await send(p, { target: { devices: [light.id] }, action: { powerState: 'off' } }));
    await stateIs(p, (off.commands[0] as CommandRecord).id, 'acknowledged');
    const dark = await storedAfter(p, light.id, offAt);
    assert.equal(dark.powerState, 'off');
    assert.equal(dark.illuminanceLevel, 0);
    assert.ok((dark.powerConsumption as number) < 1, `standby only (${dark.powerConsumption} W)`);
  });

  test('a zone command reaches every street light of that zone, as one batch', async () => {
    const byZone = new Map<string, string[]>();
    for (const l of lights) byZone.set(l.zone, [...(byZone.get(l.zone) ?? []), l.id]);
    const [zone] = [...byZone].sort((a, b) => b[1].length - a[1].length)[0] as [string, string[]];
    const inZone = ((await (await p.api(`/api/v1/devices?family=streetLight&zone=${zone}`)).json()) as { id: string }[]).map((d) => d.id);
    assert.ok(inZone.length >= 2, 'a zone with several lights');
    const before = Date.now();
    const out = await created(await send(p, { target: { zone }, action: { illuminanceLevel: 0.7 } }));
    assert.deepEqual(out.commands.map((c) => c.device).sort(), [...inZone].sort());
    assert.ok(out.commands.every((c) => c.batch === out.batch && c.zone === zone));
    for (const c of out.commands) await stateIs(p, c.id, 'acknowledged');
    const listed = (await (await p.api(`/api/v1/commands?batch=${out.batch}`)).json()) as CommandRecord[];
    assert.deepEqual(listed.map((c) => c.id).sort(), out.commands.map((c) => c.id).sort());
    for (const id of inZone) assert.equal((await readingAfter(p, id, before)).fields.illuminanceLevel, 0.7);
    // A light of another zone got nothing.
    const other = lights.find((l) => l.zone !== zone) as { id: string };
    assert.equal(
      readings.find((r) => r.device === other.id && r.time >= before && r.fields.illuminanceLevel === 0.7),
      undefined,
    );
  });

  test('a list of devices gets one command each; the list filters work', async () => {
    const ids = lights.slice(1, 4).map((l) => l.id);
    const out = await created(await send(p, { target: { devices: ids }, action: { powerState: 'on' } }));
    assert.deepEqual(out.commands.map((c) => c.device).sort(), [...ids].sort());
    for (const c of out.commands) await stateIs(p, c.id, 'acknowledged');
    const ofDevice = (await (await p.api(`/api/v1/commands?device=${ids[0]}&state=acknowledged`)).json()) as CommandRecord[];
    assert.ok(ofDevice.length >= 1 && ofDevice.every((c) => c.device === ids[0] && c.state === 'acknowledged'));
    const limited = (await (await p.api('/api/v1/commands?limit=2')).json()) as CommandRecord[];
    assert.equal(limited.length, 2);
  });

  test('the command history: one entry per request with who, what, target and how its commands ended; its filters', async () => {
    const zone = (lights[0] as { zone: string }).zone;
    const inZone = lights.filter((l) => l.zone === zone);
    const out = await created(await send(p, { target: { zone }, action: { illuminanceLevel: 0.6 } }));
    for (const c of out.commands) await stateIs(p, c.id, 'acknowledged');
    const batches = async (q: Record<string, string>) => {
      const res = await p.api(`/api/v1/commands/batches?${new URLSearchParams(q)}`);
      assert.equal(res.status, 200, await res.clone().text());
      return (await res.json()) as BatchSummary[];
    };
    const has = (list: BatchSummary[]) => list.some((b) => b.batch === out.batch);
    const all = await batches({});
    assert.equal(all[0]?.batch, out.batch, 'newest first');
    const mine = all[0] as BatchSummary;
    assert.deepEqual(mine.target, { zone });
    assert.equal(mine.createdBy, 'test-operator');
    assert.deepEqual(mine.action, { illuminanceLevel: 0.6 });
    assert.equal(mine.size, inZone.length);
    assert.deepEqual(mine.zones, [zone]);
    assert.deepEqual(mine.states, { pending: 0, delivered: 0, acknowledged: inZone.length, failed: 0, expired: 0 });
    assert.equal(mine.reached, inZone.length);
    assert.ok(mine.finishedAt && mine.finishedAt >= mine.createdAt);
    // A list of devices keeps its list as the target.
    const listed = all.find((b) => b.target && 'devices' in b.target);
    assert.ok(listed && listed.size === (listed.target as { devices: string[] }).devices.length);

    assert.ok(has(await batches({ zone })));
    assert.ok(has(await batches({ device: (inZone[0] as { id: string }).id })));
    assert.deepEqual(await batches({ zone: 'no-such-zone' }), []);
    assert.ok(has(await batches({ action: 'dim', by: 'test-operator', outcome: 'done' })));
    assert.ok(!has(await batches({ action: 'off' })));
    assert.ok(!has(await batches({ action: 'on' })));
    assert.ok(!has(await batches({ outcome: 'failed' })));
    assert.ok(!has(await batches({ outcome: 'open' })));
    assert.ok(!has(await batches({ by: 'someone-else' })));
    assert.ok(has(await batches({ since: mine.createdAt, until: mine.createdAt })));
    assert.ok(!has(await batches({ since: new Date(Date.parse(mine.createdAt) + 1).toISOString() })));
    assert.equal((await batches({ limit: '1' })).length, 1);
    assert.equal((await batches({ limit: '1', offset: '1' }))[0]?.batch, all[1]?.batch);
    assert.equal((await p.api('/api/v1/commands/batches?outcome=bogus')).status, 400);
  });
});

describe('commands to offline lights', () => {
  test('one waits as pending and is delivered and acknowledged when the light connects; a short TTL expires', async (t) => {
    const creds = join(p.dataDir, 'late.json');
    const first = fleetOf(p, { streetLight: 1 }, 'late', creds);
    await startFleet(t, first, p, 1);
    const id = 'late-sl-0001';
    await first.stop();
    await p.waitFor(() => !p.platform.parts.broker.isOnline(id), 5000, 'light offline');

    const short = await created(await send(p, { target: { devices: [id] }, action: { illuminanceLevel: 0.2 }, ttlMs: 1000 }));
    const long = await created(await send(p, { target: { devices: [id] }, action: { illuminanceLevel: 0.4 } }));
    const shortId = (short.commands[0] as CommandRecord).id;
    const longId = (long.commands[0] as CommandRecord).id;
    const expired = await stateIs(p, shortId, 'expired', 5000);
    assert.ok(expired.reason, 'expiry says why');
    assert.equal(expired.deliveredAt, null);
    assert.equal((await commandOf(p, longId)).state, 'pending', 'still waiting while the light is offline');

    const reconnectAt = Date.now();
    const second = fleetOf(p, { streetLight: 1 }, 'late', creds);
    await startFleet(t, second, p, 1);
    const done = await stateIs(p, longId, 'acknowledged');
    assert.ok(done.deliveredAt);
    assert.equal((await commandOf(p, shortId)).state, 'expired', 'an expired command is never sent');
    // A light reports its state as it connects (before the waiting command reaches it), then its new state.
    const r = await p.waitFor(
      () => readings.find((x) => x.device === id && x.time >= reconnectAt && x.fields.illuminanceLevel === 0.4),
      8000,
      'the light reporting the level the waiting command set',
    );
    assert.equal((r as EnrichedReading).fields.illuminanceLevel, 0.4);
    assert.equal(second.progress().commands, 1, 'only the live command reached the light');
  });
});

describe('a device answering failed, and bad answers', () => {
  test('delivered on PUBACK, failed with the reason the device gives; bad and foreign acks are refused', async () => {
    const dev = await p.provision('streetLight', { id: 'raw-sl-1' });
    const client: MqttClient = await p.connect(dev.id, dev.token);
    const errors: { code: string; reason: string }[] = [];
    const received: { id: string; action: unknown; issuedAt: string; expiresAt: string }[] = [];
    client.on('message', (topic, payload) => {
      const msg = JSON.parse(payload.toString());
      if (topic.endsWith('/errors')) errors.push(msg);
      else received.push(msg);
    });
    await client.subscribeAsync([`devices/${dev.id}/commands`, `devices/${dev.id}/errors`], { qos: 1 });
    await p.waitFor(() => p.platform.parts.broker.isSubscribed(dev.id, `devices/${dev.id}/commands`), 5000, 'subscribed');

    const out = await created(await send(p, { target: { devices: [dev.id] }, action: { powerState: 'on', illuminanceLevel: 0.8 } }));
    const c = out.commands[0] as CommandRecord;
    const delivered = await stateIs(p, c.id, 'delivered');
    assert.ok(delivered.deliveredAt);
    assert.deepEqual(received, [
      { id: c.id, action: { powerState: 'on', illuminanceLevel: 0.8 }, issuedAt: c.createdAt, expiresAt: c.expiresAt },
    ]);

    // An ack that breaks its schema, and one for a command of another device: refused on the errors topic.
    await client.publishAsync(`devices/${dev.id}/acks`, json({ id: c.id, status: 'maybe', at: new Date().toISOString() }), { qos: 1 });
    await p.waitFor(() => errors.some((e) => e.code === 'CP_COMMAND_BAD_ACK'), 5000, 'bad ack refused');
    const foreign = await created(
      await send(p, { target: { devices: [(lights[5] as { id: string }).id] }, action: { illuminanceLevel: 0.9 } }),
    );
    const foreignId = (foreign.commands[0] as CommandRecord).id;
    await client.publishAsync(`devices/${dev.id}/acks`, json({ id: foreignId, status: 'failed', at: new Date().toISOString() }), {
      qos: 1,
    });
    await p.waitFor(() => errors.some((e) => e.code === 'CP_COMMAND_NOT_FOUND'), 5000, 'foreign ack refused');
    assert.equal((await stateIs(p, foreignId, 'acknowledged')).reason, null, 'the other device’s command keeps its own answer');
    assert.equal((await commandOf(p, c.id)).state, 'delivered', 'bad acks changed nothing');

    await client.publishAsync(
      `devices/${dev.id}/acks`,
      json({ id: c.id, status: 'failed', reason: 'driver fault', at: new Date().toISOString() }),
      { qos: 1 },
    );
    const failed = await stateIs(p, c.id, 'failed');
    assert.equal(failed.reason, 'driver fault');
    assert.ok(failed.acknowledgedAt);
    // A later ok does not overturn the first answer.
    await client.publishAsync(`devices/${dev.id}/acks`, json({ id: c.id, status: 'ok', at: Date.now() }), { qos: 1 });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await commandOf(p, c.id)).state, 'failed');
    assert.ok(client.connected, 'acks on its own topic keep the connection');

    // A device may not answer on another device's acks topic: the broker closes the connection.
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish(`devices/${(lights[0] as { id: string }).id}/acks`, json({ id: c.id, status: 'ok', at: Date.now() }), { qos: 1 });
    await closed;
  });
});

describe('access and bad requests', () => {
  test('a viewer reads but may not send; bad targets and actions get problem documents and create nothing', async () => {
    const light = (lights[6] as { id: string }).id;
    await problemOf(await send(p, { target: { devices: [light] }, action: { powerState: 'on' } }, 'viewer'), 403, 'CP_API_FORBIDDEN');
    const viewerList = await p.api('/api/v1/commands', { as: 'viewer' });
    assert.equal(viewerList.status, 200);
    const countBefore = ((await (await p.api('/api/v1/commands?limit=1000')).json()) as unknown[]).length;

    await problemOf(
      await send(p, { target: { devices: ['no-such-light'] }, action: { powerState: 'on' } }),
      404,
      'CP_REGISTRY_DEVICE_NOT_FOUND',
    );
    await problemOf(await send(p, { target: { devices: [trafficId] }, action: { powerState: 'on' } }), 400, 'CP_COMMAND_WRONG_FAMILY');
    await problemOf(
      await send(p, { target: { devices: [light, trafficId] }, action: { powerState: 'on' } }),
      400,
      'CP_COMMAND_WRONG_FAMILY',
    );
    await problemOf(await send(p, { target: { zone: 'atlantis' }, action: { powerState: 'on' } }), 400, 'CP_REGISTRY_UNKNOWN_ZONE');
    await problemOf(await send(p, { target: {}, action: { powerState: 'on' } }), 400, 'CP_API_VALIDATION');
    await problemOf(
      await send(p, { target: { devices: [light], zone: 'tran-phu' }, action: { powerState: 'on' } }),
      400,
      'CP_API_VALIDATION',
    );
    for (const action of [
      { illuminanceLevel: 2 },
      {},
      { powerState: 'dim' },
      { colour: 'red' },
      { powerState: 'off', illuminanceLevel: 0.5 },
    ]) {
      await problemOf(await send(p, { target: { devices: [light] }, action }), 400, 'CP_COMMAND_BAD_ACTION');
    }
    await problemOf(await send(p, { target: { devices: [light] }, action: { powerState: 'on' }, ttlMs: 10 }), 400, 'CP_API_VALIDATION');
    await problemOf(await p.api('/api/v1/commands/00000000-0000-0000-0000-000000000000'), 404, 'CP_COMMAND_NOT_FOUND');
    const countAfter = ((await (await p.api('/api/v1/commands?limit=1000')).json()) as unknown[]).length;
    assert.equal(countAfter, countBefore, 'no command was created by a refused request');

    // Creations are audited with the operator and the batch.
    const audit = (await (await p.api('/api/v1/audit?action=command.create', { admin: true })).json()) as {
      actor: string;
      outcome: string;
      target: string | null;
    }[];
    assert.ok(audit.some((a) => a.actor === 'test-operator' && a.outcome === 'ok' && /^batch /.test(a.target ?? '')));
    assert.ok(audit.some((a) => a.actor === 'test-viewer' && a.outcome === 'CP_API_FORBIDDEN'));
  });
});

describe('schedules', () => {
  test('each edge creates a batch of commands that the lights obey; schedules are listed and deleted', async () => {
    const tz = p.platform.parts.profile.timezone;
    const targets = lights.slice(7, 10).map((l) => l.id);
    const now = Date.now();
    const from = localTime(now + 2500, tz);
    const to = localTime(now + 5000, tz);
    const res = await p.api('/api/v1/schedules', {
      method: 'POST',
      as: 'operator',
      body: json({
        name: 'night dimming (test)',
        target: { devices: targets },
        from,
        to,
        action: { illuminanceLevel: 0.5 },
        endAction: { illuminanceLevel: 1 },
      }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const s = (await res.json()) as { id: string; timeZone: string; from: string; to: string; enabled: boolean };
    assert.equal(s.timeZone, tz);
    assert.deepEqual([s.from, s.to, s.enabled], [from, to, true]);
    assert.ok(((await (await p.api('/api/v1/schedules')).json()) as { id: string }[]).some((x) => x.id === s.id));

    const batch = async () => (await (await p.api(`/api/v1/commands?batch=${s.id}`)).json()) as CommandRecord[];
    assert.equal((await batch()).length, 0, 'nothing before the first edge');
    const startEdge = (await p.waitFor(
      async () => ((await batch()).length >= 3 ? batch() : undefined),
      8000,
      'the from edge',
    )) as CommandRecord[];
    assert.deepEqual(startEdge.map((c) => c.device).sort(), [...targets].sort());
    assert.ok(
      startEdge.every((c) => c.createdBy === `schedule:${s.id}` && (c.action as { illuminanceLevel: number }).illuminanceLevel === 0.5),
    );
    for (const c of startEdge) await stateIs(p, c.id, 'acknowledged');
    const dimmedSince = Date.parse((startEdge[0] as CommandRecord).createdAt);
    for (const id of targets) assert.equal((await readingAfter(p, id, dimmedSince)).fields.illuminanceLevel, 0.5);

    const all = (await p.waitFor(async () => ((await batch()).length >= 6 ? batch() : undefined), 8000, 'the to edge')) as CommandRecord[];
    const endEdge = all.filter((c) => (c.action as { illuminanceLevel: number }).illuminanceLevel === 1);
    assert.equal(endEdge.length, 3);
    for (const c of endEdge) await stateIs(p, c.id, 'acknowledged');
    const restoredSince = Date.parse((endEdge[0] as CommandRecord).createdAt);
    for (const id of targets) {
      const r = await readingAfter(p, id, restoredSince);
      assert.equal(r.fields.illuminanceLevel, 1);
      assert.equal(r.fields.powerState, 'on');
    }
    const got = (await (await p.api(`/api/v1/schedules/${s.id}`)).json()) as { lastEdge: { edge: string } };
    assert.equal(got.lastEdge.edge, 'to');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await batch()).length, 6, 'each edge fired once');
    const audit = (await (await p.api('/api/v1/audit?action=command.create', { admin: true })).json()) as {
      actor: string;
      target: string;
    }[];
    assert.ok(
      audit.some((a) => a.actor === '(system)' && a.target === s.id),
      'schedule batches audited',
    );

    await problemOf(await p.api(`/api/v1/schedules/${s.id}`, { method: 'DELETE', as: 'viewer' }), 403, 'CP_API_FORBIDDEN');
    assert.equal((await p.api(`/api/v1/schedules/${s.id}`, { method: 'DELETE', as: 'operator' })).status, 200);
    assert.ok(!((await (await p.api('/api/v1/schedules')).json()) as { id: string }[]).some((x) => x.id === s.id));
    await problemOf(await p.api(`/api/v1/schedules/${s.id}`, { method: 'DELETE', as: 'operator' }), 404, 'CP_COMMAND_SCHEDULE_NOT_FOUND');
  });

  test('bad schedules are refused', async () => {
    const light = (lights[0] as { id: string }).id;
    const post = (body: unknown) => p.api('/api/v1/schedules', { method: 'POST', as: 'operator', body: json(body) });
    const base = { name: 'x', target: { devices: [light] }, from: '23:00', to: '05:00', action: { illuminanceLevel: 0.5 } };
    await problemOf(await post({ ...base, from: '24:00' }), 400, 'CP_API_VALIDATION');
    await problemOf(await post({ ...base, to: '23:00' }), 400, 'CP_COMMAND_BAD_SCHEDULE');
    await problemOf(await post({ ...base, endAction: { illuminanceLevel: -1 } }), 400, 'CP_COMMAND_BAD_ACTION');
    await problemOf(await post({ ...base, target: { devices: [trafficId] } }), 400, 'CP_COMMAND_WRONG_FAMILY');
    await problemOf(await p.api('/api/v1/schedules', { method: 'POST', as: 'viewer', body: json(base) }), 403, 'CP_API_FORBIDDEN');
  });
});

describe('schedule edges and the simulated lamp, without a platform', () => {
  const HCM = 'Asia/Ho_Chi_Minh'; // UTC+7, no daylight saving
  const utc = (s: string) => Date.parse(s);
  const edges = { from: 23 * 3600, to: 5 * 3600 };

  test('the latest edge passed in a window, across midnight and across days', () => {
    // 23:00 in Hanoi is 16:00 UTC.
    assert.deepEqual(latestEdge(edges, utc('2025-03-01T15:59:59Z'), utc('2025-03-01T16:00:00Z'), HCM), {
      edge: 'from',
      at: utc('2025-03-01T16:00:00Z'),
    });
    assert.equal(latestEdge(edges, utc('2025-03-01T16:00:00Z'), utc('2025-03-01T16:00:01Z'), HCM), undefined, 'an edge fires once');
    // 05:00 the next local morning is 22:00 UTC.
    assert.deepEqual(latestEdge(edges, utc('2025-03-01T16:00:00Z'), utc('2025-03-01T22:00:00.500Z'), HCM)?.edge, 'to');
    // Down for two days: only the latest edge (the state the lights should be in) is reported.
    assert.deepEqual(latestEdge(edges, utc('2025-03-01T12:00:00Z'), utc('2025-03-03T17:00:00Z'), HCM), {
      edge: 'from',
      at: utc('2025-03-03T16:00:00Z'),
    });
    // Seconds count: HH:MM:SS edges.
    assert.deepEqual(
      latestEdge({ from: 12 * 3600 + 5, to: 12 * 3600 + 9 }, utc('2025-03-01T05:00:06Z'), utc('2025-03-01T05:00:10Z'), HCM),
      {
        edge: 'to',
        at: utc('2025-03-01T05:00:09Z'),
      },
    );
    // A zone with daylight saving: 02:30 local on the spring-forward day of Berlin does not exist; 03:00 is 01:00 UTC.
    assert.deepEqual(
      latestEdge({ from: 3 * 3600, to: 4 * 3600 }, utc('2025-03-30T00:30:00Z'), utc('2025-03-30T01:30:00Z'), 'Europe/Berlin'),
      {
        edge: 'from',
        at: utc('2025-03-30T01:00:00Z'),
      },
    );
  });

  test('a command overrides the lamp’s programme until the programme’s next switch', () => {
    const lamp = createStreetLightModel(createRng(3), { timeZone: HCM, ratedPowerW: 100, faultProbability: 0 });
    // 12:00 local (05:00 UTC): daytime, the programme keeps the lamp off.
    assert.equal(lamp.next(new Date('2025-03-01T05:00:00Z')).powerState, 'off');
    assert.equal(lamp.command({ illuminanceLevel: 0.4 }, new Date('2025-03-01T05:00:01Z')), 0.4);
    const lit = lamp.next(new Date('2025-03-01T05:00:02Z'));
    assert.deepEqual([lit.powerState, lit.illuminanceLevel], ['low', 0.4]);
    assert.ok(
      (lit.powerConsumption as number) > 35 && (lit.powerConsumption as number) < 45,
      `40 W at 40 % of 100 W (${lit.powerConsumption})`,
    );
    assert.equal(lamp.next(new Date('2025-03-01T09:00:00Z')).illuminanceLevel, 0.4, 'still in force in the afternoon');
    // 19:00 local (12:00 UTC): past dusk, the programme switched on: it rules again (full output).
    const evening = lamp.next(new Date('2025-03-01T12:00:00Z'));
    assert.deepEqual([evening.powerState, evening.illuminanceLevel], ['on', 1]);
    // Switched off at 20:00 local; "on" alone afterwards brings full output back.
    lamp.command({ powerState: 'off' }, new Date('2025-03-01T13:00:00Z'));
    const dark = lamp.next(new Date('2025-03-01T13:00:01Z'));
    assert.deepEqual([dark.powerState, dark.illuminanceLevel], ['off', 0]);
    assert.ok((dark.powerConsumption as number) < 1);
    assert.equal(lamp.command({ powerState: 'on' }, new Date('2025-03-01T13:00:02Z')), 1);
    lamp.command({ illuminanceLevel: 0.6 }, new Date('2025-03-01T13:00:03Z'));
    assert.equal(lamp.command({ powerState: 'on' }, new Date('2025-03-01T13:00:04Z')), 0.6, '"on" keeps the commanded dimming');
    // Midnight: the programme's night dimming starts and takes over.
    assert.equal(lamp.next(new Date('2025-03-01T17:00:30Z')).illuminanceLevel, 0.5);
  });
});

describe('restart', () => {
  test('pending commands and schedules survive a restart; the command is served when the light connects', async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-commands-'));
    onCleanup(t, () => rm(dataDir, { recursive: true, force: true }));
    const creds = join(dataDir, 'sim.json');
    const first = await startTestPlatform(t, { dataDir, commands: COMMANDS }, { influx });
    const f1 = fleetOf(first, { streetLight: 1 }, 'rs', creds);
    await startFleet(t, f1, first, 1);
    await f1.stop();
    const id = 'rs-sl-0001';
    await first.waitFor(() => !first.platform.parts.broker.isOnline(id), 5000, 'light offline');
    const c = (await created(await send(first, { target: { devices: [id] }, action: { illuminanceLevel: 0.6 } })))
      .commands[0] as CommandRecord;
    const sched = await first.api('/api/v1/schedules', {
      method: 'POST',
      as: 'operator',
      body: json({ name: 'kept', target: { devices: [id] }, from: '23:00', to: '05:00', action: { illuminanceLevel: 0.5 } }),
    });
    assert.equal(sched.status, 201, await sched.clone().text());
    const scheduleId = ((await sched.json()) as { id: string }).id;
    await first.platform.stop();

    const second = await startTestPlatform(
      t,
      { dataDir, commands: COMMANDS, influx: { database: first.platform.config.influx.database } },
      { influx },
    );
    const kept = await commandOf(second, c.id);
    assert.equal(kept.state, 'pending');
    assert.deepEqual(kept.action, { illuminanceLevel: 0.6 });
    const schedules = (await (await second.api('/api/v1/schedules')).json()) as { id: string; target: unknown }[];
    assert.deepEqual(schedules.find((s) => s.id === scheduleId)?.target, { devices: [id] });
    const since = Date.now();
    const seen: EnrichedReading[] = [];
    second.platform.bus.on('reading', (r) => seen.push(r));
    const f2 = fleetOf(second, { streetLight: 1 }, 'rs', creds);
    await startFleet(t, f2, second, 1);
    await stateIs(second, c.id, 'acknowledged');
    // A light reports its state as it connects (before the kept command reaches it), then its new state.
    const r = (await second.waitFor(
      () => seen.find((x) => x.device === id && x.time >= since && x.fields.illuminanceLevel === 0.6),
      8000,
      'the light reporting the level the kept command set after the restart',
    )) as EnrichedReading;
    assert.equal(r.fields.illuminanceLevel, 0.6);
  });
});
