/**
 * The operations dashboard in a real headless chromium (Debian package, driven by playwright-core)
 * against a whole real platform (broker, ingest, InfluxDB, analytics, alarms, commands, API) with the real
 * simulated fleet and real MQTT.js devices:
 * - served bundled by dashboard-api with a same-origin CSP (no CDN), config endpoint, SPA paths;
 * - log in through the form, the map shows the simulated devices, the language switch changes the strings
 *   and is remembered across a reload;
 * - a reading published over MQTT shows on the open overview and on the device page within two seconds;
 * - the device page loads history for 1 h, 24 h, 7 d and 30 d (server-side windows);
 * - an alarm raised by a simulated lamp fault is announced on every screen, acknowledged by an operator (through
 *   its dialog) and shown as acknowledged in a second browser's alarm console; a viewer cannot acknowledge
 *   (disabled, and 403);
 * - a dim command sent from the page reaches a simulated light, and its new state shows on the page;
 * - wall-screen mode at 1920×1080 with a token in the URL fragment and nothing to click;
 * - screenshots of overview, map, device detail and wall in test-artifacts/screenshots.
 *
 * Run: node --import tsx --test test/dashboard.test.ts   (builds dashboard/dist first when it is stale)
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { chooseWindow } from '../dashboard-api/history.ts';
import type { ConfigInput } from '../platform/config.ts';
import { createFleet, createRng, createStreetLightModel, type Fleet } from '../simulators/index.ts';
import { launchBrowser, login, openPage, passwordOf, screenshot, type DashboardPage } from './helpers/browser.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope, onCleanup } from './helpers/scope.ts';

const scope = fileScope();
let p: TestPlatform;
let browser: Browser;
let fleet: Fleet;
const COUNTS = { airQuality: 2, traffic: 3, streetLight: 4 };
const FLEET_SIZE = COUNTS.airQuality + COUNTS.traffic + COUNTS.streetLight;

const OVERRIDES: ConfigInput = {
  alarms: { tickMs: 50, defaults: { 'lamp-fault': { forMs: 300, clearForMs: 300 } } } as ConfigInput['alarms'],
  analytics: { aqiEmitIntervalMs: 0, indicatorEmitIntervalMs: 100 } as ConfigInput['analytics'],
  influx: { downsample: { catchUpIntervalMs: 200 } } as ConfigInput['influx'],
};

before(async () => {
  [p, browser] = await Promise.all([startTestPlatform(scope, OVERRIDES), launchBrowser(scope)]);
  const headers = { authorization: `Bearer ${p.platform.adminToken}`, 'content-type': 'application/json' };
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-dash-'));
  fleet = createFleet({
    mqttUrl: p.addr.mqtt,
    profile: p.platform.parts.profile,
    counts: COUNTS,
    seed: 6,
    intervalScale: 0.05,
    qos: 1,
    idPrefix: 'dash',
    credentialsFile: join(dir, 'credentials.json'),
    async provision(req) {
      const res = await fetch(`${p.addr.api}/api/v1/devices`, { method: 'POST', headers, body: JSON.stringify(req) });
      assert.equal(res.status, 201, await res.clone().text());
      return (await res.json()) as { token: string };
    },
    rotateToken: async () => assert.fail('no token should need rotating'),
  });
  onCleanup(scope, () => fleet.stop());
  await fleet.start();
  await p.waitFor(() => fleet.progress().connected === FLEET_SIZE, 15_000, 'the simulated fleet online');
  // Operator accounts used through the login form below.
  await Promise.all([p.loginAs('operator'), p.loginAs('viewer')]);
});

/** A logged-in screen of `role` on `path`. */
async function screen(
  role: 'operator' | 'viewer',
  path = '/',
  b: Browser = browser,
  viewport?: { width: number; height: number },
): Promise<DashboardPage> {
  const d = await openPage(b, `${p.addr.api}${path}`, { viewport });
  await login(d.page, `test-${role}`, passwordOf(role));
  return d;
}

const testid = (page: Page, id: string) => page.getByTestId(id);

/** What page.evaluate callbacks see (they run in the browser; the test's tsconfig has no DOM types). */
interface InPage {
  citypulseMap?: { markerCount(): number; pointOf(id: string): { x: number; y: number } | undefined };
  document: { documentElement: { lang: string; scrollWidth: number; scrollHeight: number } };
  localStorage: { getItem(k: string): string | null };
}

describe('serving', () => {
  test('the built app, its config and the client-side paths are served with a same-origin CSP', async () => {
    for (const path of ['/', '/map', '/alarms', '/wall', '/devices/abc']) {
      const res = await fetch(`${p.addr.api}${path}`);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'self'/);
      assert.match(csp, /connect-src 'self'/);
      const html = await res.text();
      // Every script and stylesheet is a local bundle: nothing from another origin.
      const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
      assert.ok(
        refs.some((r) => /^\/assets\/.+\.js$/.test(r)),
        html,
      );
      for (const r of refs) assert.match(r, /^\/assets\//);
      const asset = await fetch(`${p.addr.api}${refs.find((r) => r.endsWith('.js'))}`);
      assert.equal(asset.status, 200);
      assert.match(asset.headers.get('cache-control') ?? '', /immutable/);
    }
    const cfg = (await (await fetch(`${p.addr.api}/dashboard-config.json`)).json()) as unknown;
    assert.deepEqual(cfg, { tileUrl: '', tileAttribution: '', tileMaxZoom: 19 });
    // API paths keep their own answers.
    const api = await fetch(`${p.addr.api}/api/v1/nothing-here`);
    assert.equal(api.status, 404);
    assert.equal(((await api.json()) as { code: string }).code, 'CP_API_NOT_FOUND');
  });
});

describe('in the browser', () => {
  test('log in, see the simulated devices on the map, switch the language (remembered)', async () => {
    const { page, errors } = await openPage(browser, `${p.addr.api}/`);
    // Vietnamese by default.
    await testid(page, 'login-submit').waitFor();
    assert.equal(await testid(page, 'login-submit').textContent(), 'Đăng nhập');
    // A wrong password is refused with a clear message.
    await testid(page, 'login-username').fill('test-operator');
    await testid(page, 'login-password').fill('wrong-password-1');
    await testid(page, 'login-submit').click();
    await page.getByText('Sai tên đăng nhập hoặc mật khẩu').waitFor({ timeout: 5000 });
    await login(page, 'test-operator', passwordOf('operator'));
    assert.equal(await testid(page, 'who').getAttribute('data-role'), 'operator');
    assert.equal(await testid(page, 'nav-map').textContent(), 'Bản đồ');
    // Overview counts: every simulated device online, per family.
    for (const [family, n] of Object.entries(COUNTS)) {
      await page.locator(`[data-testid="count-online-${family}"]`, { hasText: String(n) }).waitFor({ timeout: 5000 });
    }
    await screenshot(page, 'overview');

    await testid(page, 'nav-map').click();
    const map = testid(page, 'map');
    await page.locator(`[data-testid="map"][data-markers="${FLEET_SIZE}"]`).waitFor({ timeout: 10_000 });
    assert.equal(await page.evaluate(() => (globalThis as unknown as InPage).citypulseMap?.markerCount()), FLEET_SIZE);
    // Every simulated device has its marker on screen (inside the map's box).
    const box = await map.boundingBox();
    assert.ok(box);
    const fleetIds = ((await (await p.api('/api/v1/devices')).json()) as { id: string }[]).map((d) => d.id);
    assert.equal(fleetIds.length, FLEET_SIZE);
    for (const id of fleetIds) {
      const pt = await page.evaluate((d) => (globalThis as unknown as InPage).citypulseMap?.pointOf(d), id);
      assert.ok(pt && pt.x >= box.x && pt.x <= box.x + box.width && pt.y >= box.y && pt.y <= box.y + box.height, `${id} on the map`);
    }
    assert.match((await testid(page, 'map-device-count').textContent()) ?? '', /9 thiết bị/);
    await screenshot(page, 'map');

    // Clicking a marker opens its device.
    const target = fleetIds[0] as string;
    const pt = await page.evaluate((d) => (globalThis as unknown as InPage).citypulseMap?.pointOf(d), target);
    assert.ok(pt);
    await page.mouse.click(pt.x, pt.y);
    await page.locator(`[data-testid="device-page"][data-device="${target}"]`).waitFor({ timeout: 5000 });
    await page.goBack();

    // English on the switch: the strings change, and stay English after a reload.
    await testid(page, 'lang-switch').click();
    // The switch re-renders on the next frame; live batches may be rendering meanwhile: wait for it (bounded).
    await page.locator('[data-testid="nav-map"]', { hasText: /^Map$/ }).waitFor({ timeout: 2000 });
    assert.equal(await testid(page, 'nav-map').textContent(), 'Map');
    assert.match((await testid(page, 'map-device-count').textContent()) ?? '', /9 devices/);
    assert.equal(await page.evaluate(() => (globalThis as unknown as InPage).document.documentElement.lang), 'en');
    await page.reload();
    await page.locator('[data-testid="conn-state"][data-state="connected"]').waitFor();
    assert.equal(await testid(page, 'nav-overview').textContent(), 'Overview');
    await testid(page, 'lang-switch').click();
    await page.locator('[data-testid="nav-overview"]', { hasText: /^Tổng quan$/ }).waitFor({ timeout: 2000 });
    assert.equal(await testid(page, 'nav-overview').textContent(), 'Tổng quan');
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  test('a reading published over MQTT appears on the open overview and device page within two seconds', async () => {
    const dev = await p.provision('airQuality', { id: 'ui-live-aq' });
    const client = await p.connect(dev.id, dev.token);
    const overview = await screen('viewer', '/');
    const detail = await screen('viewer', `/devices/${dev.id}`);
    await detail.page.getByTestId('device-page').waitFor();
    await overview.page.locator(`[data-testid="station-row"][data-device="${dev.id}"]`).waitFor();
    // A value no simulated station sends, shown in Vietnamese number format (decimal comma).
    const sent = Date.now();
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 47.3, pm10: 61.2, temperature: 24.5 }), { qos: 1 });
    await Promise.all([
      overview.page
        .locator(`[data-testid="station-row"][data-device="${dev.id}"] [data-testid="station-pm25"]`, { hasText: '47,3 µg/m³' })
        .waitFor({ timeout: 2000 }),
      detail.page.locator('[data-testid="reading-pm25"]', { hasText: '47,3 µg/m³' }).waitFor({ timeout: 2000 }),
    ]);
    console.log(`# reading on both screens ${Date.now() - sent} ms after its PUBACK`);
    // The open chart is extended live: a second reading adds a point without a reload.
    const chart = detail.page.locator('[data-testid="chart"][data-field="pm25"]');
    await chart.waitFor({ timeout: 5000 });
    const before = Number(await chart.getAttribute('data-points'));
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 12.5, pm10: 20 }), { qos: 1 });
    await detail.page.locator('[data-testid="reading-pm25"]', { hasText: '12,5 µg/m³' }).waitFor({ timeout: 2000 });
    await detail.page.locator(`[data-testid="chart"][data-field="pm25"][data-points="${before + 1}"]`).waitFor({ timeout: 2000 });
    assert.deepEqual([...overview.errors, ...detail.errors], []);
    await Promise.all([overview.context.close(), detail.context.close()]);
  });

  test('device detail loads history for 1 h, 24 h, 7 d and 30 d', async () => {
    const dev = await p.provision('traffic', { id: 'ui-history-tf' });
    const client = await p.connect(dev.id, dev.token);
    // A month of readings: every 3 h for 29 days, and every minute of the last hour (a device flushing a backlog).
    const now = Date.now();
    const readings: object[] = [];
    for (let t = now - 29 * 86_400_000; t < now - 3600_000; t += 3 * 3600_000)
      readings.push({ dateObserved: t, intensity: 10 + (t % 7), averageVehicleSpeed: 30 });
    for (let t = now - 3500_000; t < now - 1000; t += 60_000)
      readings.push({ dateObserved: t, intensity: 20, averageVehicleSpeed: 25 + (t % 5) });
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(readings), { qos: 1 });
    // The hourly tier is caught up for late readings in the background: wait until the 30-day query sees them.
    const q = (ms: number) => `/api/v1/devices/${dev.id}/readings?from=${new Date(Date.now() - ms).toISOString()}&window=auto`;
    await p.waitFor(
      async () => ((await (await p.api(q(30 * 86_400_000))).json()) as { points: unknown[] }).points.length >= 100,
      15_000,
      '30 days of history',
    );

    const { page, errors, context } = await screen('viewer', `/devices/${dev.id}`);
    const ranges = { '1h': 3600_000, '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000 };
    for (const [range, ms] of Object.entries(ranges)) {
      await testid(page, `range-${range}`).click();
      const info = page.locator(`[data-testid="history-info"][data-range="${range}"]`);
      await info.waitFor({ timeout: 10_000 });
      const window = await info.getAttribute('data-window');
      assert.equal(window, chooseWindow(0, ms), `${range}: the server's window`);
      const points = Number(await info.getAttribute('data-points'));
      // Server-side aggregation: the 30-day chart is a few hundred points at most, not every reading.
      assert.ok(points > 0 && points <= 500, `${range}: ${points} points`);
      assert.ok((await info.getAttribute('data-tier'))?.length, 'the tier the server read');
      const charts = page.locator('[data-testid="chart"]');
      assert.ok((await charts.count()) >= 2, 'one chart per numeric field');
      assert.equal(Number(await page.locator('[data-testid="chart"][data-field="intensity"]').getAttribute('data-points')), points);
      console.log(`# history ${range}: window ${window}, ${points} points, tier ${await info.getAttribute('data-tier')}`);
    }
    await screenshot(page, 'device-detail');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('an alarm from a simulated lamp fault is announced everywhere, acknowledged by an operator, seen in a second browser; a viewer cannot', async () => {
    const second = await launchBrowser(scope);
    const [op, other, viewer] = await Promise.all([
      screen('operator', '/'),
      screen('operator', '/alarms', second),
      screen('viewer', '/alarms'),
    ]);
    // The simulator's street-light model with a lamp that has failed: it reports status defectiveLamp (and draws nothing).
    const dev = await p.provision('streetLight', { id: 'ui-faulty-sl' });
    const client = await p.connect(dev.id, dev.token);
    const model = createStreetLightModel(createRng(3), { timeZone: 'Asia/Ho_Chi_Minh', faultProbability: 1 });
    const publishing = setInterval(() => {
      const r = model.next(new Date());
      void client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(r), { qos: 1 }).catch(() => undefined);
    }, 100);
    onCleanup(scope, () => clearInterval(publishing));
    const alarm = (await p.waitFor(
      async () => ((await (await p.api(`/api/v1/alarms?rule=lamp-fault&subject=${dev.id}`)).json()) as { id: number; state: string }[])[0],
      10_000,
      'the lamp-fault alarm',
    )) as { id: number };
    clearInterval(publishing);
    const row = (page: Page, state: string) =>
      page.locator(`[data-testid="alarm-row"][data-alarm-id="${alarm.id}"][data-state="${state}"]`);
    // Announced on every open screen, whatever page it shows.
    await Promise.all(
      [op, other, viewer].map((d) =>
        d.page.locator(`[data-testid="alarm-announcement"][data-alarm-id="${alarm.id}"]`).waitFor({ timeout: 5000 }),
      ),
    );
    await Promise.all([row(op.page, 'active').waitFor(), row(other.page, 'active').waitFor(), row(viewer.page, 'active').waitFor()]);
    await screenshot(op.page, 'overview-alarm');
    // The viewer's buttons are disabled, and the API refuses the viewer's session anyway.
    assert.equal(await row(viewer.page, 'active').getByTestId('alarm-ack').isDisabled(), true);
    const status = await viewer.page.evaluate(async (id) => {
      const s = JSON.parse((globalThis as unknown as InPage).localStorage.getItem('citypulse.session') ?? '{}') as { token: string };
      const res = await fetch(`/api/v1/alarms/${id}/acknowledge`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
        body: '{}',
      });
      return res.status;
    }, alarm.id);
    assert.equal(status, 403);
    // The operator acknowledges on one screen (its dialog takes an optional note); the other browser shows it
    // acknowledged, by whom.
    await row(op.page, 'active').getByTestId('alarm-ack').click();
    await op.page.getByTestId('alarm-dialog').getByTestId('dialog-confirm').click();
    await row(other.page, 'acknowledged').waitFor({ timeout: 5000 });
    assert.match((await row(other.page, 'acknowledged').textContent()) ?? '', /test-operator/);
    await row(viewer.page, 'acknowledged').waitFor({ timeout: 5000 });
    const stored = (await (await p.api(`/api/v1/alarms/${alarm.id}`)).json()) as { state: string; acknowledgedBy: string };
    assert.equal(stored.state, 'acknowledged');
    assert.equal(stored.acknowledgedBy, 'test-operator');
    assert.deepEqual([...op.errors, ...other.errors, ...viewer.errors], []);
    await Promise.all([op.context.close(), other.context.close(), viewer.context.close()]);
  });

  test('a dim command sent from the page reaches a simulated light and its new state shows on the page', async () => {
    const lights = ((await (await p.api('/api/v1/devices?family=streetLight')).json()) as { id: string }[]).filter((d) =>
      d.id.startsWith('dash'),
    );
    const light = lights[0]?.id as string;
    assert.ok(light);
    const before = fleet.progress().commands;
    const { page, errors, context } = await screen('operator', `/devices/${light}`);
    await testid(page, 'cmd-dim').waitFor();
    await testid(page, 'dim-level').fill('30');
    await testid(page, 'cmd-dim').click();
    // Its state changes live: pending/delivered, then carried out by the device.
    await page.locator('[data-testid="command-row"][data-state="acknowledged"]').waitFor({ timeout: 10_000 });
    assert.ok(fleet.progress().commands > before, 'the simulated light received the command');
    // The light's own reading after the command: 30 % output, dimmed (in words, not the enum value).
    await page.locator('[data-testid="reading-illuminanceLevel"]', { hasText: '30%' }).waitFor({ timeout: 5000 });
    await page.locator('[data-testid="reading-powerState"]', { hasText: 'Giảm sáng' }).waitFor({ timeout: 5000 });
    await page.locator('[data-testid="device-state"]', { hasText: 'Giảm sáng' }).waitFor({ timeout: 5000 });
    const cmds = (await (await p.api(`/api/v1/commands?device=${light}`)).json()) as {
      state: string;
      action: { illuminanceLevel?: number };
    }[];
    assert.equal(cmds[0]?.state, 'acknowledged');
    assert.equal(cmds[0]?.action.illuminanceLevel, 0.3);
    // A viewer gets no enabled command buttons.
    const viewer = await screen('viewer', `/devices/${light}`);
    await viewer.page.getByTestId('cmd-dim').waitFor();
    assert.equal(await viewer.page.getByTestId('cmd-dim').isDisabled(), true);
    assert.deepEqual([...errors, ...viewer.errors], []);
    await Promise.all([context.close(), viewer.context.close()]);
  });

  test('wall-screen mode: 1920×1080, token in the URL fragment, live figures, nothing to click', async () => {
    const token = await p.loginAs('viewer', { fresh: true });
    const { page, errors, context } = await openPage(browser, `${p.addr.api}/wall#token=${token}`, {
      viewport: { width: 1920, height: 1080 },
    });
    await page.locator('[data-testid="wall"] [data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 10_000 });
    // The token left the address bar (not in history, not in a screenshot of the URL).
    assert.equal(new URL(page.url()).hash, '');
    await page.locator(`[data-testid="wall-map"][data-markers]`).waitFor();
    assert.ok(Number(await testid(page, 'wall-map').getAttribute('data-markers')) >= FLEET_SIZE);
    assert.equal(await page.locator('[data-testid="wall"] button, [data-testid="wall"] input').count(), 0, 'no controls on a wall');
    const size = await page.evaluate(() => {
      const d = (globalThis as unknown as InPage).document.documentElement;
      return { w: d.scrollWidth, h: d.scrollHeight };
    });
    assert.deepEqual(size, { w: 1920, h: 1080 }, 'fills the screen without scrolling');
    await screenshot(page, 'wall');
    assert.deepEqual(errors, []);
    await context.close();
  });
});
