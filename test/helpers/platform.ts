/**
 * Test helper: a whole platform (broker, ingest, API) on ephemeral loopback ports, with its own data folder
 * and a real InfluxDB (one per call unless `influx` is given), plus device helpers. Cleanup is registered
 * with `t.after` by the helper itself.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { loadConfig, type ConfigInput } from '../../platform/config.ts';
import { createPlatform, type Platform, type PlatformAddresses } from '../../platform/platform.ts';
import type { Family } from '../../ingest/index.ts';
import type { Role } from '../../registry/index.ts';
import { startTestInflux, type TestInflux } from './influx.ts';
import { onCleanup } from './scope.ts';

export interface TestPlatform {
  platform: Platform;
  addr: PlatformAddresses;
  influx: TestInflux;
  dataDir: string;
  /** Provisions a device over REST (admin token) and returns its id and token. */
  provision(family: Family, opts?: { id?: string; zone?: string }): Promise<{ id: string; token: string }>;
  /** Connects an MQTT.js client as a device (rejects with the CONNACK error). Closed by t.after. */
  connect(id: string, token: string, opts?: mqtt.IClientOptions): Promise<MqttClient>;
  /** InfluxQL against the platform's database (epoch ms). Returns the rows of the first series as objects. */
  rows(q: string): Promise<Record<string, unknown>[]>;
  /** Polls InfluxQL `q` until it returns at least `n` rows (default 1); returns them. */
  rowsAtLeast(q: string, n?: number, timeoutMs?: number): Promise<Record<string, unknown>[]>;
  /** Polls `fn` until it returns a truthy value or `timeoutMs` passes (then throws). */
  waitFor<T>(fn: () => Promise<T> | T, timeoutMs?: number, what?: string): Promise<T>;
  /**
   * fetch against the API. Authorization: `admin: true` → the service token (role admin); `as: role` → a session
   * of that role (see loginAs); `token` → that token (null: none); default → a viewer session.
   */
  api(path: string, init?: RequestInit & ApiAuth): Promise<Response>;
  /**
   * A session token of an operator `test-<role>` (created over REST with the service token at first use, then
   * logged in over REST). Cached per role unless `fresh` (a new session, e.g. to log out).
   */
  loginAs(role: Role, opts?: { fresh?: boolean }): Promise<string>;
}

export interface ApiAuth {
  admin?: boolean;
  as?: Role;
  token?: string | null;
}

type After = { after(fn: () => unknown): void };

/** `logLines` collects the platform's JSON log lines (set `log.level` in the overrides to see any). */
export async function startTestPlatform(
  t: After,
  overrides: ConfigInput = {},
  opts: { influx?: TestInflux; logLines?: string[] } = {},
): Promise<TestPlatform> {
  const influx = opts.influx ?? (await startTestInflux(t));
  // A given dataDir (e.g. to restart on the same data) is left in place; a temporary one is removed at the end.
  const ownDir = !overrides.dataDir;
  const dataDir = overrides.dataDir ?? (await mkdtemp(join(tmpdir(), 'citypulse-data-')));
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      ...overrides,
      broker: { port: 0, ...overrides.broker },
      api: { port: 0, ...overrides.api },
      influx: { url: influx.url, database: `t${Math.random().toString(36).slice(2, 10)}`, ...overrides.influx },
      // Load tests drive one device far above a field device's rate; the rate limit has its own tests.
      ingest: { batchMaxAgeMs: 50, maxReadingsPerSecond: 0, ...overrides.ingest },
      log: { level: 'silent', ...overrides.log },
    },
  });
  const lines = opts.logLines;
  const platform = createPlatform(config, lines ? { logDestination: { write: (l: string) => void lines.push(l) } } : {});
  const clients: MqttClient[] = [];
  onCleanup(t, async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await platform.stop();
    if (ownDir) await rm(dataDir, { recursive: true, force: true });
  });
  const addr = await platform.start();
  const db = config.influx.database;

  const sessions = new Map<Role, Promise<string>>();
  const loginAs = (role: Role, o: { fresh?: boolean } = {}): Promise<string> => {
    const make = async () => {
      const username = `test-${role}`;
      const password = `${username}-password`;
      if (!(await platform.parts.operators.get(username))) {
        const res = await api('/api/v1/operators', { method: 'POST', admin: true, body: JSON.stringify({ username, password, role }) });
        if (res.status !== 201 && res.status !== 409) throw new Error(`creating ${username} failed: ${res.status} ${await res.text()}`);
      }
      const res = await api('/api/v1/auth/login', { method: 'POST', token: null, body: JSON.stringify({ username, password }) });
      if (res.status !== 200) throw new Error(`login as ${username} failed: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { token: string }).token;
    };
    if (o.fresh) return make();
    let s = sessions.get(role);
    if (!s) {
      s = make();
      s.catch(() => sessions.delete(role));
      sessions.set(role, s);
    }
    return s;
  };

  const api = async (path: string, init: RequestInit & ApiAuth = {}) => {
    const { admin, as, token, ...rest } = init;
    const headers = new Headers(rest.headers);
    const bearer = admin ? platform.adminToken : token !== undefined ? token : await loginAs(as ?? 'viewer');
    if (bearer !== null) headers.set('authorization', `Bearer ${bearer}`);
    if (rest.body) headers.set('content-type', 'application/json');
    return fetch(`${addr.api}${path}`, { ...rest, headers });
  };

  const waitFor = async <T>(fn: () => Promise<T> | T, timeoutMs = 5000, what = 'condition'): Promise<T> => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  return {
    platform,
    addr,
    influx,
    dataDir,
    api,
    loginAs,
    waitFor,
    async provision(family, o = {}) {
      const profile = platform.parts.profile;
      const zone = o.zone ?? (profile.zones.find((z) => z.centre)?.id as string);
      const res = await api('/api/v1/devices', {
        method: 'POST',
        admin: true,
        body: JSON.stringify({ id: o.id, family, zone, location: { lat: 21.27, lon: 106.19 } }),
      });
      if (res.status !== 201) throw new Error(`provision failed: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as { device: { id: string }; token: string };
      return { id: body.device.id, token: body.token };
    },
    async connect(id, token, o = {}) {
      const client = await mqtt.connectAsync(addr.mqtt, {
        clientId: id,
        username: id,
        password: token,
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        ...o,
      });
      clients.push(client);
      return client;
    },
    async rowsAtLeast(q, n = 1, timeoutMs = 5000) {
      await waitFor(
        async () => {
          const r = await rows(q);
          return r.length >= n ? r : undefined;
        },
        timeoutMs,
        `${n} row(s) of ${q}`,
      );
      // Until InfluxDB has answered a write, a query can see a point's fields one by one (its cache takes each
      // field as a series of its own): wait (bounded) for ingest's confirmed writes, then read again.
      await platform.parts.ingest.flush(1000);
      return rows(q);
    },
    rows,
  };
  async function rows(q: string): Promise<Record<string, unknown>[]> {
    const out = await influx.query(q, db);
    const s = out.results?.[0]?.series?.[0];
    if (!s) return [];
    return (s.values ?? []).map((v: unknown[]) => Object.fromEntries(s.columns.map((c: string, i: number) => [c, v[i]])));
  }
}
