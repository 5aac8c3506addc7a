/**
 * `citypulse cluster` as a user runs it: the command line spawned with a temporary HOME and dataDir, on free
 * edge ports (CITYPULSE_API_PORT, CITYPULSE_BROKER_PORT). Everything is real: 3 RabbitMQ nodes, PostgreSQL,
 * Redis, InfluxDB, 3 platform nodes as processes, HAProxy with PROXY v2, a small simulated city through HAProxy.
 * Waits for the printed addresses, then through HAProxy: the dashboard, live readings on a socket.io client,
 * the same readings stored and answered by the history API; every node's own health (PROXY v2 LOCAL header, as
 * HAProxy's checks send it) and a direct connection without a header refused; then SIGINT: the command ends,
 * no process of its folder is left and every port it printed is free.
 *
 * Run: node --import tsx --test test/cluster-run.test.ts (3 RabbitMQ nodes start in 22-42 s here, more under
 * load; the whole file took 67 to 117 s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { io as ioClient } from 'socket.io-client';
import { encodeProxyV2 } from '../core/proxy-protocol.ts';
import { freePort } from '../platform/influxdb-local.ts';
import { deadline, describeProcesses, killAll, portFree, processesOf, runClusterCommand, sleep } from './helpers/cluster-cli.ts';

const START_TIMEOUT_MS = 300_000;

interface Reading {
  device: string;
  family: string;
  time: number;
  fields: Record<string, unknown>;
}

test('citypulse cluster: the simulated city through HAProxy is stored, queryable and live; SIGINT ends everything', {
  timeout: 480_000,
}, async (t) => {
  const tmp = await mkdtemp(path.join(tmpdir(), 'citypulse-cluster-run-'));
  // PostgreSQL runs as its own system user when the test runs as root: it must be able to pass through.
  await chmod(tmp, 0o711);
  const apiPort = await freePort();
  let mqttPort = await freePort();
  while (mqttPort === apiPort) mqttPort = await freePort();
  const dataDir = path.join(tmp, 'data');
  const started = Date.now();
  const cmd = runClusterCommand([], {
    HOME: path.join(tmp, 'home'),
    CITYPULSE_DATA_DIR: dataDir,
    CITYPULSE_API_PORT: String(apiPort),
    CITYPULSE_BROKER_PORT: String(mqttPort),
    CITYPULSE_LOG_LEVEL: 'warn',
    // A small city reporting often, without a day of history: readings within seconds, bounded load.
    CITYPULSE_SIMULATE_AIR_QUALITY: '2',
    CITYPULSE_SIMULATE_TRAFFIC: '2',
    CITYPULSE_SIMULATE_STREET_LIGHT: '4',
    CITYPULSE_SIMULATE_BACKFILL_HOURS: '0',
    CITYPULSE_SIMULATE_INTERVAL_SCALE: '0.02',
  });
  t.after(async () => {
    await cmd.end();
    killAll(await processesOf(tmp));
    await rm(tmp, { recursive: true, force: true });
  });

  // The banner: printed once everything is up.
  await cmd.started(START_TIMEOUT_MS);
  console.log(`# cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const out = cmd.output();
  const line = cmd.line;
  const api = `http://127.0.0.1:${apiPort}`;
  assert.equal(line('dashboard'), `${api}/`, out);
  assert.equal(line('MQTT'), `mqtt://127.0.0.1:${mqttPort}`, out);
  const nodes = [...out.matchAll(/^ {2}node(\d) +API http:\/\/127\.0\.0\.1:(\d+), MQTT mqtt:\/\/127\.0\.0\.1:(\d+)/gm)].map((m) => ({
    name: `node${m[1]}`,
    apiPort: Number(m[2]),
    mqttPort: Number(m[3]),
  }));
  assert.equal(nodes.length, 3, out);
  const token = line('admin token');
  assert.ok(token, `the first run prints the service token:\n${out}`);
  assert.match(out, /^ {2}operator login +admin \/ \S{10,}/m);
  assert.equal((await readFile(path.join(dataDir, 'cluster', 'admin-token'), 'utf8')).trim(), token);
  const printedPorts = [...out.matchAll(/(?:amqp|postgres|redis|http):\/\/(?:citypulse@)?127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
  const ports = [...new Set([apiPort, mqttPort, ...nodes.flatMap((n) => [n.apiPort, n.mqttPort]), ...printedPorts])];
  // edge (2) + nodes (6) + RabbitMQ (3) + PostgreSQL, Redis, InfluxDB
  assert.ok(ports.length >= 14, `ports printed: ${ports.join(', ')}`);

  const auth = { authorization: `Bearer ${token}` };
  // The dashboard through HAProxy.
  const page = await fetch(`${api}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<html/i);

  // Every node answers its own health (PROXY v2 LOCAL first, as HAProxy's checks) and refuses a bare connection.
  for (const n of nodes) {
    const h = await proxiedGet(n.apiPort, '/api/v1/health');
    assert.equal(h.status, 200, `${n.name}: ${h.body}`);
    assert.equal((JSON.parse(h.body) as { status: string }).status, 'ok', `${n.name}: ${h.body}`);
    assert.equal(await bareGetAnswers(n.apiPort), false, `${n.name} answered a request without a PROXY header`);
  }
  const edgeHealth = await fetch(`${api}/api/v1/health`);
  assert.equal(edgeHealth.status, 200);

  // Live readings through HAProxy on a socket.io client (WebSocket through the edge).
  const socket = ioClient(api, { transports: ['websocket'], auth: { token }, reconnection: false });
  t.after(() => void socket.close());
  await new Promise<void>((res, rej) => {
    socket.once('connect', () => res());
    socket.once('connect_error', rej);
  });
  const live: Reading[] = [];
  socket.on('reading', (r: Reading) => live.push(r));
  const ack = (await socket.timeout(10_000).emitWithAck('subscribe', {})) as { ok: boolean };
  assert.equal(ack.ok, true);
  await waitFor(() => new Set(live.map((r) => r.device)).size >= 3, 60_000, 'live readings of 3 simulated devices');
  assert.ok(
    live.every((r) => r.device.startsWith('sim')),
    'live readings come from the simulated city',
  );

  // The same readings stored in InfluxDB and answered by the history API through HAProxy.
  const from = new Date(started - 60_000).toISOString();
  for (const device of [...new Set(live.map((r) => r.device))].slice(0, 3)) {
    const seen = live.filter((r) => r.device === device).map((r) => r.time);
    await waitFor(
      async () => {
        const res = await fetch(`${api}/api/v1/devices/${device}/readings?from=${from}&window=raw`, { headers: auth });
        if (res.status !== 200) return false;
        const body = (await res.json()) as { points: { time: string | number }[] };
        const stored = new Set(body.points.map((p) => new Date(p.time).getTime()));
        return seen.every((time) => stored.has(time));
      },
      60_000,
      `the live readings of ${device} in the history API`,
    );
  }
  // Devices spread over the brokers by HAProxy: the simulated city is online through the edge.
  const devices = await fetch(`${api}/api/v1/devices?online=true`, { headers: auth });
  assert.equal(devices.status, 200);
  socket.close();

  // Ctrl+C: everything ends, every port is free again.
  const before = await processesOf(tmp);
  assert.ok(before.length >= 10, `processes of the cluster's folder found: ${before.length}`);
  const stopAt = Date.now();
  cmd.child.kill('SIGINT');
  const code = await Promise.race([cmd.exited, deadline(150_000).then(() => 'timeout')]);
  assert.equal(code, 0, `exit after SIGINT:\n${cmd.output().slice(-3000)}`);
  console.log(`# stopped in ${((Date.now() - stopAt) / 1000).toFixed(1)} s`);
  const left = await processesOf(tmp);
  assert.deepEqual(left, [], `processes left: ${await describeProcesses(left)}`);
  for (const port of ports) assert.equal(await portFree(port), true, `port ${port} still taken`);
});

async function waitFor(fn: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** GET on a node's API port with a PROXY v2 LOCAL header first. */
function proxiedGet(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: urlPath,
        headers: { connection: 'close' },
        timeout: 10_000,
        createConnection: () => {
          const s = net.connect(port, '127.0.0.1');
          s.write(encodeProxyV2());
          return s;
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer')));
    req.on('error', reject);
    req.end();
  });
}

/** Whether a plain HTTP request straight to a node's API port gets any answer (it must not: no PROXY header). */
function bareGetAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n'));
    let answered = false;
    s.on('data', () => (answered = true));
    s.on('error', () => undefined);
    s.on('close', () => resolve(answered));
    s.setTimeout(8000, () => s.destroy());
  });
}
