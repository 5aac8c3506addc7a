/**
 * The whole cluster under faults, on real processes: `startCluster` (platform/cluster.ts) starts a 3-node
 * RabbitMQ cluster, PostgreSQL, Redis, InfluxDB, three platform nodes as child processes and HAProxy in front of
 * them; 100 MQTT.js devices send QoS 1 traffic readings (10 a message) through HAProxy, and a checker records
 * every reading a device got a PUBACK for and compares it, at the end, with what InfluxDB stored: 0 acknowledged
 * readings lost, 0 duplicated. The phases run one after the other on one cluster start, the load running
 * throughout:
 * (1) SIGKILL of one platform node: its devices reconnect through HAProxy and are acknowledged again on the
 *     other nodes (the time is printed), and every partition is processed again (the killed node's consumers
 *     handed over);
 * (2) one RabbitMQ node stopped: acknowledgements go on; a second one stopped (quorum lost): no acknowledgement
 *     while it is lost; both back: acknowledgements resume;
 * (3) InfluxDB stopped 60 s: acknowledgements go on, the backlog waits in the queues;
 * (4) PostgreSQL stopped and started: logins and provisioning answer 503 CP_STATE_UNAVAILABLE meanwhile and
 *     recover; telemetry goes on;
 * then every acknowledged reading must be in InfluxDB, once.
 * The rate the machine kept in each phase and the figures are printed as diagnostics (docs/cluster.md).
 *
 * Run: node --import tsx --test test/cluster-faults.test.ts (about 5 minutes here, of which the cluster's start
 * is 1–2). CP_FAULTS_MESSAGES_PER_S changes the load (default 300 messages/s: 3,000 readings/s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect as amqpConnect } from 'amqplib';
import { partitionOf, queueName } from '../ingest/replicated-log.ts';
import { type ClusterHandle, startCluster } from '../platform/index.ts';
import { CheckedFleet, checkStored, influxSeries } from './helpers/cluster-fleet.ts';
import { fileScope, onCleanup } from './helpers/scope.ts';

const DEVICES = 100;
const READINGS_PER_MESSAGE = 10;
const MESSAGES_PER_S = Number(process.env.CP_FAULTS_MESSAGES_PER_S ?? 300);
const PARTITIONS = 8;
const PREFIX = 'citypulse.readings';
const DATABASE = 'citypulse';
const ADMIN_PASSWORD = 'fault-test-admin-password';
const INFLUX_OUTAGE_MS = 60_000;

const scope = fileScope();
const dir = await mkdtemp(path.join(tmpdir(), 'citypulse-faults-'));
onCleanup(scope, () => rm(dir, { recursive: true, force: true }));
const startedAt = Date.now();
const cluster: ClusterHandle = await startCluster({
  dir,
  nodes: 3,
  simulate: false,
  entry: 'sources',
  fresh: true,
  config: {
    log: { level: 'warn' },
    influx: { database: DATABASE },
    api: { initialAdminPassword: ADMIN_PASSWORD },
    ingest: { retryMaxDelayMs: 1000, cluster: { partitions: PARTITIONS, queuePrefix: PREFIX } },
  },
}).catch(async (err: Error) => {
  // The file's cleanup never runs when its top level throws: the folder goes now (startCluster stopped its parts).
  await rm(dir, { recursive: true, force: true });
  throw err;
});
onCleanup(scope, () => cluster.stop());
const clusterStartMs = Date.now() - startedAt;
const fleet = await CheckedFleet.start({
  mqttUrl: cluster.mqtt,
  apiUrl: cluster.api,
  adminToken: cluster.adminToken,
  devices: DEVICES,
  zone: 'tho-xuong',
});
onCleanup(scope, () => fleet.close());
fleet.load({ messagesPerSecond: MESSAGES_PER_S, readingsPerMessage: READINGS_PER_MESSAGE });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until true; fails after `ms` with `what` and the fleet's counts. */
async function waitFor(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<number> {
  const from = Date.now();
  while (!(await fn())) {
    if (Date.now() - from > ms)
      throw new Error(`timed out after ${ms} ms waiting for ${what} (acknowledged ${fleet.acked()}, sent ${fleet.sent()})`);
    await sleep(100);
  }
  return Date.now() - from;
}

/** Readings acknowledged a second over `ms` from now. */
async function rateOver(ms: number): Promise<number> {
  const a = fleet.acked();
  await sleep(ms);
  return Math.round(((fleet.acked() - a) * 1000) / ms);
}

/** Ready messages in the partition queues, asked of the first RabbitMQ node that runs. */
async function backlog(): Promise<number> {
  const url = cluster.rabbit.urls.find((_, i) => cluster.rabbit.isRunning(i)) as string;
  const conn = await amqpConnect(url, { timeout: 5000 });
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    let n = 0;
    for (let i = 0; i < PARTITIONS; i++) n += (await ch.checkQueue(queueName(PREFIX, i))).messageCount;
    return n;
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** POST through HAProxy's API: status and body. */
async function post(urlPath: string, body: unknown, token?: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${cluster.api}${urlPath}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

test(`the cluster starts and ${DEVICES} devices send through HAProxy`, async (t) => {
  await waitFor(() => fleet.devices.every((d) => d.acked.size > 0), 60_000, 'every device acknowledged once');
  const rate = await rateOver(5000);
  t.diagnostic(
    `cluster (3 RabbitMQ, PostgreSQL, Redis, InfluxDB, 3 platform nodes, HAProxy) started in ${clusterStartMs} ms; ` +
      `${DEVICES} devices at ${MESSAGES_PER_S * READINGS_PER_MESSAGE} readings/s asked (${READINGS_PER_MESSAGE} a message): ${rate} readings/s acknowledged`,
  );
  assert.ok(rate > 0);
});

test('(1) SIGKILL of a platform node: its devices are acknowledged again on the others; every partition processed again', async (t) => {
  const victim = 1;
  const killedAt = Date.now();
  await cluster.killNode(victim);
  onCleanup(t, () => cluster.startNode(victim)); // the next phases want three nodes, also when this one fails
  // Its devices: those whose connection was lost after the kill. HAProxy spreads them by least connections.
  await sleep(3000);
  const cut = fleet.devices.filter((d) => d.firstCloseAfter(killedAt) !== undefined);
  assert.ok(cut.length > 0, 'the killed node held devices');
  await waitFor(
    () => cut.every((d) => d.firstAckAfter(d.firstCloseAfter(killedAt) as number) !== undefined),
    60_000,
    "the killed node's devices acknowledged again",
  );
  const failover = Math.max(...cut.map((d) => (d.firstAckAfter(d.firstCloseAfter(killedAt) as number) as number) - killedAt));
  // Processing: the killed node was the active consumer of some partitions; a reading of every partition
  // acknowledged after the kill must reach InfluxDB (the next consumer took those partitions over).
  const probe = new Map<number, { id: string; n: number }>();
  await waitFor(
    () => {
      for (const d of fleet.devices) {
        const p = partitionOf(d.id, PARTITIONS);
        if (probe.has(p) || d.firstAckAfter(killedAt + 1000) === undefined) continue;
        probe.set(p, { id: d.id, n: Math.max(...[...d.acked].slice(-READINGS_PER_MESSAGE)) });
      }
      return probe.size === PARTITIONS;
    },
    30_000,
    'a device acknowledged after the kill in every partition',
  );
  const servedMs = await waitFor(
    async () => {
      for (const { id, n } of probe.values()) {
        const s = await influxSeries(
          cluster.influxUrl,
          DATABASE,
          `SELECT count("intensity") FROM "traffic" WHERE "device" = '${id}' AND "intensity" >= ${n}`,
        );
        if (!Number(s[0]?.values[0]?.[1] ?? 0)) return false;
      }
      return true;
    },
    60_000,
    'a reading of every partition acknowledged after the kill stored',
  );
  const rate = await rateOver(3000);
  const pause = fleet.longestPause(killedAt - 1000, Date.now());
  t.diagnostic(
    `node ${victim + 1} killed: ${cut.length} devices cut off, all acknowledged again on other nodes within ${failover} ms of the kill ` +
      `(the fleet's longest pause without a PUBACK ${pause} ms); ` +
      `every partition's readings stored again ${servedMs} ms later; ${rate} readings/s acknowledged on two nodes`,
  );
  const restartFrom = Date.now();
  await cluster.startNode(victim);
  t.diagnostic(`node ${victim + 1} started again in ${Date.now() - restartFrom} ms`);
});

test('(2) RabbitMQ: one node stopped, acknowledgements go on; two stopped (quorum lost), none until they are back', async (t) => {
  const first = 0;
  const second = 1;
  onCleanup(t, async () => {
    for (const i of [first, second]) if (!cluster.rabbit.isRunning(i)) await cluster.rabbit.startNode(i);
  });
  const stoppedAt = Date.now();
  await cluster.rabbit.stopNode(first);
  const stopMs = Date.now() - stoppedAt;
  const ackedAtStop = fleet.acked();
  const target = MESSAGES_PER_S * READINGS_PER_MESSAGE * 3;
  const resumedMs = await waitFor(() => fleet.acked() > ackedAtStop + target, 60_000, 'acknowledgements with one RabbitMQ node stopped');
  const everyDeviceMs = await waitFor(
    () => fleet.devices.every((d) => d.firstAckAfter(stoppedAt + 1500) !== undefined),
    60_000,
    'every device acknowledged with one node stopped',
  );
  const rateOne = await rateOver(3000);
  const pause = fleet.longestPause(stoppedAt - 1000, Date.now());

  await cluster.rabbit.stopNode(second);
  await sleep(1500); // confirms and PUBACKs already on their way
  const frozen = fleet.acked();
  await sleep(6000);
  const during = fleet.acked() - frozen;
  assert.equal(during, 0, `${during} reading(s) acknowledged while the quorum was lost`);

  const backFrom = Date.now();
  await Promise.all([first, second].map((i) => cluster.rabbit.startNode(i)));
  const nodesBackMs = Date.now() - backFrom;
  const ackedAtBack = fleet.acked();
  const againMs = await waitFor(() => fleet.acked() > ackedAtBack + target, 90_000, 'acknowledgements once the quorum is back');
  t.diagnostic(
    `RabbitMQ node ${first + 1} stopped (${stopMs} ms): ${target} more readings acknowledged ${resumedMs} ms after, every device ${everyDeviceMs} ms after that; ` +
      `the fleet's longest pause without a PUBACK ${pause} ms; ${rateOne} readings/s on two RabbitMQ nodes; node ${second + 1} stopped too: 0 acknowledged in 6 s; ` +
      `both started again in ${nodesBackMs} ms, acknowledgements resumed ${againMs} ms later`,
  );
});

test(`(3) InfluxDB stopped ${INFLUX_OUTAGE_MS / 1000} s under load: acknowledgements go on, the backlog waits in the queues`, async (t) => {
  onCleanup(t, () => cluster.startInflux());
  await cluster.stopInflux();
  const stoppedAt = Date.now();
  const ackedAtStop = fleet.acked();
  await sleep(INFLUX_OUTAGE_MS);
  const ackedDuring = fleet.acked() - ackedAtStop;
  const waiting = await backlog();
  assert.ok(ackedDuring > 0, 'readings acknowledged while InfluxDB is down');
  assert.ok(waiting > 0, 'the backlog waits in the queues');
  await cluster.startInflux();
  const outageS = Math.round((Date.now() - stoppedAt) / 1000);
  const drainedMs = await waitFor(async () => (await backlog()) < PARTITIONS * 4, 120_000, 'the backlog drained');
  t.diagnostic(
    `InfluxDB down ${outageS} s: ${ackedDuring} readings acknowledged meanwhile (${Math.round(ackedDuring / (INFLUX_OUTAGE_MS / 1000))}/s), ` +
      `${waiting} batch messages waiting in the queues at the end; queues drained ${drainedMs} ms after InfluxDB was back`,
  );
});

test('(4) PostgreSQL stopped and started: logins and provisioning answer 503 CP_STATE_UNAVAILABLE meanwhile, then recover; telemetry goes on', async (t) => {
  onCleanup(t, () => cluster.postgres.restart().catch(() => undefined));
  const login = () => post('/api/v1/auth/login', { username: 'admin', password: ADMIN_PASSWORD });
  const provision = (id: string) =>
    post('/api/v1/devices', { id, family: 'traffic', zone: 'tho-xuong', location: { lat: 21.27, lon: 106.19 } }, cluster.adminToken);
  assert.equal((await login()).status, 200, 'login works before');
  await cluster.postgres.stop();
  const stoppedAt = Date.now();
  const ackedAtStop = fleet.acked();
  const l = await login();
  const p = await provision('faults-during-outage');
  assert.equal(l.status, 503, `login while PostgreSQL is down: ${l.status} ${l.text}`);
  assert.match(l.text, /CP_STATE_UNAVAILABLE/);
  assert.equal(p.status, 503, `provisioning while PostgreSQL is down: ${p.status} ${p.text}`);
  assert.match(p.text, /CP_STATE_UNAVAILABLE/);
  await sleep(3000);
  const ackedDuring = fleet.acked() - ackedAtStop;
  assert.ok(ackedDuring > 0, 'telemetry goes on while PostgreSQL is down');
  await cluster.postgres.restart();
  const downMs = Date.now() - stoppedAt;
  const recoveredMs = await waitFor(async () => (await login()).status === 200, 30_000, 'logins once PostgreSQL is back');
  const again = await provision('faults-after-outage');
  assert.equal(again.status, 201, `provisioning once PostgreSQL is back: ${again.status} ${again.text}`);
  t.diagnostic(
    `PostgreSQL down ${downMs} ms: login and provisioning 503 CP_STATE_UNAVAILABLE, ${ackedDuring} readings acknowledged meanwhile; ` +
      `logins answered again ${recoveredMs} ms after its start`,
  );
});

test('every acknowledged reading is in InfluxDB, once', async (t) => {
  const settled = await fleet.stopLoad(60_000);
  assert.ok(settled, 'every message sent was answered');
  const r = await checkStored(fleet, cluster.influxUrl, DATABASE, 120_000);
  t.diagnostic(
    `${r.acked} readings acknowledged (${fleet.sent()} sent), ${r.stored} stored; lost ${r.lost}, duplicated ${r.duplicated}; whole run ${Math.round((Date.now() - startedAt) / 1000)} s`,
  );
  assert.deepEqual(r.lostExamples, [], `${r.lost} acknowledged reading(s) not stored`);
  assert.equal(r.lost, 0);
  assert.equal(r.duplicated, 0);
});
