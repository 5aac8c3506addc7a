/**
 * The state stores on SQLite (one node) and on PostgreSQL (cluster mode), side by side on this machine:
 *
 *   node --import tsx bench/state-stores.ts [--devices=2000] [--checks=20000] [--concurrency=32] [--logins=20]
 *
 * Store level: provisioning latency, the device token check (every MQTT CONNECT makes one) one at a time and
 * with `concurrency` in flight, the session lookup (every REST request and socket.io connection with a session
 * makes one), refused-attempt audit upserts, and a login (password check + new session; scrypt dominates).
 * Platform level: the same platform on each store, POST /api/v1/auth/login and POST /api/v1/devices over HTTP,
 * and MQTT CONNECTs of provisioned devices one at a time (MQTT.js).
 *
 * PostgreSQL is a private server (platform/engines/postgres.ts) with its default durable settings (fsync on,
 * synchronous_commit on), over TCP on loopback; SQLite files sit in a temp folder (WAL). Prints a markdown table
 * for docs/cluster-state.md. Figures from a busy machine are noisy: compare the two columns of one run.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { DEAD_LETTER_COMPONENT, DEAD_LETTER_MIGRATIONS } from '../ingest/pg-dead-letters.ts';
import { startLocalPostgres } from '../platform/engines/postgres.ts';
import { loadConfig } from '../platform/config.ts';
import { startLocalInflux } from '../platform/influxdb-local.ts';
import { createPlatform } from '../platform/platform.ts';
import {
  type DeviceStore,
  type OperatorStore,
  PgDeviceStore,
  PgOperatorStore,
  REGISTRY_COMPONENT,
  REGISTRY_MIGRATIONS,
  SqliteDeviceStore,
  SqliteOperatorStore,
  StateDb,
} from '../registry/index.ts';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '2000' },
    checks: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '32' },
    logins: { type: 'string', default: '20' },
  },
});
const DEVICES = Number(values.devices);
const CHECKS = Number(values.checks);
const CONCURRENCY = Number(values.concurrency);
const LOGINS = Number(values.logins);

type Row = Record<string, string>;
const rows: [string, string, string][] = [];
const record = (what: string, a: string | undefined, b: string | undefined) => {
  const [sqlite, pg] = [a ?? '-', b ?? '-'];
  rows.push([what, sqlite, pg]);
  console.log(`${what.padEnd(58)} ${sqlite.padStart(22)} ${pg.padStart(22)}`);
};

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};
const ms = (x: number) => (x < 1 ? `${(x * 1000).toFixed(0)} µs` : `${x.toFixed(1)} ms`);
const latency = (xs: number[]) => `${ms(pct(xs, 50))} / ${ms(pct(xs, 99))}`;
const rate = (n: number, tookMs: number) => `${Math.round((n / tookMs) * 1000).toLocaleString('en')}/s`;

async function timeEach(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    out.push(performance.now() - t);
  }
  return out;
}

async function inParallel(n: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
  return performance.now() - t;
}

interface Stores {
  devices: DeviceStore;
  operators: OperatorStore;
  close(): Promise<void>;
}

async function storeFigures(make: () => Promise<Stores>): Promise<Row> {
  const s = await make();
  const out: Row = {};
  try {
    const made: { id: string; token: string }[] = [];
    const provision = await timeEach(DEVICES, async (i) => {
      const r = await s.devices.provision({ family: 'traffic', zone: `z${i % 10}`, location: { lat: 21, lon: 106 } });
      made.push({ id: r.device.id, token: r.token });
    });
    out.provision = latency(provision);
    const pick = (i: number) => made[(i * 7919) % made.length] as { id: string; token: string };
    const one = await timeEach(Math.min(CHECKS, 5000), (i) => s.devices.checkToken(pick(i).id, pick(i).token));
    out.checkSeq = `${rate(
      one.length,
      one.reduce((a, b) => a + b, 0),
    )} (${ms(pct(one, 50))})`;
    const took = await inParallel(CHECKS, CONCURRENCY, (i) => s.devices.checkToken(pick(i).id, pick(i).token));
    out.checkPar = rate(CHECKS, took);
    await s.operators.create({ username: 'bench', password: 'bench-password-1', role: 'operator' });
    const logins = await timeEach(LOGINS, async () => {
      const c = await s.operators.checkPassword('bench', 'bench-password-1');
      if (c.result !== 'ok') throw new Error(c.result);
      await s.operators.createSession('bench', 60_000);
    });
    out.login = latency(logins);
    const { token } = await s.operators.createSession('bench', 3_600_000);
    const find = await timeEach(5000, () => s.operators.findSession(token));
    out.findSession = `${latency(find)}`;
    const audit = await timeEach(2000, (i) =>
      s.operators.audit({ actor: `u${i}`, role: null, action: 'login', target: `u${i}`, address: '10.0.0.1', outcome: 'rate-limited' }),
    );
    out.audit = latency(audit);
  } finally {
    await s.close();
  }
  return out;
}

async function platformFigures(dir: string, postgresUrl: string, influxUrl: string): Promise<Row> {
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: dir,
      state: { postgresUrl },
      broker: { port: 0 },
      api: { port: 0, initialAdminPassword: 'bench-admin-password', loginMaxFailuresPerAddress: 1000, loginMaxFailuresPerUser: 1000 },
      influx: { url: influxUrl, database: `b${Math.random().toString(36).slice(2, 8)}` },
      alarms: { enabled: false },
      log: { level: 'silent' },
    },
  });
  const platform = createPlatform(config);
  const addr = await platform.start();
  const out: Row = {};
  try {
    const post = (path: string, body: unknown, token?: string) =>
      fetch(`${addr.api}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
    const logins = await timeEach(LOGINS, async () => {
      const res = await post('/api/v1/auth/login', { username: 'admin', password: 'bench-admin-password' });
      if (res.status !== 200) throw new Error(`login ${res.status}`);
      await res.arrayBuffer();
    });
    out.login = latency(logins);
    const zone = platform.parts.profile.zones[0]?.id;
    const made: { id: string; token: string }[] = [];
    const provision = await timeEach(200, async () => {
      const res = await post('/api/v1/devices', { family: 'traffic', zone, location: { lat: 21.27, lon: 106.19 } }, platform.adminToken);
      if (res.status !== 201) throw new Error(`provision ${res.status}`);
      const b = (await res.json()) as { device: { id: string }; token: string };
      made.push({ id: b.device.id, token: b.token });
    });
    out.provision = latency(provision);
    const connects = await timeEach(made.length, async (i) => {
      const d = made[i] as { id: string; token: string };
      const c = await mqtt.connectAsync(addr.mqtt, {
        clientId: d.id,
        username: d.id,
        password: d.token,
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      await c.endAsync(true);
    });
    out.connect = latency(connects);
  } finally {
    await platform.stop();
  }
  return out;
}

const root = await mkdtemp(join(tmpdir(), 'citypulse-bench-state-'));
// A folder of its own: as root the server runs as the postgres user, who may not search `root` (mode 0700).
const pgDir = await mkdtemp(join(tmpdir(), 'citypulse-bench-pg-'));
try {
  const server = await startLocalPostgres({ dir: pgDir });
  const influx = await startLocalInflux({ dir: join(root, 'influx') });
  try {
    const url = await server.createDatabase('bench_stores');
    const sqlite = await storeFigures(async () => {
      const devices = new SqliteDeviceStore(join(root, 'registry.db'));
      const operators = new SqliteOperatorStore(join(root, 'operators.db'));
      return {
        devices,
        operators,
        async close() {
          await devices.close();
          await operators.close();
        },
      };
    });
    const pg = await storeFigures(async () => {
      const db = new StateDb({ url, queryTimeoutMs: 5000, poolSize: 10 });
      await db.migrate(REGISTRY_COMPONENT, REGISTRY_MIGRATIONS);
      await db.migrate(DEAD_LETTER_COMPONENT, DEAD_LETTER_MIGRATIONS);
      const devices = new PgDeviceStore(db);
      const operators = new PgOperatorStore(db);
      return {
        devices,
        operators,
        async close() {
          await devices.close();
          await operators.close();
          await db.close();
        },
      };
    });
    console.log(`\n${'store level'.padEnd(58)} ${'SQLite'.padStart(22)} ${'PostgreSQL'.padStart(22)}`);
    record(`provision a device, p50 / p99 (${DEVICES})`, sqlite.provision, pg.provision);
    record('checkToken one at a time (p50)', sqlite.checkSeq, pg.checkSeq);
    record(`checkToken, ${CONCURRENCY} in flight (${CHECKS})`, sqlite.checkPar, pg.checkPar);
    record('findSession, p50 / p99', sqlite.findSession, pg.findSession);
    record('refused login audited (upsert), p50 / p99', sqlite.audit, pg.audit);
    record(`login: password check + session, p50 / p99 (${LOGINS})`, sqlite.login, pg.login);

    const pgPlatformUrl = await server.createDatabase('bench_platform');
    const ps = await platformFigures(join(root, 'node-sqlite'), '', influx.url);
    const pp = await platformFigures(join(root, 'node-pg'), pgPlatformUrl, influx.url);
    console.log(`\n${'platform level (HTTP, MQTT on loopback)'.padEnd(58)} ${'SQLite'.padStart(22)} ${'PostgreSQL'.padStart(22)}`);
    record(`POST /api/v1/auth/login, p50 / p99 (${LOGINS})`, ps.login, pp.login);
    record('POST /api/v1/devices, p50 / p99 (200)', ps.provision, pp.provision);
    record('MQTT CONNECT → CONNACK → close, p50 / p99 (200)', ps.connect, pp.connect);

    console.log('\n| | SQLite | PostgreSQL |\n|---|---|---|');
    for (const [what, a, b] of rows) console.log(`| ${what} | ${a} | ${b} |`);
  } finally {
    await influx.stop();
    await server.stop();
  }
} finally {
  await rm(root, { recursive: true, force: true });
  await rm(pgDir, { recursive: true, force: true });
}
