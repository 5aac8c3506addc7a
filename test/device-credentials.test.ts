/**
 * Device credentials (issue 4): rotating a token disconnects the device within a second, the old token is
 * refused and the new one works; revoking disconnects within a second and refuses it afterwards; a second
 * connection with the same client id takes over and the older one is closed, the device staying online.
 *
 * Run: node --import tsx --test test/device-credentials.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform } from './helpers/platform.ts';

test('token rotation: the device is disconnected within a second, the old token refused, the new one works', async (t) => {
  const p = await startTestPlatform(t);
  const dev = await p.provision('streetLight');
  const client = await p.connect(dev.id, dev.token);
  const closed = new Promise<number>((r) => client.once('close', () => r(Date.now())));
  const asked = Date.now();
  const res = await p.api(`/api/v1/devices/${dev.id}/token`, { method: 'POST', admin: true });
  assert.equal(res.status, 200);
  const { token } = (await res.json()) as { token: string };
  assert.ok((await closed) - asked < 1000, 'disconnected within a second');
  await assert.rejects(p.connect(dev.id, dev.token), (e: any) => e.code === 4);
  const again = await p.connect(dev.id, token);
  await again.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ powerState: 'on' }), { qos: 1 });
  await p.rowsAtLeast(`SELECT "powerState" FROM "streetLight" WHERE "device" = '${dev.id}'`);
});

test('revocation: disconnected within a second, refused afterwards', async (t) => {
  const p = await startTestPlatform(t);
  const dev = await p.provision('traffic');
  const client = await p.connect(dev.id, dev.token);
  const closed = new Promise<number>((r) => client.once('close', () => r(Date.now())));
  const asked = Date.now();
  assert.equal((await p.api(`/api/v1/devices/${dev.id}/revoke`, { method: 'POST', admin: true })).status, 200);
  assert.ok((await closed) - asked < 1000, 'disconnected within a second');
  await assert.rejects(p.connect(dev.id, dev.token), (e: any) => e.code === 5);
  const listed = (await (await p.api('/api/v1/devices?includeRevoked=true')).json()) as { id: string; revokedAt?: string }[];
  assert.ok(listed.find((d) => d.id === dev.id)?.revokedAt);
});

test('a duplicate client id: the newer authenticated connection takes over, the older is closed', async (t) => {
  const p = await startTestPlatform(t);
  const dev = await p.provision('airQuality');
  const older = await p.connect(dev.id, dev.token);
  const olderClosed = new Promise<void>((r) => older.once('close', () => r()));
  const newer = await p.connect(dev.id, dev.token);
  await olderClosed;
  assert.equal(newer.connected, true);
  await newer.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 7 }), { qos: 1 });
  await p.rowsAtLeast(`SELECT "pm25" FROM "airQuality" WHERE "device" = '${dev.id}'`);
  await p.waitFor(async () => ((await (await p.api(`/api/v1/devices/${dev.id}`)).json()) as { online: boolean }).online, 2000, 'online');
  // A wrong token under the same id does not take over.
  await assert.rejects(p.connect(dev.id, 'not-the-token'), (e: any) => e.code === 4);
  assert.equal(newer.connected, true);
});
