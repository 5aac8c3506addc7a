/**
 * The dashboard survives a server restart: an operator screen and a wall screen are open, the
 * platform stops (the pages must say they are disconnected), a new platform starts on the same data folder,
 * InfluxDB database and API port, and both pages reconnect by themselves (same session: sessions are stored)
 * and show live data again without a reload.
 *
 * Run: node --import tsx --test test/dashboard-restart.test.ts
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { launchBrowser, login, openPage, passwordOf } from './helpers/browser.ts';
import { startTestInflux } from './helpers/influx.ts';
import { startTestPlatform } from './helpers/platform.ts';
import { freePort } from './helpers/process.ts';
import { onCleanup } from './helpers/scope.ts';

test('the pages show the server is gone, then recover by themselves when it is back', async (t) => {
  const [influx, browser] = await Promise.all([startTestInflux(t), launchBrowser(t)]);
  const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-dash-restart-'));
  onCleanup(t, () => rm(dataDir, { recursive: true, force: true }));
  const database = `t${Math.random().toString(36).slice(2, 10)}`;
  // Same API port and database for both platforms (the helper picks a random database unless told).
  const port = await freePort();
  // The first platform is stopped by hand; its own cleanup (a second stop) is a no-op.
  const a = await startTestPlatform(t, { dataDir, api: { port }, influx: { database } }, { influx });
  await a.loginAs('operator');
  const dev = await a.provision('airQuality', { id: 'ui-restart-aq' });

  const op = await openPage(browser, `${a.addr.api}/`);
  await login(op.page, 'test-operator', passwordOf('operator'));
  const wallToken = await a.loginAs('viewer', { fresh: true });
  const wall = await openPage(browser, `${a.addr.api}/wall#token=${wallToken}`, { viewport: { width: 1920, height: 1080 } });
  await wall.page.locator('[data-testid="wall"] [data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 10_000 });

  await a.platform.stop();
  // Both say so: the header state, and the wall's banner.
  await op.page
    .locator('[data-testid="conn-state"][data-state="disconnected"], [data-testid="conn-state"][data-state="offline"]')
    .waitFor({ timeout: 5000 });
  await wall.page.getByTestId('wall-disconnected').waitFor({ timeout: 5000 });
  console.log(
    `# while down: "${await op.page.getByTestId('conn-state').textContent()}" / "${await wall.page.getByTestId('wall-disconnected').textContent()}"`,
  );

  const b = await startTestPlatform(t, { dataDir, api: { port }, influx: { database } }, { influx });
  assert.equal(b.addr.api, a.addr.api);
  const back = Date.now();
  await Promise.all([
    op.page.locator('[data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 15_000 }),
    wall.page.locator('[data-testid="wall"] [data-testid="conn-state"][data-state="connected"]').waitFor({ timeout: 15_000 }),
  ]);
  console.log(`# reconnected ${Date.now() - back} ms after the new server listened`);
  assert.equal(await wall.page.getByTestId('wall-disconnected').count(), 0, 'the banner is gone');
  // Live again, without a reload: a reading from the device (same registry, same token store) shows.
  const token = await b.platform.parts.devices.rotateToken(dev.id);
  const client = await b.connect(dev.id, token);
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 33.3, pm10: 40 }), { qos: 1 });
  await op.page
    .locator(`[data-testid="station-row"][data-device="${dev.id}"] [data-testid="station-pm25"]`, { hasText: '33,3' })
    .waitFor({ timeout: 5000 });
  await wall.page
    .locator(`[data-testid="station-row"][data-device="${dev.id}"] [data-testid="station-pm25"]`, { hasText: '33,3' })
    .waitFor({ timeout: 5000 });
  assert.deepEqual([...op.errors, ...wall.errors], []);
});
