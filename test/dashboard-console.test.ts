/**
 * A shift run from the dashboard, in a real headless chromium (Debian package, driven by playwright-core) against
 * a whole real platform (broker, ingest, InfluxDB, analytics, alarms, commands, API) with MQTT.js devices and a
 * simulated fleet of street lights that obey commands:
 * - unknown paths show the app's own 404 page (API paths keep their problem+json 404); /favicon.ico answers;
 * - the alarm console: a lamp fault published over MQTT raises an alarm, announced by a banner naming ward and
 *   device with a link (on a wall screen too) and by a sound made with the Web Audio API (a spy on the page's
 *   oscillators); one open count in the badge, the overview panel and the console; acknowledged with a note,
 *   cleared with a note (required); the condition still holding raises a new alarm after forMs; muting the
 *   sound (remembered) silences the next one; filters; the cleared alarm found in the history by a word of its
 *   note, with its timeline; a screenshot of the console (docs/screenshots/alarms.png);
 * - a command to a ward's lights asks first, naming the ward and the number of lights, shows "n of m" live,
 *   leaves the panel when another ward is chosen, and shows in the event feed and the command history.
 *
 * Run: node --import tsx --test test/dashboard-console.test.ts   (builds dashboard/dist first when it is stale)
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { Browser, Page } from 'playwright-core';
import type { AlarmRecord } from '../core/bus.ts';
import type { ConfigInput } from '../platform/config.ts';
import { createFleet, createRng, createStreetLightModel, type Fleet } from '../simulators/index.ts';
import { launchBrowser, login, openPage, passwordOf, screenshot, type DashboardPage } from './helpers/browser.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope, onCleanup } from './helpers/scope.ts';

const scope = fileScope();
let p: TestPlatform;
let browser: Browser;
let fleet: Fleet;
const FOR = 2000;
const LIGHTS = 24;
/** The ward of the lamp whose fault the console follows; other wards get other alarms, and the command. */
const WARD = 'tran-phu';
const WARD_NAME = 'Phường Trần Phú';

const OVERRIDES: ConfigInput = {
  alarms: {
    tickMs: 50,
    defaults: {
      'lamp-fault': { forMs: FOR, clearForMs: 500 },
      congestion: { forMs: FOR, clearForMs: 500 },
      'aqi-category': { forMs: FOR, clearForMs: 500 },
      'device-offline': { forMs: FOR, clearForMs: 500 },
    },
    rules: [
      {
        id: 'pm25-extreme',
        kind: 'threshold',
        family: 'airQuality',
        field: 'pm25',
        op: '>',
        value: 150,
        forMs: FOR,
        severity: 'critical',
        message: 'PM2.5 {pm25} µg/m³',
      },
    ],
  } as ConfigInput['alarms'],
  analytics: { aqiEmitIntervalMs: 0, indicatorEmitIntervalMs: 200 } as ConfigInput['analytics'],
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const json = (b: unknown) => JSON.stringify(b);

/** Sends `reading` every 150 ms for `ms`. */
async function hold(c: MqttClient, id: string, reading: () => object, ms: number): Promise<void> {
  const until = Date.now() + ms;
  do {
    await c.publishAsync(`devices/${id}/telemetry`, json(reading()), { qos: 1 });
    await sleep(150);
  } while (Date.now() < until);
}

async function alarmsOf(query: Record<string, string>): Promise<{ list: AlarmRecord[]; total: number }> {
  const res = await p.api(`/api/v1/alarms?${new URLSearchParams({ limit: '1000', ...query })}`);
  assert.equal(res.status, 200, await res.clone().text());
  return { list: (await res.json()) as AlarmRecord[], total: Number(res.headers.get('x-total-count')) };
}

before(async () => {
  [p, browser] = await Promise.all([startTestPlatform(scope, OVERRIDES), launchBrowser(scope)]);
  const headers = { authorization: `Bearer ${p.platform.adminToken}`, 'content-type': 'application/json' };
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-console-'));
  fleet = createFleet({
    mqttUrl: p.addr.mqtt,
    profile: p.platform.parts.profile,
    counts: { airQuality: 0, traffic: 0, streetLight: LIGHTS },
    seed: 9,
    intervalScale: 0.05,
    qos: 1,
    idPrefix: 'con',
    credentialsFile: join(dir, 'credentials.json'),
    async provision(req) {
      const res = await fetch(`${p.addr.api}/api/v1/devices`, { method: 'POST', headers, body: json(req) });
      assert.equal(res.status, 201, await res.clone().text());
      return (await res.json()) as { token: string };
    },
    rotateToken: async () => assert.fail('no token should need rotating'),
  });
  onCleanup(scope, () => fleet.stop());
  await fleet.start();
  await p.waitFor(() => fleet.progress().connected === LIGHTS, 20_000, 'the simulated street lights online');
  await Promise.all([p.loginAs('operator'), p.loginAs('viewer')]);

  // Alarms of other wards, so that the console has rows of every kind: lamp faults, a congested junction, bad
  // air (VN_AQI from two hourly means of PM2.5 186 µg/m³: 236, Rất xấu) over a critical own rule too,
  // and a device gone offline.
  const H = 3_600_000;
  const hour = Math.floor(Date.now() / H) * H;
  const dark = () => ({ powerState: 'on', powerConsumption: 0.2, status: 'ok', illuminanceLevel: 1 });
  const others: Promise<unknown>[] = [];
  for (const [id, zone] of [
    ['con-lamp-le-loi', 'le-loi'],
    ['con-lamp-ngo-quyen', 'ngo-quyen'],
  ] as const) {
    const d = await p.provision('streetLight', { id, zone });
    others.push(p.connect(d.id, d.token).then((c) => hold(c, d.id, dark, FOR + 400)));
  }
  const tf = await p.provision('traffic', { id: 'con-junction-tho-xuong', zone: 'tho-xuong' });
  others.push(p.connect(tf.id, tf.token).then((c) => hold(c, tf.id, () => ({ intensity: 42, occupancy: 0.6 }), FOR + 400)));
  const aq = await p.provision('airQuality', { id: 'con-air-hoang-van-thu', zone: 'hoang-van-thu' });
  others.push(
    p.connect(aq.id, aq.token).then(async (c) => {
      await c.publishAsync(`devices/${aq.id}/telemetry`, json({ dateObserved: hour - 2 * H, pm25: 186, pm10: 120 }), { qos: 1 });
      await hold(c, aq.id, () => ({ dateObserved: hour - H, pm25: 186, pm10: 120 }), FOR + 400);
    }),
  );
  const gone = await p.provision('airQuality', { id: 'con-air-da-mai', zone: 'da-mai' });
  others.push(p.connect(gone.id, gone.token).then((c) => c.endAsync()));
  await Promise.all(others);
  await p.waitFor(async () => (await alarmsOf({ state: 'open' })).total >= 6, 10_000, 'the other wards’ alarms');
});

/** A logged-in screen of `role` on `path`, with a spy on the page's Web Audio oscillators. */
async function screen(role: 'operator' | 'viewer', path = '/'): Promise<DashboardPage> {
  const d = await openPage(browser, `${p.addr.api}${path}`, {
    initScript: () => {
      const w = globalThis as unknown as {
        citypulseAudio: { contexts: number; oscillators: number; starts: number };
        AudioContext?: { prototype: { createOscillator: (...a: unknown[]) => unknown } };
        OscillatorNode?: { prototype: { start: (...a: unknown[]) => unknown } };
      };
      w.citypulseAudio = { contexts: 0, oscillators: 0, starts: 0 };
      const ctx = w.AudioContext?.prototype;
      const osc = w.OscillatorNode?.prototype;
      if (!ctx || !osc) return;
      const create = ctx.createOscillator;
      ctx.createOscillator = function (this: unknown, ...a: unknown[]) {
        w.citypulseAudio.oscillators++;
        return create.apply(this, a);
      };
      const start = osc.start;
      osc.start = function (this: unknown, ...a: unknown[]) {
        w.citypulseAudio.starts++;
        return start.apply(this, a);
      };
    },
  });
  await login(d.page, `test-${role}`, passwordOf(role));
  return d;
}

const audio = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as { citypulseAudio: { oscillators: number; starts: number } }).citypulseAudio);

describe('paths', () => {
  test('an unknown path is the app’s own 404 page; API paths keep their problem+json 404; /favicon.ico answers', async () => {
    const html = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' };
    for (const path of ['/device', '/no-such-page', '/alarms/abc/def']) {
      const res = await fetch(`${p.addr.api}${path}`, { headers: html });
      assert.equal(res.status, 404, path);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/, path);
      assert.match(await res.text(), /<script type="module"[^>]+src="\/assets\//, `${path}: the app`);
    }
    for (const path of ['/api/v1/no-such-route', '/api/v2/devices']) {
      const res = await fetch(`${p.addr.api}${path}`, { headers: html });
      assert.equal(res.status, 404, path);
      assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/, path);
      assert.equal(((await res.json()) as { code: string }).code, 'CP_API_NOT_FOUND');
    }
    // A client that asks for JSON (or anything) keeps the problem document.
    const plain = await fetch(`${p.addr.api}/no-such-page`);
    assert.equal(plain.status, 404);
    assert.match(plain.headers.get('content-type') ?? '', /application\/problem\+json/);
    const icon = await fetch(`${p.addr.api}/favicon.ico`);
    assert.equal(icon.status, 200);
    assert.match(icon.headers.get('content-type') ?? '', /image\/(x-icon|vnd\.microsoft\.icon)/);
    assert.deepEqual([...new Uint8Array(await icon.arrayBuffer()).subarray(0, 4)], [0, 0, 1, 0], 'an ICO file');

    const { page, errors, context } = await openPage(browser, `${p.addr.api}/device`);
    await page.getByTestId('not-found').waitFor({ timeout: 5000 });
    assert.match((await page.getByTestId('not-found').textContent()) ?? '', /Không tìm thấy trang.*\/device/);
    await page.getByTestId('not-found-home').click();
    await page.getByTestId('login-form').waitFor({ timeout: 5000 });
    // Signed in, an unknown path is still the 404 page, not an empty overview.
    await login(page, 'test-viewer', passwordOf('viewer'));
    await page.goto(`${p.addr.api}/no-such-page`);
    await page.getByTestId('not-found').waitFor({ timeout: 5000 });
    // The page's icon is the bundled SVG (no request to another origin).
    const iconHref = await page.locator('link[rel="icon"]').getAttribute('href');
    assert.match(iconHref ?? '', /^\/assets\/favicon-[\w-]+\.svg$/);
    assert.equal((await fetch(`${p.addr.api}${iconHref}`)).status, 200);
    assert.deepEqual(
      errors.filter((e) => !/404/.test(e)),
      [],
    );
    await context.close();
  });
});

describe('the alarm console', () => {
  test('raise, announce with sound, one open count, acknowledge and clear with notes, raised again while the condition holds, mute, filters, history', async () => {
    const token = await p.loginAs('viewer', { fresh: true });
    const [op, wall] = await Promise.all([
      screen('operator', '/alarms'),
      openPage(browser, `${p.addr.api}/wall#token=${token}`, { viewport: { width: 1920, height: 1080 } }),
    ]);
    const { page } = op;
    await page.getByTestId('alarm-console').waitFor();
    await wall.page.locator('[data-testid="wall"] [data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 10_000 });
    assert.equal((await audio(page)).starts, 0, 'no sound before a new alarm');

    // A street light of the simulator's model whose lamp has failed, publishing over MQTT.
    const dev = await p.provision('streetLight', { id: 'con-faulty-lamp', zone: WARD });
    const client = await p.connect(dev.id, dev.token);
    const model = createStreetLightModel(createRng(3), { timeZone: 'Asia/Ho_Chi_Minh', faultProbability: 1 });
    let publishing = true;
    const loop = (async () => {
      while (publishing) {
        await client.publishAsync(`devices/${dev.id}/telemetry`, json(model.next(new Date())), { qos: 1 }).catch(() => undefined);
        await sleep(150);
      }
    })();
    onCleanup(scope, async () => {
      publishing = false;
      await loop;
    });
    const first = (await p.waitFor(
      async () => (await alarmsOf({ rule: 'lamp-fault', subject: dev.id })).list[0],
      10_000,
      'the lamp-fault alarm',
    )) as AlarmRecord;

    // Announced on the console and the wall: ward, device, a link to the alarm; and heard.
    for (const d of [op, wall]) {
      const banner = d.page.locator(`[data-testid="alarm-announcement"][data-alarm-id="${first.id}"]`);
      await banner.waitFor({ timeout: 5000 });
      assert.equal(await banner.getByTestId('announcement-ward').textContent(), WARD_NAME);
      assert.equal(await banner.getByTestId('announcement-device').textContent(), dev.id);
      assert.equal(await banner.getByTestId('announcement-link').getAttribute('href'), `/alarms/${first.id}`);
    }
    await screenshot(wall.page, 'wall-alarm');
    await p.waitFor(async () => (await audio(page)).starts >= 2, 3000, 'the alarm sound (oscillators started)');
    const heard = (await audio(page)).starts;

    // One open count: header badge = console = the API's open alarms (active + acknowledged); said on screen.
    const open = (await alarmsOf({ state: 'open' })).total;
    await page.locator(`[data-testid="alarm-badge"][data-count="${open}"]`).waitFor({ timeout: 5000 });
    await page.locator(`[data-testid="console-open-count"][data-count="${open}"]`).waitFor({ timeout: 5000 });
    assert.match((await page.getByTestId('console-open-count').getAttribute('title')) ?? '', /Chưa đóng = Chưa xử lý \+ Đã xác nhận/);

    // The row: severity, rule in Vietnamese, device, ward, value with its unit, state.
    const row = (state: string, id = first.id) => page.locator(`[data-testid="alarm-row"][data-alarm-id="${id}"][data-state="${state}"]`);
    await row('active').waitFor({ timeout: 5000 });
    assert.equal(await row('active').getByTestId('alarm-ward').textContent(), WARD_NAME);
    assert.match((await row('active').getByTestId('alarm-value').textContent()) ?? '', /^\d+(,\d+)? W$/);
    assert.equal(await row('active').getByTestId('alarm-state').textContent(), 'Chưa xử lý');
    assert.match((await row('active').textContent()) ?? '', /Đèn hỏng/);
    assert.match((await row('active').textContent()) ?? '', /\d{2}\/\d{2}\/\d{4} \d{2}:\d{2}:\d{2}/, 'dd/MM/yyyy HH:mm:ss');
    await screenshot(page, 'alarms');

    // Acknowledge with a note, through the dialog.
    await row('active').getByTestId('alarm-ack').click();
    const dialog = page.getByTestId('alarm-dialog');
    await dialog.getByTestId('alarm-note').fill('Đã cử đội sửa chữa');
    await dialog.getByTestId('dialog-confirm').click();
    await row('acknowledged').waitFor({ timeout: 5000 });
    assert.match((await row('acknowledged').getByTestId('alarm-acknowledged').textContent()) ?? '', /test-operator/);
    // Acknowledged is still open: the same count everywhere.
    const openNow = (await alarmsOf({ state: 'open' })).total;
    assert.equal(openNow, open);
    await page.locator(`[data-testid="alarm-badge"][data-count="${open}"]`).waitFor({ timeout: 5000 });
    await page.locator(`[data-testid="console-open-count"][data-count="${open}"]`).waitFor({ timeout: 5000 });

    // Clear: the dialog refuses an empty note, then closes the alarm with one.
    await row('acknowledged').getByTestId('alarm-clear').click();
    assert.equal(await dialog.getByTestId('dialog-confirm').isDisabled(), true, 'clearing needs a note');
    await dialog.getByTestId('alarm-note').fill('Đã thay bóng đèn');
    await dialog.getByTestId('dialog-confirm').click();
    await row('acknowledged').waitFor({ state: 'detached', timeout: 5000 });
    const cleared = (await (await p.api(`/api/v1/alarms/${first.id}`)).json()) as AlarmRecord;
    assert.equal(cleared.state, 'cleared');
    assert.equal(cleared.clearedBy, 'test-operator');

    // The lamp is still broken: a new alarm forMs after the clear, announced and heard again.
    const second = (await p.waitFor(
      async () => (await alarmsOf({ rule: 'lamp-fault', subject: dev.id, state: 'open' })).list[0],
      FOR + 5000,
      'a new alarm while the condition holds',
    )) as AlarmRecord;
    assert.notEqual(second.id, first.id);
    const gap = Date.parse(second.raisedAt) - Date.parse(cleared.clearedAt as string);
    assert.ok(gap >= FOR && gap < FOR + 2000, `raised again ${gap} ms after the clear (forMs ${FOR})`);
    await page.locator(`[data-testid="alarm-announcement"][data-alarm-id="${second.id}"]`).waitFor({ timeout: 5000 });
    await row('active', second.id).waitFor({ timeout: 5000 });
    await p.waitFor(async () => (await audio(page)).starts > heard, 3000, 'the sound of the second alarm');

    // Muted on this screen (and remembered): the third alarm is announced, not heard.
    await page.getByTestId('sound-switch').click();
    await page.locator('[data-testid="sound-switch"][data-sound="off"]').waitFor();
    await page.reload();
    await page.locator('[data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 10_000 });
    await page.locator('[data-testid="sound-switch"][data-sound="off"]').waitFor();
    const res = await p.api(`/api/v1/alarms/${second.id}/clear`, { method: 'POST', as: 'operator', body: json({ note: 'kiểm tra lại' }) });
    assert.equal(res.status, 200);
    const third = (await p.waitFor(
      async () => (await alarmsOf({ rule: 'lamp-fault', subject: dev.id, state: 'open' })).list[0],
      FOR + 5000,
      'a third alarm',
    )) as AlarmRecord;
    await page.locator(`[data-testid="alarm-announcement"][data-alarm-id="${third.id}"]`).waitFor({ timeout: 5000 });
    await sleep(300);
    assert.equal((await audio(page)).starts, 0, 'muted: no oscillator started after the reload');
    publishing = false;
    await loop;

    // Filters, by the server: ward, severity, rule, device type.
    const rows = page.locator('[data-testid="alarm-row"]');
    const settled = async () => {
      await page.locator('[data-testid="alarm-table"]:not([data-query=""])').waitFor({ timeout: 5000 });
    };
    await page.getByTestId('filter-ward').selectOption(WARD);
    await settled();
    await row('active', third.id).waitFor();
    for (const w of await rows.getByTestId('alarm-ward').allTextContents()) assert.equal(w, WARD_NAME);
    await page.getByTestId('filter-severity').selectOption('minor');
    await row('active', third.id).waitFor({ state: 'detached', timeout: 5000 });
    await page.getByTestId('filter-reset').click();
    await page.getByTestId('filter-rule').selectOption('pm25-extreme');
    await page.locator('[data-testid="alarm-row"][data-rule="pm25-extreme"]').first().waitFor({ timeout: 5000 });
    await settled();
    assert.deepEqual(
      [...new Set(await rows.evaluateAll((els) => els.map((e) => (e as unknown as { dataset: { rule: string } }).dataset.rule)))],
      ['pm25-extreme'],
    );
    await page.getByTestId('filter-reset').click();
    await page.getByTestId('filter-family').selectOption('airQuality');
    await row('active', third.id).waitFor({ state: 'detached', timeout: 5000 });
    await page.getByTestId('filter-reset').click();

    // The history: cleared alarms, found by a word of the note, with who cleared and the timeline.
    await page.getByTestId('view-history').click();
    await page.getByTestId('alarm-search').fill('thay bóng');
    await row('cleared').waitFor({ timeout: 5000 });
    await settled();
    assert.equal(await rows.count(), 1, 'only the alarm whose note says so');
    assert.match((await row('cleared').getByTestId('alarm-cleared').textContent()) ?? '', /test-operator/);
    await row('cleared').getByTestId('alarm-open').click();
    const detail = page.locator(`[data-testid="alarm-detail"][data-alarm-id="${first.id}"]`);
    await detail.getByTestId('alarm-timeline').waitFor({ timeout: 5000 });
    assert.deepEqual(
      await detail
        .getByTestId('timeline-item')
        .evaluateAll((els) => els.map((e) => (e as unknown as { dataset: { action: string } }).dataset.action)),
      ['raise', 'acknowledge', 'clear'],
    );
    assert.deepEqual(await detail.getByTestId('timeline-note').allTextContents(), ['Đã cử đội sửa chữa', 'Đã thay bóng đèn']);
    assert.equal(new URL(page.url()).pathname, `/alarms/${first.id}`);

    // The overview's panel shows the same open count as the badge, acknowledged alarms included.
    const other = (await alarmsOf({ state: 'active', rule: 'congestion' })).list[0] as AlarmRecord;
    const ack = await p.api(`/api/v1/alarms/${other.id}/acknowledge`, { method: 'POST', as: 'operator', body: '{}' });
    assert.equal(ack.status, 200);
    await page.getByTestId('nav-overview').click();
    await page.locator(`[data-testid="alarm-row"][data-alarm-id="${other.id}"][data-state="acknowledged"]`).waitFor({ timeout: 5000 });
    const count = await page.getByTestId('alarm-badge').getAttribute('data-count');
    assert.equal(await page.getByTestId('alarm-open-count').textContent(), count);
    assert.equal(Number(count), (await alarmsOf({ state: 'open' })).total);
    assert.deepEqual([...op.errors, ...wall.errors], []);
    await Promise.all([op.context.close(), wall.context.close()]);
  });
});

describe('commands', () => {
  test('a ward command asks first (ward, number of lights), shows n of m live, leaves with the ward, and is in the feed and the history', async () => {
    const devices = (await (await p.api('/api/v1/devices?family=streetLight')).json()) as { id: string; zone: string }[];
    // A ward whose every light is a simulated one that obeys (the test's own lamps are elsewhere).
    const perWard = new Map<string, number>();
    for (const d of devices) perWard.set(d.zone, (perWard.get(d.zone) ?? 0) + (d.id.startsWith('con-sl-') ? 1 : 1000));
    const [ward, n] = [...perWard].filter(([, k]) => k < 1000).sort((a, b) => b[1] - a[1])[0] as [string, number];
    assert.ok(n >= 2, `${n} lights in ${ward}`);
    const wardName = p.platform.parts.profile.zones.find((z) => z.id === ward)?.name.vi as string;
    const batchesBefore = ((await (await p.api('/api/v1/commands/batches')).json()) as unknown[]).length;

    const { page, errors, context } = await screen('operator', '/map');
    await page.getByTestId('zone-select').selectOption(ward);
    const panel = page.getByTestId('zone-commands');
    // Asked first, naming the ward and the number of lights; cancelling sends nothing.
    await panel.getByTestId('cmd-off').click();
    const confirm = page.getByTestId('command-confirm');
    await confirm.waitFor({ timeout: 5000 });
    assert.equal(await confirm.getByTestId('command-confirm-text').textContent(), `Tắt đèn cho ${n} đèn của ${wardName}?`);
    await confirm.getByTestId('dialog-cancel').click();
    await confirm.waitFor({ state: 'detached' });
    await sleep(300);
    assert.equal(((await (await p.api('/api/v1/commands/batches')).json()) as unknown[]).length, batchesBefore, 'nothing sent');
    // The brightness slider says its value, and so does the button.
    await panel.getByTestId('dim-level').fill('30');
    assert.equal(await panel.getByTestId('dim-level-value').textContent(), '30%');
    assert.equal(await panel.getByTestId('cmd-dim').textContent(), 'Đặt độ sáng 30%');

    await panel.getByTestId('cmd-off').click();
    await confirm.getByTestId('dialog-confirm').click();
    const summary = panel.getByTestId('batch-summary');
    await panel.locator(`[data-testid="batch-summary"][data-size="${n}"][data-acknowledged="${n}"]`).waitFor({ timeout: 15_000 });
    assert.equal(await summary.getByTestId('batch-acknowledged').textContent(), `${n}/${n} đã thực hiện`);
    assert.equal(await summary.getByTestId('batch-reached').textContent(), `${n}/${n} đã tới đèn`);
    assert.equal(await summary.getByTestId('batch-failed').textContent(), `0/${n} thất bại`);
    await screenshot(page, 'command-batch');
    const batch = (await summary.getAttribute('data-batch')) as string;
    // Another ward: a clean panel, not the previous ward's batch.
    const other = [...perWard.keys()].find((z) => z !== ward) as string;
    await page.getByTestId('zone-select').selectOption(other);
    await panel.getByTestId('batch-summary').waitFor({ state: 'detached', timeout: 2000 });
    await page.getByTestId('zone-select').selectOption(ward);
    assert.equal(await panel.getByTestId('batch-summary').count(), 0);

    // The event feed: the batch sent (who, what, where, how many) and how it ended.
    await page.getByTestId('nav-overview').click();
    const sent = page.locator('[data-testid="feed-item"][data-kind="command"][data-key="eventCommandSent"]').first();
    await sent.waitFor({ timeout: 5000 });
    assert.match((await sent.textContent()) ?? '', new RegExp(`test-operator: Tắt đèn – ${wardName} \\(${n} đèn\\)`));
    const done = page.locator('[data-testid="feed-item"][data-kind="command"][data-key="eventCommandDone"]').first();
    assert.match((await done.textContent()) ?? '', new RegExp(`${n}/${n} đã thực hiện, 0 thất bại`));

    // The command history: who, what, target, when, outcome; filtered.
    await page.getByTestId('nav-commands').click();
    const entry = page.locator(`[data-testid="history-row"][data-batch="${batch}"]`);
    await entry.waitFor({ timeout: 5000 });
    assert.equal(await entry.getAttribute('data-outcome'), 'done');
    assert.equal(await entry.getByTestId('history-who').textContent(), 'test-operator');
    assert.equal(await entry.getByTestId('history-target').textContent(), wardName);
    assert.match((await entry.textContent()) ?? '', /Tắt đèn/);
    assert.match((await entry.textContent()) ?? '', /\d{2}\/\d{2}\/\d{4} \d{2}:\d{2}:\d{2}/);
    await page.getByTestId('history-outcome').selectOption('failed');
    await entry.waitFor({ state: 'detached', timeout: 5000 });
    await page.getByTestId('history-outcome').selectOption('');
    await page.getByTestId('history-ward').selectOption(ward);
    await entry.waitFor({ timeout: 5000 });
    await page.getByTestId('history-action').selectOption('dim');
    await entry.waitFor({ state: 'detached', timeout: 5000 });
    assert.deepEqual(errors, []);
    await context.close();
  });
});
