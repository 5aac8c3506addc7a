/**
 * Cluster mode's shared state (state.postgresUrl): whole platforms on one real PostgreSQL.
 *  - Two nodes see the same devices, operators and sessions: a device provisioned through node A connects
 *    through node B's broker, an operator's session from A works on B, ending it or revoking a device on A
 *    refuses it on B and closes its open socket or MQTT connection there within a second; a rejection on one
 *    node is in the other's dead letters.
 *  - Nodes starting at once on an empty database migrate it once and create the first admin once.
 *  - PostgreSQL stopped, hung and restarted: logins, requests with a session and provisioning answer 503
 *    CP_STATE_UNAVAILABLE meanwhile (within the query timeout when hung), connecting devices CONNACK 3; devices
 *    already connected go on publishing and their readings are stored; all recovers when PostgreSQL is back,
 *    other nodes' changes followed again too.
 *
 * Run: node --import tsx --test test/cluster-state.test.ts (starts PostgreSQL and InfluxDB; Debian postgresql-15)
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { io as ioClient, type Socket } from 'socket.io-client';
import type { LocalPostgres } from '../platform/engines/postgres.ts';
import { PgOperatorStore, StateDb } from '../registry/index.ts';
import { startTestInflux, type TestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { freshDatabase, startTestPostgres } from './helpers/postgres.ts';
import { fileScope } from './helpers/scope.ts';

const scope = fileScope();
let server: LocalPostgres;
let influx: TestInflux;
before(async () => {
  [server, influx] = await Promise.all([startTestPostgres(scope), startTestInflux(scope)]);
});

type After = { after(fn: () => unknown): void };
const ADMIN_PASSWORD = 'cluster-admin-password';
const json = (v: unknown) => JSON.stringify(v);

/** A platform node on the shared database `url` (its own data folder, ports and InfluxDB database). */
function node(t: After, url: string, queryTimeoutMs = 2000): Promise<TestPlatform> {
  return startTestPlatform(
    t,
    { state: { postgresUrl: url, queryTimeoutMs }, api: { initialAdminPassword: ADMIN_PASSWORD }, alarms: { enabled: false } },
    { influx },
  );
}

async function login(p: TestPlatform, username = 'admin', password = ADMIN_PASSWORD): Promise<Response> {
  return p.api('/api/v1/auth/login', { method: 'POST', token: null, body: json({ username, password }) });
}

async function tokenOf(res: Response): Promise<string> {
  assert.equal(res.status, 200, await res.clone().text());
  return ((await res.json()) as { token: string }).token;
}

/** A socket.io client of `p` with a session token; resolves once connected, closed by t's cleanup. */
function liveSocket(t: After, p: TestPlatform, token: string): Promise<Socket> {
  const socket = ioClient(p.addr.api, { transports: ['websocket'], reconnection: false, auth: { token } });
  t.after(() => socket.close());
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

/** `p`, or a rejection naming `what` after `ms`: a close that never comes fails the test instead of hanging it. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The status and error code of an answer. */
async function outcome(res: Response): Promise<[number, string | undefined]> {
  const body = res.headers.get('content-type')?.includes('json') ? ((await res.json()) as { code?: string }) : {};
  return [res.status, body.code];
}

test('two nodes on one PostgreSQL share devices, operators, sessions and dead letters', async (t) => {
  const url = await freshDatabase(server);
  const a = await node(t, url);
  const b = await node(t, url);
  assert.deepEqual(a.platform.initialAdmin, { username: 'admin', generatedPassword: undefined });
  assert.equal(b.platform.initialAdmin, undefined, 'the second node found the admin the first created');

  // A device provisioned through A logs in through B's broker, and its readings flow through B.
  const dev = await a.provision('traffic');
  const client = await b.connect(dev.id, dev.token);
  await client.publishAsync(`devices/${dev.id}/telemetry`, json({ intensity: 42 }), { qos: 1 });
  const rows = await b.rowsAtLeast(`SELECT "intensity" FROM "traffic" WHERE "device" = '${dev.id}'`);
  assert.equal(rows[0]?.intensity, 42);
  const listedOnB = (await (await b.api('/api/v1/devices', { admin: true })).json()) as { id: string }[];
  assert.ok(listedOnB.some((d) => d.id === dev.id));

  // An operator created on A logs in on B; a session from A works on B; ending it on A refuses it on B.
  const op = { username: 'shift-lead', password: 'shift-lead-password', role: 'operator' };
  assert.equal((await a.api('/api/v1/operators', { method: 'POST', admin: true, body: json(op) })).status, 201);
  const fromB = await tokenOf(await login(b, op.username, op.password));
  assert.equal((await a.api('/api/v1/auth/me', { token: fromB })).status, 200, "B's session on A");
  const fromA = await tokenOf(await login(a, op.username, op.password));
  const me = (await (await b.api('/api/v1/auth/me', { token: fromA })).json()) as { username: string; role: string };
  assert.deepEqual([me.username, me.role], [op.username, op.role], "A's session on B");
  // Live sockets on B with each session: ending a session on A closes its socket on B.
  const socketA = await liveSocket(t, b, fromA);
  const socketB = await liveSocket(t, b, fromB);
  const closedA = new Promise<number>((r) => socketA.once('disconnect', () => r(Date.now())));
  const loggedOut = Date.now();
  assert.equal((await a.api('/api/v1/auth/logout', { method: 'POST', token: fromA })).status, 204);
  assert.deepEqual(
    await outcome(await b.api('/api/v1/auth/me', { token: fromA })),
    [401, 'CP_API_UNAUTHORIZED'],
    'logged out on A: refused on B',
  );
  assert.ok((await within(closedA, 5000, 'close of the socket on B')) - loggedOut < 1000, 'its socket on B closed within a second');
  assert.equal(socketB.connected, true, 'the other session lives on');
  assert.equal((await b.api('/api/v1/auth/me', { token: fromB })).status, 200);
  const closedB = new Promise<void>((r) => socketB.once('disconnect', () => r()));
  assert.equal((await a.api(`/api/v1/operators/${op.username}/disable`, { method: 'POST', admin: true })).status, 200);
  assert.equal((await b.api('/api/v1/auth/me', { token: fromB })).status, 401, 'disabled on A: refused on B');
  await within(closedB, 5000, 'close of the other socket on B');

  // A rejection on B is in A's dead letters; the audit log is one for both.
  await client.publishAsync(`devices/${dev.id}/telemetry`, '{not json', { qos: 1 });
  const letters = await a.waitFor(async () => {
    const l = (await (await a.api(`/api/v1/dead-letters?device=${dev.id}`, { admin: true })).json()) as { code: string }[];
    return l.length > 0 ? l : undefined;
  });
  assert.equal(letters?.[0]?.code, 'CP_INGEST_BAD_JSON');
  const audit = (await (await b.api('/api/v1/audit?action=operator.disable', { admin: true })).json()) as { target: string }[];
  assert.deepEqual(
    audit.map((e) => e.target),
    [op.username],
  );

  // Revoked on A while connected to B: disconnected by B within a second, then refused there (CONNACK 5).
  const cut = new Promise<number>((r) => client.once('close', () => r(Date.now())));
  const revoked = Date.now();
  assert.equal((await a.api(`/api/v1/devices/${dev.id}/revoke`, { method: 'POST', admin: true })).status, 200);
  assert.ok(
    (await within(cut, 5000, 'disconnection by B')) - revoked < 1000,
    'disconnected by the node it was connected to within a second',
  );
  await assert.rejects(b.connect(dev.id, dev.token), (e: { code?: number }) => e.code === 5);
  // A token rotated on B while connected to A: A disconnects it; the old token refused on A, the new one works.
  const other = await b.provision('streetLight');
  const onA = await a.connect(other.id, other.token);
  const cutOnA = new Promise<void>((r) => onA.once('close', () => r()));
  const rotated = ((await (await b.api(`/api/v1/devices/${other.id}/token`, { method: 'POST', admin: true })).json()) as { token: string })
    .token;
  await within(cutOnA, 5000, 'disconnection by A');
  await assert.rejects(a.connect(other.id, other.token), (e: { code?: number }) => e.code === 4);
  assert.equal((await a.connect(other.id, rotated)).connected, true);
});

test('three nodes starting at once on an empty database: migrated once, one first admin, all serving', async (t) => {
  const url = await freshDatabase(server);
  const nodes = await Promise.all([node(t, url), node(t, url), node(t, url)]);
  assert.equal(nodes.filter((n) => n.platform.initialAdmin).length, 1, 'exactly one node created the first admin');
  const c = new pg.Client(url);
  await c.connect();
  t.after(() => c.end());
  const { rows } = await c.query(
    'SELECT component, version, count(*)::int AS n FROM schema_migrations GROUP BY component, version ORDER BY 1, 2',
  );
  assert.deepEqual(
    rows.map((r: { component: string; version: number; n: number }) => `${r.component}/${r.version}×${r.n}`),
    ['alarms/1×1', 'commands/1×1', 'ingest/1×1', 'registry/1×1', 'registry/2×1', 'registry/3×1', 'registry/4×1'],
  );
  for (const n of nodes) assert.equal((await login(n)).status, 200);
});

test('PostgreSQL stopped, hung and restarted: clear errors meanwhile, telemetry goes on, all recovers', async (t) => {
  // A server of its own: this test stops it.
  const own = await startTestPostgres(t);
  const url = await freshDatabase(own);
  const queryTimeoutMs = 1000;
  const p = await node(t, url, queryTimeoutMs);
  const session = await tokenOf(await login(p));
  // A session whose socket stays open through the outage, ended by another node as soon as PostgreSQL is back.
  const doomed = await tokenOf(await login(p));
  const doomedSocket = await liveSocket(t, p, doomed);
  const doomedClosed = new Promise<void>((r) => doomedSocket.once('disconnect', () => r()));
  const dev = await p.provision('traffic');
  const spare = await p.provision('airQuality');
  const client = await p.connect(dev.id, dev.token);
  let sent = 0;
  const publish = async () => {
    const i = sent++;
    await client.publishAsync(`devices/${dev.id}/telemetry`, json({ dateObserved: Date.now() - 60_000 + i, intensity: i }), { qos: 1 });
  };
  await publish();

  /** Every way the state is needed, answered with the clear error, each within `boundMs`. */
  const refusedMeanwhile = async (boundMs: number) => {
    const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      const started = Date.now();
      const out = await fn();
      assert.ok(Date.now() - started < boundMs, `${what} answered in ${Date.now() - started} ms (bound ${boundMs})`);
      return out;
    };
    assert.deepEqual(await timed('login', async () => outcome(await login(p))), [503, 'CP_STATE_UNAVAILABLE'], 'login');
    assert.deepEqual(await timed('a session', async () => outcome(await p.api('/api/v1/devices', { token: session }))), [
      503,
      'CP_STATE_UNAVAILABLE',
    ]);
    const provision = () =>
      p.api('/api/v1/devices', {
        method: 'POST',
        admin: true,
        body: json({ family: 'traffic', zone: p.platform.parts.profile.zones[0]?.id, location: { lat: 21.27, lon: 106.19 } }),
      });
    assert.deepEqual(await timed('provisioning', async () => outcome(await provision())), [503, 'CP_STATE_UNAVAILABLE']);
    const socketRefusal = await timed('a socket.io connection', () =>
      liveSocket(t, p, session).then(
        () => 'connected',
        (e: { data?: { code?: string } }) => e.data?.code,
      ),
    );
    assert.equal(socketRefusal, 'CP_STATE_UNAVAILABLE', 'socket.io refuses with the code');
    // A device connecting meanwhile: CONNACK 3, server unavailable (it retries later).
    await timed('a CONNECT', () => assert.rejects(p.connect(spare.id, spare.token), (e: { code?: number }) => e.code === 3));
  };

  // Stopped: refused connections answer at once.
  await own.stop();
  await refusedMeanwhile(queryTimeoutMs);
  // The connected device goes on: each QoS 1 message acknowledged, a bad one dead-lettered for later.
  for (let i = 0; i < 20; i++) await publish();
  await client.publishAsync(`devices/${dev.id}/telemetry`, '{during the outage', { qos: 1 });
  assert.equal((await p.api('/api/v1/health', { token: null })).status, 200);

  // Back: everything works again without restarting the platform.
  await own.restart();
  // Another node ends a session at once, likely before this node listens again (its back-off): the socket is
  // closed by the notification, or by the check of open sessions once it listens again.
  const otherNode = new StateDb({ url, queryTimeoutMs: 2000 });
  t.after(() => otherNode.close());
  const others = new PgOperatorStore(otherNode);
  await others.endSession((await others.findSession(doomed))?.id as string);
  await within(doomedClosed, 12_000, 'close of a socket whose session another node ended');
  await p.waitFor(async () => (await login(p)).status === 200, 10_000, 'login after the restart');
  assert.equal((await p.api('/api/v1/devices', { token: session })).status, 200, 'the session survived');
  assert.equal((await p.connect(spare.id, spare.token)).connected, true);
  const letters = await p.waitFor(
    async () => {
      const l = (await (await p.api(`/api/v1/dead-letters?device=${dev.id}`, { admin: true })).json()) as { payload: string }[];
      return l.length > 0 ? l : undefined;
    },
    5000,
    'the dead letter written after the outage',
  );
  assert.equal(letters?.[0]?.payload, '{during the outage');
  // And news of other nodes' changes is followed again.
  const later = await tokenOf(await login(p));
  const socket = await liveSocket(t, p, later);
  const closed = new Promise<void>((r) => socket.once('disconnect', () => r()));
  await others.endSession((await others.findSession(later))?.id as string);
  await within(closed, 12_000, 'close of a socket whose session another node ended');

  // Hung (every server process stopped, connections open): answered within the timeout, never left hanging.
  await own.freeze();
  try {
    // Getting a connection and the query have a bound each; a margin for the HTTP round trip and the hash.
    await refusedMeanwhile(2 * queryTimeoutMs + 1500);
    for (let i = 0; i < 5; i++) await publish();
  } finally {
    await own.thaw();
  }
  await p.waitFor(async () => (await login(p)).status === 200, 10_000, 'login after the thaw');

  const rows = await p.rowsAtLeast(`SELECT "intensity" FROM "traffic" WHERE "device" = '${dev.id}'`, sent, 15_000);
  assert.deepEqual(
    rows.map((r) => r.intensity),
    Array.from({ length: sent }, (_, i) => i),
    'every reading published during the outages stored',
  );
});
