/**
 * 5,000 devices on the dashboard's map. The devices are provisioned straight into the platform's
 * device store (fast), then a real browser opens the map: every device gets its marker, and the page stays
 * responsive while 60 of them connect over real MQTT and report (live status and reading events restyle their
 * markers). Time to first render, the longest main-thread task during the burst and the time a click on the
 * language switch takes to show are printed, not asserted (no timed assertions in tests); what is asserted is
 * that everything is drawn and that the page still answers: a click on a marker opens its device.
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
  citypulseMap?: { markerCount(): number; pointOf(id: string): { x: number; y: number } | undefined };
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
    `# time to first render of ${N} markers: ${firstRenderMs} ms after navigation start (${Date.now() - t0} ms wall clock in the test)`,
  );
  assert.equal(await page.evaluate(() => (globalThis as unknown as InPage).citypulseMap?.markerCount()), N);
  assert.equal(await page.getByTestId('map').getAttribute('data-markers'), String(N));

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
  console.log(`# language switch shown ${Date.now() - clickAt} ms after the click, with ${N} markers and a live burst`);
  const longest = await page.evaluate(() => (globalThis as unknown as InPage).__longest ?? 0);
  console.log(`# longest main-thread task during the burst: ${Math.round(longest)} ms`);
  await screenshot(page, 'map-5000');

  // A marker still opens its device (the last one provisioned is drawn last: on top of any neighbour).
  const target = `scale-${N - 1}`;
  const pt = await page.evaluate((id) => (globalThis as unknown as InPage).citypulseMap?.pointOf(id), target);
  assert.ok(pt);
  await page.mouse.click(pt.x, pt.y);
  await page.locator(`[data-testid="device-page"][data-device="${target}"]`).waitFor({ timeout: 10_000 });
  assert.equal(await page.getByTestId('device-online').textContent(), 'Offline');
  assert.deepEqual(errors, []);
});
