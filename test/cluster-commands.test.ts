/**
 * Commands, schedules and device presence across three platform nodes on one real PostgreSQL (state.postgresUrl)
 * and one real Redis (api.redisUrl, broker.redisUrl). Node A is a child process (so that it can be SIGKILLed),
 * nodes B and C run in the test process; MQTT.js devices, a socket.io screen.
 *  - A street light connected to node A, a screen on node B, a command issued through node C's API: delivered to
 *    the light by node A, acknowledged by it; the command and its batch are acknowledged on C, and B's screen sees
 *    the acknowledgement. The light then connects to node B instead: presence follows it, and a new command from C
 *    reaches it there.
 *  - A schedule due in a few seconds fires once in the cluster (one batch, one command), run by node A, the
 *    holder of the schedules' lock. Node A is then SIGKILLed: the light still connected to it is offline for
 *    node C's API and B's screen hears it go offline, within a bound; node B or C takes the lock and the
 *    schedule's next edge fires once, from there.
 *
 * Run: node --import tsx --test test/cluster-commands.test.ts (Debian postgresql-15, redis-server, influxdb)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { createClient } from 'redis';
import { io as ioClient, type Socket } from 'socket.io-client';
import type { BatchSummary } from '../commands/index.ts';
import { formatTimeOfDay } from '../commands/index.ts';
import type { CommandRecord, StatusEvent } from '../core/bus.ts';
import { PRESENCE_KEY } from '../broker/cluster-presence.ts';
import { startRedis } from '../platform/engines/redis.ts';
import { startTestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { freshDatabase, startTestPostgres } from './helpers/postgres.ts';
import { freePort, type PlatformProcess, startPlatformProcess } from './helpers/process.ts';
import { fileScope, onCleanup } from './helpers/scope.ts';

const scope = fileScope();
const PRESENCE_TTL_MS = 2000;
const LEADER_RETRY_MS = 500;
const json = (v: unknown) => JSON.stringify(v);

interface Cluster {
  a: PlatformProcess;
  b: TestPlatform;
  c: TestPlatform;
  token: string;
  redis: ReturnType<typeof createClient>;
}

let cluster: Promise<Cluster> | undefined;
function setup(): Promise<Cluster> {
  cluster ??= (async () => {
    const redisDir = await mkdtemp(join(tmpdir(), 'citypulse-redis-'));
    const [pg, redis, influx] = await Promise.all([startTestPostgres(scope), startRedis({ dir: redisDir }), startTestInflux(scope)]);
    onCleanup(scope, async () => {
      await redis.stop();
      await rm(redisDir, { recursive: true, force: true });
    });
    const url = await freshDatabase(pg);
    const token = randomBytes(18).toString('base64url');

    // Node A first: it takes the schedules' lock.
    const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-node-a-'));
    const [api, mqttPort] = [await freePort(), await freePort()];
    const a = await startPlatformProcess(
      {
        CITYPULSE_DATA_DIR: dataDir,
        CITYPULSE_STATE_POSTGRES_URL: url,
        CITYPULSE_API_REDIS_URL: redis.url,
        CITYPULSE_BROKER_REDIS_URL: redis.url,
        CITYPULSE_BROKER_PRESENCE_TTL_MS: String(PRESENCE_TTL_MS),
        CITYPULSE_API_ADMIN_TOKEN: token,
        CITYPULSE_INFLUX_URL: influx.url,
        CITYPULSE_INFLUX_DATABASE: 'node_a',
        CITYPULSE_ALARMS_ENABLED: 'false',
        CITYPULSE_COMMANDS_LEADER_RETRY_MS: String(LEADER_RETRY_MS),
        CITYPULSE_COMMANDS_SCHEDULE_TICK_MS: '200',
        CITYPULSE_INFLUX_DOWNSAMPLE_ENABLED: 'false',
      },
      { api, mqtt: mqttPort },
    );
    onCleanup(scope, async () => {
      if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
      await a.exited;
      await rm(dataDir, { recursive: true, force: true });
    });
    const overrides = {
      state: { postgresUrl: url },
      api: { redisUrl: redis.url, adminToken: token },
      broker: { redisUrl: redis.url, presenceTtlMs: PRESENCE_TTL_MS },
      commands: { leaderRetryMs: LEADER_RETRY_MS, scheduleTickMs: 200 },
      alarms: { enabled: false },
      influx: { downsample: { enabled: false } },
    };
    const b = await startTestPlatform(scope, overrides, { influx });
    const c = await startTestPlatform(scope, overrides, { influx });
    const r = createClient({ url: redis.url });
    r.on('error', () => undefined);
    await r.connect();
    onCleanup(scope, () => r.destroy());
    return { a, b, c, token, redis: r };
  })();
  return cluster;
}

/** A street light on `mqttUrl` that carries out every command (answers ok) and counts them. */
async function light(t: { after(fn: () => unknown): void }, mqttUrl: string, id: string, token: string) {
  const received: string[] = [];
  const client: MqttClient = await mqtt.connectAsync(mqttUrl, {
    clientId: id,
    username: id,
    password: token,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });
  onCleanup(t, () => client.endAsync(true).catch(() => undefined));
  client.on('message', (_topic, payload) => {
    const cmd = JSON.parse(payload.toString()) as { id: string };
    received.push(cmd.id);
    client.publish(`devices/${id}/acks`, json({ id: cmd.id, status: 'ok', at: new Date().toISOString() }), { qos: 1 });
  });
  await client.subscribeAsync(`devices/${id}/commands`, { qos: 1 });
  return { client, received };
}

async function screen(t: { after(fn: () => unknown): void }, p: TestPlatform) {
  const socket: Socket = ioClient(p.addr.api, { transports: ['websocket'], auth: { token: p.platform.adminToken }, reconnection: false });
  onCleanup(t, () => socket.close());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  const commands: CommandRecord[] = [];
  const statuses: (StatusEvent & { seenAt: number })[] = [];
  socket.on('command', (c: CommandRecord) => commands.push(c));
  socket.on('status', (s: StatusEvent) => statuses.push({ ...s, seenAt: Date.now() }));
  const ack = (await socket.timeout(5000).emitWithAck('subscribe', {})) as { ok: boolean };
  assert.equal(ack.ok, true);
  // The node announces its watched rooms to the others within 20 ms (dashboard-api/live.ts); room to spare.
  await new Promise((r) => setTimeout(r, 500));
  return { commands, statuses };
}

async function online(p: TestPlatform, id: string): Promise<boolean> {
  const res = await p.api(`/api/v1/devices/${id}`, { admin: true });
  assert.equal(res.status, 200);
  return ((await res.json()) as { online: boolean }).online;
}

async function command(p: TestPlatform, id: string, action: Record<string, unknown>) {
  const res = await p.api('/api/v1/commands', { method: 'POST', admin: true, body: json({ target: { devices: [id] }, action }) });
  assert.equal(res.status, 202, await res.clone().text());
  return (await res.json()) as { batch: string; commands: CommandRecord[] };
}

async function stateOf(p: TestPlatform, id: string): Promise<string> {
  return ((await (await p.api(`/api/v1/commands/${id}`, { admin: true })).json()) as CommandRecord).state;
}

async function batchesOf(p: TestPlatform, q: Record<string, string>): Promise<BatchSummary[]> {
  const res = await p.api(`/api/v1/commands/batches?${new URLSearchParams(q)}`, { admin: true });
  assert.equal(res.status, 200);
  return (await res.json()) as BatchSummary[];
}

const holder = async (redis: Cluster['redis'], id: string) => {
  const v = await redis.hGet(PRESENCE_KEY, id);
  return v ? (JSON.parse(v) as { node: string }).node : undefined;
};

test('a command issued on node C reaches a light on node A, its acknowledgement reaches C and a screen on B; then the light moves to B', async (t) => {
  const { a, b, c, redis } = await setup();
  const dev = await c.provision('streetLight');
  const watcher = await screen(t, b);

  const onA = await light(t, a.mqtt, dev.id, dev.token);
  await c.waitFor(() => online(c, dev.id), 10_000, 'the light online for node C');
  assert.equal(await online(b, dev.id), true, 'and for node B');
  const nodeA = await holder(redis, dev.id);
  assert.ok(nodeA);

  const sentAt = Date.now();
  const first = await command(c, dev.id, { powerState: 'off' });
  const [cmd] = first.commands as [CommandRecord];
  await c.waitFor(async () => (await stateOf(c, cmd.id)) === 'acknowledged', 10_000, 'acknowledged on C');
  const roundTrip = Date.now() - sentAt;
  assert.deepEqual(onA.received, [cmd.id], 'delivered once, by node A');
  const [batch] = await batchesOf(c, { device: dev.id });
  assert.equal(batch?.batch, first.batch);
  assert.equal(batch?.states.acknowledged, 1);
  assert.equal(batch?.reached, 1);
  await b.waitFor(
    () => watcher.commands.some((x) => x.id === cmd.id && x.state === 'acknowledged'),
    5000,
    'the screen on B sees it acknowledged',
  );
  // Created (C), delivered and acknowledged (A): each state once on the screen, whichever node changed it (the
  // creation and the delivery come through Redis from two nodes, in either order).
  assert.deepEqual(
    watcher.commands
      .filter((x) => x.id === cmd.id)
      .map((x) => x.state)
      .sort(),
    ['acknowledged', 'delivered', 'pending'],
  );
  t.diagnostic(`command issued on C → acknowledged, read on C: ${roundTrip} ms`);

  // The light moves to node B: presence follows, and C's next command reaches it there.
  await onA.client.endAsync();
  const onB = await light(t, b.addr.mqtt, dev.id, dev.token);
  await c.waitFor(
    async () => (await holder(redis, dev.id)) !== undefined && (await holder(redis, dev.id)) !== nodeA,
    5000,
    'presence on B',
  );
  assert.equal(await online(c, dev.id), true);
  const second = await command(c, dev.id, { powerState: 'on', illuminanceLevel: 0.5 });
  const id2 = (second.commands[0] as CommandRecord).id;
  await c.waitFor(async () => (await stateOf(c, id2)) === 'acknowledged', 10_000, 'acknowledged through B');
  assert.deepEqual(onB.received, [id2]);
  assert.deepEqual(onA.received, [cmd.id], 'nothing more through A');
  await onB.client.endAsync();
  await c.waitFor(async () => !(await online(c, dev.id)), 5000, 'offline once it left');
});

test('a schedule fires once in the cluster; node A killed: its lights go offline, another node runs the next edge once', async (t) => {
  const { a, b, c, redis } = await setup();
  const tz = c.platform.parts.profile.timezone;
  assert.equal(b.platform.parts.commands.isScheduleLeader(), false, 'node A holds the lock, not B');
  assert.equal(c.platform.parts.commands.isScheduleLeader(), false, 'nor C');

  // A light that stays on node A, and one that is offline everywhere (its commands wait, pending).
  const stays = await c.provision('streetLight');
  const away = await c.provision('streetLight');
  const onA = await light(t, a.mqtt, stays.id, stays.token);
  await c.waitFor(() => online(c, stays.id), 10_000, 'the light on A online');
  const watcher = await screen(t, b);

  const now = Date.now();
  const res = await c.api('/api/v1/schedules', {
    method: 'POST',
    admin: true,
    body: json({
      name: 'cluster once',
      target: { devices: [stays.id, away.id] },
      from: formatTimeOfDay(now + 4000, tz),
      to: formatTimeOfDay(now + 20_000, tz),
      action: { powerState: 'on' },
      endAction: { powerState: 'off' },
    }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const schedule = (await res.json()) as { id: string };
  const by = `schedule:${schedule.id}`;

  // The `from` edge: one batch of two commands, created by node A (the only one running schedules).
  await c.waitFor(async () => (await batchesOf(c, { by })).length >= 1, 15_000, 'the from edge');
  await new Promise((r) => setTimeout(r, 1500)); // more ticks of every node: still one
  const fromEdge = await batchesOf(c, { by });
  assert.equal(fromEdge.length, 1, 'the from edge fired once');
  assert.equal(fromEdge[0]?.size, 2);
  await c.waitFor(() => onA.received.length === 1, 5000, 'the light on A got its command');
  assert.equal(fromEdge[0]?.states.pending, 1, 'the offline light’s command waits');
  // A light offline everywhere: its command waits, then expires once (whichever node's expiry got it first).
  const short = await c.api('/api/v1/commands', {
    method: 'POST',
    admin: true,
    body: json({ target: { devices: [away.id] }, action: { powerState: 'off' }, ttlMs: 1000 }),
  });
  assert.equal(short.status, 202);
  const shortId = ((await short.json()) as { commands: CommandRecord[] }).commands[0]?.id as string;
  await c.waitFor(async () => (await stateOf(c, shortId)) === 'expired', 10_000, 'the command to the offline light expired');
  await b.waitFor(() => watcher.commands.some((x) => x.id === shortId && x.state === 'expired'), 5000, 'the screen hears it');
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(watcher.commands.filter((x) => x.id === shortId && x.state === 'expired').length, 1, 'expired once in the cluster');

  // Node A dies without a word, before the `to` edge.
  assert.equal((await batchesOf(c, { by })).length, 1, 'the to edge is not due yet');
  const killedAt = Date.now();
  a.child.kill('SIGKILL');
  await a.exited;
  await c.waitFor(async () => !(await online(c, stays.id)), 4 * PRESENCE_TTL_MS + 5000, 'the light of the dead node offline');
  const offlineAfter = Date.now() - killedAt;
  await b.waitFor(() => watcher.statuses.some((s) => s.device === stays.id && s.state === 'offline'), 5000, 'the screen hears it');
  const heard = watcher.statuses.filter((s) => s.device === stays.id && s.state === 'offline');
  assert.equal(heard.length, 1, 'reported offline once, by one node');
  assert.equal(await holder(redis, stays.id), undefined, 'its presence entry removed');
  t.diagnostic(
    `node A SIGKILLed: its light offline for C's API after ${offlineAfter} ms, on B's screen after ${(heard[0] as { seenAt: number }).seenAt - killedAt} ms (presence TTL ${PRESENCE_TTL_MS} ms)`,
  );

  // Another node takes the lock and runs the `to` edge, once.
  await c.waitFor(
    () => b.platform.parts.commands.isScheduleLeader() || c.platform.parts.commands.isScheduleLeader(),
    10_000,
    'a new leader',
  );
  const tookOverAfter = Date.now() - killedAt;
  assert.ok(!(b.platform.parts.commands.isScheduleLeader() && c.platform.parts.commands.isScheduleLeader()), 'one leader');
  await c.waitFor(async () => (await batchesOf(c, { by })).length >= 2, 20_000, 'the to edge');
  await new Promise((r) => setTimeout(r, 1500));
  const both = await batchesOf(c, { by });
  assert.equal(both.length, 2, 'the to edge fired once');
  assert.deepEqual(both[0]?.action, { powerState: 'off' });
  assert.equal(both[0]?.size, 2);
  t.diagnostic(`schedule lock taken over ${tookOverAfter} ms after the kill`);
});
