/**
 * The platform's own InfluxDB across crashes, on real processes (the CLI `bin/citypulse.ts start`, its influxd
 * child, MQTT.js devices), counting acknowledged readings against the points in that InfluxDB:
 * - the platform SIGKILLed three times with a fixed influx.localPort (as by default): each next start succeeds
 *   on the same data folder and every reading acknowledged before each kill is stored;
 * - the platform's influxd SIGKILLed under load: the death is logged at error level with the signal, influxd is
 *   restarted on the same port, every acknowledged reading is stored and health is ok again; a stop restarts nothing.
 *
 * Run: node --import tsx --test --test-concurrency=1 test/crash-recovery.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { compare, startLoad } from './helpers/load.ts';
import { freePort, startPlatformProcess, type PlatformProcess } from './helpers/process.ts';
import { waitFor, isAlive } from './helpers/wait.ts';

const ADMIN_TOKEN = 'test-admin-token-000000000000';
const LOOPBACK = 'http://127.0.0.1';

/** The pid in the data folder's influxd.pid, when that process is alive and is influxd. */
async function influxdPid(dataDir: string): Promise<number | undefined> {
  const pid = Number((await readFile(path.join(dataDir, 'influxdb', 'influxd.pid'), 'utf8').catch(() => '')).trim());
  if (!pid) return undefined;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return /influxd/.test(cmdline.split('\0')[0] ?? '') ? pid : undefined;
}

/** `intensity` of the traffic points observed in [from, to) ms, read from InfluxDB directly. */
async function stored(influxPort: number, from: number, to: number): Promise<number[]> {
  const q = `SELECT "intensity" FROM "traffic" WHERE time >= ${from}ms AND time < ${to}ms`;
  const res = await fetch(`${LOOPBACK}:${influxPort}/query?${new URLSearchParams({ db: 'citypulse', q, epoch: 'ms' })}`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as any;
  return (body.results?.[0]?.series?.[0]?.values ?? []).map((v: unknown[]) => v[1] as number);
}

async function health(api: string): Promise<any> {
  return (await fetch(`${api}/api/v1/health`)).json();
}

async function setUp(t: { after(fn: () => unknown): void }, name: string) {
  const dataDir = await mkdtemp(path.join(tmpdir(), `citypulse-${name}-`));
  const ports = { api: await freePort(), mqtt: await freePort() };
  // A fixed port, as influx.localPort (8086) is by default; picked free so that a machine's own 8086 does not matter.
  const influxPort = await freePort();
  const env = {
    CITYPULSE_DATA_DIR: dataDir,
    CITYPULSE_INFLUX_LOCAL_PORT: String(influxPort),
    CITYPULSE_API_ADMIN_TOKEN: ADMIN_TOKEN,
    CITYPULSE_INGEST_MAX_READINGS_PER_SECOND: '0', // one device far above a field device's rate
  };
  const procs: PlatformProcess[] = [];
  const clients: mqtt.MqttClient[] = [];
  t.after(async () => {
    for (const c of clients) c.end(true);
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    const pid = await influxdPid(dataDir);
    if (pid) process.kill(pid, 'SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  });
  const start = async (extra: Record<string, string> = {}) => {
    const p = await startPlatformProcess({ ...env, ...extra }, ports);
    procs.push(p);
    return p;
  };
  const connect = async (p: PlatformProcess, device: { id: string; token: string }) => {
    const c = await mqtt.connectAsync(p.mqtt, { clientId: device.id, username: device.id, password: device.token, reconnectPeriod: 0 });
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };
  return { dataDir, influxPort, start, connect };
}

async function provision(api: string): Promise<{ id: string; token: string }> {
  const res = await fetch(`${api}/api/v1/devices`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ family: 'traffic', zone: 'tran-phu', location: { lat: 21.27, lon: 106.19 } }),
  });
  const text = await res.text();
  assert.equal(res.status, 201, text);
  const { device, token } = JSON.parse(text) as { device: { id: string }; token: string };
  return { id: device.id, token };
}

test('the platform SIGKILLed 3 times with a fixed InfluxDB port: it starts again each time and keeps every acknowledged reading', {
  timeout: 180_000,
}, async (t) => {
  const s = await setUp(t, 'crash');
  const span = 100_000; // each round's readings are observed in their own span of ms
  const base = Date.now() - 3_600_000;
  const rounds: { from: number; acked: Set<number> }[] = [];
  let proc = await s.start({ CITYPULSE_INGEST_BATCH_MAX_AGE_MS: '2000' }); // some readings only in the log at the kill
  const device = await provision(proc.api);
  for (let round = 0; round < 3; round++) {
    const from = base + round * span;
    const load = startLoad(await s.connect(proc, device), device.id, { perSecond: 500, base: from });
    t.after(() => load.stop()); // its timer would keep a failed test's process alive
    await waitFor(() => load.acked.size > 300, 10_000, `load running (round ${round + 1})`);
    const influxd = await influxdPid(s.dataDir);
    assert.ok(influxd, 'the platform runs its own influxd');
    proc.child.kill('SIGKILL');
    assert.equal(await proc.exited, 'SIGKILL');
    await load.stop();
    rounds.push({ from, acked: load.acked });

    const started = Date.now();
    proc = await s.start();
    t.diagnostic(`start ${round + 2}: ready ${Date.now() - started} ms after the kill`);
    assert.doesNotMatch(proc.output(), /already in use/);
    assert.notEqual(await influxdPid(s.dataDir), influxd, 'a new influxd');
    for (const [i, r] of rounds.entries()) {
      await waitFor(
        async () => (await stored(s.influxPort, r.from, r.from + span)).length >= r.acked.size,
        20_000,
        `round ${i + 1}'s readings after start ${round + 2}`,
      );
      const { missing, duplicates } = compare(r.acked, await stored(s.influxPort, r.from, r.from + span));
      assert.deepEqual(missing, [], `round ${i + 1}: acknowledged readings missing`);
      assert.equal(duplicates, 0);
    }
  }
  const influxd = await influxdPid(s.dataDir);
  proc.child.kill('SIGTERM');
  assert.equal(await proc.exited, 0, 'SIGTERM exits 0');
  assert.ok(influxd && !isAlive(influxd), 'a graceful stop ends influxd');
});

test("the platform's own influxd SIGKILLed under load: logged, restarted, every acknowledged reading stored, health ok", {
  timeout: 120_000,
}, async (t) => {
  const s = await setUp(t, 'influxd-kill');
  const proc = await s.start({ CITYPULSE_INGEST_RETRY_MAX_DELAY_MS: '300' });
  const device = await provision(proc.api);
  const from = Date.now() - 3_600_000;
  const load = startLoad(await s.connect(proc, device), device.id, { perSecond: 500, base: from });
  t.after(() => load.stop()); // its timer would keep a failed test's process alive
  await waitFor(() => load.acked.size > 300, 10_000, 'load running');

  const old = (await influxdPid(s.dataDir)) as number;
  assert.ok(old, 'the platform runs its own influxd');
  const ackedAtKill = load.acked.size;
  const killedAt = Date.now();
  process.kill(old, 'SIGKILL');
  const logged = await waitFor(
    () =>
      proc
        .output()
        .split('\n')
        .find((l) => l.includes('ended unexpectedly')),
    5_000,
    'the error log line about influxd',
  );
  const line = JSON.parse(logged);
  assert.equal(line.level, 50, 'error level');
  assert.equal(line.signal, 'SIGKILL');
  assert.equal(line.influxdPid, old);
  const restarted = await waitFor(
    async () => {
      const pid = await influxdPid(s.dataDir);
      if (!pid || pid === old) return undefined;
      const ping = await fetch(`${LOOPBACK}:${s.influxPort}/ping`).catch(() => undefined);
      return ping?.status === 204 ? pid : undefined;
    },
    15_000,
    'influxd restarted on the same port',
  );
  const restartMs = Date.now() - killedAt;
  t.diagnostic(`influxd ${old} killed; ${restarted} answering on the same port ${restartMs} ms later`);
  await waitFor(() => load.acked.size > ackedAtKill + 300, 10_000, 'acknowledgements continuing');
  await load.stop();

  await waitFor(
    async () => (await stored(s.influxPort, from, from + 3_600_000)).length >= load.acked.size,
    20_000,
    'every acknowledged reading in InfluxDB',
  );
  const { missing, duplicates } = compare(load.acked, await stored(s.influxPort, from, from + 3_600_000));
  assert.deepEqual(missing, []);
  assert.equal(duplicates, 0);
  const h = await waitFor(
    async () => {
      const r = await health(proc.api);
      return r.status === 'ok' ? r : undefined;
    },
    15_000,
    'health ok again',
  );
  assert.equal(h.influx.status, 'ok');

  proc.child.kill('SIGTERM');
  assert.equal(await proc.exited, 0, 'SIGTERM exits 0');
  assert.equal(isAlive(restarted), false, 'the stop ends influxd');
  assert.equal(
    proc
      .output()
      .split('\n')
      .filter((l) => l.includes('ended unexpectedly')).length,
    1,
    'the stop is no crash',
  );
  assert.equal(await influxdPid(s.dataDir), undefined, 'and starts no new one');
});
