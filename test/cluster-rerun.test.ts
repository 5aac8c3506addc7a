/**
 * `citypulse cluster` run again in the same folder after a crash: the first run (1 platform node, no simulated
 * city) takes a device and a reading through HAProxy and is killed outright (SIGKILL, no stop). The second run,
 * started at once while the first run's processes are still ending, ends them, starts the engines again on their
 * data and prints no new service token or admin password; the device's token still works (PostgreSQL kept it),
 * the first reading is still answered by the history API (InfluxDB kept it) and a new one is stored (RabbitMQ's
 * queues are back). SIGINT then ends everything.
 *
 * Run: node --import tsx --test test/cluster-rerun.test.ts (two starts of 3 RabbitMQ nodes: 2-3 minutes here).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { freePort } from '../platform/influxdb-local.ts';
import { loadCityProfile } from '../registry/index.ts';
import { deadline, describeProcesses, killAll, portFree, processesOf, runClusterCommand, sleep } from './helpers/cluster-cli.ts';

const START_TIMEOUT_MS = 240_000;

test('a second run in the same folder ends what a crashed run left and starts again on its data', { timeout: 600_000 }, async (t) => {
  const tmp = await mkdtemp(path.join(tmpdir(), 'citypulse-cluster-rerun-'));
  await chmod(tmp, 0o711); // PostgreSQL runs as its own system user under root: it must pass through
  const apiPort = await freePort();
  let mqttPort = await freePort();
  while (mqttPort === apiPort) mqttPort = await freePort();
  const env = {
    HOME: path.join(tmp, 'home'),
    CITYPULSE_API_PORT: String(apiPort),
    CITYPULSE_BROKER_PORT: String(mqttPort),
    CITYPULSE_LOG_LEVEL: 'warn',
  };
  const args = ['--dir', path.join(tmp, 'cluster'), '--nodes', '1', '--no-simulate'];
  const runs: ReturnType<typeof runClusterCommand>[] = [];
  t.after(async () => {
    for (const r of runs) await r.end();
    killAll(await processesOf(tmp));
    await rm(tmp, { recursive: true, force: true });
  });
  const api = `http://127.0.0.1:${apiPort}`;
  const mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;

  // First run: a device and one reading through HAProxy.
  const first = runClusterCommand(args, env);
  runs.push(first);
  await first.started(START_TIMEOUT_MS);
  const token = first.line('admin token') as string;
  assert.ok(token, first.output());
  assert.match(first.output(), /^ {2}operator login +admin \//m);
  const nodePid = Number(/^ {2}node1 .*\(pid (\d+);/m.exec(first.output())?.[1]);
  assert.ok(nodePid > 0, first.output());
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const zone = loadCityProfile('cities/bac-giang.json').zones.find((z) => z.centre)?.id;
  const res = await fetch(`${api}/api/v1/devices`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ family: 'airQuality', zone, location: { lat: 21.27, lon: 106.19 } }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const provisioned = (await res.json()) as { device: { id: string }; token: string };
  const device = provisioned.device.id;
  const devToken = provisioned.token;
  const t1 = Date.now() - 5_000;
  await publish(mqttUrl, device, devToken, t1, 11.5);
  await storedAt(api, headers, device, t1, 60_000);

  // Crash: the command is killed outright, and the second run starts at once.
  first.child.kill('SIGKILL');
  await first.exited;
  const left = await processesOf(tmp);
  const second = runClusterCommand(args, env);
  runs.push(second);
  await second.started(START_TIMEOUT_MS);
  console.log(`# processes of the first run still there when the second started: ${left.length}`);
  assert.equal(second.line('admin token'), undefined, 'the service token is kept, not printed again');
  assert.doesNotMatch(second.output(), /operator login/);
  assert.equal(processAlive(nodePid), false, 'the node of the first run is gone');
  // Every process of the first run (its node, RabbitMQ nodes, engines) is gone: ended by the second run's start
  // or by its parent-death signal.
  const survivors = left.filter(processAlive);
  assert.deepEqual(survivors, [], `left by the first run: ${await describeProcesses(survivors)}`);

  // The data of the first run is there, and the cluster takes new readings.
  await storedAt(api, headers, device, t1, 30_000);
  const t2 = Date.now() - 1_000;
  await publish(mqttUrl, device, devToken, t2, 12.5);
  await storedAt(api, headers, device, t2, 60_000);

  // Ctrl+C ends the second run and everything of the first.
  const ports = [apiPort, mqttPort];
  second.child.kill('SIGINT');
  const code = await Promise.race([second.exited, deadline(150_000).then(() => 'timeout')]);
  assert.equal(code, 0, second.output().slice(-3000));
  const rest = await processesOf(tmp);
  assert.deepEqual(rest, [], `processes left: ${await describeProcesses(rest)}`);
  for (const port of ports) assert.equal(await portFree(port), true, `port ${port} still taken`);
});

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function publish(url: string, id: string, token: string, time: number, pm25: number): Promise<void> {
  const client = await mqtt.connectAsync(url, {
    clientId: id,
    username: id,
    password: token,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });
  try {
    await client.publishAsync(`devices/${id}/telemetry`, JSON.stringify({ dateObserved: new Date(time).toISOString(), pm25, pm10: 30 }), {
      qos: 1,
    });
  } finally {
    await client.endAsync();
  }
}

/** Waits until the history API (through HAProxy) answers a point of `device` at `time`. */
async function storedAt(api: string, headers: Record<string, string>, device: string, time: number, timeoutMs: number): Promise<void> {
  const from = new Date(time - 60_000).toISOString();
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${api}/api/v1/devices/${device}/readings?from=${from}&window=raw`, { headers }).catch(() => undefined);
    if (res?.status === 200) {
      const body = (await res.json()) as { points: { time: string | number }[] };
      if (body.points.some((p) => new Date(p.time).getTime() === time)) return;
    }
    if (Date.now() > until) assert.fail(`the reading of ${device} at ${new Date(time).toISOString()} is not answered by the history API`);
    await sleep(250);
  }
}
