// Covers platform/influxdb-local.ts through test/helpers/influx.ts: a private influxd starts on
// a free port, accepts a line-protocol write with ms precision, keeps the integer field type,
// refuses a second start on a port in use, and stops cleanly (process gone, stop() idempotent); an influxd
// orphaned on the same folder is ended (a foreign process never), influxd dies with its parent, and the
// supervised form restarts a killed influxd with back-off.
// Needs influxd (Debian `influxdb`; installed automatically when running as root).
// Run: cd /work/main && node --import tsx --test test/influxdb-local.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, startLocalInflux, superviseLocalInflux } from '../platform/influxdb-local.ts';
import { startTestInflux } from './helpers/influx.ts';
import { isAlive } from './helpers/wait.ts';

test('local influxd: write, read back, integer type, port clash, stop', async (t) => {
  const influx = await startTestInflux(t);
  assert.ok(isAlive(influx.pid));

  const created = await influx.query('CREATE DATABASE citypulse_test');
  assert.equal(created.results[0].error, undefined);

  // A fixed, recent ms timestamp: without precision=ms it would be read as ns and land in 1970.
  const ts = Date.now() - 60_000;
  const write = await fetch(`${influx.url}/write?db=citypulse_test&precision=ms`, {
    method: 'POST',
    body: `m,device=d1 v=1i ${ts}`,
  });
  assert.equal(write.status, 204, await write.text());

  const read = await influx.query("SELECT v FROM m WHERE device = 'd1'", 'citypulse_test');
  assert.deepEqual(read.results[0].series[0].values, [[ts, 1]]);

  const fields = await influx.query('SHOW FIELD KEYS FROM m', 'citypulse_test');
  assert.deepEqual(fields.results[0].series[0].values, [['v', 'integer']]);

  // A fixed port already held by this server must fail fast rather than "succeed" via its /ping.
  const otherDir = await mkdtemp(join(tmpdir(), 'citypulse-influx-'));
  t.after(() => rm(otherDir, { recursive: true, force: true }));
  await assert.rejects(startLocalInflux({ dir: otherDir, port: influx.port }), /already in use/);

  await influx.stop();
  assert.equal(isAlive(influx.pid), false);
  await assert.rejects(fetch(`${influx.url}/ping`));
  await influx.stop(); // second stop is a no-op
});

test('an influxd left running on the same folder and fixed port (a SIGKILLed platform) is ended by the next start', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-influx-stale-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // A fixed port, as influx.localPort has by default: the orphan still holds it when the next start checks it.
  const port = await freePort();
  const orphan = await startLocalInflux({ dir, port });
  t.after(() => orphan.stop());
  // The owner died without stopping it; a new start on the same folder finds it by its pid file.
  const next = await startLocalInflux({ dir, port });
  t.after(() => next.stop());
  assert.notEqual(next.pid, orphan.pid);
  assert.equal(isAlive(orphan.pid), false);
  assert.equal(next.port, port);
  assert.equal((await fetch(`${next.url}/ping`)).status, 204);
});

test("a pid file naming a process that is not this folder's influxd: that process is left alone", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-influx-foreign-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const foreign = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => foreign.kill('SIGKILL'));
  await writeFile(join(dir, 'influxd.pid'), `${foreign.pid}\n`);
  const influx = await startLocalInflux({ dir });
  t.after(() => influx.stop());
  assert.equal(isAlive(foreign.pid as number), true);
});

test('influxd ends when the process that started it is killed outright', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-influx-orphan-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const moduleUrl = new URL('../platform/influxdb-local.ts', import.meta.url).href;
  const owner = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `const { startLocalInflux } = await import(${JSON.stringify(moduleUrl)});
       const i = await startLocalInflux({ dir: ${JSON.stringify(dir)} });
       console.log(i.pid);
       setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => owner.kill('SIGKILL'));
  const pid = Number(await new Promise<string>((res) => owner.stdout?.once('data', (d: Buffer) => res(d.toString()))));
  assert.ok(isAlive(pid));
  t.after(() => {
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  });
  owner.kill('SIGKILL');
  const until = Date.now() + 15_000;
  while (isAlive(pid) && Date.now() < until) await sleep(50);
  assert.equal(isAlive(pid), false, 'influxd outlived its killed parent');
});

test('supervised influxd: killed, it is reported and restarted on the same URL with growing delays; stop restarts nothing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-influx-supervised-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const errors: Record<string, unknown>[] = [];
  const influx = await superviseLocalInflux({ dir, restartDelayMs: 100, onError: (detail) => void errors.push(detail) });
  t.after(() => influx.stop());
  const url = influx.url;

  const rounds: [number, number][] = [
    [1, 100],
    [2, 200], // restarted less than stableAfterMs ago: the delay doubles
  ];
  for (const [round, expectedDelay] of rounds) {
    const pid = influx.pid;
    process.kill(pid, 'SIGKILL');
    const until = Date.now() + 15_000;
    while ((influx.pid === pid || !(await ping(url))) && Date.now() < until) await sleep(50);
    assert.notEqual(influx.pid, pid, `round ${round}: a new influxd`);
    assert.equal(influx.restarts, round);
    assert.deepEqual(errors[round - 1], { influxdPid: pid, code: null, signal: 'SIGKILL', restartInMs: expectedDelay });
  }
  assert.equal(errors.length, 2);

  const last = influx.pid;
  await influx.stop();
  assert.equal(isAlive(last), false);
  await sleep(500);
  assert.equal(influx.restarts, 2, 'stop() restarts nothing');
  assert.equal(errors.length, 2, 'stop() is not reported as a failure');
  assert.equal(await ping(url), false);
});

async function ping(url: string): Promise<boolean> {
  try {
    return (await fetch(`${url}/ping`)).status === 204;
  } catch {
    return false;
  }
}
