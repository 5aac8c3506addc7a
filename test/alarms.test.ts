/**
 * Rules and alarms on a real platform: devices over real MQTT.js through the broker and ingest, AQI
 * indices from the real analytics component, alarms in SQLite, REST by real operators. Every default rule:
 * a sustained condition raises exactly one alarm (repeats do not duplicate), a short blip raises none, the
 * alarm clears with hysteresis (a value between the raise and clear conditions keeps it open), and an open
 * alarm survives a restart (second platform on the same dataDir and InfluxDB) without duplication. Plus the
 * lifecycle over REST (acknowledge, clear, 403, 404, 409, audit, bus events; a condition that still holds after
 * a clear by hand raises a new alarm after forMs), the list's filters, sorts, search, paging and order,
 * own rules from config (threshold, rateOfChange, noData) and config validation.
 *
 * Durations are shortened through config overrides (forMs 1.2 s, clearForMs 0.8 s, tick 50 ms).
 *
 * Run: node --import tsx --test test/alarms.test.ts
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import type { ConfigInput } from '../platform/config.ts';
import { loadConfig } from '../platform/config.ts';
import type { AlarmRecord } from '../core/bus.ts';
import { PlatformError } from '../core/errors.ts';
import { startTestInflux, type TestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const FOR = 1200;
const CLEAR = 800;
const EVERY = 150;
const scope = fileScope();
let influx: TestInflux;
let p: TestPlatform;
const busEvents: AlarmRecord[] = [];

const OVERRIDES: ConfigInput = {
  alarms: {
    tickMs: 50,
    defaults: {
      'lamp-fault': { forMs: FOR, clearForMs: CLEAR },
      'lamp-on-in-daylight': { forMs: FOR, clearForMs: CLEAR },
      congestion: { forMs: FOR, clearForMs: CLEAR },
      // Level 3 (Kém) sits between the raise (≥ 4) and this clear threshold (clears at ≤ 2).
      'aqi-category': { forMs: FOR, clearForMs: CLEAR, clearValue: 3 },
      'device-offline': { forMs: FOR, clearForMs: CLEAR },
    },
    rules: [
      {
        id: 'pm10-high',
        kind: 'threshold',
        family: 'airQuality',
        field: 'pm10',
        op: '>',
        value: 300,
        clearValue: 200,
        forMs: FOR,
        severity: 'critical',
      },
      {
        id: 'noise-jump',
        kind: 'rateOfChange',
        family: 'airQuality',
        field: 'noise',
        maxPerMinute: 600,
        clearPerMinute: 60,
        direction: 'up',
        severity: 'minor',
      },
      { id: 'traffic-silent', kind: 'noData', family: 'traffic', periodMs: 1500, severity: 'warning' },
    ],
  } as ConfigInput['alarms'],
  analytics: { aqiEmitIntervalMs: 0 },
} as ConfigInput;

before(async () => {
  influx = await startTestInflux(scope);
  p = await startTestPlatform(scope, OVERRIDES, { influx });
  p.platform.bus.on('alarm', (a) => busEvents.push(structuredClone(a)));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const json = (b: unknown) => JSON.stringify(b);

type Dev = { id: string; token: string; client: MqttClient };

/** Provisions a device (at `location` when given) and connects it over MQTT.js. */
async function device(tp: TestPlatform, family: string, id: string, location?: { lat: number; lon: number }): Promise<Dev> {
  const zone = tp.platform.parts.profile.zones.find((z) => z.centre)?.id as string;
  const res = await tp.api('/api/v1/devices', {
    method: 'POST',
    admin: true,
    body: json({ id, family, zone, location: location ?? { lat: 21.27, lon: 106.19 } }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const { token } = (await res.json()) as { token: string };
  return { id, token, client: await tp.connect(id, token) };
}

function send(d: Dev, reading: object): Promise<unknown> {
  return d.client.publishAsync(`devices/${d.id}/telemetry`, json(reading), { qos: 1 });
}

/** Sends `reading` every EVERY ms for `ms`. */
async function hold(d: Dev, reading: object, ms: number): Promise<void> {
  const until = Date.now() + ms;
  do {
    await send(d, reading);
    await sleep(EVERY);
  } while (Date.now() < until);
}

async function alarms(tp: TestPlatform, query: Record<string, string>): Promise<AlarmRecord[]> {
  const res = await tp.api(`/api/v1/alarms?${new URLSearchParams({ limit: '1000', ...query })}`);
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as AlarmRecord[];
}

/** Waits until exactly one alarm of (rule, subject) exists and matches `pred`; returns it. */
async function theAlarm(
  tp: TestPlatform,
  rule: string,
  subject: string,
  pred: (a: AlarmRecord) => boolean,
  what: string,
): Promise<AlarmRecord> {
  return tp.waitFor<AlarmRecord | undefined>(
    async () => {
      const list = await alarms(tp, { rule, subject });
      assert.ok(list.length <= 1, `at most one alarm of ${rule} for ${subject}, got ${list.length}`);
      return list[0] && pred(list[0]) ? list[0] : undefined;
    },
    8000,
    what,
  ) as Promise<AlarmRecord>;
}

async function alarmById(id: number, tp: TestPlatform = p): Promise<AlarmRecord> {
  const res = await tp.api(`/api/v1/alarms/${id}`);
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as AlarmRecord;
}

async function none(tp: TestPlatform, rule: string, subject: string): Promise<void> {
  assert.deepEqual(await alarms(tp, { rule, subject }), [], `no ${rule} alarm for ${subject}`);
}

async function audit(tp: TestPlatform, action: string): Promise<{ actor: string; target: string; outcome: string }[]> {
  const res = await tp.api(`/api/v1/audit?${new URLSearchParams({ action, limit: '1000' })}`, { admin: true });
  return (await res.json()) as { actor: string; target: string; outcome: string }[];
}

/** System raise and clear went out on the bus and into the audit log. */
async function assertRaisedAndClearedBySystem(a: AlarmRecord): Promise<void> {
  assert.ok(
    busEvents.some((e) => e.id === a.id && e.state === 'active'),
    'raise emitted on the bus',
  );
  assert.ok(
    busEvents.some((e) => e.id === a.id && e.state === 'cleared' && e.clearedBy === 'system'),
    'clear emitted on the bus',
  );
  for (const action of ['alarm.raise', 'alarm.clear']) {
    const entries = await audit(p, action);
    assert.ok(
      entries.some((e) => e.target === `alarm:${a.id}` && e.actor === '(system)' && e.outcome === 'ok'),
      `${action} of alarm ${a.id} audited as (system)`,
    );
  }
}

/** A longitude where the local solar time is now `hour` (at the equator: noon is day, midnight night). */
function lonAtSolarHour(hour: number): number {
  const utcHours = (Date.now() % 86_400_000) / 3_600_000;
  const lon = (hour - utcHours) * 15;
  return ((((lon + 180) % 360) + 360) % 360) - 180;
}

const LAMP_OK = { powerState: 'on', powerConsumption: 40, status: 'ok', illuminanceLevel: 1 };
const LAMP_DARK = { powerState: 'on', powerConsumption: 0.2, status: 'ok', illuminanceLevel: 1 };

describe('default rules', () => {
  test('lamp-fault: sustained raises one alarm, a blip none, clears with hysteresis (1 W raise, 5 W clear)', async () => {
    const d = await device(p, 'streetLight', 'sl-fault-1');
    const blip = await device(p, 'streetLight', 'sl-fault-blip');

    await send(blip, LAMP_DARK);
    await sleep(300);
    await send(blip, LAMP_OK);

    await hold(d, LAMP_DARK, FOR + 400);
    const a = await theAlarm(p, 'lamp-fault', d.id, (x) => x.state === 'active', 'lamp-fault raised');
    assert.equal(a.severity, 'major');
    assert.equal(a.family, 'streetLight');
    assert.equal(a.scope, 'device');
    assert.equal(a.value, 0.2);
    assert.match(a.message, /0\.2 W/);
    await hold(d, LAMP_DARK, 500); // repeats do not duplicate
    await hold(d, { ...LAMP_OK, status: 'brokenLantern' }, 300); // another fault reason: still the same alarm
    assert.equal((await alarms(p, { rule: 'lamp-fault', subject: d.id })).length, 1);
    await none(p, 'lamp-fault', blip.id);

    await hold(d, { ...LAMP_DARK, powerConsumption: 3 }, CLEAR + 500); // between 1 W and 5 W: stays open
    const still = await alarms(p, { rule: 'lamp-fault', subject: d.id });
    assert.equal(still.length, 1);
    assert.equal(still[0]?.state, 'active');
    await hold(d, LAMP_OK, CLEAR + 300);
    const cleared = await theAlarm(p, 'lamp-fault', d.id, (x) => x.state === 'cleared', 'lamp-fault cleared');
    assert.equal(cleared.clearedBy, 'system');
    assert.ok(cleared.conditionClearedAt && cleared.clearedAt);
    await assertRaisedAndClearedBySystem(cleared);
  });

  test('lamp-on-in-daylight: by the sun at the lamp’s location; a blip none; "bootingUp" and a short off keep it open', async () => {
    const day = { lat: 0, lon: lonAtSolarHour(12) };
    const night = { lat: 0, lon: lonAtSolarHour(0) };
    const d = await device(p, 'streetLight', 'sl-day-1', day);
    const dark = await device(p, 'streetLight', 'sl-night-1', night);
    const blip = await device(p, 'streetLight', 'sl-day-blip', day);
    const OFF = { powerState: 'off', powerConsumption: 0, status: 'ok', illuminanceLevel: 0 };

    await send(blip, LAMP_OK);
    await sleep(300);
    await send(blip, OFF);
    await Promise.all([hold(d, LAMP_OK, FOR + 400), hold(dark, LAMP_OK, FOR + 400)]);
    const a = await theAlarm(p, 'lamp-on-in-daylight', d.id, (x) => x.state === 'active', 'lamp-on-in-daylight raised');
    assert.equal(a.severity, 'minor');
    await hold(d, { ...LAMP_OK, powerState: 'low', illuminanceLevel: 0.5, powerConsumption: 20 }, 400);
    assert.equal((await alarms(p, { rule: 'lamp-on-in-daylight', subject: d.id })).length, 1);
    await none(p, 'lamp-on-in-daylight', dark.id); // on at night is what lamps are for
    await none(p, 'lamp-on-in-daylight', blip.id);

    await hold(d, { ...OFF, powerState: 'bootingUp' }, CLEAR + 400); // neither on nor off
    await send(d, OFF); // off for less than clearForMs
    await sleep(CLEAR / 3);
    await hold(d, LAMP_OK, 300);
    const still = await alarms(p, { rule: 'lamp-on-in-daylight', subject: d.id });
    assert.equal(still[0]?.state, 'active');
    assert.equal(still.length, 1);
    await hold(d, OFF, CLEAR + 300);
    const cleared = await theAlarm(p, 'lamp-on-in-daylight', d.id, (x) => x.state === 'cleared', 'cleared');
    await assertRaisedAndClearedBySystem(cleared);
  });

  test('congestion: occupancy ≥ 0.35 or congested raises; 0.2..0.35 keeps it open; < 0.2 and not congested clears', async () => {
    const d = await device(p, 'traffic', 'tf-cong-1');
    const flag = await device(p, 'traffic', 'tf-cong-flag');
    const blip = await device(p, 'traffic', 'tf-cong-blip');
    const FREE = { intensity: 20, occupancy: 0.1, congested: false };

    await send(blip, { intensity: 50, occupancy: 0.6, congested: true });
    await sleep(300);
    await send(blip, FREE);
    await Promise.all([
      hold(d, { intensity: 50, occupancy: 0.5, congested: false }, FOR + 400),
      hold(flag, { intensity: 50, occupancy: 0.1, congested: true }, FOR + 400),
    ]);
    const a = await theAlarm(p, 'congestion', d.id, (x) => x.state === 'active', 'congestion raised');
    assert.equal(a.value, 0.5);
    await theAlarm(p, 'congestion', flag.id, (x) => x.state === 'active', 'congestion raised by the congested flag');
    await hold(d, { intensity: 50, occupancy: 0.45 }, 400);
    assert.equal((await alarms(p, { rule: 'congestion', subject: d.id })).length, 1);
    await none(p, 'congestion', blip.id);

    await hold(d, { intensity: 30, occupancy: 0.3, congested: false }, CLEAR + 400);
    assert.equal((await alarms(p, { rule: 'congestion', subject: d.id }))[0]?.state, 'active');
    await hold(flag, { intensity: 30, occupancy: 0.1, congested: true }, 200); // still flagged
    await hold(d, FREE, CLEAR + 300);
    const cleared = await theAlarm(p, 'congestion', d.id, (x) => x.state === 'cleared', 'congestion cleared');
    await assertRaisedAndClearedBySystem(cleared);
    assert.equal((await alarms(p, { rule: 'congestion', subject: flag.id }))[0]?.state, 'active');
  });

  test('device-offline: offline for forMs raises; a quick reconnect none; a short reconnect keeps it open', async () => {
    const d = await device(p, 'airQuality', 'aq-off-1');
    const blip = await device(p, 'airQuality', 'aq-off-blip');
    await Promise.all([d.client.endAsync(), blip.client.endAsync()]);
    await sleep(300);
    const back = await p.connect(blip.id, blip.token);
    const a = await theAlarm(p, 'device-offline', d.id, (x) => x.state === 'active', 'device-offline raised');
    assert.equal(a.severity, 'warning');
    await sleep(400);
    assert.equal((await alarms(p, { rule: 'device-offline', subject: d.id })).length, 1);
    await none(p, 'device-offline', blip.id);
    assert.ok(back.connected);

    const brief = await p.connect(d.id, d.token); // online for less than clearForMs
    await sleep(CLEAR / 3);
    await brief.endAsync();
    await sleep(CLEAR + 300);
    const still = await alarms(p, { rule: 'device-offline', subject: d.id });
    assert.equal(still.length, 1);
    assert.equal(still[0]?.state, 'active');
    await p.connect(d.id, d.token);
    const cleared = await theAlarm(p, 'device-offline', d.id, (x) => x.state === 'cleared', 'device-offline cleared');
    await assertRaisedAndClearedBySystem(cleared);
  });

  test('aqi-category: hourly VN_AQI level ≥ 4 (Xấu) from analytics raises; level 3 keeps it open; level 2 clears', async () => {
    const H = 3_600_000;
    const hour = Math.floor(Date.now() / H) * H;
    const at = (k: number) => hour + k * H + 60_000;
    const d = await device(p, 'airQuality', 'aq-aqi-1');
    const blip = await device(p, 'airQuality', 'aq-aqi-blip');
    const levels: Record<string, number[]> = {};
    const onAqi = (e: { scope: string; id: string; period: string; vn: { level: number } | null }) => {
      if (e.scope !== 'station' || e.period !== 'hour' || !e.vn) return;
      levels[e.id] ??= [];
      levels[e.id]?.push(e.vn.level);
    };
    p.platform.bus.on('aqi', onAqi);
    try {
      // PM2.5 100 µg/m³ in two hours: NowCast 100 → VN_AQI 164, level 4 (Xấu).
      await send(blip, { dateObserved: at(-2), pm25: 100, pm10: 100 });
      await send(blip, { dateObserved: at(-1), pm25: 100, pm10: 100 });
      await sleep(300);
      // A cleaner hour right after: NowCast (5, 100, 100) → about 46 → level 2.
      await send(blip, { dateObserved: at(0), pm25: 5, pm10: 5 });

      await send(d, { dateObserved: at(-2), pm25: 100, pm10: 100 });
      await hold(d, { dateObserved: at(-1), pm25: 100, pm10: 100 }, FOR + 400);
      const a = await theAlarm(p, 'aqi-category', d.id, (x) => x.state === 'active', 'aqi-category raised');
      assert.equal(a.severity, 'major');
      assert.equal(a.value, 4);
      assert.match(a.message, /level 4/);
      await hold(d, { dateObserved: at(-1), pm25: 100, pm10: 100 }, 300);
      assert.equal((await alarms(p, { rule: 'aqi-category', subject: d.id })).length, 1);
      await none(p, 'aqi-category', blip.id);
      assert.ok(levels[blip.id]?.includes(4) && levels[blip.id]?.at(-1) === 2, `the blip went 4 → 2: ${levels[blip.id]}`);

      // NowCast (30, 100, 100) = 60 → VN_AQI 117, level 3: between raise (≥ 4) and clear (≤ 2).
      await hold(d, { dateObserved: at(0), pm25: 30, pm10: 30 }, CLEAR + 400);
      assert.equal(levels[d.id]?.at(-1), 3);
      assert.equal((await alarms(p, { rule: 'aqi-category', subject: d.id }))[0]?.state, 'active');
      // NowCast (5, 30, 100, 100) ≈ 31 → level 2.
      await hold(d, { dateObserved: at(1), pm25: 5, pm10: 5 }, CLEAR + 300);
      assert.equal(levels[d.id]?.at(-1), 2);
      const cleared = await theAlarm(p, 'aqi-category', d.id, (x) => x.state === 'cleared', 'aqi-category cleared');
      await assertRaisedAndClearedBySystem(cleared);
    } finally {
      p.platform.bus.off('aqi', onAqi);
    }
  });
});

describe('lifecycle over REST', () => {
  test('acknowledge and clear by an operator, 403 for a viewer, 404, 409; a condition that still holds raises again after forMs', async () => {
    const d = await device(p, 'streetLight', 'sl-ack-1');
    await hold(d, LAMP_DARK, FOR + 300);
    const a = await theAlarm(p, 'lamp-fault', d.id, (x) => x.state === 'active', 'raised');
    const post = (path: string, as: 'viewer' | 'operator', body: object) => p.api(path, { method: 'POST', as, body: json(body) });

    const forbidden = await post(`/api/v1/alarms/${a.id}/acknowledge`, 'viewer', {});
    assert.equal(forbidden.status, 403);
    assert.equal(((await forbidden.json()) as { code: string }).code, 'CP_API_FORBIDDEN');
    assert.equal((await post(`/api/v1/alarms/${a.id}/clear`, 'viewer', { note: 'x' })).status, 403);

    const acked = await post(`/api/v1/alarms/${a.id}/acknowledge`, 'operator', { note: 'crew sent' });
    assert.equal(acked.status, 200);
    const ackBody = (await acked.json()) as AlarmRecord;
    assert.equal(ackBody.state, 'acknowledged');
    assert.equal(ackBody.acknowledgedBy, 'test-operator');
    assert.ok(ackBody.acknowledgedAt);
    const again = await post(`/api/v1/alarms/${a.id}/acknowledge`, 'operator', {});
    assert.equal(again.status, 409);
    assert.equal(again.headers.get('content-type')?.split(';')[0], 'application/problem+json');
    assert.equal(((await again.json()) as { code: string }).code, 'CP_ALARM_WRONG_STATE');

    assert.equal((await post(`/api/v1/alarms/${a.id}/clear`, 'operator', {})).status, 400, 'clearing needs a note');
    const cleared = await post(`/api/v1/alarms/${a.id}/clear`, 'operator', { note: 'lamp replaced' });
    assert.equal(cleared.status, 200);
    const clearBody = (await cleared.json()) as AlarmRecord;
    assert.equal(clearBody.state, 'cleared');
    assert.equal(clearBody.clearedBy, 'test-operator');
    assert.equal(clearBody.conditionClearedAt, null, 'the condition still holds');

    const ackCleared = await post(`/api/v1/alarms/${a.id}/acknowledge`, 'operator', {});
    assert.equal(ackCleared.status, 409);
    assert.equal(((await ackCleared.json()) as { code: string }).code, 'CP_ALARM_WRONG_STATE');
    assert.equal((await post(`/api/v1/alarms/${a.id}/clear`, 'operator', { note: 'again' })).status, 409);
    const unknown = await post('/api/v1/alarms/99999999/acknowledge', 'operator', {});
    assert.equal(unknown.status, 404);
    assert.equal(((await unknown.json()) as { code: string }).code, 'CP_ALARM_NOT_FOUND');
    assert.equal((await p.api('/api/v1/alarms/99999999')).status, 404);
    assert.equal((await p.api('/api/v1/alarms/abc')).status, 400);

    const detail = (await (await p.api(`/api/v1/alarms/${a.id}`)).json()) as AlarmRecord & {
      notes: { actor: string; action: string; note: string | null }[];
    };
    assert.deepEqual(
      detail.notes.map((n) => [n.actor, n.action, n.note]),
      [
        ['system', 'raise', null],
        ['test-operator', 'acknowledge', 'crew sent'],
        ['test-operator', 'clear', 'lamp replaced'],
      ],
    );

    // The condition still holds: it counts anew from the clear, and a new alarm is raised once it has held forMs
    // again (not at once, and not only after the condition has ended).
    const clearedAt = Date.parse(clearBody.clearedAt as string);
    await hold(d, LAMP_DARK, 300);
    const againList = await p.waitFor(
      async () => {
        await send(d, LAMP_DARK);
        const l = await alarms(p, { rule: 'lamp-fault', subject: d.id });
        return l.length === 2 ? l : undefined;
      },
      FOR + 3000,
      'a new alarm while the condition still holds after the clear',
    );
    const raisedAgain = (againList as AlarmRecord[])[0] as AlarmRecord;
    assert.equal(raisedAgain.state, 'active');
    assert.notEqual(raisedAgain.id, a.id);
    const after = Date.parse(raisedAgain.raisedAt) - clearedAt;
    assert.ok(after >= FOR, `raised ${after} ms after the clear: not before forMs`);
    assert.ok(after < FOR + 1500, `raised ${after} ms after the clear: about forMs`);
    // The condition ends: the new alarm clears by itself, and the end is recorded on the one cleared by hand.
    await hold(d, LAMP_OK, CLEAR + 300);
    await p.waitFor(
      async () => {
        const [x, y] = [await alarmById(a.id), await alarmById(raisedAgain.id)];
        return x.conditionClearedAt !== null && y.state === 'cleared' && y.clearedBy === 'system';
      },
      5000,
      'the condition end recorded on both',
    );
    // It starts again: one more new alarm after forMs.
    await hold(d, LAMP_DARK, FOR + 300);
    const list = await p.waitFor(
      async () => {
        const l = await alarms(p, { rule: 'lamp-fault', subject: d.id });
        return l.length === 3 ? l : undefined;
      },
      5000,
      'a new alarm once the condition started again',
    );
    assert.equal(list?.[0]?.state, 'active');
    assert.ok(![a.id, raisedAgain.id].includes(list?.[0]?.id as number));

    assert.ok(busEvents.some((e) => e.id === a.id && e.state === 'acknowledged' && e.acknowledgedBy === 'test-operator'));
    assert.ok(busEvents.some((e) => e.id === a.id && e.state === 'cleared' && e.clearedBy === 'test-operator'));
    const acks = await audit(p, 'alarm.acknowledge');
    assert.ok(acks.some((e) => e.actor === 'test-operator' && e.target === `alarm:${a.id}` && e.outcome === 'ok'));
    assert.ok(acks.some((e) => e.actor === 'test-operator' && e.outcome === 'CP_ALARM_WRONG_STATE'));
    assert.ok(acks.some((e) => e.actor === 'test-viewer' && e.outcome === 'CP_API_FORBIDDEN'));
    assert.ok(
      (await audit(p, 'alarm.clear')).some((e) => e.actor === 'test-operator' && e.target === `alarm:${a.id}` && e.outcome === 'ok'),
    );
  });

  test('list: filters (state, severity, rule, zone, subject/device, since, limit) and order (active, severity, newest)', async () => {
    const all = await alarms(p, {});
    assert.ok(all.length >= 8, `alarms so far: ${all.length}`);
    const stateRank = { active: 0, acknowledged: 1, cleared: 2 };
    const sevRank = { critical: 0, major: 1, minor: 2, warning: 3 };
    for (let i = 1; i < all.length; i++) {
      const x = all[i - 1] as AlarmRecord;
      const y = all[i] as AlarmRecord;
      const kx = [stateRank[x.state], sevRank[x.severity], -x.id];
      const ky = [stateRank[y.state], sevRank[y.severity], -y.id];
      const cmp = kx.findIndex((v, j) => v !== ky[j]);
      assert.ok(cmp === -1 || (kx[cmp] as number) < (ky[cmp] as number), `order at ${i}: ${json(x)} before ${json(y)}`);
    }
    const open = await alarms(p, { state: 'open' });
    assert.deepEqual(
      open.map((a) => a.id).sort(),
      all
        .filter((a) => a.state !== 'cleared')
        .map((a) => a.id)
        .sort(),
    );
    assert.ok((await alarms(p, { state: 'cleared' })).every((a) => a.state === 'cleared'));
    assert.ok((await alarms(p, { severity: 'minor' })).every((a) => a.severity === 'minor'));
    const zone = all[0]?.zone as string;
    assert.ok((await alarms(p, { zone })).length > 0);
    assert.deepEqual(await alarms(p, { zone: 'no-such-zone' }), []);
    const dev = all.find((a) => a.rule === 'congestion')?.subject as string;
    assert.deepEqual(
      (await alarms(p, { device: dev })).map((a) => a.id),
      all.filter((a) => a.subject === dev).map((a) => a.id),
    );
    assert.equal((await alarms(p, { limit: '2' })).length, 2);
    const newest = all
      .map((a) => a.raisedAt)
      .sort()
      .at(-1) as string;
    assert.ok((await alarms(p, { since: newest })).every((a) => a.raisedAt >= newest));
    assert.equal((await p.api('/api/v1/alarms?state=bogus')).status, 400);
    assert.equal((await p.api('/api/v1/alarms?since=yesterday')).status, 400);

    // The number of matches rides in a header, whatever the page.
    const counted = await p.api('/api/v1/alarms?limit=1&state=cleared');
    assert.equal(Number(counted.headers.get('x-total-count')), (await alarms(p, { state: 'cleared' })).length);
    assert.equal(Number((await p.api('/api/v1/alarms?limit=1')).headers.get('x-total-count')), all.length);
    // Paging: offset continues where a page ended.
    const page2 = await alarms(p, { limit: '2', offset: '2' });
    assert.deepEqual(
      page2.map((a) => a.id),
      all.slice(2, 4).map((a) => a.id),
    );
    // Family and a time range.
    const lamps = await alarms(p, { family: 'streetLight' });
    assert.ok(lamps.length > 0 && lamps.every((a) => a.family === 'streetLight'));
    const oldest = all
      .map((a) => a.raisedAt)
      .sort()
      .at(0) as string;
    const early = await alarms(p, { until: oldest });
    assert.ok(early.length >= 1 && early.every((a) => a.raisedAt === oldest));
    // Sorts: by raise time either way, by severity (most severe first when descending), by duration.
    const byRaise = await alarms(p, { sort: 'raisedAt', order: 'asc' });
    assert.deepEqual(
      byRaise.map((a) => a.raisedAt),
      [...byRaise.map((a) => a.raisedAt)].sort(),
    );
    const bySeverity = await alarms(p, { sort: 'severity' });
    const sevSeq = bySeverity.map((a) => sevRank[a.severity]);
    assert.deepEqual(
      sevSeq,
      [...sevSeq].sort((x, y) => x - y),
    );
    const lasted = (a: AlarmRecord) => (a.clearedAt ? Date.parse(a.clearedAt) : Date.now()) - Date.parse(a.raisedAt);
    const byDuration = await alarms(p, { sort: 'duration', order: 'asc', state: 'cleared' });
    for (let i = 1; i < byDuration.length; i++) {
      assert.ok(lasted(byDuration[i - 1] as AlarmRecord) <= lasted(byDuration[i] as AlarmRecord) + 1, 'shortest first');
    }
    // Search: a device id, words of a note, who cleared; LIKE wildcards are taken as typed.
    const noted = await alarms(p, { q: 'lamp replaced' });
    assert.ok(noted.length >= 1 && noted.every((a) => a.rule === 'lamp-fault'));
    assert.ok((await alarms(p, { q: 'sl-ack-1' })).every((a) => a.subject === 'sl-ack-1'));
    assert.ok((await alarms(p, { q: 'test-operator', state: 'cleared' })).some((a) => a.clearedBy === 'test-operator'));
    assert.deepEqual(await alarms(p, { q: '%' }), []);
    assert.equal((await p.api('/api/v1/alarms?sort=bogus')).status, 400);
    assert.equal((await p.api('/api/v1/alarms?offset=-1')).status, 400);
  });

  test('GET /api/v1/alarms/rules: the effective rules, tuned defaults and own rules, for a viewer', async () => {
    const res = await p.api('/api/v1/alarms/rules');
    assert.equal(res.status, 200);
    const rules = (await res.json()) as { id: string; forMs: number; builtIn: boolean; clearValue?: number }[];
    assert.deepEqual(
      rules.map((r) => r.id),
      ['lamp-fault', 'lamp-on-in-daylight', 'congestion', 'aqi-category', 'device-offline', 'pm10-high', 'noise-jump', 'traffic-silent'],
    );
    assert.ok(rules.filter((r) => r.builtIn).every((r) => r.forMs === FOR));
    assert.equal(rules.find((r) => r.id === 'aqi-category')?.clearValue, 3);
  });
});

describe('own rules from config', () => {
  test('threshold with hysteresis, rate of change by observation time, and no data for a period', async () => {
    const aq = await device(p, 'airQuality', 'aq-own-1');
    await hold(aq, { pm10: 400 }, FOR + 300);
    const a = await theAlarm(p, 'pm10-high', aq.id, (x) => x.state === 'active', 'pm10-high raised');
    assert.equal(a.severity, 'critical');
    await hold(aq, { pm10: 250 }, 500); // between 200 and 300
    assert.equal((await alarms(p, { rule: 'pm10-high', subject: aq.id }))[0]?.state, 'active');
    await send(aq, { pm10: 150 });
    await theAlarm(p, 'pm10-high', aq.id, (x) => x.state === 'cleared', 'pm10-high cleared (clearForMs 0)');

    // Observation times in the past: a device of its own (older readings than a device's newest are not state).
    const rate = await device(p, 'airQuality', 'aq-own-rate');
    const t0 = Date.now() - 10 * 60_000;
    await send(rate, { dateObserved: t0, noise: 50 });
    await send(rate, { dateObserved: t0 + 60_000, noise: 60 }); // 10 dB/min: fine
    await sleep(300);
    await none(p, 'noise-jump', rate.id);
    await send(rate, { dateObserved: t0 + 61_000, noise: 90 }); // 30 dB in a second
    const r = await theAlarm(p, 'noise-jump', rate.id, (x) => x.state === 'active', 'noise-jump raised');
    assert.equal(r.value, 1800);
    await send(rate, { dateObserved: t0 + 121_000, noise: 89 }); // falling: not over the clear rate either way
    await theAlarm(p, 'noise-jump', rate.id, (x) => x.state === 'cleared', 'noise-jump cleared');

    const tf = await device(p, 'traffic', 'tf-silent-1');
    await hold(tf, { intensity: 5 }, 1000);
    await none(p, 'traffic-silent', tf.id);
    const s = await theAlarm(p, 'traffic-silent', tf.id, (x) => x.state === 'active', 'traffic-silent raised');
    assert.equal(s.severity, 'warning');
    await send(tf, { intensity: 5 });
    await theAlarm(p, 'traffic-silent', tf.id, (x) => x.state === 'cleared', 'traffic-silent cleared by a reading');

    // Cleared by hand while still silent: the silence counts from the clear, a new alarm after the period again.
    const quiet = await device(p, 'traffic', 'tf-silent-2');
    await send(quiet, { intensity: 5 });
    const q1 = await theAlarm(p, 'traffic-silent', quiet.id, (x) => x.state === 'active', 'traffic-silent raised');
    const res = await p.api(`/api/v1/alarms/${q1.id}/clear`, { method: 'POST', as: 'operator', body: json({ note: 'counter checked' }) });
    assert.equal(res.status, 200);
    const clearedAt = Date.parse(((await res.json()) as AlarmRecord).clearedAt as string);
    const q2 = (await p.waitFor(
      async () => (await alarms(p, { rule: 'traffic-silent', subject: quiet.id })).find((x) => x.id !== q1.id),
      5000,
      'traffic-silent raised again',
    )) as AlarmRecord;
    const after = Date.parse(q2.raisedAt) - clearedAt;
    assert.ok(after >= 1500, `raised again ${after} ms after the clear: a whole period of silence`);
  });

  test('bad rules are refused at load with every error named', () => {
    const errorsOf = (fn: () => unknown): string[] => {
      try {
        fn();
      } catch (e) {
        assert.ok(e instanceof PlatformError);
        assert.equal(e.code, 'CP_CONFIG_INVALID');
        return e.details as string[];
      }
      assert.fail('expected CP_CONFIG_INVALID');
    };
    const schema = errorsOf(() =>
      loadConfig({
        env: {
          CITYPULSE_ALARMS_RULES: json([{ id: 'Bad Id', kind: 'sometimes' }]),
          CITYPULSE_ALARMS_DISABLED: 'no-such-rule',
          CITYPULSE_ALARMS_DEFAULTS: '{"congestion": ',
        },
      }),
    );
    assert.ok(schema.some((e) => e.startsWith('alarms.rules.0.id')));
    assert.ok(schema.some((e) => e.startsWith('alarms.rules.0.kind')));
    assert.ok(schema.some((e) => e.startsWith('alarms.disabled.0')));
    assert.ok(schema.some((e) => e.startsWith('CITYPULSE_ALARMS_DEFAULTS: not valid JSON')));
    // Env JSON that passes the schema reaches the config.
    const ok = loadConfig({
      env: { CITYPULSE_ALARMS_RULES: json([{ id: 'x', kind: 'noData', periodMs: 5 }]), CITYPULSE_ALARMS_DISABLED: 'congestion,lamp-fault' },
    });
    assert.equal(ok.alarms.rules.length, 1);
    assert.deepEqual(ok.alarms.disabled, ['congestion', 'lamp-fault']);
  });

  test('kind-specific errors stop the platform start', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-alarms-bad-'));
    scope.after(() => rm(dataDir, { recursive: true, force: true }));
    await assert.rejects(
      startTestPlatform(
        scope,
        {
          dataDir,
          alarms: {
            rules: [
              { id: 'up', kind: 'threshold', field: 'pm25', op: '>', value: 100, clearValue: 120 },
              { id: 'st', kind: 'state' },
              { id: 'lamp-fault', kind: 'noData', periodMs: 5 },
            ],
          } as ConfigInput['alarms'],
        },
        { influx },
      ),
      (e: unknown) => {
        assert.ok(e instanceof PlatformError && e.code === 'CP_CONFIG_INVALID');
        const details = e.details as string[];
        assert.ok(details.some((d) => d.includes('(up)') && d.includes('clearValue')));
        assert.ok(details.some((d) => d.includes('(st)') && d.includes('needs when')));
        assert.ok(details.some((d) => d.includes('lamp-fault is a built-in rule')));
        return true;
      },
    );
  });
});

describe('restarts', () => {
  test('open alarms survive a restart without duplicates; a condition that ended while down clears; unseen devices go offline', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-alarms-restart-'));
    scope.after(() => rm(dataDir, { recursive: true, force: true }));
    const database = `alarms${Date.now()}`;
    const cfg = { ...OVERRIDES, dataDir, influx: { database } } as ConfigInput;
    const a = await startTestPlatform(scope, cfg, { influx });
    const H = 3_600_000;
    const hour = Math.floor(Date.now() / H) * H;

    // At night where it stands: a faulty lamp that is on in daylight would also raise lamp-on-in-daylight.
    const lamp = await device(a, 'streetLight', 'sl-rs-fault', { lat: 0, lon: lonAtSolarHour(0) });
    const day = await device(a, 'streetLight', 'sl-rs-day', { lat: 0, lon: lonAtSolarHour(12) });
    const tf = await device(a, 'traffic', 'tf-rs-1');
    const air = await device(a, 'airQuality', 'aq-rs-1');
    const gone = await device(a, 'airQuality', 'aq-rs-gone');
    const stays = await device(a, 'airQuality', 'aq-rs-stays'); // online at the stop, never back
    await gone.client.endAsync();
    await send(air, { dateObserved: hour - 2 * H, pm25: 100 });
    await Promise.all([
      hold(lamp, LAMP_DARK, FOR + 300),
      hold(day, LAMP_OK, FOR + 300),
      hold(tf, { intensity: 40, occupancy: 0.6 }, FOR + 300),
      hold(air, { dateObserved: hour - H, pm25: 100 }, FOR + 300),
    ]);
    const before: Record<string, AlarmRecord> = {};
    for (const [rule, d] of [
      ['lamp-fault', lamp],
      ['lamp-on-in-daylight', day],
      ['congestion', tf],
      ['aqi-category', air],
      ['device-offline', gone],
    ] as const) {
      before[rule] = await theAlarm(a, rule, d.id, (x) => x.state === 'active', `${rule} raised before the restart`);
    }
    const ack = await a.api(`/api/v1/alarms/${before.congestion?.id}/acknowledge`, { method: 'POST', as: 'operator', body: '{}' });
    assert.equal(ack.status, 200);
    await a.platform.stop();

    const logLines: string[] = [];
    const b = await startTestPlatform(scope, { ...cfg, log: { level: 'info' } } as ConfigInput, { influx, logLines });
    const listening = logLines.map((l) => JSON.parse(l) as { msg: string; time: number }).find((l) => l.msg === 'MQTT broker listening');
    assert.ok(listening, 'the broker logs when it listens');
    const reopened = await alarms(b, { state: 'open' });
    const named = (x: AlarmRecord) => `${x.id} ${x.rule} ${x.subject}`;
    assert.deepEqual(reopened.map(named).sort(), Object.values(before).map(named).sort(), 'the open alarms, reloaded');
    assert.equal(reopened.find((x) => x.rule === 'congestion')?.state, 'acknowledged');

    const lamp2 = { ...lamp, client: await b.connect(lamp.id, lamp.token) };
    const day2 = { ...day, client: await b.connect(day.id, day.token) };
    const tf2 = { ...tf, client: await b.connect(tf.id, tf.token) };
    const air2 = { ...air, client: await b.connect(air.id, air.token) };
    await send(air2, { dateObserved: hour - 2 * H, pm25: 100 });
    // Conditions that still hold: nothing new. The lamp was repaired while the platform was down: cleared.
    await Promise.all([
      hold(day2, LAMP_OK, FOR + 500),
      hold(tf2, { intensity: 40, occupancy: 0.6 }, FOR + 500),
      hold(air2, { dateObserved: hour - H, pm25: 100 }, FOR + 500),
      hold(lamp2, LAMP_OK, CLEAR + 400),
    ]);
    for (const [rule, d] of [
      ['lamp-on-in-daylight', day],
      ['congestion', tf],
      ['aqi-category', air],
      ['device-offline', gone],
    ] as const) {
      const list = await alarms(b, { rule, subject: d.id });
      assert.deepEqual(
        list.map((x) => [x.id, x.state]),
        [[before[rule]?.id, rule === 'congestion' ? 'acknowledged' : 'active']],
        `${rule}: the same alarm, not a new one`,
      );
    }
    const fixed = await theAlarm(b, 'lamp-fault', lamp.id, (x) => x.state === 'cleared', 'lamp-fault cleared after the restart');
    assert.equal(fixed.id, before['lamp-fault']?.id);
    assert.equal(fixed.clearedBy, 'system');

    // Seen before the restart, not back within the offline period: offline. Connected ones are not.
    const offline = await theAlarm(
      b,
      'device-offline',
      stays.id,
      (x) => x.state === 'active',
      'a device that did not come back is offline',
    );
    // Its offline period began when the broker accepted devices again (late in the start), not when the alarm
    // engine started (early, before ingest and analytics): raised no sooner than forMs after the broker listened.
    const early = listening.time + FOR - Date.parse(offline.raisedAt);
    assert.ok(early <= 0, `raised ${early} ms before forMs had passed since the broker listened`);
    for (const d of [lamp, day, tf, air]) await none(b, 'device-offline', d.id);
    // The device that was already offline comes back: its alarm from before the restart clears.
    await b.connect(gone.id, gone.token);
    const back = await theAlarm(b, 'device-offline', gone.id, (x) => x.state === 'cleared', 'offline alarm cleared');
    assert.equal(back.id, before['device-offline']?.id);
  });
});
