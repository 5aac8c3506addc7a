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
  api(path: string, init?: RequestInit & { admin?: boolean }): Promise<Response>;
}

type After = { after(fn: () => unknown): void };

export async function startTestPlatform(t: After, overrides: ConfigInput = {}, opts: { influx?: TestInflux } = {}): Promise<TestPlatform> {
  const influx = opts.influx ?? (await startTestInflux(t));
  const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-data-'));
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      ...overrides,
      broker: { port: 0, ...overrides.broker },
      api: { port: 0, ...overrides.api },
      influx: { url: influx.url, database: `t${Math.random().toString(36).slice(2, 10)}`, ...overrides.influx },
      ingest: { batchMaxAgeMs: 50, ...overrides.ingest },
      log: { level: 'silent', ...overrides.log },
    },
  });
  const platform = createPlatform(config);
  const clients: MqttClient[] = [];
  onCleanup(t, async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await platform.stop();
    await rm(dataDir, { recursive: true, force: true });
  });
  const addr = await platform.start();
  const db = config.influx.database;

  const api = (path: string, init: RequestInit & { admin?: boolean } = {}) => {
    const headers = new Headers(init.headers);
    if (init.admin) headers.set('authorization', `Bearer ${platform.adminToken}`);
    if (init.body) headers.set('content-type', 'application/json');
    return fetch(`${addr.api}${path}`, { ...init, headers });
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
      return waitFor(
        async () => {
          const r = await rows(q);
          return r.length >= n ? r : undefined;
        },
        timeoutMs,
        `${n} row(s) of ${q}`,
      ) as Promise<Record<string, unknown>[]>;
    },
    rows,
  };
  async function rows(q: string): Promise<Record<string, unknown>[]> {
    const out = await influx.query(q, db);
    const s = out.results?.[0]?.series?.[0];
    if (!s) return [];
    return s.values.map((v: unknown[]) => Object.fromEntries(s.columns.map((c: string, i: number) => [c, v[i]])));
  }
}
