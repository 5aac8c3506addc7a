/**
 * Operators and access on a real platform: every REST route (driven by the OpenAPI document, so a
 * new route is covered by the role it declares) answers each kind of caller by its least role; socket.io
 * refuses a connection without a valid token; login rate limits per username and per source address; session
 * expiry and logout; the initial admin; passwords and session tokens never stored in clear; the audit log.
 *
 * Run: node --import tsx --test test/operators.test.ts
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { io as ioClient, type Socket } from 'socket.io-client';
import type { Role } from '../registry/index.ts';
import { startTestInflux, type TestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const ADMIN_PASSWORD = 'initial-admin-password';
const scope = fileScope();
let influx: TestInflux;
let p: TestPlatform;

before(async () => {
  influx = await startTestInflux(scope);
  p = await startTestPlatform(scope, { api: { initialAdminPassword: ADMIN_PASSWORD } }, { influx });
});

const json = (body: unknown) => JSON.stringify(body);
// The order of roles as the access rules state it (not taken from the code under test).
const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };
const ROLES = Object.keys(RANK) as Role[];

function login(tp: TestPlatform, username: string, password: string): Promise<Response> {
  return tp.api('/api/v1/auth/login', { method: 'POST', token: null, body: json({ username, password }) });
}

async function tokenOf(res: Response): Promise<string> {
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { token: string }).token;
}

/** Connects a socket.io client; resolves when connected, rejects with the connect_error. */
function connectSocket(tp: TestPlatform, auth: Record<string, unknown>, t: { after(fn: () => unknown): void }): Promise<Socket> {
  const socket = ioClient(tp.addr.api, { transports: ['websocket'], reconnection: false, auth });
  t.after(() => socket.close());
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

async function refusedSocket(tp: TestPlatform, auth: Record<string, unknown>, t: { after(fn: () => unknown): void }): Promise<void> {
  const err = (await connectSocket(tp, auth, t).then(
    () => assert.fail('the connection should have been refused'),
    (e: unknown) => e,
  )) as Error & { data?: { code?: string } };
  assert.equal(err.data?.code, 'CP_API_UNAUTHORIZED', `refused with its code (got ${err.message})`);
}

/** POST /api/v1/auth/login from another loopback source address (the whole 127/8 is local on Linux). */
function loginFrom(tp: TestPlatform, localAddress: string, username: string, password: string): Promise<{ status: number; body: any }> {
  const url = new URL('/api/v1/auth/login', tp.addr.api);
  const body = json({ username, password });
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        localAddress,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('REST: every route answers each caller by the role it declares', () => {
  test('anonymous, garbage and tampered tokens get 401; too low a role 403; enough passes the check', async () => {
    const doc = (await (await p.api('/api/v1/openapi.json', { token: null })).json()) as any;
    const routes: { method: string; path: string; role: Role | undefined; security: unknown }[] = [];
    for (const [path, ops] of Object.entries<Record<string, any>>(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) routes.push({ method, path, role: op['x-citypulse-role'], security: op.security });
    }
    assert.ok(routes.length >= 18, `the route table (${routes.length} routes)`);
    const key = (r: { method: string; path: string }) => `${r.method.toUpperCase()} ${r.path}`;

    // Only these are public (openapi.json and /metrics are served outside the route table, tested below).
    assert.deepEqual(
      routes
        .filter((r) => !r.role)
        .map(key)
        .sort(),
      ['GET /api/v1/health', 'POST /api/v1/auth/login'],
    );
    // The least role each route needs, as the access rules state it.
    const expected: Record<string, Role> = {
      'GET /api/v1/city': 'viewer',
      'GET /api/v1/contract': 'viewer',
      'GET /api/v1/devices': 'viewer',
      'GET /api/v1/devices/{id}': 'viewer',
      'GET /api/v1/devices/{id}/readings': 'viewer',
      'GET /api/v1/latest': 'viewer',
      'GET /api/v1/auth/me': 'viewer',
      'POST /api/v1/auth/logout': 'viewer',
      'GET /api/v1/dead-letters': 'operator',
      'POST /api/v1/devices': 'admin',
      'POST /api/v1/devices/{id}/revoke': 'admin',
      'POST /api/v1/devices/{id}/token': 'admin',
      'GET /api/v1/operators': 'admin',
      'POST /api/v1/operators': 'admin',
      'POST /api/v1/operators/{username}/disable': 'admin',
      'POST /api/v1/operators/{username}/password': 'admin',
      'GET /api/v1/audit': 'admin',
    };
    for (const [k, role] of Object.entries(expected)) {
      assert.equal(routes.find((r) => key(r) === k)?.role, role, `${k} needs ${role}`);
    }
    // The OpenAPI document shows the security of each route.
    for (const r of routes) assert.deepEqual(r.security, r.role ? [{ bearer: [r.role] }] : [], `${key(r)} security`);

    const sessions = Object.fromEntries(await Promise.all(ROLES.map(async (role) => [role, await p.loginAs(role)]))) as Record<
      Role,
      string
    >;
    const service = p.platform.adminToken;
    const tampered = service.slice(0, -1) + (service.endsWith('A') ? 'B' : 'A');
    const call = async (r: { method: string; path: string }, authorization: string | undefined) => {
      // Ids that do not exist and empty bodies: a caller that passes the role check gets 200/400/404, nothing changes.
      const url = r.path.replace('{id}', 'no-such-device').replace('{username}', 'nobody');
      const headers: Record<string, string> = authorization ? { authorization } : {};
      const init: RequestInit = { method: r.method.toUpperCase(), headers };
      if (r.method === 'post') {
        headers['content-type'] = 'application/json';
        init.body = '{}';
      }
      const res = await fetch(`${p.addr.api}${url}`, init);
      const body = res.headers.get('content-type')?.includes('json') ? ((await res.json()) as any) : await res.text();
      return { status: res.status, code: body?.code as string | undefined, wwwAuthenticate: res.headers.get('www-authenticate') };
    };

    for (const r of routes) {
      const what = key(r);
      for (const [who, authorization] of [
        ['no token', undefined],
        ['garbage token', 'Bearer garbage'],
        ['not a bearer', `Basic ${Buffer.from('admin:x').toString('base64')}`],
        ['tampered service token', `Bearer ${tampered}`],
      ] as const) {
        const out = await call(r, authorization);
        if (r.role) {
          assert.equal(out.status, 401, `${what}, ${who}`);
          assert.equal(out.code, 'CP_API_UNAUTHORIZED', `${what}, ${who}`);
          assert.equal(out.wwwAuthenticate, 'Bearer');
        } else assert.ok(![401, 403].includes(out.status) && out.status < 500, `${what} is public (${who}: ${out.status})`);
      }
      for (const role of ROLES) {
        // Logging out ends the session: that route gets a session of its own.
        const token = r.path === '/api/v1/auth/logout' ? await p.loginAs(role, { fresh: true }) : sessions[role];
        const out = await call(r, `Bearer ${token}`);
        if (!r.role || RANK[role] >= RANK[r.role]) {
          assert.ok(![401, 403].includes(out.status) && out.status < 500, `${what} as ${role}: ${out.status} ${out.code}`);
        } else {
          assert.equal(out.status, 403, `${what} as ${role}`);
          assert.equal(out.code, 'CP_API_FORBIDDEN');
        }
      }
      const out = await call(r, `Bearer ${service}`);
      assert.ok(![401, 403].includes(out.status) && out.status < 500, `${what} with the service token: ${out.status} ${out.code}`);
    }
  });

  test('health, the OpenAPI document and /metrics (Prometheus) stay public', async () => {
    for (const path of ['/api/v1/health', '/api/v1/openapi.json', '/metrics']) {
      assert.equal((await p.api(path, { token: null })).status, 200, path);
    }
  });

  test('what each role does: viewer reads, operator also dead letters, admin provisions and manages operators', async () => {
    const viewer = { as: 'viewer' } as const;
    assert.equal((await p.api('/api/v1/devices', viewer)).status, 200);
    assert.equal((await p.api('/api/v1/latest', viewer)).status, 200);
    assert.equal((await p.api('/api/v1/dead-letters', viewer)).status, 403);
    assert.equal((await p.api('/api/v1/dead-letters', { as: 'operator' })).status, 200);
    const device = { family: 'traffic', zone: 'tran-phu', location: { lat: 21.27, lon: 106.19 } };
    for (const as of ['viewer', 'operator'] as const) {
      assert.equal((await p.api('/api/v1/devices', { method: 'POST', as, body: json(device) })).status, 403, as);
    }
    const made = await p.api('/api/v1/devices', { method: 'POST', as: 'admin', body: json(device) });
    assert.equal(made.status, 201);
    const me = (await (await p.api('/api/v1/auth/me', viewer)).json()) as any;
    assert.equal(me.username, 'test-viewer');
    assert.equal(me.role, 'viewer');
    assert.equal(me.kind, 'session');
    assert.ok(Date.parse(me.expiresAt) > Date.now() + 11 * 3600_000, 'default session lifetime 12 h');
    const svc = (await (await p.api('/api/v1/auth/me', { admin: true })).json()) as any;
    assert.deepEqual(svc, { username: '(service token)', role: 'admin', kind: 'service' });
    const short = await p.api('/api/v1/operators', {
      method: 'POST',
      as: 'admin',
      body: json({ username: 'shorty', password: 'short', role: 'viewer' }),
    });
    assert.equal(short.status, 400, 'passwords have at least 10 characters');
    const dup = await p.api('/api/v1/operators', {
      method: 'POST',
      as: 'admin',
      body: json({ username: 'test-viewer', password: 'long-enough-password', role: 'viewer' }),
    });
    assert.equal(((await dup.json()) as any).code, 'CP_REGISTRY_OPERATOR_EXISTS');
  });
});

describe('socket.io', () => {
  test('a connection without a valid token is refused with the code; a viewer connects and subscribes', async (t) => {
    await refusedSocket(p, {}, t);
    await refusedSocket(p, { token: 'garbage' }, t);
    await refusedSocket(p, { token: 42 }, t);
    const socket = await connectSocket(p, { token: await p.loginAs('viewer') }, t);
    const ack = await socket.timeout(5000).emitWithAck('subscribe', {});
    assert.equal(ack.ok, true);
    assert.equal(ack.room, 'all');
    const service = await connectSocket(p, { token: p.platform.adminToken }, t);
    assert.equal((await service.timeout(5000).emitWithAck('subscribe', { family: 'traffic' })).ok, true);
  });

  test('logging out ends the session on REST and closes its sockets', async (t) => {
    const token = await p.loginAs('viewer', { fresh: true });
    const socket = await connectSocket(p, { token }, t);
    const closed = new Promise<string>((resolve) => socket.once('disconnect', resolve));
    assert.equal((await p.api('/api/v1/auth/me', { token })).status, 200);
    assert.equal((await p.api('/api/v1/auth/logout', { method: 'POST', token })).status, 204);
    assert.equal((await p.api('/api/v1/auth/me', { token })).status, 401);
    assert.equal(await closed, 'io server disconnect');
    await refusedSocket(p, { token }, t);
  });
});

test('a session expires after api.sessionTtlMs: REST 401, its socket closed, a new socket refused', async (t) => {
  const tp = await startTestPlatform(t, { api: { sessionTtlMs: 1500 } }, { influx });
  const token = await tp.loginAs('viewer');
  const socket = await connectSocket(tp, { token }, t);
  const closed = new Promise<string>((resolve) => socket.once('disconnect', resolve));
  const me = (await (await tp.api('/api/v1/auth/me', { token })).json()) as any;
  assert.ok(Math.abs(Date.parse(me.expiresAt) - (Date.now() + 1500)) < 1000);
  assert.equal((await tp.api('/api/v1/devices', { token })).status, 200);
  await new Promise((r) => setTimeout(r, 1600));
  const res = await tp.api('/api/v1/devices', { token });
  assert.equal(res.status, 401);
  assert.equal(((await res.json()) as any).code, 'CP_API_UNAUTHORIZED');
  assert.equal(await closed, 'io server disconnect');
  await refusedSocket(tp, { token }, t);
  // The service token does not expire.
  assert.equal((await tp.api('/api/v1/devices', { admin: true })).status, 200);
});

test('login rate limit: the 6th failure in the window gets 429 with Retry-After, a correct password too; per address as well', async (t) => {
  const tp = await startTestPlatform(t, { api: { loginMaxFailuresPerAddress: 8 } }, { influx });
  const password = 'victim-password-1';
  for (const username of ['victim', 'bystander']) {
    const res = await tp.api('/api/v1/operators', { method: 'POST', admin: true, body: json({ username, password, role: 'viewer' }) });
    assert.equal(res.status, 201);
  }
  for (let i = 1; i <= 5; i++) {
    const res = await login(tp, 'victim', `wrong-${i}`);
    assert.equal(res.status, 401, `failure ${i}`);
    assert.equal(((await res.json()) as any).code, 'CP_API_UNAUTHORIZED');
  }
  const sixth = await login(tp, 'victim', 'wrong-6');
  assert.equal(sixth.status, 429);
  assert.equal(((await sixth.json()) as any).code, 'CP_API_RATE_LIMITED');
  const retryAfter = Number(sixth.headers.get('retry-after'));
  assert.ok(retryAfter > 890 && retryAfter <= 900, `Retry-After ${retryAfter} s (window 15 min)`);
  const right = await login(tp, 'victim', password);
  assert.equal(right.status, 429, 'a correct password is refused while limited');
  // Per username: another address is refused for this username too, but may log in as someone else.
  assert.equal((await loginFrom(tp, '127.0.0.2', 'victim', password)).status, 429);
  assert.equal((await loginFrom(tp, '127.0.0.2', 'bystander', password)).status, 200);
  // Per address: 127.0.0.1 has 5 failures; 3 more (other usernames) reach its limit of 8.
  for (const u of ['nobody-1', 'nobody-2', 'nobody-3']) assert.equal((await login(tp, u, 'whatever-password')).status, 401);
  const limited = await login(tp, 'bystander', password);
  assert.equal(limited.status, 429, 'the address is limited, whatever the username');
  assert.ok(Number(limited.headers.get('retry-after')) > 0);
  assert.equal((await loginFrom(tp, '127.0.0.3', 'bystander', password)).status, 200, 'other addresses are not');
  // Failed and limited attempts are audited, aggregated per address and minute with a count.
  const audit = (await (await tp.api('/api/v1/audit?action=login', { admin: true })).json()) as any[];
  const count = (outcome: string, actor?: string) =>
    audit.filter((e) => e.outcome === outcome && (!actor || e.actor === actor)).reduce((n, e) => n + e.count, 0);
  assert.equal(count('wrong-password', 'victim'), 5);
  assert.equal(audit.filter((e) => e.outcome === 'wrong-password' && e.actor === 'victim').length, 1, 'one record');
  assert.equal(count('unknown-user'), 3);
  assert.ok(count('rate-limited') >= 4);
});

test('the initial admin is created once (configured or generated password); passwords and tokens never stored in clear', async (t) => {
  // The main platform: configured password.
  assert.deepEqual(p.platform.initialAdmin, { username: 'admin', generatedPassword: undefined });
  const admin = (await (await p.api('/api/v1/operators', { admin: true })).json()) as any[];
  assert.deepEqual(
    admin.filter((o) => o.username === 'admin').map((o) => [o.role, o.disabled]),
    [['admin', false]],
  );
  assert.equal((await login(p, 'admin', ADMIN_PASSWORD)).status, 200);

  // A fresh data folder without a configured password: generated, returned once (for the start banner).
  const first = await startTestPlatform(t, {}, { influx });
  const generated = first.platform.initialAdmin?.generatedPassword;
  assert.ok(generated && generated.length >= 16, 'a generated password');
  const session = await tokenOf(await login(first, 'admin', generated));
  const dataDir = first.dataDir;
  const files = async () => {
    const names = (await readdir(dataDir)).filter((n) => n.startsWith('operators.db'));
    return Buffer.concat(await Promise.all(names.map((n) => readFile(join(dataDir, n)))));
  };
  let raw = await files();
  assert.ok(raw.length > 0);
  assert.ok(!raw.includes(generated), 'the password is not in the SQLite files');
  assert.ok(!raw.includes(session), 'the session token is not in the SQLite files');
  await first.platform.stop();

  // Restarted on the same data with a password configured: nothing is created or changed.
  const again = await startTestPlatform(t, { dataDir, api: { initialAdminPassword: 'configured-later-1' } }, { influx });
  assert.equal(again.platform.initialAdmin, undefined);
  assert.equal((await login(again, 'admin', 'configured-later-1')).status, 401);
  assert.equal((await login(again, 'admin', generated)).status, 200);
  const ops = (await (await again.api('/api/v1/operators', { admin: true })).json()) as any[];
  assert.deepEqual(
    ops.map((o) => o.username),
    ['admin'],
  );
  assert.ok(ops[0].lastLoginAt, 'last login time kept');
  const created = (await (await again.api('/api/v1/audit?action=operator.create', { admin: true })).json()) as any[];
  assert.deepEqual(
    created.map((e) => [e.actor, e.target]),
    [['(system)', 'admin']],
  );
  await again.platform.stop();

  raw = await files();
  assert.ok(!raw.includes(generated) && !raw.includes(session));
  const db = new Database(join(dataDir, 'operators.db'), { readonly: true });
  t.after(() => db.close());
  const row = db.prepare('SELECT password_hash FROM operators WHERE username = ?').get('admin') as { password_hash: string };
  assert.match(row.password_hash, /^scrypt\$15\$8\$1\$[\w-]{22}\$[\w-]{43}$/);
});

test('the audit log records login failures, provisioning, revocation and operator changes with actor, target and address', async () => {
  assert.equal((await login(p, 'admin', 'not-the-password')).status, 401);
  const admin = await tokenOf(await login(p, 'admin', ADMIN_PASSWORD));
  const made = await p.api('/api/v1/devices', {
    method: 'POST',
    token: admin,
    body: json({ family: 'airQuality', zone: 'tran-phu', location: { lat: 21.27, lon: 106.19 } }),
  });
  assert.equal(made.status, 201);
  const id = ((await made.json()) as any).device.id as string;
  assert.equal((await p.api(`/api/v1/devices/${id}/revoke`, { method: 'POST', token: admin })).status, 200);
  const newOp = { username: 'audited-operator', password: 'audited-password-1', role: 'operator' };
  assert.equal((await p.api('/api/v1/operators', { method: 'POST', token: admin, body: json(newOp) })).status, 201);
  const opToken = await tokenOf(await login(p, newOp.username, newOp.password));
  // A refused attempt of a known caller is audited too.
  assert.equal((await p.api('/api/v1/devices/x/revoke', { method: 'POST', token: opToken })).status, 403);
  // Changing the password and disabling end the operator's sessions.
  const pw = await p.api(`/api/v1/operators/${newOp.username}/password`, {
    method: 'POST',
    token: admin,
    body: json({ password: 'changed-password-2' }),
  });
  assert.equal(pw.status, 204);
  assert.equal((await p.api('/api/v1/auth/me', { token: opToken })).status, 401);
  const second = await tokenOf(await login(p, newOp.username, 'changed-password-2'));
  assert.equal((await p.api(`/api/v1/operators/${newOp.username}/disable`, { method: 'POST', token: admin })).status, 200);
  assert.equal((await p.api('/api/v1/auth/me', { token: second })).status, 401);
  assert.equal((await login(p, newOp.username, 'changed-password-2')).status, 401, 'a disabled operator cannot log in');

  const entries = (await (await p.api('/api/v1/audit?actor=admin&limit=100', { token: admin })).json()) as any[];
  const find = (action: string, outcome: string, target?: string) =>
    entries.find((e) => e.action === action && e.outcome === outcome && (target === undefined || e.target === target));
  for (const e of entries) {
    assert.equal(e.actor, 'admin');
    assert.match(e.address, /127\.0\.0\.1/);
    assert.ok(Date.parse(e.at) > Date.now() - 60_000);
  }
  assert.ok(find('login', 'wrong-password', 'admin'), 'login failure');
  assert.equal(find('login', 'ok', 'admin')?.role, 'admin');
  assert.ok(find('device.provision', 'ok', id), 'provision');
  assert.ok(find('device.revoke', 'ok', id), 'revoke');
  assert.ok(find('operator.create', 'ok', newOp.username), 'operator creation');
  assert.ok(find('operator.password', 'ok', newOp.username), 'password change');
  assert.ok(find('operator.disable', 'ok', newOp.username), 'disable');
  // Newest first.
  assert.equal(entries[0].action, 'operator.disable');
  const theirs = (await (await p.api(`/api/v1/audit?actor=${newOp.username}`, { token: admin })).json()) as any[];
  assert.deepEqual(
    theirs.map((e) => [e.action, e.target, e.outcome]),
    [
      ['login', newOp.username, 'disabled'],
      ['login', newOp.username, 'ok'],
      ['device.revoke', 'x', 'CP_API_FORBIDDEN'],
      ['login', newOp.username, 'ok'],
    ],
  );
  assert.equal((await p.api('/api/v1/audit', { as: 'operator' })).status, 403);
});
