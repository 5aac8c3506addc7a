/**
 * Device credentials: rotating a token disconnects the device within a second, the old token is
 * refused and the new one works; revoking disconnects within a second and refuses it afterwards; a second
 * connection with the same client id takes over and the older one is closed, the device staying online. A
 * device's last-seen time is shown at once and written to the registry in batches.
 *
 * Run: node --import tsx --test test/device-credentials.test.ts
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { SqliteDeviceStore } from '../registry/index.ts';
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

test('last seen: shown at once when a device connects, written to the registry in batches and at close', async (t) => {
  const p = await startTestPlatform(t);
  const dev = await p.provision('traffic');
  const before = Date.now();
  await p.connect(dev.id, dev.token);
  const shown = async () => ((await (await p.api(`/api/v1/devices/${dev.id}`)).json()) as { lastSeenAt?: string }).lastSeenAt;
  // The connect's time is shown at once, before it is written.
  await p.waitFor(async () => (await shown()) !== undefined, 2000, 'lastSeenAt after the connect');
  assert.ok(Date.parse((await shown()) as string) >= before - 1000);

  // The store itself, on a file: reads see a touch at once; the file gets it within a second, or at close.
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-registry-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'registry.db');
  const store = new SqliteDeviceStore(file);
  const a = (await store.provision({ family: 'traffic', zone: 'z', location: { lat: 21, lon: 105 } })).device.id;
  const b = (await store.provision({ family: 'traffic', zone: 'z', location: { lat: 21, lon: 105 } })).device.id;
  const onDisk = (id: string) => {
    const db = new Database(file, { readonly: true });
    try {
      return (db.prepare('SELECT last_seen_at FROM devices WHERE id = ?').get(id) as { last_seen_at: string | null }).last_seen_at;
    } finally {
      db.close();
    }
  };
  await store.touch(a, new Date('2026-01-02T03:04:05.000Z'));
  await store.touch(a, new Date('2026-01-02T03:04:06.000Z'));
  assert.equal((await store.get(a))?.lastSeenAt, '2026-01-02T03:04:06.000Z', 'the newest touch, at once');
  assert.equal((await store.list()).find((d) => d.id === a)?.lastSeenAt, '2026-01-02T03:04:06.000Z');
  await p.waitFor(() => onDisk(a) === '2026-01-02T03:04:06.000Z', 3000, 'written within the batching interval');
  await store.touch(b, new Date('2026-01-02T03:04:07.000Z'));
  await store.close();
  assert.equal(onDisk(b), '2026-01-02T03:04:07.000Z', 'a pending touch is written at close');
});
