/**
 * The audit log under a login flood (registry/operators.ts): refused logins are aggregated per source address and
 * minute with a count, and kept apart from operators' actions with a cap of their own, so an anonymous flood never
 * pushes an action out of the log. Answers with a token or about a session have `Cache-Control: no-store`.
 *
 * Run: node --import tsx --test test/audit-flood.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';

const json = (v: unknown) => JSON.stringify(v);
const login = (p: TestPlatform, username: string, password: string) =>
  p.api('/api/v1/auth/login', { method: 'POST', token: null, body: json({ username, password }) });

test('10,000 refused logins: every operator action stays in the audit log, the flood shows as a few records with counts', async (t) => {
  // The smallest log allowed: 1,000 records. One failure limits the address.
  const p = await startTestPlatform(t, {
    api: { auditLimit: 1000, loginMaxFailuresPerAddress: 1, initialAdminPassword: 'admin-password-1' },
  });
  const admin = ((await (await login(p, 'admin', 'admin-password-1')).json()) as { token: string }).token;
  const provisioned: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await p.api('/api/v1/devices', {
      method: 'POST',
      token: admin,
      body: json({ family: 'airQuality', zone: p.platform.parts.profile.zones[0]?.id, location: { lat: 21.27, lon: 106.19 } }),
    });
    assert.equal(res.status, 201);
    provisioned.push(((await res.json()) as { device: { id: string } }).device.id);
  }
  const op = { username: 'night-operator', password: 'night-password-1', role: 'operator' };
  assert.equal((await p.api('/api/v1/operators', { method: 'POST', token: admin, body: json(op) })).status, 201);
  assert.equal((await p.api(`/api/v1/devices/${provisioned[0]}/revoke`, { method: 'POST', token: admin })).status, 200);
  const actionsBefore = ((await (await p.api('/api/v1/audit?limit=1000', { admin: true })).json()) as any[]).filter(
    (e) => e.outcome === 'ok',
  );
  assert.ok(actionsBefore.length >= 6, 'logins, provisions, operator creation and revocation are audited');

  // The flood: one failure, then 10,000 attempts with usernames of the caller's choice, 16 at a time.
  assert.equal((await login(p, 'admin', 'wrong-password')).status, 401);
  const statuses = new Map<number, number>();
  let sent = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (sent < 10_000) {
        const i = sent++;
        const res = await login(p, i % 2 ? 'admin' : `user-${i}`, 'guess');
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      }
    }),
  );
  const took = Date.now() - started;
  assert.deepEqual([...statuses], [[429, 10_000]], 'every attempt refused');
  assert.ok(took < 120_000, `flood took ${took} ms`);

  const log = (await (await p.api('/api/v1/audit?limit=1000', { admin: true })).json()) as any[];
  // Every operator action is still there.
  for (const a of actionsBefore) {
    assert.ok(
      log.some((e) => e.at === a.at && e.action === a.action && e.actor === a.actor && e.target === a.target && e.outcome === 'ok'),
      `${a.action} ${a.target} still in the audit log`,
    );
  }
  for (const id of provisioned) assert.ok(log.some((e) => e.action === 'device.provision' && e.target === id));
  // The flood: aggregated per address and minute, with counts that add up.
  const limited = log.filter((e) => e.action === 'login' && e.outcome === 'rate-limited');
  assert.ok(limited.length >= 1 && limited.length <= Math.ceil(took / 60_000) + 1, `${limited.length} records for the flood`);
  assert.equal(
    limited.reduce((n, e) => n + e.count, 0),
    10_000,
  );
  for (const e of limited) {
    assert.match(e.address, /127\.0\.0\.1/);
    assert.equal(e.actor, '(various)');
    assert.ok(Date.parse(e.lastAt) >= Date.parse(e.at));
  }
  const failed = log.filter((e) => e.action === 'login' && e.outcome === 'wrong-password');
  assert.deepEqual(
    failed.map((e) => [e.actor, e.count]),
    [['admin', 1]],
  );
  assert.ok(log.length < 50, `${log.length} records in all`);
});

test('login, logout, auth/me, provisioning and token rotation answers have Cache-Control: no-store', async (t) => {
  const p = await startTestPlatform(t, { api: { initialAdminPassword: 'admin-password-1' } });
  const ok = await login(p, 'admin', 'admin-password-1');
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('cache-control'), 'no-store');
  const token = ((await ok.json()) as { token: string }).token;
  const refused = await login(p, 'admin', 'wrong-password');
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get('cache-control'), 'no-store');
  assert.equal((await p.api('/api/v1/auth/me', { token })).headers.get('cache-control'), 'no-store');
  const made = await p.api('/api/v1/devices', {
    method: 'POST',
    token,
    body: json({ family: 'traffic', zone: p.platform.parts.profile.zones[0]?.id, location: { lat: 21.27, lon: 106.19 } }),
  });
  assert.equal(made.status, 201);
  assert.equal(made.headers.get('cache-control'), 'no-store');
  const id = ((await made.json()) as { device: { id: string } }).device.id;
  const rotated = await p.api(`/api/v1/devices/${id}/token`, { method: 'POST', token });
  assert.equal(rotated.status, 200);
  assert.equal(rotated.headers.get('cache-control'), 'no-store');
  const out = await p.api('/api/v1/auth/logout', { method: 'POST', token });
  assert.equal(out.status, 204);
  assert.equal(out.headers.get('cache-control'), 'no-store');
});
