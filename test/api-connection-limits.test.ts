/**
 * Bounded connections on the API port: half-open HTTP requests are answered 408 and closed once
 * api.headersTimeoutMs has passed (5,000, opened in batches, while a device logs in and publishes and /health
 * answers); connections per source address and in total are capped; every shed connection is counted by reason
 * in /metrics and logged as a few summary lines; the descriptor budget (API + MQTT + headroom within the
 * process's open-file limit) is checked at start. Real platform, real sockets on loopback.
 *
 * Run: node --import tsx --test test/api-connection-limits.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DESCRIPTOR_HEADROOM, fitDescriptorBudget, openFileLimit } from '../platform/descriptor-budget.ts';
import { startTestInflux } from './helpers/influx.ts';
import { startTestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const scope = fileScope();
const influx = await startTestInflux(scope);

const HALF_REQUEST = 'GET /api/v1/health HTTP/1.1\r\nHost: x\r\n';

interface Held {
  socket: net.Socket;
  /** When the connection was established (performance.now()). */
  connectedAt: number;
  closedAt?: number;
  /** The first bytes the server answered. */
  answer: string;
  error?: string;
}

/** Opens `n` connections to `port` from `localAddress`, each sending `data` (if any); resolves once all are established or failed. */
async function open(port: number, n: number, opts: { data?: string; localAddress?: string } = {}): Promise<Held[]> {
  const all: Held[] = [];
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const socket = net.connect({ port, host: '127.0.0.1', localAddress: opts.localAddress });
          const h: Held = { socket, connectedAt: 0, answer: '' };
          all.push(h);
          socket.on('connect', () => {
            h.connectedAt = performance.now();
            if (opts.data) socket.write(opts.data);
            resolve();
          });
          socket.on('data', (d) => {
            if (h.answer.length < 64) h.answer += d.toString('latin1');
          });
          socket.on('error', (err: NodeJS.ErrnoException) => {
            h.error = err.code;
            resolve();
          });
          socket.on('close', () => {
            h.closedAt = performance.now();
            resolve();
          });
        }),
    ),
  );
  return all;
}

const closedWithin = async (held: Held[], ms: number) => {
  const until = Date.now() + ms;
  while (held.some((h) => h.closedAt === undefined) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  return held.every((h) => h.closedAt !== undefined);
};

const metric = async (api: string, reason: string) => {
  const text = await (await fetch(`${api}/metrics`)).text();
  const m = new RegExp(`citypulse_api_connections_shed_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
};

const shedLines = (lines: string[]) => lines.map((l) => JSON.parse(l)).filter((l) => l.msg?.startsWith('API connections shed'));

test('5,000 half-open requests are shed within api.headersTimeoutMs while devices and /health keep working', async (t) => {
  const TIMEOUT = 2000;
  const TOTAL = 5000;
  const BATCH = 250;
  const lines: string[] = [];
  // Room for all of them on the API port; the broker's share of descriptors is whatever is left.
  const p = await startTestPlatform(
    t,
    { api: { headersTimeoutMs: TIMEOUT, maxConnections: TOTAL + 500, maxConnectionsPerAddress: 0 }, log: { level: 'warn' } },
    { influx, logLines: lines },
  );
  const limit = openFileLimit();
  if (limit !== undefined && limit < TOTAL + 500 + 18000 + DESCRIPTOR_HEADROOM) {
    assert.ok(
      lines.some((l) => l.includes('broker.maxConnections lowered')),
      'the broker cap is lowered to fit the open-file limit, and logged',
    );
  }
  const dev = await p.provision('airQuality');
  const port = Number(new URL(p.addr.api).port);

  const held: Held[] = [];
  let maxHeld = 0;
  const countHeld = () => held.filter((h) => h.closedAt === undefined).length;
  const started = performance.now();
  const openBatches = async (n: number) => {
    for (let i = 0; i < n; i += BATCH) {
      held.push(...(await open(port, Math.min(BATCH, n - i), { data: HALF_REQUEST })));
      maxHeld = Math.max(maxHeld, countHeld());
    }
  };
  await openBatches(TOTAL / 2);

  // While thousands are held: a device logs in over MQTT and publishes, /health answers.
  const heldNow = countHeld();
  assert.ok(heldNow >= 1000, `half-open requests held while the device connects (${heldNow})`);
  const client = await p.connect(dev.id, dev.token);
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 12.5 }), { qos: 1 });
  const health = await fetch(`${p.addr.api}/api/v1/health`);
  assert.equal(health.status, 200);
  await health.arrayBuffer();

  await openBatches(TOTAL / 2);
  const allOpened = performance.now();
  // Each is shed at most one checking interval (a tenth of the timeout) after its timeout, plus event-loop lag.
  assert.equal(await closedWithin(held, TIMEOUT + 3000), true, `${countHeld()} of ${TOTAL} still open`);
  const lifetimes = held.map((h) => (h.closedAt as number) - h.connectedAt);
  const shedAll = Math.max(...held.map((h) => h.closedAt as number)) - started;
  t.diagnostic(
    `${TOTAL} half-open requests: opened in ${Math.round(allOpened - started)} ms, at most ${maxHeld} held at once; ` +
      `lifetimes ${Math.round(Math.min(...lifetimes))}..${Math.round(Math.max(...lifetimes))} ms (timeout ${TIMEOUT} ms); ` +
      `all shed ${Math.round(shedAll)} ms after the first was opened`,
  );
  assert.deepEqual(
    held.filter((h) => h.error),
    [],
    'no connection was refused or reset',
  );
  assert.ok(Math.min(...lifetimes) >= TIMEOUT - 50, 'none is shed before its timeout');
  // Seen from this process, which also runs the platform and opens the 5,000: on a loaded 2-core machine its event
  // loop lags by seconds at times (lifetimes up to 5.0 s seen); without the bound, Node holds them for 60 s or more.
  assert.ok(Math.max(...lifetimes) <= TIMEOUT + 3000, 'each is shed soon after its timeout');
  assert.ok(
    held.every((h) => h.answer.startsWith('HTTP/1.1 408')),
    'each is answered 408',
  );

  await p.rowsAtLeast(`SELECT "pm25" FROM "airQuality" WHERE "device" = '${dev.id}'`);
  assert.equal(await metric(p.addr.api, 'headers-timeout'), TOTAL);
  // Logged as a few lines with counts, not a line per connection (the last counts come with the next interval).
  const loggedCount = () => shedLines(lines).reduce((n, l) => n + (l.shed['headers-timeout'] ?? 0), 0);
  await p.waitFor(() => loggedCount() === TOTAL, 15_000, 'the shed connections in the log');
  const logged = shedLines(lines);
  assert.ok(logged.length <= 4, `${logged.length} log lines`);
  assert.equal(logged[0].level, 40);
  assert.ok(logged[0].topAddresses['127.0.0.1'] >= 1);
});

test('connections per source address are capped; other addresses are still served', async (t) => {
  const lines: string[] = [];
  const p = await startTestPlatform(t, { api: { maxConnectionsPerAddress: 3 }, log: { level: 'warn' } }, { influx, logLines: lines });
  const port = Number(new URL(p.addr.api).port);
  // Three idle connections from 127.0.0.1 (headersTimeoutMs is 10 s): the fourth is closed at once.
  const first = await open(port, 3);
  const fourth = await open(port, 1);
  assert.equal(await closedWithin(fourth, 2000), true, 'the fourth connection is closed');
  assert.equal(fourth[0]?.answer, '');
  assert.ok(
    first.every((h) => h.closedAt === undefined),
    'the first three stay',
  );
  // Another loopback address is served meanwhile.
  const other = await open(port, 1, {
    localAddress: '127.0.0.2',
    data: 'GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  });
  assert.equal(await closedWithin(other, 5000), true);
  assert.match(other[0]?.answer ?? '', /^HTTP\/1\.1 200/);
  for (const h of first) h.socket.destroy();
  await closedWithin(first, 2000);
  await new Promise((r) => setTimeout(r, 100)); // the server sees them close
  assert.equal(await metric(p.addr.api, 'max-connections-per-address'), 1);
  await p.waitFor(() => shedLines(lines).some((l) => l.shed['max-connections-per-address'] === 1), 2000, 'the log line');
});

test('connections in total are capped by api.maxConnections', async (t) => {
  const p = await startTestPlatform(t, { api: { maxConnections: 5, maxConnectionsPerAddress: 0 } }, { influx });
  const port = Number(new URL(p.addr.api).port);
  const admitted = await open(port, 5);
  const over = await open(port, 3);
  assert.equal(await closedWithin(over, 2000), true, 'connections over the cap are closed');
  assert.ok(
    admitted.every((h) => h.closedAt === undefined),
    'the admitted ones stay',
  );
  for (const h of admitted) h.socket.destroy();
  await closedWithin(admitted, 2000);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await metric(p.addr.api, 'max-connections'), 3);
});

test('a request body not received within api.requestTimeoutMs is answered 408 and closed', async (t) => {
  const p = await startTestPlatform(t, { api: { headersTimeoutMs: 1000, requestTimeoutMs: 1500 } }, { influx });
  const port = Number(new URL(p.addr.api).port);
  const body = 'POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"user';
  const [h] = await open(port, 1, { data: body });
  assert.equal(await closedWithin([h as Held], 4000), true);
  const lifetime = ((h as Held).closedAt as number) - (h as Held).connectedAt;
  assert.ok(lifetime >= 1450 && lifetime < 3000, `closed after ${Math.round(lifetime)} ms`);
  assert.match((h as Held).answer, /^HTTP\/1\.1 408/);
  assert.equal(await metric(p.addr.api, 'request-timeout'), 1);
});

test('the descriptor budget: API and MQTT caps and headroom fit the open-file limit, else the broker cap is lowered or start fails', async (t) => {
  // Fits: unchanged.
  assert.deepEqual(fitDescriptorBudget({ limit: 20000, apiMaxConnections: 1000, brokerMaxConnections: 18000 }), {
    brokerMaxConnections: 18000,
  });
  // Unknown limit: unchanged.
  assert.equal(fitDescriptorBudget({ limit: undefined, apiMaxConnections: 1000, brokerMaxConnections: 18000 }).brokerMaxConnections, 18000);
  // Too much: the broker gets what is left.
  const lowered = fitDescriptorBudget({ limit: 4096, apiMaxConnections: 1000, brokerMaxConnections: 18000 });
  assert.equal(lowered.brokerMaxConnections, 4096 - 1000 - DESCRIPTOR_HEADROOM);
  assert.equal(lowered.lowered?.configured, 18000);
  // Nothing left for MQTT: an error naming the options.
  assert.throws(
    () => fitDescriptorBudget({ limit: 1024, apiMaxConnections: 1000, brokerMaxConnections: 18000 }),
    (err: Error & { code?: string }) =>
      err.code === 'CP_CONFIG_INVALID' && /RLIMIT_NOFILE/.test(err.message) && /api\.maxConnections/.test(err.message),
  );

  // The limit as the kernel reports it.
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-limits-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const limits = join(dir, 'limits');
  await writeFile(
    limits,
    'Limit                     Soft Limit           Hard Limit           Units\nMax open files            20000                20000                files\n',
  );
  assert.equal(openFileLimit(limits), 20000);
  await writeFile(limits, 'Max open files            unlimited            unlimited            files\n');
  assert.equal(openFileLimit(limits), undefined);
  assert.equal(openFileLimit(join(dir, 'missing')), undefined);
});
