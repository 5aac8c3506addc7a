/**
 * Cluster mode's zone and city figures and alarms across partitions, on real engines: a 1-node RabbitMQ (the
 * replicated log), Redis (ward results and socket.io across nodes), PostgreSQL (devices, operators, alarms) and
 * InfluxDB, with whole platforms as nodes.
 *  - Two nodes, each active for the partitions of some wards (readings go by ward): the zone and city indicators
 *    and the air-quality indices served by the API of either node, and the last city indicator a socket of node B
 *    received, equal what a single-node platform computes from the same readings. Lamp faults in wards of both
 *    nodes: each raised once, by the node processing the ward; every node's alarm API lists both; acknowledged
 *    through the other node; cleared through the other node (the node following the condition counts it anew).
 *  - Failover: node A (a separate process, the active consumer) commits a lamp's fault alarm while the
 *    queue message holding its reading waits for a second alarm of the same reading (its row held by the test);
 *    A is killed (SIGKILL), node B takes the partition over and is delivered the message again: exactly one
 *    fault alarm row, announced once to a socket; the second alarm is raised by B.
 *
 * Run: node --import tsx --test test/cluster-alarms.test.ts (Debian rabbitmq-server, redis-server, postgresql-15)
 */
import { type TestContext, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { io as ioClient, type Socket } from 'socket.io-client';
import type { AlarmRecord, IndicatorEvent } from '../core/bus.ts';
import { partitionOf } from '../ingest/replicated-log.ts';
import { startRabbitCluster, type RabbitCluster } from '../platform/engines/rabbitmq.ts';
import { startRedis, type LocalRedis } from '../platform/engines/redis.ts';
import { startTestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { freshDatabase, startTestPostgres } from './helpers/postgres.ts';
import { freePort, startPlatformProcess } from './helpers/process.ts';
import { fileScope, onCleanup } from './helpers/scope.ts';

const scope = fileScope();
const PARTITIONS = 8;
const rabbitDir = await mkdtemp(join(tmpdir(), 'citypulse-rabbit-'));
const redisDir = await mkdtemp(join(tmpdir(), 'citypulse-redis-'));
onCleanup(scope, () => rm(rabbitDir, { recursive: true, force: true }));
onCleanup(scope, () => rm(redisDir, { recursive: true, force: true }));
const [rabbit, redis, server, influx] = await Promise.all([
  startRabbitCluster({ dir: rabbitDir, nodes: 1, fresh: true }) as Promise<RabbitCluster>,
  startRedis({ dir: redisDir }) as Promise<LocalRedis>,
  startTestPostgres(scope),
  startTestInflux(scope),
]);
onCleanup(scope, () => rabbit.stop());
onCleanup(scope, () => redis.stop());

let groups = 0;
const json = (v: unknown) => JSON.stringify(v);
/** Alarm rules of these tests: a lamp fault at once, and a supply over 250 V (an own rule) at once. */
const ALARMS = {
  defaults: { 'lamp-fault': { forMs: 0, clearForMs: 0 } },
  rules: [
    {
      id: 'over-voltage',
      kind: 'threshold',
      source: 'reading',
      family: 'streetLight',
      severity: 'minor',
      field: 'voltage',
      op: '>',
      value: 250,
      forMs: 0,
      clearForMs: 0,
    },
  ],
};
const ANALYTICS = { indicatorEmitIntervalMs: 0, aqiEmitIntervalMs: 0 };

/** Options of one cluster node of group `g`. */
function clusterOptions(g: { url: string; prefix: string; database: string }) {
  return {
    state: { postgresUrl: g.url, queryTimeoutMs: 20_000 },
    influx: { database: g.database },
    ingest: { cluster: { amqpUrls: rabbit.urls, queuePrefix: g.prefix, partitions: PARTITIONS, batchMs: 5, prefetch: 8 } },
    analytics: { ...ANALYTICS, redisUrl: redis.url },
    api: { redisUrl: redis.url },
    alarms: ALARMS,
    log: { level: 'warn' as const },
  };
}

function group(): { url: Promise<string>; prefix: string; database: string } {
  const n = ++groups;
  return { url: freshDatabase(server), prefix: `ca.${process.pid}.${n}`, database: `ca${process.pid}x${n}` };
}

/** A socket.io client of `p` (a viewer session) subscribed to everything; closed by the test's cleanup. */
async function liveSocket(t: TestContext, p: TestPlatform): Promise<Socket> {
  const token = await p.loginAs('viewer');
  const socket = ioClient(p.addr.api, { transports: ['websocket'], reconnection: false, auth: { token } });
  t.after(() => socket.close());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  await new Promise<void>((resolve) => socket.emit('subscribe', {}, () => resolve()));
  return socket;
}

async function getJson<R>(p: TestPlatform, path: string): Promise<R> {
  const res = await p.api(path, { admin: true });
  assert.equal(res.status, 200, `${path}: ${await res.clone().text()}`);
  return (await res.json()) as R;
}

/** Numbers compared with a relative tolerance (sums taken in another order); everything else exactly. */
function close(a: unknown, b: unknown, path = ''): string | undefined {
  if (typeof a === 'number' && typeof b === 'number') {
    return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b)) ? undefined : `${path}: ${a} ≠ ${b}`;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const d = close((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  return a === b ? undefined : `${path}: ${json(a)} ≠ ${json(b)}`;
}

/** Zone and city indicators and the zones' air-quality indices, without the times they were computed at. */
async function figures(p: TestPlatform): Promise<Record<string, unknown>> {
  const ind = await getJson<IndicatorEvent[]>(p, '/api/v1/indicators');
  const aqi = await getJson<{ zones: { id: string; hour: unknown; day: unknown }[]; stations: { id: string; hour: unknown }[] }>(
    p,
    '/api/v1/aqi',
  );
  const out: Record<string, unknown> = {};
  for (const e of ind) if (e.scope !== 'device') out[`${e.scope}:${e.id}:${e.family}`] = e.values;
  for (const z of aqi.zones) out[`aqi:${z.id}`] = { hour: z.hour, day: z.day };
  for (const s of aqi.stations) out[`aqi-station:${s.id}`] = s.hour;
  return out;
}

test('zone and city figures and alarms over two nodes equal one node over all devices', async (t) => {
  const g = group();
  const url = await g.url;
  const a = await startTestPlatform(t, clusterOptions({ ...g, url }), { influx });
  const b = await startTestPlatform(t, clusterOptions({ ...g, url }), { influx });
  const ref = await startTestPlatform(t, { analytics: ANALYTICS, alarms: ALARMS }, { influx });

  // Four wards of distinct partitions: two stay with A (the first to consume every partition), two go to B.
  const wards: string[] = [];
  for (const z of a.platform.parts.profile.zones.map((x) => x.id)) {
    if (!wards.some((w) => partitionOf(w, PARTITIONS) === partitionOf(z, PARTITIONS))) wards.push(z);
    if (wards.length === 4) break;
  }
  assert.equal(wards.length, 4);
  const toB = wards.slice(2).map((w) => partitionOf(w, PARTITIONS));
  await a.platform.parts.ingest.handOverPartitions(toB);

  const socketB = await liveSocket(t, b);
  const cityOnB = new Map<string, IndicatorEvent>();
  const alarmsOnB: AlarmRecord[] = [];
  socketB.on('indicator', (e: IndicatorEvent) => {
    if (e.scope === 'city') cityOnB.set(e.family, e);
  });
  socketB.on('alarm', (x: AlarmRecord) => alarmsOnB.push(x));

  // Per ward: two traffic counters, two street lights (the second of the first and third wards faulty), one air
  // station; the same devices on the single node.
  const now = Date.now();
  type Dev = { id: string; family: 'traffic' | 'streetLight' | 'airQuality'; ward: number; k: number };
  const devices: Dev[] = [];
  wards.forEach((_, w) => {
    for (let k = 0; k < 2; k++) devices.push({ id: `ca-t-${w}-${k}`, family: 'traffic', ward: w, k });
    for (let k = 0; k < 2; k++) devices.push({ id: `ca-l-${w}-${k}`, family: 'streetLight', ward: w, k });
    devices.push({ id: `ca-a-${w}`, family: 'airQuality', ward: w, k: 0 });
  });
  const payloads = (d: Dev) =>
    Array.from({ length: 5 }, (_, i) => {
      const t0 = now - (5 - i) * 30_000;
      if (d.family === 'traffic')
        return {
          dateObserved: t0,
          intensity: 10 + d.ward * 7 + d.k * 3 + i,
          averageVehicleSpeed: 20 + d.ward + i * 2,
          occupancy: 0.1 * d.k + 0.05 * i,
        };
      if (d.family === 'airQuality') return { dateObserved: t0, pm25: 20 + 9 * d.ward + i, pm10: 40 + d.ward * 5 };
      const faulty = d.k === 1 && (d.ward === 0 || d.ward === 2);
      return {
        dateObserved: t0,
        powerState: 'on',
        illuminanceLevel: d.k ? 0.6 : 1,
        powerConsumption: faulty ? 0 : 80 + d.ward * 10 + i,
        energyConsumed: 100 + d.ward + i * 0.04,
        status: faulty ? 'defectiveLamp' : 'ok',
      };
    });
  await Promise.all(
    devices.map(async (d, i) => {
      const zone = wards[d.ward] as string;
      const [onCluster, onRef] = await Promise.all([
        a.provision(d.family, { id: d.id, zone }),
        ref.provision(d.family, { id: d.id, zone }),
      ]);
      // Devices connect to either node (the edge), whichever node processes their ward.
      const edge = i % 2 ? b : a;
      const [c1, c2] = await Promise.all([edge.connect(d.id, onCluster.token), ref.connect(d.id, onRef.token)]);
      for (const p of payloads(d)) {
        await Promise.all([
          c1.publishAsync(`devices/${d.id}/telemetry`, json(p), { qos: 1 }),
          c2.publishAsync(`devices/${d.id}/telemetry`, json(p), { qos: 1 }),
        ]);
      }
    }),
  );

  // Both nodes processed wards of their own.
  const delivered = (p: TestPlatform) => p.platform.parts.ingest.state().cluster?.consumer.delivered ?? [];
  await a.waitFor(() => toB.every((i) => (delivered(b)[i] ?? 0) > 0), 30_000, 'B processing its wards');
  const aWards = wards.slice(0, 2).map((w) => partitionOf(w, PARTITIONS));
  assert.ok(
    aWards.every((i) => (delivered(a)[i] ?? 0) > 0),
    'A processed its wards',
  );
  assert.ok(
    toB.every((i) => (delivered(a)[i] ?? 0) === 0),
    'A processed none of B’s wards',
  );

  // The same figures on both nodes as on the single node (once everything went through and was shared).
  let last = '';
  await a
    .waitFor(
      async () => {
        const [fr, fa, fb] = await Promise.all([figures(ref), figures(a), figures(b)]);
        last = close(fa, fr, 'A') ?? close(fb, fr, 'B') ?? '';
        return last === '' && Object.keys(fr).length > 0;
      },
      30_000,
      'equal figures',
    )
    .catch((err: Error) => assert.fail(`${err.message}: ${last}`));
  const reference = await figures(ref);
  for (const w of wards) {
    assert.ok(reference[`zone:${w}:traffic`] && reference[`zone:${w}:streetLight`] && reference[`aqi:${w}`], `ward ${w} in the figures`);
  }
  assert.equal((reference['city:city:streetLight'] as { lampsFaulty: number }).lampsFaulty, 2);
  t.diagnostic(`figures equal on both nodes and the single node: ${Object.keys(reference).length} zone, city and index entries`);
  // The last city indicators a socket of node B got: the city's figures over every ward.
  await a.waitFor(
    () => ['traffic', 'streetLight'].every((f) => !close(cityOnB.get(f)?.values, reference[`city:city:${f}`])),
    10_000,
    'city indicators on the socket of node B',
  );

  // Alarms: the two faults, each raised once by the node of its ward; both nodes list both.
  const faults = (p: TestPlatform) => getJson<AlarmRecord[]>(p, '/api/v1/alarms?rule=lamp-fault&state=open');
  const listA = (await a.waitFor(
    async () => ((await faults(a)).length === 2 ? faults(a) : undefined),
    10_000,
    'two faults',
  )) as AlarmRecord[];
  assert.deepEqual(listA.map((x) => x.subject).sort(), ['ca-l-0-1', 'ca-l-2-1']);
  assert.deepEqual((await faults(b)).map((x) => x.id).sort(), listA.map((x) => x.id).sort(), 'node B lists the same alarms');
  const onB = listA.find((x) => x.subject === 'ca-l-2-1') as AlarmRecord;
  const onA = listA.find((x) => x.subject === 'ca-l-0-1') as AlarmRecord;
  // Acknowledged through the node that did not raise it, seen on the other.
  const ack = await a.api(`/api/v1/alarms/${onB.id}/acknowledge`, { method: 'POST', as: 'operator', body: json({ note: 'crew sent' }) });
  assert.equal(ack.status, 200, await ack.clone().text());
  assert.equal((await getJson<AlarmRecord>(b, `/api/v1/alarms/${onB.id}`)).acknowledgedBy, 'test-operator');
  // Cleared through B while A follows the condition, which still holds: A raises a new alarm (forMs 0) at its tick.
  const clear = await b.api(`/api/v1/alarms/${onA.id}/clear`, { method: 'POST', as: 'operator', body: json({ note: 'checked' }) });
  assert.equal(clear.status, 200, await clear.clone().text());
  const again = (await a.waitFor(
    async () => (await faults(b)).find((x) => x.subject === 'ca-l-0-1' && x.id !== onA.id),
    10_000,
    'the condition counted anew by node A',
  )) as AlarmRecord;
  assert.ok(again.id > onA.id);
  // Every announcement reached the socket on B once: two raises, the acknowledgement, the clear, the new raise.
  await a.waitFor(() => alarmsOnB.filter((x) => x.rule === 'lamp-fault').length >= 5, 10_000, 'announcements');
  const raises = alarmsOnB.filter((x) => x.rule === 'lamp-fault' && x.state === 'active');
  assert.deepEqual(
    raises.map((x) => x.id).sort((x, y) => x - y),
    [...listA.map((x) => x.id), again.id].sort((x, y) => x - y),
    'each raise announced once',
  );
  assert.equal(await ref.platform.parts.alarms?.count({ rule: 'lamp-fault' }), 2, 'the single node raised the same two');
});

test('failover between an alarm commit and the queue ack: one alarm row, one announcement', async (t) => {
  const g = group();
  const url = await g.url;
  const opts = clusterOptions({ ...g, url });
  // Node A: a process of its own, started first, so it is the active consumer of every partition.
  const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-data-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const ports = { api: await freePort(), mqtt: await freePort() };
  const procA = await startPlatformProcess(
    {
      CITYPULSE_DATA_DIR: dataDir,
      CITYPULSE_INFLUX_URL: influx.url,
      CITYPULSE_INFLUX_DATABASE: g.database,
      CITYPULSE_STATE_POSTGRES_URL: url,
      CITYPULSE_STATE_QUERY_TIMEOUT_MS: '20000',
      CITYPULSE_INGEST_CLUSTER_AMQP_URLS: rabbit.urls.join(','),
      CITYPULSE_INGEST_CLUSTER_QUEUE_PREFIX: g.prefix,
      CITYPULSE_INGEST_CLUSTER_PARTITIONS: String(PARTITIONS),
      CITYPULSE_ANALYTICS_REDIS_URL: redis.url,
      CITYPULSE_API_REDIS_URL: redis.url,
      CITYPULSE_ALARMS_DEFAULTS: json(ALARMS.defaults),
      CITYPULSE_ALARMS_RULES: json(ALARMS.rules),
      CITYPULSE_API_INITIAL_ADMIN_PASSWORD: 'failover-admin-password',
    },
    ports,
  );
  t.after(async () => {
    procA.child.kill('SIGKILL');
    await procA.exited;
  });
  const b = await startTestPlatform(t, opts, { influx });
  const socketB = await liveSocket(t, b);
  const announced: AlarmRecord[] = [];
  socketB.on('alarm', (x: AlarmRecord) => announced.push(x));

  const zone = b.platform.parts.profile.zones[0]?.id as string;
  const lamp = await b.provision('streetLight', { id: 'ca-failover-lamp', zone });
  // The test holds the over-voltage alarm of the lamp (an open row, not committed): A's raise of it waits on the
  // unique index, so the queue message waits for it, after A committed the fault alarm of the same reading.
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  t.after(() => db.end());
  await db.query('BEGIN');
  await db.query(
    `INSERT INTO alarms (rule, subject, scope, severity, state, message, raised_at) VALUES ('over-voltage', $1, 'device', 'minor', 'active', 'held', now())`,
    [lamp.id],
  );
  const device = await b.connect(lamp.id, lamp.token);
  await device.publishAsync(
    `devices/${lamp.id}/telemetry`,
    json({ powerState: 'on', powerConsumption: 0, status: 'defectiveLamp', voltage: 300 }),
    { qos: 1 },
  );
  const rows = async () => (await b.platform.parts.alarms?.list({ rule: 'lamp-fault', subject: lamp.id, limit: 10 }))?.length ?? 0;
  // A committed the fault alarm (read through B: the shared store) …
  await b.waitFor(async () => (await rows()) === 1, 20_000, 'the fault alarm committed by node A');
  // … and announced it (to the socket on B through Redis); the message is not acknowledged: A waits on the held row.
  await b.waitFor(() => announced.some((x) => x.rule === 'lamp-fault'), 5000, 'the announcement');
  const partition = partitionOf(zone, PARTITIONS);
  assert.equal(b.platform.parts.ingest.state().cluster?.consumer.delivered[partition], 0, 'B has not processed the partition');
  procA.child.kill('SIGKILL');
  await procA.exited;
  // PostgreSQL notices a dead client when it next writes to it: A's waiting insert is ended now, as it would be.
  await db.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO alarms%'`,
  );
  await db.query('ROLLBACK');

  // B takes the partition over and is delivered the message again.
  await b.waitFor(() => (b.platform.parts.ingest.state().cluster?.consumer.delivered[partition] ?? 0) > 0, 30_000, 'redelivery to B');
  await b.waitFor(
    async () => (await b.platform.parts.alarms?.list({ rule: 'over-voltage', subject: lamp.id, limit: 10 }))?.length === 1,
    10_000,
    'the over-voltage alarm raised by B',
  );
  await new Promise((r) => setTimeout(r, 1000)); // any late (wrong) announcement would arrive meanwhile
  assert.equal(await rows(), 1, 'exactly one fault alarm row');
  const all = await db.query<{ n: string }>(`SELECT count(*) AS n FROM alarms WHERE rule = 'lamp-fault' AND subject = $1`, [lamp.id]);
  assert.equal(Number(all.rows[0]?.n), 1);
  assert.equal(announced.filter((x) => x.rule === 'lamp-fault' && x.state === 'active').length, 1, 'announced once');
  assert.equal(announced.filter((x) => x.rule === 'over-voltage' && x.state === 'active').length, 1, 'the other alarm announced by B');
  t.diagnostic(`fault alarm committed by A, A killed before the ack, B redelivered: 1 row, 1 announcement`);
});
