/**
 * The wall screen read from 4 m and the dashboard at an operations-centre PC's 1366×768 and a phone's 390×844,
 * against a real platform with a simulated city that sent its day of history:
 * - wall at 1920×1080: every visible text ≥ 18 px with contrast ≥ 4.5:1 against its effective background (from
 *   the page's computed styles), key figures ≥ 32 px, a legend where no two entries share colour and shape, one
 *   <h1>, no empty panel;
 * - a ward made "Xấu" by its station's readings is filled with that category's colour on the map;
 * - 1366×768 and 390×844: no horizontal overflow, the map wide enough, the overview's cards not squeezed.
 * Screenshots: wall.png, overview-1366.png, phone.png (docs/screenshots with CITYPULSE_SCREENSHOTS_TO_DOCS=1).
 *
 * Run: node --import tsx --test test/dashboard-wall.test.ts
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { ConfigInput } from '../platform/config.ts';
import { createFleet, type Fleet } from '../simulators/index.ts';
import { launchBrowser, login, openPage, passwordOf, screenshot } from './helpers/browser.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope, onCleanup } from './helpers/scope.ts';

const scope = fileScope();
let p: TestPlatform;
let browser: Browser;
let fleet: Fleet;
const COUNTS = { airQuality: 0, traffic: 6, streetLight: 16 };
const BAD_WARD = 'da-mai';
const GOOD_WARD = 'tran-phu';

const OVERRIDES: ConfigInput = {
  analytics: { aqiEmitIntervalMs: 0, indicatorEmitIntervalMs: 100 } as ConfigInput['analytics'],
};

/** A station in `zone` that reported `pm25` every 10 minutes for the last three hours (NowCast needs two hours). */
async function station(zone: string, name: string, pm25: number): Promise<string> {
  const res = await p.api('/api/v1/devices', {
    method: 'POST',
    admin: true,
    body: JSON.stringify({ family: 'airQuality', zone, name, location: p.platform.parts.profile.zones.find((z) => z.id === zone)?.centre }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const { device, token } = (await res.json()) as { device: { id: string }; token: string };
  const id = device.id;
  const client = await p.connect(id, token);
  const now = Date.now();
  const readings = Array.from({ length: 19 }, (_, i) => ({
    dateObserved: new Date(now - (18 - i) * 600_000).toISOString(),
    pm25,
    pm10: pm25 * 1.3,
  }));
  await client.publishAsync(`devices/${id}/telemetry`, JSON.stringify(readings), { qos: 1 });
  return id;
}

before(async () => {
  [p, browser] = await Promise.all([startTestPlatform(scope, OVERRIDES), launchBrowser(scope)]);
  const headers = { authorization: `Bearer ${p.platform.adminToken}`, 'content-type': 'application/json' };
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-wall-'));
  fleet = createFleet({
    mqttUrl: p.addr.mqtt,
    profile: p.platform.parts.profile,
    counts: COUNTS,
    seed: 11,
    intervalScale: 0.05,
    qos: 1,
    idPrefix: 'wall',
    backfillMs: 24 * 3_600_000,
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
  // PM2.5 100 µg/m³ is VN_AQI 151–200 "Xấu"; 12 µg/m³ is "Tốt".
  await Promise.all([station(BAD_WARD, 'Trạm quan trắc Đa Mai', 100), station(GOOD_WARD, 'Trạm quan trắc Trần Phú', 12)]);
  await p.waitFor(
    async () => {
      const body = (await (await p.api('/api/v1/aqi')).json()) as { zones: { id: string; hour: { vn: { level: number } | null } }[] };
      return body.zones.find((z) => z.id === BAD_WARD)?.hour.vn?.level === 4;
    },
    20_000,
    `${BAD_WARD} at VN_AQI "Xấu"`,
  );
  await p.loginAs('viewer');
});

/** What page.evaluate callbacks see (the test's tsconfig has no DOM types). */
type InPage = any;

/** Visible text too small or too faint, computed in the page from its computed styles. */
async function readabilityProblems(page: Page): Promise<{ small: string[]; faint: string[]; figures: number[]; checked: number }> {
  // tsx names the inner functions with a helper the page does not have.
  await page.evaluate('globalThis.__name = (f) => f');
  return page.evaluate(() => {
    const g = globalThis as InPage;
    const parse = (c: string): InPage[] => {
      const m: InPage = c.match(/rgba?\(([^)]+)\)/);
      if (!m) return [0, 0, 0, 0];
      const v = m[1]
        .split(/[ ,/]+/)
        .filter(Boolean)
        .map(Number);
      return [v[0], v[1], v[2], v[3] ?? 1];
    };
    const lum = ([r, gr, b]: InPage[]) => {
      const f = (x: number) => {
        const s = x / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * f(r) + 0.7152 * f(gr) + 0.0722 * f(b);
    };
    /** The colour behind an element: its own and its ancestors' backgrounds composited down to an opaque one. */
    const background = (el: InPage): InPage[] => {
      const layers: InPage[][] = [];
      for (let e = el; e; e = e.parentElement) {
        const c = parse(g.getComputedStyle(e).backgroundColor);
        if (c[3] > 0) layers.push(c);
        if (c[3] >= 1) break;
      }
      let out: InPage[] = [255, 255, 255];
      for (const c of layers.reverse()) out = out.map((x, i) => c[i] * c[3] + x * (1 - c[3]));
      return out;
    };
    const small: string[] = [];
    const faint: string[] = [];
    const figures: number[] = [];
    let checked = 0;
    const walker = g.document.createTreeWalker(g.document.body, 4 /* SHOW_TEXT */);
    const seen = new Set();
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || seen.has(el) || !n.textContent.trim()) continue;
      seen.add(el);
      const r = el.getBoundingClientRect();
      const st = g.getComputedStyle(el);
      if (r.width < 2 || r.height < 2 || st.visibility === 'hidden' || Number(st.opacity) === 0) continue;
      if (r.bottom <= 0 || r.top >= g.innerHeight || r.right <= 0 || r.left >= g.innerWidth) continue;
      checked++;
      const text = n.textContent.trim().slice(0, 30);
      const size = Number.parseFloat(st.fontSize);
      if (size < 18) small.push(`${size}px "${text}"`);
      const fg = parse(st.color);
      const bg = background(el);
      const col = fg.slice(0, 3).map((x, i) => x * fg[3] + bg[i] * (1 - fg[3]));
      const [a, b] = [lum(col), lum(bg)];
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < 4.5) faint.push(`${ratio.toFixed(2)}:1 "${text}"`);
      if (el.classList.contains('figure-value')) figures.push(size);
    }
    return { small, faint, figures, checked };
  });
}

async function noHorizontalOverflow(page: Page, what: string): Promise<void> {
  const { sw, w } = await page.evaluate(() => {
    const g = globalThis as InPage;
    return { sw: g.document.documentElement.scrollWidth, w: g.innerWidth };
  });
  assert.ok(sw <= w, `${what}: no horizontal overflow (${sw} > ${w})`);
}

describe('wall, 1366 and phone', () => {
  test('wall at 1920×1080: ≥ 18 px and ≥ 4.5:1 everywhere, key figures ≥ 32 px, a legend, wards filled by VN_AQI', async () => {
    const token = await p.loginAs('viewer', { fresh: true });
    const { page, context, errors } = await openPage(browser, `${p.addr.api}/wall#token=${token}`, {
      viewport: { width: 1920, height: 1080 },
    });
    await page.locator('[data-testid="wall"] [data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 10_000 });
    await page.locator('[data-testid="wall-map"][data-markers]').waitFor();
    // Figures with their history: energy and lamps shown at once.
    await page.locator('[data-testid="energy-today"]', { hasText: /[1-9]/ }).waitFor({ timeout: 10_000 });

    const r = await readabilityProblems(page);
    console.log(`wall: ${r.checked} texts checked; key figures ${[...new Set(r.figures)].join(', ')} px`);
    assert.ok(r.checked > 50, `texts checked: ${r.checked}`);
    assert.deepEqual(r.small, [], 'no text under 18 px');
    assert.deepEqual(r.faint, [], 'no text under 4.5:1');
    assert.ok(r.figures.length >= 8 && r.figures.every((s) => s >= 32), `key figures ≥ 32 px: ${r.figures.join(', ')}`);
    assert.equal(await page.locator('h1').count(), 1, 'one <h1>');

    // The legend: every state of every family, no two with both the same colour and the same shape.
    const entries = await page
      .locator('[data-testid="wall"] [data-testid="legend-entry"]')
      .evaluateAll((els) => els.map((e) => `${(e as InPage).dataset.shape} ${(e as InPage).dataset.colour}`));
    assert.ok(entries.length >= 14, `legend entries: ${entries.length}`);
    assert.equal(new Set(entries).size, entries.length, `no two legend entries alike: ${entries.join(' | ')}`);
    assert.equal(new Set(entries.map((e) => e.split(' ')[0])).size, 3, 'three shapes');

    // The ward made "Xấu" is filled with that category's colour; the "Tốt" one with its own.
    const scales = (await (await p.api('/api/v1/aqi/scales')).json()) as { vn: { categories: { level: number; color: string }[] } };
    const colour = (level: number) => scales.vn.categories.find((c) => c.level === level)?.color.toLowerCase();
    const fill = (zone: string) => page.evaluate((z) => (globalThis as InPage).citypulseMap?.zoneFill(z)?.toLowerCase(), zone);
    await p.waitFor(async () => (await fill(BAD_WARD)) === colour(4), 5000, `${BAD_WARD} filled "Xấu"`);
    assert.equal(await fill(GOOD_WARD), colour(1), `${GOOD_WARD} filled "Tốt"`);

    // No empty panel: each shows content.
    const empty = await page.locator('[data-testid="wall"] .panel').evaluateAll((els) =>
      els
        .filter((e) => {
          const el = e as InPage;
          const heading = el.querySelector('h2')?.textContent ?? '';
          return (el.textContent ?? '').replace(heading, '').trim().length === 0;
        })
        .map((e) => (e as InPage).className),
    );
    assert.deepEqual(empty, [], 'no empty panel');
    await noHorizontalOverflow(page, 'wall');
    await screenshot(page, 'wall');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('1366×768 and 390×844: no horizontal overflow, a wide map, cards not squeezed, wards ranked', async () => {
    for (const [w, h, name] of [
      [1366, 768, 'overview-1366'],
      [390, 844, 'phone'],
    ] as const) {
      const { page, context, errors } = await openPage(browser, `${p.addr.api}/`, { viewport: { width: w, height: h } });
      await login(page, 'test-viewer', passwordOf('viewer'));
      await page.getByTestId('ward-row').first().waitFor();
      await page.locator('[data-testid="energy-today"]', { hasText: /[1-9]/ }).waitFor({ timeout: 10_000 });
      await noHorizontalOverflow(page, `overview ${w}×${h}`);
      assert.equal(await page.locator('h1').count(), 1, 'one <h1>');
      // The worst ward heads the ranking.
      assert.equal(await page.getByTestId('ward-row').first().getAttribute('data-zone'), BAD_WARD);
      const card = await page.getByTestId('family-streetLight').boundingBox();
      assert.ok(card && card.width >= Math.min(300, w - 40), `family card ${card?.width} px wide`);
      // On a phone the alarms and the feed come under the overview, full width.
      const feed = await page.getByTestId('event-feed').boundingBox();
      assert.ok(feed && feed.width >= Math.min(300, w - 40), `feed ${feed?.width} px wide`);
      await screenshot(page, name);
      await page.getByTestId('nav-map').click();
      await page.locator('[data-testid="map"][data-markers]').waitFor();
      await noHorizontalOverflow(page, `map ${w}×${h}`);
      const map = await page.getByTestId('map').boundingBox();
      assert.ok(map && map.width >= Math.min(900, w - 40) && map.height >= 300, `map ${map?.width}×${map?.height} px`);
      await screenshot(page, `${name}-map`);
      assert.deepEqual(errors, []);
      await context.close();
    }
  });
});
