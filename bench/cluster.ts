/**
 * The cluster benchmark (`npm run bench -- cluster`): a whole cluster on this machine (platform/cluster.ts: three
 * RabbitMQ nodes, PostgreSQL, Redis, InfluxDB, three platform nodes as child processes, HAProxy in front) against
 * single-node mode in the same run.
 *
 * - throughput: QoS 1 at 1 and 10 readings a message, `--devices` traffic counters (the bench's device process,
 *   bench/load.ts), first against one platform (in this process, durable log, fsync on), then through HAProxy
 *   against the cluster; acknowledged and stored readings/s, loss, and the CPU time per reading of each component
 *   (every process this bench started, by what it is: platform nodes, RabbitMQ, InfluxDB, HAProxy, PostgreSQL,
 *   Redis, the devices).
 * - failover: `--failover-devices` MQTT.js devices (10 readings a message, `--failover-rate` readings/s in all)
 *   through HAProxy; one platform node SIGKILLed: time until every device it held is acknowledged again on
 *   another node, and every acknowledged reading checked in InfluxDB (lost, duplicated).
 * - idle devices: `--cluster-idle-devices` devices connected through HAProxy and held; resident memory per device
 *   on each node. One HAProxy process holds at most ~8,900 MQTT connections on this machine (20,000 descriptors,
 *   two a connection: docs/cluster-edge.md), so the run is scaled down from 50,000 (see docs/benchmarks.md).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ClusterHandle, startCluster } from '../platform/index.ts';
import { CheckedFleet, checkStored } from '../test/helpers/cluster-fleet.ts';
import { type BenchEnv, runThroughput, startBenchEnv } from './e2e.ts';
import type { BenchDevice, LoadClient } from './load.ts';
import { MANY_DEVICES_BROKER } from './e2e.ts';
import { int, markdownTable, median } from './stats.ts';

export interface ClusterBenchOptions {
  devices: number;
  seconds: number;
  window: number;
  runs: number;
  client: LoadClient;
  idleDevices: number;
  failoverDevices: number;
  failoverRate: number;
  /** The exact command, for the figures table. */
  command: string;
}

export interface ClusterFigure {
  figure: string;
  value: string;
  command: string;
}

const ZONE = 'tho-xuong';
const DATABASE = 'citypulse';
/** Kernel clock ticks a second (/proc/<pid>/stat's unit; 100 on Linux). */
const TICKS = 100;

type Component = 'platform nodes' | 'RabbitMQ' | 'InfluxDB' | 'HAProxy' | 'PostgreSQL' | 'Redis' | 'devices' | 'other';
const COMPONENTS: readonly Component[] = ['platform nodes', 'RabbitMQ', 'InfluxDB', 'HAProxy', 'Redis', 'PostgreSQL', 'devices', 'other'];

/** CPU time (ms) of every process below `root` (this bench), by component. */
function processTree(
  root: number,
  nodePids: readonly (number | undefined)[],
  devicePid: number,
): Map<number, { component: Component; cpuMs: number }> {
  const stats = new Map<number, { ppid: number; comm: string; cpuMs: number }>();
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    const open = text.indexOf('(');
    const close = text.lastIndexOf(')');
    const rest = text.slice(close + 2).split(' ');
    // After the command: state, ppid, … utime is field 14 of the line, stime 15 (rest[11], rest[12]).
    stats.set(pid, {
      comm: text.slice(open + 1, close),
      ppid: Number(rest[1]),
      cpuMs: ((Number(rest[11]) + Number(rest[12])) * 1000) / TICKS,
    });
  }
  const below = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 30; hops++) {
      const s = stats.get(p);
      if (!s) return false;
      if (s.ppid === root) return true;
      p = s.ppid;
    }
    return false;
  };
  const out = new Map<number, { component: Component; cpuMs: number }>();
  for (const [pid, s] of stats) {
    if (!below(pid)) continue;
    let component: Component = 'other';
    if (nodePids.includes(pid)) component = 'platform nodes';
    else if (pid === devicePid) component = 'devices';
    else if (['beam.smp', 'erl_child_setup', 'epmd', 'inet_gethost'].includes(s.comm)) component = 'RabbitMQ';
    else if (s.comm === 'influxd') component = 'InfluxDB';
    else if (s.comm === 'haproxy') component = 'HAProxy';
    else if (s.comm === 'postgres') component = 'PostgreSQL';
    else if (s.comm === 'redis-server') component = 'Redis';
    out.set(pid, { component, cpuMs: s.cpuMs });
  }
  return out;
}

/** CPU ms per component between two process-tree readings (processes started meanwhile count from 0). */
function cpuBetween(
  a: Map<number, { component: Component; cpuMs: number }>,
  b: Map<number, { component: Component; cpuMs: number }>,
): Map<Component, number> {
  const out = new Map<Component, number>();
  for (const [pid, s] of b) out.set(s.component, (out.get(s.component) ?? 0) + s.cpuMs - (a.get(pid)?.cpuMs ?? 0));
  return out;
}

function rssKiB(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

async function influxCount(influxUrl: string): Promise<number> {
  const res = await fetch(`${influxUrl}/query?db=${DATABASE}&q=${encodeURIComponent('SELECT count("intensity") FROM "traffic"')}`);
  const body = (await res.json()) as { results?: { series?: { values: unknown[][] }[] }[] };
  return Number(body.results?.[0]?.series?.[0]?.values[0]?.[1] ?? 0);
}

async function provisionThrough(c: ClusterHandle, ids: string[], concurrency = 8): Promise<BenchDevice[]> {
  const out: BenchDevice[] = [];
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++] as string;
      for (let attempt = 0; ; attempt++) {
        const res = await fetch(`${c.api}/api/v1/devices`, {
          method: 'POST',
          headers: { authorization: `Bearer ${c.adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ id, family: 'traffic', zone: ZONE, location: { lat: 21.27, lon: 106.19 } }),
        });
        const text = await res.text();
        if (res.status === 201) {
          out.push({ id, token: (JSON.parse(text) as { token: string }).token, family: 'traffic' });
          break;
        }
        if (attempt > 5 || res.status < 500) throw new Error(`provisioning ${id}: ${res.status} ${text}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  acked: number;
  ackedPerSecond: number;
  storedPerSecond: number;
  lost: number;
  /** µs of CPU per acknowledged reading, by component. */
  cpuPerReading: Map<string, number>;
}

export async function runClusterBench(o: ClusterBenchOptions): Promise<ClusterFigure[]> {
  const env: BenchEnv = await startBenchEnv(o.client, 'traffic');
  let cluster: ClusterHandle | undefined;
  // A folder of its own in the temp folder: the bench's (mode 700) would keep PostgreSQL's own user out.
  const clusterDir = await mkdtemp(join(tmpdir(), 'citypulse-bench-cluster-'));
  const stopAll = async () => {
    await cluster?.stop();
    await rm(clusterDir, { recursive: true, force: true });
    await env.close();
  };
  process.once('SIGINT', () => void stopAll().finally(() => process.exit(130)));
  const figures: ClusterFigure[] = [];
  const cmd = o.command;
  try {
    // ---- single node, in this process (as `npm run bench -- throughput`), traffic counters ----
    const single = new Map<number, Run[]>();
    for (let r = 0; r < o.runs; r++) {
      for (const rpm of [1, 10]) {
        const run = await runThroughput(
          env,
          { devices: o.devices, seconds: o.seconds, window: o.window, readingsPerMessage: rpm, fsync: true },
          `cl_single_${rpm}_${r}`,
        );
        const perReading = new Map<string, number>([['platform nodes', (run.cpu.platformMs * 1000) / run.ackedReadings]]);
        const res: Run = {
          acked: run.ackedReadings,
          ackedPerSecond: run.ackedPerSecond,
          storedPerSecond: run.storedPerSecond,
          lost: run.loss,
          cpuPerReading: perReading,
        };
        single.set(rpm, [...(single.get(rpm) ?? []), res]);
        console.log(
          `  single node, ${rpm} reading(s)/message: ${int(run.ackedPerSecond)} acknowledged/s, ${int(run.storedPerSecond)} stored/s, lost ${run.loss}, platform ${((run.cpu.platformMs * 1000) / run.ackedReadings).toFixed(1)} µs CPU a reading`,
        );
      }
    }

    // ---- the cluster ----
    const t0 = Date.now();
    cluster = await startCluster({
      dir: clusterDir,
      nodes: 3,
      simulate: false,
      fresh: true,
      config: {
        log: { level: 'warn' },
        influx: { database: DATABASE },
        // The bench's devices all come from 127.0.0.1 (the PROXY header carries it) and send hundreds a second each.
        broker: MANY_DEVICES_BROKER,
        ingest: { maxReadingsPerSecond: 0 },
      },
    });
    const c = cluster;
    const startMs = Date.now() - t0;
    console.log(`  cluster started in ${(startMs / 1000).toFixed(1)} s (HAProxy MQTT ${c.mqtt})`);
    const nodePids = () => c.nodes.map((n) => n.pid);

    const clustered = new Map<number, Run[]>();
    let batch = 0;
    for (let r = 0; r < o.runs; r++) {
      for (const rpm of [1, 10]) {
        const devices = await provisionThrough(
          c,
          Array.from({ length: o.devices }, (_, i) => `cb${++batch}-${i}`),
        );
        const before = await influxCount(c.influxUrl);
        const cpu0 = processTree(process.pid, nodePids(), env.load.pid);
        const { result } = await env.load.throughput({
          mqttUrl: c.mqtt,
          client: env.client,
          devices,
          seconds: o.seconds,
          window: o.window,
          readingsPerMessage: rpm,
          base: Date.now() - 3_600_000,
        });
        const publishSeconds = Number(result.lastAckNs - result.startNs) / 1e9;
        // Stored: until InfluxDB holds every acknowledged reading (or 60 s pass).
        const until = Date.now() + 60_000;
        let stored = (await influxCount(c.influxUrl)) - before;
        while (stored < result.readings && Date.now() < until) {
          await sleep(200);
          stored = (await influxCount(c.influxUrl)) - before;
        }
        const endSeconds = Number(process.hrtime.bigint() - result.startNs) / 1e9;
        const cpu = cpuBetween(cpu0, processTree(process.pid, nodePids(), env.load.pid));
        const perReading = new Map<string, number>();
        for (const [k, ms] of cpu) perReading.set(k, (ms * 1000) / result.readings);
        const run: Run = {
          acked: result.readings,
          ackedPerSecond: result.readings / publishSeconds,
          storedPerSecond: stored / endSeconds,
          lost: Math.max(0, result.readings - stored),
          cpuPerReading: perReading,
        };
        clustered.set(rpm, [...(clustered.get(rpm) ?? []), run]);
        console.log(
          `  cluster through HAProxy, ${rpm} reading(s)/message: ${int(run.ackedPerSecond)} acknowledged/s, ${int(run.storedPerSecond)} stored/s, lost ${run.lost}; ` +
            `CPU µs a reading: ${[...perReading].map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`,
        );
      }
    }
    const med = (runs: Run[] | undefined, f: (r: Run) => number) => median((runs ?? []).map(f));
    const spread = (runs: Run[] | undefined, f: (r: Run) => number) => {
      const v = (runs ?? []).map(f);
      return v.length > 1 ? `${int(median(v))} (${int(Math.min(...v))}–${int(Math.max(...v))})` : int(v[0] ?? Number.NaN);
    };
    for (const rpm of [1, 10]) {
      figures.push({
        figure: `acknowledged readings/s, QoS 1, ${rpm} reading(s)/message, ${o.devices} traffic counters: single node / 3 nodes through HAProxy`,
        value: `${spread(single.get(rpm), (r) => r.ackedPerSecond)} / ${spread(clustered.get(rpm), (r) => r.ackedPerSecond)}`,
        command: cmd,
      });
      figures.push({
        figure: `stored readings/s, same runs: single node / cluster`,
        value: `${spread(single.get(rpm), (r) => r.storedPerSecond)} / ${spread(clustered.get(rpm), (r) => r.storedPerSecond)}`,
        command: cmd,
      });
      const comps = new Set<string>(COMPONENTS);
      for (const r of clustered.get(rpm) ?? []) for (const k of r.cpuPerReading.keys()) comps.add(k);
      figures.push({
        figure: `CPU µs per reading by component, cluster, ${rpm} reading(s)/message (single node's platform: ${med(single.get(rpm), (r) => r.cpuPerReading.get('platform nodes') as number).toFixed(1)})`,
        value: [...comps].map((k) => `${k} ${med(clustered.get(rpm), (r) => r.cpuPerReading.get(k) ?? 0).toFixed(1)}`).join(', '),
        command: cmd,
      });
      const lost = [...(single.get(rpm) ?? []), ...(clustered.get(rpm) ?? [])].reduce((s, r) => s + r.lost, 0);
      const acked = [...(single.get(rpm) ?? []), ...(clustered.get(rpm) ?? [])].reduce((s, r) => s + r.acked, 0);
      figures.push({
        figure: `acknowledged but not stored, ${rpm} reading(s)/message, all runs`,
        value: `${int(lost)} of ${int(acked)}`,
        command: cmd,
      });
    }

    // ---- failover: a platform node killed under load ----
    const fleet = await CheckedFleet.start({
      mqttUrl: c.mqtt,
      apiUrl: c.api,
      adminToken: c.adminToken,
      devices: o.failoverDevices,
      zone: ZONE,
      prefix: 'fo',
    });
    try {
      fleet.load({ messagesPerSecond: o.failoverRate / 10, readingsPerMessage: 10 });
      await sleep(8000);
      const victim = 1;
      const killedAt = Date.now();
      await c.killNode(victim);
      const deadline = killedAt + 120_000;
      let cut = fleet.devices.filter((d) => d.firstCloseAfter(killedAt) !== undefined);
      for (;;) {
        await sleep(100);
        cut = fleet.devices.filter((d) => d.firstCloseAfter(killedAt) !== undefined);
        const waiting = cut.filter((d) => d.firstAckAfter(d.firstCloseAfter(killedAt) as number) === undefined);
        if ((Date.now() - killedAt > 3000 && cut.length && !waiting.length) || Date.now() > deadline) break;
      }
      const times = cut.map((d) => (d.firstAckAfter(d.firstCloseAfter(killedAt) as number) ?? Number.NaN) - killedAt);
      const failoverMs = Math.max(...times);
      await sleep(5000);
      await fleet.stopLoad(60_000);
      const check = await checkStored(fleet, c.influxUrl, DATABASE, 120_000);
      console.log(
        `  failover: node ${victim + 1} killed, ${cut.length} devices cut off, all acknowledged again within ${failoverMs} ms (median ${median(times)} ms); ` +
          `${check.acked} acknowledged, lost ${check.lost}, duplicated ${check.duplicated}`,
      );
      figures.push({
        figure: `failover: platform node SIGKILLed under ${int(o.failoverRate)} readings/s (${o.failoverDevices} MQTT.js devices, 10 a message) → every device it held acknowledged again on another node (target < 30 s)`,
        value: `${(failoverMs / 1000).toFixed(1)} s (${cut.length} devices, median ${(median(times) / 1000).toFixed(1)} s); lost ${check.lost}, duplicated ${check.duplicated} of ${int(check.acked)}`,
        command: cmd,
      });
      await c.startNode(victim);
    } finally {
      await fleet.close();
    }

    // ---- idle devices held across the nodes ----
    if (o.idleDevices > 0) {
      const ids = Array.from({ length: o.idleDevices }, (_, i) => `idle-${i}`);
      const provFrom = Date.now();
      const devices = await provisionThrough(c, ids, 16);
      console.log(`  ${devices.length} idle devices provisioned in ${((Date.now() - provFrom) / 1000).toFixed(0)} s`);
      // Fresh node processes: the heaps of the runs above would hide what the devices cost (V8 frees on its own
      // schedule), so each node is stopped and started again, and measured idle first.
      await Promise.all(
        c.nodes.map(async (_, i) => {
          await c.stopNode(i);
          await c.startNode(i);
        }),
      );
      await sleep(20_000);
      const rss0 = c.nodes.map((n) => rssKiB(n.pid));
      const { result } = await env.load.idle({ mqttUrl: c.mqtt, client: env.client, devices, concurrency: 100, keepaliveSeconds: 600 });
      await sleep(20_000);
      const rss1 = c.nodes.map((n) => rssKiB(n.pid));
      const online = await Promise.all(
        c.nodes.map(async (_, i) => {
          const h = await c.nodeHealth(i);
          return Number((h.report?.broker as { devicesOnline?: number } | undefined)?.devicesOnline ?? Number.NaN);
        }),
      );
      const perNode = c.nodes.map((n, i) => {
        const grow = ((rss1[i] as number) - (rss0[i] as number)) * 1024;
        return `${n.name}: ${int(online[i] as number)} devices, RSS ${int((rss0[i] as number) / 1024)} → ${int((rss1[i] as number) / 1024)} MiB (${int(grow / (online[i] as number))} B a device)`;
      });
      console.log(`  ${result.connected} idle devices connected through HAProxy in ${result.seconds.toFixed(1)} s; ${perNode.join('; ')}`);
      figures.push({
        figure: `idle devices held across 3 nodes through one HAProxy (scaled down from 50,000: ~8,900 connections per HAProxy process here); resident memory per node, fresh and idle → 20 s after the devices connected`,
        value: `${int(result.connected)} connected in ${result.seconds.toFixed(1)} s; ${perNode.join('; ')}`,
        command: cmd,
      });
      await env.load.release();
    }
    console.log(`\nCluster figures (cluster start ${(startMs / 1000).toFixed(0)} s):\n`);
    console.log(
      markdownTable(
        ['Figure', 'Value', 'Command'],
        figures.map((f) => [f.figure, f.value, f.command]),
      ),
    );
    return figures;
  } finally {
    await stopAll();
  }
}
