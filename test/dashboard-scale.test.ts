/**
 * 5,000 devices on the dashboard's map. The devices are provisioned straight into the platform's
 * device store (fast), then a real browser opens the map: at city zoom every device is counted in an aggregate
 * (more devices than the map draws one by one), zoomed in each device in view has its marker, and the page stays
 * responsive while 60 of them connect over real MQTT and report (live status and reading events restyle their
 * markers). Time to first render, the longest main-thread task during the burst and the time a click on the
 * language switch takes to show are printed, not asserted (no timed assertions in tests); what is asserted is
 * that everything is drawn and that the page still answers: a click on an aggregate zooms in, a click on a marker
 * opens its device. The map at 50,000 devices is in test/dashboard-devices.test.ts.
 *
 * Run: node --import tsx --test test/dashboard-scale.test.ts
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Family } from '../ingest/index.ts';
import { launchBrowser, login, openPage, passwordOf, screenshot } from './helpers/browser.ts';
import { startTestPlatform } from './helpers/platform.ts';

const N = 5000;
const LIVE = 60;

interface InPage {
  citypulseMap?: {
    markerCount(): number;
    markerIds(): string[];
    mode(): 'markers' | 'groups';
    pointOf(id: string): { x: number; y: number } | undefined;
    groups(): { count: number; x: number; y: number }[];
  };
  PerformanceObserver: new (cb: (list: { getEntries(): { duration: number }[] }) => void) => { observe(o: object): void };
  __longest?: number;
}

test(`${N.toLocaleString('en')} devices on the map stay responsive`, async (t) => {
  const [p, browser] = await Promise.all([
    startTestPlatform(t, { analytics: { indicatorEmitIntervalMs: 250 } } as never),
    launchBrowser(t),
  ]);
  const { devices, profile } = p.platform.parts;
  const wards = profile.zones.filter((z) => z.centre);
  const families: Family[] = ['streetLight', 'streetLight', 'streetLight', 'traffic', 'airQuality'];
  const started = Date.now();
  const tokens = new Map<string, string>();
  for (let i = 0; i < N; i++) {
    const zone = wards[i % wards.length] as (typeof wards)[number];
    const c = zone.centre as { lat: number; lon: number };
    // A deterministic spread around each ward's centre (golden-angle spiral).
    const r = 0.012 * Math.sqrt((i + 1) / N);
    const a = i * 2.399963;
    const id = `scale-${String(i).padStart(4, '0')}`;
    const out = await devices.provision({
      id,
      family: families[i % families.length] as Family,
      zone: zone.id,
      location: { lat: c.lat + r * Math.sin(a), lon: c.lon + r * Math.cos(a) },
    });
    if (i < LIVE) tokens.set(id, out.token);
  }
  console.log(`# provisioned ${N} devices in ${Date.now() - started} ms (device store)`);
  await p.loginAs('viewer');

  const { page, errors } = await openPage(browser, `${p.addr.api}/`, { viewport: { width: 1600, height: 1000 } });
  await login(page, 'test-viewer', passwordOf('viewer'));
  // A full load of the map page: bundle, REST lists, socket snapshot, 5,000 markers drawn.
  const t0 = Date.now();
  await page.goto(`${p.addr.api}/map`);
  const map = page.locator('[data-testid="map"][data-first-render-ms]');
  await map.waitFor({ timeout: 60_000 });
  const firstRenderMs = Number(await map.getAttribute('data-first-render-ms'));
  console.log(
    `# time to first render of the map at ${N} devices: ${firstRenderMs} ms after navigation start (${Date.now() - t0} ms wall clock in the test)`,
  );
  const groups = () => page.evaluate(() => (globalThis as unknown as InPage).citypulseMap?.groups() ?? []);
  assert.equal(await page.evaluate(() => (globalThis as unknown as InPage).citypulseMap?.mode()), 'groups');
  assert.equal(
    (await groups()).reduce((n, g) => n + g.count, 0),
    N,
  );
  assert.equal(await page.getByTestId('map').getAttribute('data-markers'), '0');

  // Live burst: 60 devices connect over MQTT and report; watch the main thread meanwhile.
  await page.evaluate(() => {
    const g = globalThis as unknown as InPage;
    g.__longest = 0;
    new g.PerformanceObserver((list) => {
      for (const e of list.getEntries()) g.__longest = Math.max(g.__longest ?? 0, e.duration);
    }).observe({ type: 'longtask', buffered: false });
  });
  const clients = await Promise.all([...tokens].map(([id, token]) => p.connect(id, token)));
  await Promise.all(
    clients.map((c, i) => {
      const id = [...tokens.keys()][i] as string;
      const fam = families[i % families.length];
      const body =
        fam === 'streetLight'
          ? { powerState: 'on', powerConsumption: 80, status: 'ok' }
          : fam === 'traffic'
            ? { intensity: 12, averageVehicleSpeed: 8 }
            : { pm25: 20, pm10: 30 };
      return c.publishAsync(`devices/${id}/telemetry`, JSON.stringify(body), { qos: 1 });
    }),
  );
  // The page answers during the burst: the language switch changes the strings.
  const clickAt = Date.now();
  await page.getByTestId('lang-switch').click();
  await page.getByTestId('nav-map').filter({ hasText: 'Map' }).waitFor({ timeout: 5000 });
  console.log(`# language switch shown ${Date.now() - clickAt} ms after the click, with ${N} devices on the map and a live burst`);
  const longest = await page.evaluate(() => (globalThis as unknown as InPage).__longest ?? 0);
  console.log(`# longest main-thread task during the burst: ${Math.round(longest)} ms`);
  await screenshot(page, 'map-5000');

  // Clicks on the biggest aggregate in view zoom in until devices are drawn one by one; a station opens its page.
  const box = await page.getByTestId('map').boundingBox();
  assert.ok(box);
  const inBox = (q: { x: number; y: number } | undefined): q is { x: number; y: number } =>
    !!q && q.x > box.x + 20 && q.x < box.x + box.width - 20 && q.y > box.y + 20 && q.y < box.y + box.height - 20;
  const mode = () => page.evaluate(() => (globalThis as unknown as InPage).citypulseMap?.mode());
  for (let i = 0; i < 6 && (await mode()) === 'groups'; i++) {
    const big = (await groups()).filter(inBox).sort((a, b) => b.count - a.count)[0];
    assert.ok(big);
    const before = await page.getByTestId('map').getAttribute('data-renders');
    await page.mouse.click(big.x, big.y);
    await page.locator(`[data-testid="map"]:not([data-renders="${before}"])`).waitFor({ timeout: 10_000 });
  }
  assert.equal(await mode(), 'markers');
  const ids = await page.evaluate(() => (globalThis as unknown as InPage).citypulseMap?.markerIds() ?? []);
  let target = '';
  let pt: { x: number; y: number } | undefined;
  for (const id of ids.filter((x) => Number(x.slice(6)) % 5 === 4).reverse()) {
    pt = await page.evaluate((x) => (globalThis as unknown as InPage).citypulseMap?.pointOf(x), id);
    target = id;
    if (inBox(pt)) break;
  }
  assert.ok(inBox(pt), 'a station in view');
  await page.mouse.click(pt.x, pt.y);
  await page.locator('[data-testid="device-page"]').waitFor({ timeout: 10_000 });
  assert.ok(ids.includes((await page.getByTestId('device-page').getAttribute('data-device')) as string), target);
  assert.equal(await page.getByTestId('device-online').textContent(), 'Offline');
  assert.deepEqual(errors, []);
});
