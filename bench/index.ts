/**
 * citypulse end-to-end benchmark: MQTT devices → broker → ingest (durable log) → InfluxDB and the live socket.io API.
 *
 *   npm run bench [-- all|throughput|families|latency|fanout|connections|storm|drain|cluster] [--devices=50] [--seconds=6]
 *                 [--runs=3] [--window=20] [--rate=5000] [--latency-seconds=10] [--samples=20] [--warmup=3]
 *                 [--drain-readings=200000] [--idle-devices=15000] [--connect-concurrency=500] [--settle-seconds=90]
 *                 [--storm-devices=10000] [--storm-backlog=60] [--storm-sockets=0] [--sockets=200] [--client=lean|mqttjs]
 *                 [--family=mix|air|traffic|light] [--cluster-idle-devices=6000] [--failover-devices=100]
 *                 [--failover-rate=3000]
 *
 * Everything runs on this machine over loopback: a private InfluxDB in a temp folder, a fresh platform per run
 * on ephemeral ports, and the devices in a child process. Prints each run, the medians, and a markdown table
 * for docs/benchmarks.md. Exits 0 when every run finished (loss is reported, not a failure), 1 on an error.
 *
 * Every load's devices (and the bare-Aedes baseline's subscriber) use the lean MQTT client (bench/lean-client.ts:
 * MQTT.js' CPU on the same 2 cores would be the platform's share, and in latency and fan-out the measuring
 * socket shares the devices' event loop); --client=mqttjs runs them on MQTT.js. The devices report the city's
 * own mix of families (bench/families.ts: air stations, traffic counters and street lights as the city profile's
 * fleet reports them), or one family alone with --family=air|traffic|light; the idle devices of `connections`
 * send nothing and are traffic counters.
 * - throughput: QoS 1 at 1 and 10 readings/message, each run once with durability.fsync on (the default) and
 *   once off, alternating, so both settings see the same machine conditions.
 * - families: the throughput run (1 reading/message, fsync on) with each family alone and with the mix, the
 *   order rotating from run to run; the platform's CPU per reading per family (all threads, main thread, store
 *   thread) and each family's ratio to a traffic reading.
 * - latency: publish → socket.io and publish → queryable at a steady rate (platform defaults).
 *   Beside each, a bare Aedes broker relaying the same load to one QoS 1 subscriber (the in-run baseline).
 * - fanout: the latency run with 200 dashboard sockets subscribed to everything (batched, and once one event per reading).
 * - connections: idle devices held by one platform and the resident memory per device, after --settle-seconds
 *   idle (no forced GC: V8's own idle memory reducer), with the peak while they connect.
 * - storm: idle devices cut at once, reconnecting at once and flushing a backlog; cut → all stored, loss.
 * - drain: InfluxDB stopped, a fixed number of acknowledged readings published, InfluxDB restarted, time until
 *   the durable log is empty.
 * - cluster (not part of `all`): a whole cluster through HAProxy against one node in the same run: throughput,
 *   CPU per reading per component, failover of a killed node, idle devices held (bench/cluster.ts).
 *
 * Every run also prints the platform's event-loop delay (p50/p99/max). Node flags are printed with the machine
 * (NODE_OPTIONS=--max-semi-space-size=64 npm run bench -- throughput, say: see docs/benchmarks.md). Diagnostics:
 * node --cpu-prof … then bench/cpu-profile.ts; CITYPULSE_BENCH_ALLOC_PROFILE=<run name> for allocations.
 */
import { closeSync, fdatasyncSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  runBaseline,
  runConnections,
  runDrain,
  runFanout,
  runLatency,
  runStorm,
  RATE_LIMIT_OFF,
  runThroughput,
  startBenchEnv,
  type BaselineRun,
  type BenchEnv,
  type ConnectionsRun,
  type CpuShare,
  type DrainRun,
  type FanoutRun,
  type LatencyRun,
  type StormRun,
  type ThroughputRun,
} from './e2e.ts';
import { describeFamilies, describeShares, deviceFamilies, LOADS, type Load } from './families.ts';
import type { LoadClient } from './load.ts';
import { somaxconn } from '../broker/index.ts';
import { runClusterBench } from './cluster.ts';
import { int, markdownTable, median, ms, percentileSorted, textTable } from './stats.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const COMMANDS = ['all', 'throughput', 'families', 'latency', 'connections', 'storm', 'fanout', 'drain', 'cluster'] as const;
type Command = (typeof COMMANDS)[number];

/** A mistake on the command line: the message is enough, no stack trace. */
class UsageError extends Error {}

/** Option name → [default, min, max]. Upper bounds keep the load loopback-sized and the run short, whatever is typed. */
const OPTIONS = {
  devices: [50, 1, 1000],
  seconds: [6, 1, 60],
  runs: [3, 1, 9],
  window: [20, 1, 1000],
  rate: [5000, 1, 50_000],
  'latency-seconds': [10, 1, 60],
  samples: [20, 1, 200],
  warmup: [3, 0, 30],
  'drain-readings': [200_000, 1000, 2_000_000],
  'idle-devices': [15_000, 1, 18_000],
  'connect-concurrency': [500, 1, 5000],
  // V8's idle memory reducer compacts the heap after a connection burst on its own schedule: within 40 s in
  // one session's runs, not yet at 40 s in 3 of 4 runs of the next (heap not compacted); 90 s leaves it room.
  'settle-seconds': [90, 0, 600],
  'storm-devices': [10_000, 1, 18_000],
  'storm-backlog': [60, 1, 1000],
  'storm-sockets': [0, 0, 1000],
  sockets: [200, 1, 1000],
  // cluster: one HAProxy process holds ~8,900 MQTT connections on this machine (docs/cluster-edge.md).
  'cluster-idle-devices': [6000, 0, 8800],
  'failover-devices': [100, 1, 1000],
  'failover-rate': [3000, 100, 20_000],
} as const;
type OptionName = keyof typeof OPTIONS;

/** The options each sub-command's figures depend on (for the exact command in the figures table). */
const USES: Record<Exclude<Command, 'all'>, OptionName[]> = {
  throughput: ['devices', 'seconds', 'runs', 'window', 'warmup'],
  families: ['devices', 'seconds', 'runs', 'window', 'warmup'],
  latency: ['devices', 'rate', 'latency-seconds', 'samples', 'runs', 'warmup'],
  connections: ['idle-devices', 'connect-concurrency', 'settle-seconds', 'runs'],
  storm: ['storm-devices', 'storm-backlog', 'storm-sockets', 'connect-concurrency', 'runs'],
  fanout: ['devices', 'rate', 'sockets', 'latency-seconds', 'runs', 'warmup'],
  drain: ['devices', 'drain-readings', 'window', 'runs', 'warmup'],
  cluster: ['devices', 'seconds', 'window', 'runs', 'cluster-idle-devices', 'failover-devices', 'failover-rate'],
};

interface Options {
  command: Command;
  devices: number;
  seconds: number;
  runs: number;
  window: number;
  rate: number;
  latencySeconds: number;
  samples: number;
  /** Seconds of a discarded run before each phase (0 = none). */
  warmup: number;
  /** Readings published during the outage of each drain run. */
  drainReadings: number;
  idleDevices: number;
  connectConcurrency: number;
  /** Idle seconds before each memory reading of the connections phase. */
  settleSeconds: number;
  stormDevices: number;
  stormBacklog: number;
  /** Batched dashboard sockets (subscribed to everything) open during the storm. */
  stormSockets: number;
  sockets: number;
  /** The devices' MQTT client (every load, and the baseline's subscriber). */
  client: LoadClient;
  /** What the devices report: the city's mix of families or one family (`families` runs each in turn). */
  family: Load;
  /** Every option by its command-line name, to print the exact command of a figure. */
  values: Record<OptionName, number>;
}

const CLIENTS: readonly LoadClient[] = ['lean', 'mqttjs'];
const CLIENT_NAMES: Record<LoadClient, string> = { lean: 'the lean bench client', mqttjs: 'MQTT.js' };

function parseOptions(argv: string[]): Options {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...Object.fromEntries(Object.entries(OPTIONS).map(([name, [def]]) => [name, { type: 'string' as const, default: String(def) }])),
      client: { type: 'string' as const, default: 'lean' },
      family: { type: 'string' as const, default: 'mix' },
    },
  });
  const client = values.client as LoadClient;
  if (!CLIENTS.includes(client)) throw new UsageError(`--client must be one of ${CLIENTS.join(', ')}`);
  const family = values.family as Load;
  if (!LOADS.includes(family)) throw new UsageError(`--family must be one of ${LOADS.join(', ')}`);
  const command = (positionals[0] ?? 'all') as Command;
  if (!COMMANDS.includes(command) || positionals.length > 1)
    throw new UsageError(`usage: bench/index.ts [${COMMANDS.join('|')}] [--option=value ...]`);
  const v = {} as Record<OptionName, number>;
  for (const [name, [, min, max]] of Object.entries(OPTIONS) as [OptionName, readonly [number, number, number]][]) {
    const n = Number((values as Record<string, string>)[name]);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}`);
    v[name] = n;
  }
  return {
    command,
    devices: v.devices,
    seconds: v.seconds,
    runs: v.runs,
    window: v.window,
    rate: v.rate,
    latencySeconds: v['latency-seconds'],
    samples: v.samples,
    warmup: v.warmup,
    drainReadings: v['drain-readings'],
    idleDevices: v['idle-devices'],
    connectConcurrency: v['connect-concurrency'],
    settleSeconds: v['settle-seconds'],
    stormDevices: v['storm-devices'],
    stormBacklog: v['storm-backlog'],
    stormSockets: v['storm-sockets'],
    sockets: v.sockets,
    client,
    family,
    values: v,
  };
}

/** The command that reproduces a sub-command's figures: options that differ from their defaults are spelled out. */
function commandFor(o: Options, sub: Exclude<Command, 'all'>): string {
  const extra = USES[sub].filter((n) => o.values[n] !== OPTIONS[n][0]).map((n) => ` --${n}=${o.values[n]}`);
  if (o.client !== 'lean') extra.push(` --client=${o.client}`); // every sub-command's devices use it
  if (o.family !== 'mix' && sub !== 'families' && sub !== 'connections') extra.push(` --family=${o.family}`);
  return `\`npm run bench -- ${sub}${extra.join('')}\``;
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(REPO, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

/** statfs magic numbers of the file systems a temp folder is likely on. */
const FS_TYPES = new Map<number, string>([
  [0xef53, 'ext4'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x01021994, 'tmpfs (fdatasync does nothing)'],
  [0x794c7630, 'overlayfs'],
  [0x2fc12fc1, 'zfs'],
]);

/**
 * File system of `dir` and the time of one 4 KiB write + fdatasync there (what one group commit of the durable
 * log costs at least): the fsync on/off ratio depends on it more than on anything in the platform.
 */
function diskInfo(dir: string): string {
  let type = 'unknown';
  try {
    const t = statfsSync(dir).type;
    type = FS_TYPES.get(t) ?? `statfs type 0x${t.toString(16)}`;
  } catch {
    /* not Linux */
  }
  const file = join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const times: number[] = [];
  try {
    const block = Buffer.alloc(4096, 1);
    for (let i = 0; i < 100; i++) {
      const t0 = process.hrtime.bigint();
      writeSync(fd, block);
      fdatasyncSync(fd);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  times.sort((a, b) => a - b);
  return `${type} at ${dir}; 4 KiB append + fdatasync p50 ${ms(percentileSorted(times, 50))} ms, p99 ${ms(percentileSorted(times, 99))} ms`;
}

function printMachine(env: BenchEnv): { cpu: string; memory: string; node: string; disk: string } {
  const cpus = os.cpus();
  const info = {
    cpu: `${cpus[0]?.model.trim() ?? 'unknown'} × ${cpus.length}`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    // Flags change the figures (a larger V8 young generation, say: see docs/benchmarks.md), so they are printed.
    node: `${process.version}, flags: ${[...process.execArgv, process.env.NODE_OPTIONS ?? ''].filter((f) => f && f !== 'tsx' && f !== '--import').join(' ') || 'none'}`,
    packages: ['aedes', 'mqtt', 'influx', 'socket.io', 'socket.io-client'].map((p) => `${p} ${packageVersion(p)}`).join(', '),
    influxdb: `InfluxDB ${env.influxVersion} (private instance, ${env.influx.url})`,
    disk: diskInfo(env.dir),
  };
  console.log('Machine');
  for (const [k, v] of Object.entries(info)) console.log(`  ${k.padEnd(9)} ${v}`);
  return info;
}

/**
 * Each run's row plus a median row per group; `cells` turns a run into its row. One group with an empty label
 * gives the plain "run 1 … median" table.
 */
function runsTable<R>(
  header: string[],
  groups: [label: string, runs: R[]][],
  cells: (r: R) => number[],
  format: ((n: number) => string)[],
): string {
  const fmt = (v: number, j: number) => (format[j] as (n: number) => string)(v);
  const rows: string[][] = [];
  for (const [label, runs] of groups) {
    const prefix = label ? `${label}, ` : '';
    rows.push(...runs.map((r, i) => [`${prefix}run ${i + 1}`, ...cells(r).map(fmt)]));
    const med = header.slice(1).map((_, j) => median(runs.map((r) => cells(r)[j] as number)));
    rows.push([`${prefix}median`, ...med.map(fmt)]);
  }
  return textTable(header, rows);
}

// CPU while the devices ran, in % of one core: the platform process, the device process and influxd share the cores.
// The platform's share is split out for its main thread and its store worker thread (the rest: GC and libuv helpers).
const CPU_HEADER = ['cpu% platform', 'main thread', 'store thread', 'devices', 'influxd', 'others', 'idle'];
const cpuCells = (c: CpuShare) => [c.platform, c.mainThread, c.storeThread, c.devices, c.influxd, c.others, c.idle];
const CPU_FORMAT = CPU_HEADER.map(() => (n: number) => (Number.isNaN(n) ? '–' : int(n)));

/** Prints the evidence for any loss or platform warning: the writer's counters and the first log lines. */
function explainLoss(runs: (ThroughputRun | LatencyRun)[], label = 'run'): void {
  for (const [i, r] of runs.entries()) {
    if (r.loss === 0 && !r.warnings.length) continue;
    const w =
      'writer' in r
        ? ` writer stored=${r.writer.stored} dropped=${r.writer.dropped} rejected=${r.writer.rejected} deadLetters=${r.writer.deadLetters} flushed=${r.flushed}` +
          (r.writer.lastDeadLetter ? `; newest dead letter ${r.writer.lastDeadLetter.slice(0, 200)}` : '')
        : '';
    console.log(`  ! ${label === 'run' ? `run ${i + 1}` : label}: loss ${r.loss}, platform warnings ${r.warnings.length}.${w}`);
    for (const line of r.warnings.slice(0, 3)) console.log(`    ${line.slice(0, 300)}`);
  }
}

/** Other processes above this share of one core during a run make its figures suspect (a shared VM). */
const DISTURBED_PERCENT = 25;

/** Names the runs during which other processes on the machine used much CPU: their rates are not the platform's. */
function flagDisturbed<R>(runs: R[], cpu: (r: R) => CpuShare, label = ''): void {
  for (const [i, r] of runs.entries()) {
    const others = cpu(r).others;
    if (others > DISTURBED_PERCENT)
      console.log(
        `  ~ ${label ? `${label}, ` : ''}run ${i + 1}: other processes used ${int(others)} % of a core meanwhile (a disturbed run)`,
      );
  }
}

/** "median (min–max)": on a shared VM the spread between runs is part of the result. */
function spread(values: number[], f: (n: number) => string = int): string {
  return values.length > 1 ? `${f(median(values))} (${f(Math.min(...values))}–${f(Math.max(...values))})` : f(median(values));
}

const ratio = (n: number) => `${n.toFixed(2)}×`;
const seconds = (n: number) => `${n.toFixed(1)} s`;

interface Figure {
  figure: string;
  value: string;
  command: string;
}

const fsyncLabel = (on: boolean) => (on ? 'fsync on' : 'fsync off');

/** What `count` devices of a load report, for the titles: "the city's mix (3 air, 29 traffic, 18 light)". */
function loadLabel(load: Load, count: number): string {
  const split = describeFamilies(deviceFamilies(load, count));
  return load === 'mix' ? `the city's mix of families (${split})` : `${split} devices only`;
}

async function throughputPhase(env: BenchEnv, o: Options, readingsPerMessage: number): Promise<Figure[]> {
  const title = `Throughput, QoS 1 end to end, ${readingsPerMessage} reading${readingsPerMessage > 1 ? 's' : ''}/message`;
  console.log(
    `\n${title}: ${o.devices} devices (${loadLabel(o.family, o.devices)}), ${o.window} unacked publishes per device, ${o.seconds} s, ${o.runs} runs` +
      ' each with durability.fsync on (default) and off, alternating',
  );
  const opts = { devices: o.devices, window: o.window, readingsPerMessage };
  if (o.warmup) {
    // The first seconds in a fresh process run unoptimised code (JIT): measured once, shown, not counted.
    const w = await runThroughput(env, { ...opts, seconds: o.warmup, fsync: true }, `tp${readingsPerMessage}_warmup`);
    console.log(
      `  warm-up ${o.warmup} s, fsync on (not counted): ${int(w.ackedPerSecond)} acked readings/s, ${int(w.ackedReadings)} acked, ${int(w.storedReadings)} stored, loss ${int(w.loss)}`,
    );
    explainLoss([w], 'warm-up');
  }
  const runs: Record<'on' | 'off', ThroughputRun[]> = { on: [], off: [] };
  const base: BaselineRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    // Alternating order (on-off, off-on, …): a machine getting busier or quieter does not favour one setting.
    // The bare broker runs between them, so all three see the same machine conditions.
    for (const what of i % 2 === 0 ? (['on', 'base', 'off'] as const) : (['off', 'base', 'on'] as const)) {
      if (what === 'base') {
        base.push(await runBaseline(env, { ...opts, seconds: o.seconds }));
        continue;
      }
      const fsync = what === 'on';
      const r = await runThroughput(
        env,
        { ...opts, seconds: o.seconds, fsync },
        `tp${readingsPerMessage}_${fsync ? 'on' : 'off'}_${i + 1}`,
      );
      runs[what].push(r);
    }
    const last = (k: 'on' | 'off') => int((runs[k][i] as ThroughputRun).ackedPerSecond);
    process.stdout.write(
      `  run ${i + 1}/${o.runs} done (acked/s: fsync on ${last('on')}, off ${last('off')}, bare aedes ${int((base[i] as BaselineRun).ackedPerSecond)})\n`,
    );
  }
  console.log(
    runsTable(
      ['', 'acked', 'stored', 'loss', 'publish s', 'acked/s', 'e2e s', 'stored/s', 'platform CPU µs/reading', ...CPU_HEADER],
      [
        [fsyncLabel(true), runs.on],
        [fsyncLabel(false), runs.off],
      ],
      (r) => [
        r.ackedReadings,
        r.storedReadings,
        r.loss,
        r.publishSeconds,
        r.ackedPerSecond,
        r.endToEndSeconds,
        r.storedPerSecond,
        (1000 * r.cpu.platformMs) / Math.max(1, r.ackedReadings),
        ...cpuCells(r.cpu),
      ],
      [int, int, int, (n) => n.toFixed(2), int, (n) => n.toFixed(2), int, (n) => n.toFixed(1), ...CPU_FORMAT],
    ),
  );
  console.log(
    `  Baseline: a bare Aedes ${packageVersion('aedes')} broker (defaults, no hooks, in the bench process) relaying every QoS 1 publish to one QoS 1 subscriber (helper process), same devices, client (${CLIENT_NAMES[o.client]}) and payloads`,
  );
  console.log(
    runsTable(
      ['', 'acked', 'relayed msgs', 'lost msgs', 'publish s', 'acked/s', ...CPU_HEADER],
      [['bare aedes', base]],
      (r) => [r.ackedReadings, r.relayedMessages, r.loss, r.publishSeconds, r.ackedPerSecond, ...cpuCells(r.cpu)],
      [int, int, int, (n) => n.toFixed(2), int, ...CPU_FORMAT],
    ),
  );
  // Run by run (back to back, same conditions): platform stored/s over the bare broker's acked/s.
  const vsBase = runs.on.map((r, i) => r.storedPerSecond / (base[i] as BaselineRun).ackedPerSecond);
  const baseMedian = median(base.map((r) => r.ackedPerSecond));
  const storedOnMedian = median(runs.on.map((r) => r.storedPerSecond));
  console.log(
    `  platform (fsync on) stored/s ÷ bare aedes acked/s: medians ${ratio(storedOnMedian / baseMedian)}; run by run ${vsBase.map(ratio).join(', ')}`,
  );
  explainLoss(runs.on, fsyncLabel(true));
  explainLoss(runs.off, fsyncLabel(false));
  flagDisturbed(base, (r) => r.cpu, 'bare aedes');
  const med = (k: 'on' | 'off', f: (r: ThroughputRun) => number) => median(runs[k].map(f));
  const cpuPerReading = (r: ThroughputRun) => (1000 * r.cpu.platformMs) / Math.max(1, r.ackedReadings);
  const ackedRatio = med('off', (r) => r.ackedPerSecond) / med('on', (r) => r.ackedPerSecond);
  const storedRatio = med('off', (r) => r.storedPerSecond) / med('on', (r) => r.storedPerSecond);
  // Run i of both settings ran back to back: their ratio shows how much of the difference is run-to-run noise.
  const pairs = runs.on.map((on, i) => (runs.off[i] as ThroughputRun).ackedPerSecond / on.ackedPerSecond);
  const pairRange = pairs.length > 1 ? `; run by run ${ratio(Math.min(...pairs))}–${ratio(Math.max(...pairs))}` : '';
  console.log(`  ratio fsync off / on (medians): acknowledged ${ratio(ackedRatio)}, stored ${ratio(storedRatio)}${pairRange}`);
  flagDisturbed(runs.on, (r) => r.cpu, fsyncLabel(true));
  flagDisturbed(runs.off, (r) => r.cpu, fsyncLabel(false));
  const all = [...runs.on, ...runs.off];
  const totalLoss = all.reduce((s, r) => s + r.loss, 0);
  const totalAcked = all.reduce((s, r) => s + r.ackedReadings, 0);
  const cmd = commandFor(o, 'throughput');
  const what = `${o.devices} devices${o.family === 'mix' ? '' : ` (${o.family} only)`}, QoS 1, ${readingsPerMessage} reading${readingsPerMessage > 1 ? 's' : ''}/message`;
  return [
    {
      figure: `Stored readings/s end to end, fsync on (default), zero loss (${what}); ratio to a bare Aedes broker relaying the same load to one subscriber in the same run`,
      value: `${spread(runs.on.map((r) => r.storedPerSecond))}; bare Aedes ${spread(base.map((r) => r.ackedPerSecond))}; ratio ${ratio(storedOnMedian / baseMedian)} (run by run ${vsBase.map(ratio).join(', ')})`,
      command: cmd,
    },
    { figure: `Acknowledged readings/s, fsync on (default) (${what})`, value: spread(runs.on.map((r) => r.ackedPerSecond)), command: cmd },
    { figure: `Acknowledged readings/s, fsync off (${what})`, value: spread(runs.off.map((r) => r.ackedPerSecond)), command: cmd },
    {
      figure: `Stored readings/s, publish → in InfluxDB, fsync on (default) (${what})`,
      value: spread(runs.on.map((r) => r.storedPerSecond)),
      command: cmd,
    },
    {
      figure: `Stored readings/s, publish → in InfluxDB, fsync off (${what})`,
      value: spread(runs.off.map((r) => r.storedPerSecond)),
      command: cmd,
    },
    {
      figure: `Ratio fsync off / on, of the medians (${what})`,
      value: `acknowledged ${ratio(ackedRatio)}, stored ${ratio(storedRatio)} (acknowledged run by run: ${pairs.map(ratio).join(', ')})`,
      command: cmd,
    },
    {
      figure: `Platform CPU per reading, fsync on (${what}): the figure other processes on the machine disturb least`,
      value: spread(runs.on.map(cpuPerReading), (n) => `${n.toFixed(1)} µs`),
      command: cmd,
    },
    {
      figure: `Acknowledged but not stored (${what}, ${o.runs} runs × fsync on and off)`,
      value: `${int(totalLoss)} of ${int(totalAcked)}`,
      command: cmd,
    },
  ];
}

/** The loads of the families phase: each family alone, then the city's mix. */
const FAMILY_LOADS: readonly Load[] = ['air', 'traffic', 'light', 'mix'];

/**
 * Each family alone and the city's mix, 1 reading/message, fsync on (the throughput run's default settings), the
 * order rotating from run to run so that a machine getting busier or quieter does not favour one family. Prints
 * the platform's CPU per reading of each load (all its threads; its main thread, where MQTT, validation,
 * analytics, alarms and the live sockets run; its store worker thread) and each family's ratio to traffic.
 */
async function familiesPhase(env: BenchEnv, o: Options): Promise<Figure[]> {
  console.log(
    `\nCPU per reading per family: ${o.devices} devices, QoS 1, 1 reading/message, fsync on, ${o.window} unacked publishes per` +
      ` device, ${o.seconds} s, ${o.runs} runs of each load: ${FAMILY_LOADS.map((l) => `${l} (${loadLabel(l, o.devices)})`).join('; ')}`,
  );
  const opts = { devices: o.devices, window: o.window, readingsPerMessage: 1, fsync: true };
  if (o.warmup) {
    const w = await runThroughput(env, { ...opts, seconds: o.warmup, families: 'mix' }, 'fam_warmup');
    console.log(`  warm-up ${o.warmup} s, the mix (not counted): ${int(w.storedPerSecond)} stored readings/s, loss ${int(w.loss)}`);
    explainLoss([w], 'warm-up');
  }
  const runs = new Map<Load, ThroughputRun[]>(FAMILY_LOADS.map((l) => [l, []]));
  for (let i = 0; i < o.runs; i++) {
    const order = FAMILY_LOADS.map((_, k) => FAMILY_LOADS[(k + i) % FAMILY_LOADS.length] as Load);
    for (const load of order) {
      const r = await runThroughput(env, { ...opts, seconds: o.seconds, families: load }, `fam_${load}_${i + 1}`);
      (runs.get(load) as ThroughputRun[]).push(r);
    }
    process.stdout.write(`  run ${i + 1}/${o.runs} done (${order.join(', ')})\n`);
  }
  const perReading = (ms: number, r: ThroughputRun) => (1000 * ms) / Math.max(1, r.ackedReadings);
  const platformUs = (r: ThroughputRun) => perReading(r.cpu.platformMs, r);
  const mainUs = (r: ThroughputRun) => perReading(r.cpu.mainThreadMs, r);
  const storeUs = (r: ThroughputRun) => perReading(r.cpu.storeThreadMs, r);
  const us = (n: number) => (Number.isNaN(n) ? '–' : n.toFixed(1));
  console.log(
    runsTable(
      ['', 'acked', 'stored', 'loss', 'stored/s', 'µs/reading platform', 'main thread', 'store thread', ...CPU_HEADER],
      FAMILY_LOADS.map((l) => [l, runs.get(l) as ThroughputRun[]]),
      (r) => [r.ackedReadings, r.storedReadings, r.loss, r.storedPerSecond, platformUs(r), mainUs(r), storeUs(r), ...cpuCells(r.cpu)],
      [int, int, int, int, us, us, us, ...CPU_FORMAT],
    ),
  );
  const mix = runs.get('mix') as ThroughputRun[];
  console.log(`  the mix's readings by family, run by run: ${mix.map((r) => describeShares(r.readingsByFamily)).join(' | ')}`);
  const med = (l: Load, f: (r: ThroughputRun) => number) => median((runs.get(l) as ThroughputRun[]).map(f));
  const vsTraffic = (l: Load, f: (r: ThroughputRun) => number) => med(l, f) / med('traffic', f);
  console.log(
    textTable(
      ['load', 'µs/reading platform', 'main thread', 'store thread', 'stored/s', '× traffic (platform)', '× traffic (main thread)'],
      FAMILY_LOADS.map((l) => [
        l,
        us(med(l, platformUs)),
        us(med(l, mainUs)),
        us(med(l, storeUs)),
        int(med(l, (r) => r.storedPerSecond)),
        ratio(vsTraffic(l, platformUs)),
        ratio(vsTraffic(l, mainUs)),
      ]),
    ),
  );
  for (const l of FAMILY_LOADS) {
    explainLoss(runs.get(l) as ThroughputRun[], l);
    flagDisturbed(runs.get(l) as ThroughputRun[], (r) => r.cpu, l);
  }
  const cmd = commandFor(o, 'families');
  const figure = (l: Load) => ({
    figure: `Platform CPU per reading, ${l === 'mix' ? "the city's mix" : `${l} readings only`} (${o.devices} devices, QoS 1, 1 reading/message, fsync on): all threads / main thread / store thread; stored/s`,
    value:
      `${spread((runs.get(l) as ThroughputRun[]).map(platformUs), (n) => `${n.toFixed(1)} µs`)} / ${us(med(l, mainUs))} µs / ${us(med(l, storeUs))} µs; ` +
      `${spread((runs.get(l) as ThroughputRun[]).map((r) => r.storedPerSecond))} stored/s` +
      (l === 'traffic' ? '' : `; ${ratio(vsTraffic(l, platformUs))} a traffic reading (main thread ${ratio(vsTraffic(l, mainUs))})`),
    command: cmd,
  });
  return FAMILY_LOADS.map(figure);
}

async function latencyPhase(env: BenchEnv, o: Options): Promise<Figure[]> {
  console.log(
    `\nLatency at ${int(o.rate)} readings/s over ${o.devices} devices (1 reading/message, QoS 1, fsync on), ${o.latencySeconds} s, ${o.runs} runs;` +
      ` ${o.samples} extra readings timed until queryable (InfluxDB polled every 10 ms)`,
  );
  const opts = { devices: o.devices, rate: o.rate, samples: o.samples };
  if (o.warmup) {
    const w = await runLatency(env, { ...opts, seconds: o.warmup, samples: Math.min(o.samples, 3) }, 'lat_warmup');
    console.log(
      `  warm-up ${o.warmup} s (not counted): socket p50 ${ms(w.socket.p50)} ms, p99 ${ms(w.socket.p99)} ms, ${int(w.published)} published, loss ${int(w.loss)}`,
    );
    explainLoss([w], 'warm-up');
  }
  const runs: LatencyRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    runs.push(await runLatency(env, { ...opts, seconds: o.latencySeconds }, `lat_${i + 1}`));
    process.stdout.write(`  run ${i + 1}/${o.runs} done\n`);
  }
  console.log(
    runsTable(
      ['', 'published', 'socket p50 ms', 'p99 ms', 'max ms', 'missed', 'queryable p50 ms', 'max ms', 'stored', 'loss', ...CPU_HEADER],
      [['', runs]],
      (r) => [
        r.published,
        r.socket.p50,
        r.socket.p99,
        r.socket.max,
        r.socketMissing,
        r.queryable.p50,
        r.queryable.max,
        r.storedReadings,
        r.loss,
        ...cpuCells(r.cpu),
      ],
      [int, ms, ms, ms, int, ms, ms, int, int, ...CPU_FORMAT],
    ),
  );
  explainLoss(runs);
  flagDisturbed(runs, (r) => r.cpu);
  const cmd = commandFor(o, 'latency');
  const at = `at ${int(o.rate)} readings/s`;
  const med = (f: (r: LatencyRun) => number) => median(runs.map(f));
  const missed = runs.reduce((s, r) => s + r.socketMissing, 0);
  return [
    {
      figure: `Publish → socket.io client, p50 / p99 / max (${at})`,
      value: `${ms(med((r) => r.socket.p50))} / ${ms(med((r) => r.socket.p99))} / ${ms(med((r) => r.socket.max))} ms`,
      command: cmd,
    },
    {
      figure: `Readings missing at the socket (${at}, ${o.runs} runs)`,
      value: `${int(missed)} of ${int(runs.reduce((s, r) => s + r.published, 0))}`,
      command: cmd,
    },
    {
      figure: `Publish → queryable in InfluxDB, p50 / max (${o.samples} readings ${at})`,
      value: `${ms(med((r) => r.queryable.p50))} / ${ms(med((r) => r.queryable.max))} ms`,
      command: cmd,
    },
  ];
}

const mib = (n: number) => `${n.toFixed(0)} MiB`;

async function connectionsPhase(env: BenchEnv, o: Options): Promise<Figure[]> {
  console.log(
    `\nIdle connections: ${int(o.idleDevices)} devices (MQTT 3.1.1, keepalive 300 s, half in each of two device processes,` +
      ` ${o.connectConcurrency} connecting at once per process) held by one platform in a process of its own` +
      ` (bench/platform-host.ts: the platform alone, run with tsx like npm start); its resident memory (VmRSS)` +
      ` after ${o.settleSeconds} s idle before and after (no forced GC: V8's own idle` +
      ` memory reducer, as in a deployment), the peak while connecting, and right after; ${o.runs} runs;` +
      ' broker.maxConnectionAttemptsPerAddress 0 and maxConnections 18,400 (every bench device connects from 127.0.0.1)',
  );
  const runs: ConnectionsRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    runs.push(
      await runConnections(
        env,
        { devices: o.idleDevices, concurrency: o.connectConcurrency, settleSeconds: o.settleSeconds },
        `conn_${i + 1}`,
      ),
    );
    process.stdout.write(`  run ${i + 1}/${o.runs} done\n`);
  }
  console.log(
    runsTable(
      [
        '',
        'devices',
        'online',
        'connect s',
        'RSS before MiB',
        'peak MiB',
        'connected MiB',
        'RSS after MiB',
        'heap before',
        'heap after',
        'KiB/device',
      ],
      [['', runs]],
      (r) => [
        r.devices,
        r.online,
        r.connectSeconds,
        r.rssBeforeMiB,
        r.rssPeakMiB,
        r.rssConnectedMiB,
        r.rssAfterMiB,
        r.heapBeforeMiB,
        r.heapAfterMiB,
        r.perDeviceKiB,
      ],
      [int, int, (n) => n.toFixed(1), int, int, int, int, int, int, (n) => n.toFixed(1)],
    ),
  );
  for (const [i, r] of runs.entries()) {
    if (r.online !== r.devices) console.log(`  ! run ${i + 1}: ${r.online} of ${r.devices} devices online`);
    for (const line of r.warnings.slice(0, 3)) console.log(`  ! run ${i + 1}: platform warning ${line.slice(0, 300)}`);
  }
  const cmd = commandFor(o, 'connections');
  return [
    {
      figure: `Idle devices held by one platform process (target 15,000 under 300 MB)`,
      value: `${int(median(runs.map((r) => r.online)))} online of ${int(o.idleDevices)}; resident ${spread(
        runs.map((r) => r.rssAfterMiB),
        mib,
      )} (${spread(
        runs.map((r) => r.rssBeforeMiB),
        mib,
      )} before they connected; peak while connecting ${spread(
        runs.map((r) => r.rssPeakMiB),
        mib,
      )})`,
      command: cmd,
    },
    {
      figure: `Resident memory per idle device (after − before, each after ${o.settleSeconds} s idle)`,
      value: `${spread(
        runs.map((r) => r.perDeviceKiB),
        (n) => `${n.toFixed(1)} KiB`,
      )}`,
      command: cmd,
    },
    {
      figure: `Time to connect ${int(o.idleDevices)} devices (${o.connectConcurrency} at once per device process)`,
      value: spread(
        runs.map((r) => r.connectSeconds),
        seconds,
      ),
      command: cmd,
    },
  ];
}

async function stormPhase(env: BenchEnv, o: Options): Promise<Figure[]> {
  const rpm = 10;
  console.log(
    `\nReconnect storm: ${int(o.stormDevices)} idle devices lose their connections at once, reconnect at once and each` +
      ` flushes a backlog of ${o.stormBacklog} readings (${rpm}/message, QoS 1, 5 unacked); platform defaults (fsync on, per-device` +
      ` rate limit on) but broker.maxConnectionAttemptsPerAddress 0 (every bench device connects from 127.0.0.1);` +
      `${o.stormSockets ? ` ${o.stormSockets} batched dashboard sockets subscribed to everything meanwhile;` : ''} ${o.runs} runs;` +
      ` net.core.somaxconn ${somaxconn() ?? 'unknown'} (the kernel caps the MQTT listener's accept queue at it)`,
  );
  const runs: StormRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    const r = await runStorm(
      env,
      {
        devices: o.stormDevices,
        backlog: o.stormBacklog,
        readingsPerMessage: rpm,
        window: 5,
        concurrency: o.connectConcurrency,
        sockets: o.stormSockets,
      },
      `storm_${i + 1}`,
    );
    runs.push(r);
    const screens = r.sockets ? `; ${r.sockets} screens got ${int(r.socketFrames)} frames, ${r.socketsClosed} closed by the server` : '';
    process.stdout.write(`  run ${i + 1}/${o.runs} done (absorbed in ${seconds(r.storedSeconds)}, loss ${int(r.loss)}${screens})\n`);
  }
  console.log(
    runsTable(
      ['', 'acked', 'stored', 'loss', 'reconnected s', 'acked s', 'stored s', 'retries', 'listen overflows', ...CPU_HEADER],
      [['', runs]],
      (r) => [
        r.ackedReadings,
        r.storedReadings,
        r.loss,
        r.reconnectSeconds,
        r.ackedSeconds,
        r.storedSeconds,
        r.connectRetries,
        r.listenOverflows ?? Number.NaN,
        ...cpuCells(r.cpu),
      ],
      [
        int,
        int,
        int,
        (n) => n.toFixed(1),
        (n) => n.toFixed(1),
        (n) => n.toFixed(1),
        int,
        (n) => (Number.isNaN(n) ? '–' : int(n)),
        ...CPU_FORMAT,
      ],
    ),
  );
  for (const [i, r] of runs.entries()) {
    if (!r.flushed) console.log(`  ! run ${i + 1}: ingest.flush timed out`);
    if (r.loss || r.writer.dropped || r.writer.rejected || r.writer.deadLetters)
      console.log(
        `  ! run ${i + 1}: loss ${r.loss}; writer dropped=${r.writer.dropped} rejected=${r.writer.rejected} deadLetters=${r.writer.deadLetters} ${r.writer.lastDeadLetter ?? ''}`,
      );
    for (const line of r.warnings.slice(0, 3)) console.log(`  ! run ${i + 1}: platform warning ${line.slice(0, 300)}`);
  }
  flagDisturbed(runs, (r) => r.cpu);
  const cmd = commandFor(o, 'storm');
  const totalLoss = runs.reduce((n, r) => n + r.loss, 0);
  const totalAcked = runs.reduce((n, r) => n + r.ackedReadings, 0);
  return [
    {
      figure: `Reconnect storm: ${int(o.stormDevices)} devices cut at once → every acknowledged reading of their backlogs (${o.stormBacklog} each) stored${o.stormSockets ? `, ${o.stormSockets} batched dashboard sockets watching` : ''}; somaxconn ${somaxconn() ?? '?'} (target < 30 s)`,
      value: spread(
        runs.map((r) => r.storedSeconds),
        seconds,
      ),
      command: cmd,
    },
    {
      figure: 'Reconnect storm: cut → last device reconnected / → last reading acknowledged',
      value: `${spread(
        runs.map((r) => r.reconnectSeconds),
        seconds,
      )} / ${spread(
        runs.map((r) => r.ackedSeconds),
        seconds,
      )}`,
      command: cmd,
    },
    {
      figure: `Reconnect storm: acknowledged but not stored (${o.runs} runs)`,
      value: `${int(totalLoss)} of ${int(totalAcked)}`,
      command: cmd,
    },
    {
      figure:
        'Reconnect storm: connections the kernel dropped at a full listen queue (TcpExt ListenOverflows, cut → stored) / device connect retries',
      value: `${
        runs.some((r) => r.listenOverflows === undefined)
          ? 'not readable'
          : spread(
              runs.map((r) => r.listenOverflows as number),
              int,
            )
      } / ${spread(
        runs.map((r) => r.connectRetries),
        int,
      )}`,
      command: cmd,
    },
    ...(o.stormSockets
      ? [
          {
            figure: `Reconnect storm: frames each of the ${o.stormSockets} batched dashboard sockets received (cut → stored) / sockets the server closed`,
            value: `${spread(runs.map((r) => r.socketFrames / r.sockets))} / ${spread(runs.map((r) => r.socketsClosed))}`,
            command: cmd,
          },
        ]
      : []),
  ];
}

async function fanoutPhase(env: BenchEnv, o: Options): Promise<Figure[]> {
  console.log(
    `\nFan-out: ${o.sockets} dashboard sockets subscribed to everything (${o.sockets - 1} raw WebSocket clients in the helper` +
      ` process + the measuring socket.io client, subscribed last) while ${int(o.rate)} readings/s arrive` +
      ` (${o.devices} devices, 1 reading/message, QoS 1), ${o.latencySeconds} s, ${o.runs} runs with batched sockets` +
      ' (auth.batch: readings and device indicators as arrays) and one run with one event per reading, for comparison',
  );
  const opts = { devices: o.devices, rate: o.rate, samples: 1, sockets: o.sockets };
  if (o.warmup) await runFanout(env, { ...opts, seconds: o.warmup, batch: true }, 'fan_warmup');
  const runs: FanoutRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    runs.push(await runFanout(env, { ...opts, seconds: o.latencySeconds, batch: true }, `fan_${i + 1}`));
    process.stdout.write(`  run ${i + 1}/${o.runs} done (batched)\n`);
  }
  // The comparison may not survive the load (the platform falls behind): reported, not fatal.
  let single: FanoutRun | undefined;
  let singleError = '';
  try {
    if (process.env.CITYPULSE_BENCH_FANOUT_BATCHED_ONLY) throw new Error('skipped (CITYPULSE_BENCH_FANOUT_BATCHED_ONLY)');
    single = await runFanout(env, { ...opts, seconds: o.latencySeconds, batch: false }, 'fan_events');
    process.stdout.write('  run with one event per reading done\n');
  } catch (err) {
    singleError = (err as Error).message.split('\n')[0] as string;
    console.log(`  run with one event per reading failed: ${singleError}`);
  }
  const cells = (r: FanoutRun) => [
    r.published,
    r.socket.p50,
    r.socket.p99,
    r.socket.max,
    r.socketMissing,
    r.loadFrames,
    r.loadFrames ? r.loadBytes / r.loadFrames / 1024 : 0,
    r.loadClosed,
    r.loss,
    ...cpuCells(r.cpu),
  ];
  console.log(
    runsTable(
      ['', 'published', 'socket p50 ms', 'p99 ms', 'max ms', 'missed', 'load frames', 'KiB/frame', 'closed', 'loss', ...CPU_HEADER],
      [['batched', runs], ...(single ? ([['one event per reading', [single]]] as [string, FanoutRun[]][]) : [])],
      cells,
      [int, ms, ms, ms, int, int, (n) => n.toFixed(1), int, int, ...CPU_FORMAT],
    ),
  );
  explainLoss(runs);
  flagDisturbed(runs, (r) => r.cpu);
  const cmd = commandFor(o, 'fanout');
  const med = (f: (r: FanoutRun) => number) => median(runs.map(f));
  return [
    {
      figure: `Fan-out: publish → socket p50 / p99 / max with ${o.sockets} sockets subscribed to everything at ${int(o.rate)} readings/s, batched sockets (target p99 ≤ 50 ms)`,
      value: `${ms(med((r) => r.socket.p50))} / ${ms(med((r) => r.socket.p99))} / ${ms(med((r) => r.socket.max))} ms; missed ${int(
        runs.reduce((n, r) => n + r.socketMissing, 0),
      )} of ${int(runs.reduce((n, r) => n + r.published, 0))}; sockets closed by the server ${int(runs.reduce((n, r) => n + r.loadClosed, 0))}`,
      command: cmd,
    },
    {
      figure: `Fan-out, same load, one socket.io event per reading (not batched; 1 run)`,
      value: single
        ? `${ms(single.socket.p50)} / ${ms(single.socket.p99)} / ${ms(single.socket.max)} ms; missed ${int(single.socketMissing)} of ${int(
            single.published,
          )}; sockets closed by the server ${int(single.loadClosed)}`
        : `failed: ${singleError}`,
      command: cmd,
    },
  ];
}

/** Everything about a drain run that is not as it should be, one line each (empty: a clean run). */
function drainProblems(r: DrainRun): string[] {
  const p: string[] = [];
  if (r.ackedReadings !== r.targetReadings)
    p.push(`acked ${r.ackedReadings} of ${r.targetReadings} published readings within the time limit (acks stalled during the outage)`);
  if (r.backlog !== r.ackedReadings) p.push(`backlog ${r.backlog} after the outage ≠ acked ${r.ackedReadings}`);
  if (r.healthBacklog !== r.backlog)
    p.push(`health durableLog.backlogReadings ${r.healthBacklog} ≠ ingest.state().log.points ${r.backlog}`);
  if (r.storedDuringOutage !== 0) p.push(`writer reported ${r.storedDuringOutage} stored while InfluxDB was stopped`);
  if (!r.flushed) {
    const s = r.finalState;
    p.push(
      `backlog not empty 90 s after the restart (stall): log.points=${s.logPoints} writer buffered=${s.buffered} inFlight=${s.inFlight} healthy=${s.healthy} lastError=${s.lastError ?? '-'}`,
    );
  }
  if (r.loss !== 0) p.push(`loss ${r.loss} (acked ${r.ackedReadings}, stored ${r.storedReadings})`);
  if (r.loss !== 0 || r.writer.dropped || r.writer.rejected || r.writer.deadLetters)
    p.push(
      `writer stored=${r.writer.stored} dropped=${r.writer.dropped} rejected=${r.writer.rejected} deadLetters=${r.writer.deadLetters}` +
        (r.writer.lastDeadLetter ? `; newest dead letter ${r.writer.lastDeadLetter.slice(0, 200)}` : ''),
    );
  if (r.warnings.length)
    p.push(
      `platform warnings ${r.warnings.length}: ${r.warnings
        .slice(0, 3)
        .map((l) => l.slice(0, 300))
        .join(' | ')}`,
    );
  return p;
}

async function drainPhase(env: BenchEnv, o: Options): Promise<Figure[]> {
  const readingsPerMessage = 10;
  const target = Math.ceil(o.drainReadings / o.devices) * o.devices;
  console.log(
    `\nBacklog drain after an InfluxDB outage: InfluxDB stopped, ${o.devices} devices publish ${int(target)} readings` +
      ` (${readingsPerMessage}/message, QoS 1, ${o.window} unacked each), InfluxDB restarted on the same folder and port,` +
      ` time until the durable log is empty (ingest.flush); devices idle during the drain; platform defaults (fsync on); ${o.runs} runs`,
  );
  if (o.warmup) {
    const w = await runThroughput(
      env,
      { devices: o.devices, window: o.window, readingsPerMessage, seconds: o.warmup, fsync: true },
      'drain_warmup',
    );
    console.log(
      `  warm-up ${o.warmup} s with InfluxDB up (not counted): ${int(w.ackedPerSecond)} acked readings/s, ${int(w.storedReadings)} stored, loss ${int(w.loss)}`,
    );
    explainLoss([w], 'warm-up');
  }
  const runs: DrainRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    const r = await runDrain(
      env,
      { devices: o.devices, readings: o.drainReadings, readingsPerMessage, window: o.window },
      `drain_${i + 1}`,
    );
    runs.push(r);
    process.stdout.write(`  run ${i + 1}/${o.runs} done (drain ${int(r.drainPerSecond)} readings/s, loss ${int(r.loss)})\n`);
  }
  console.log('  Outage: devices publishing, InfluxDB stopped');
  console.log(
    runsTable(
      ['', 'acked', 'publish s', 'acked/s', 'log backlog', 'health backlog', 'stored meanwhile', ...CPU_HEADER],
      [['', runs]],
      (r) => [
        r.ackedReadings,
        r.publishSeconds,
        r.ackedPerSecond,
        r.backlog,
        r.healthBacklog,
        r.storedDuringOutage,
        ...cpuCells(r.outageCpu),
      ],
      [int, (n) => n.toFixed(2), int, int, int, int, ...CPU_FORMAT],
    ),
  );
  console.log('  Drain: InfluxDB restarted, devices idle (first write = InfluxDB answering → first batch confirmed)');
  console.log(
    runsTable(
      ['', 'restart s', 'first write s', 'drain s', 'drain/s', 'after 1st write/s', 'stored', 'loss', ...CPU_HEADER],
      [['', runs]],
      (r) => [
        r.restartSeconds,
        r.firstConfirmSeconds,
        r.drainSeconds,
        r.drainPerSecond,
        r.activeDrainPerSecond,
        r.storedReadings,
        r.loss,
        ...cpuCells(r.drainCpu),
      ],
      [(n) => n.toFixed(2), (n) => n.toFixed(2), (n) => n.toFixed(2), int, int, int, int, ...CPU_FORMAT],
    ),
  );
  console.log(
    `  expected outage log lines ("InfluxDB unavailable: buffering and retrying") per run: ${runs.map((r) => r.outageLogLines).join(', ')}`,
  );
  for (const [i, r] of runs.entries()) for (const line of drainProblems(r)) console.log(`  ! run ${i + 1}: ${line}`);
  flagDisturbed(runs, (r) => r.outageCpu, 'outage');
  flagDisturbed(runs, (r) => r.drainCpu, 'drain');

  const cmd = commandFor(o, 'drain');
  const what = `${o.devices} devices, QoS 1, ${readingsPerMessage} readings/message`;
  const backlog = `${int(target)}-reading backlog`;
  const totalLoss = runs.reduce((s, r) => s + r.loss, 0);
  const totalAcked = runs.reduce((s, r) => s + r.ackedReadings, 0);
  return [
    {
      figure: `Acknowledged readings/s while InfluxDB is down (${what}, ${int(target)} readings, fsync on)`,
      value: spread(runs.map((r) => r.ackedPerSecond)),
      command: cmd,
    },
    {
      figure: `Backlog drain rate, readings/s, InfluxDB answering again → log empty (${backlog})`,
      value: spread(runs.map((r) => r.drainPerSecond)),
      command: cmd,
    },
    {
      figure: `Backlog drain rate, readings/s, from the first confirmed write (${backlog}; without the writer's retry back-off)`,
      value: spread(runs.map((r) => r.activeDrainPerSecond)),
      command: cmd,
    },
    {
      figure: `InfluxDB answering again → first backlog write confirmed (retry back-off, max 5 s by default)`,
      value: spread(
        runs.map((r) => r.firstConfirmSeconds),
        seconds,
      ),
      command: cmd,
    },
    {
      figure: `Acknowledged during the outage but not stored after the drain (${o.runs} runs)`,
      value: `${int(totalLoss)} of ${int(totalAcked)}`,
      command: cmd,
    },
  ];
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const started = Date.now();
  if (o.command === 'cluster') {
    // Its own engines and nodes (bench/cluster.ts); not part of `all`.
    await runClusterBench({
      devices: o.values.devices,
      seconds: o.values.seconds,
      window: o.values.window,
      runs: o.values.runs,
      client: o.client,
      idleDevices: o.values['cluster-idle-devices'],
      failoverDevices: o.values['failover-devices'],
      failoverRate: o.values['failover-rate'],
      command: commandFor(o, 'cluster'),
    });
    console.log(`\nbench finished in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return;
  }
  const env = await startBenchEnv(o.client, o.family);
  // Ctrl-C: stop a running platform, the device process and InfluxDB, and remove the temp folder.
  process.once('SIGINT', () => void env.close().finally(() => process.exit(130)));
  try {
    const machine = printMachine(env);
    console.log(
      '  platform  one process: aedes broker + ingest (default settings, durable log in the temp folder) + API; devices in a child process; loopback' +
        (RATE_LIMIT_OFF ? '; per-device rate limit off (ingest.maxReadingsPerSecond: 0)' : ''),
    );
    const figures: Figure[] = [];
    const phase = async (name: string, run: () => Promise<Figure[]>) => {
      const t0 = Date.now();
      figures.push(...(await run()));
      console.log(`  (${name} took ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    };
    if (o.command === 'all' || o.command === 'throughput') {
      await phase('throughput, 1 reading/message', () => throughputPhase(env, o, 1));
      await phase('throughput, 10 readings/message', () => throughputPhase(env, o, 10));
    }
    if (o.command === 'all' || o.command === 'families') await phase('families', () => familiesPhase(env, o));
    if (o.command === 'all' || o.command === 'latency') await phase('latency', () => latencyPhase(env, o));
    if (o.command === 'all' || o.command === 'fanout') await phase('fanout', () => fanoutPhase(env, o));
    if (o.command === 'all' || o.command === 'connections') await phase('connections', () => connectionsPhase(env, o));
    if (o.command === 'all' || o.command === 'storm') await phase('storm', () => stormPhase(env, o));
    if (o.command === 'all' || o.command === 'drain') await phase('drain', () => drainPhase(env, o));

    console.log(
      `\nFigures table (medians of ${o.runs} runs; ${machine.cpu}, ${machine.memory}, Node ${machine.node}, InfluxDB ${env.influxVersion}):\n`,
    );
    console.log(
      markdownTable(
        ['Figure', 'Value', 'Command'],
        figures.map((f) => [f.figure, f.value, f.command]),
      ),
    );
    console.log(
      `\nRates: median of the runs (min–max in brackets). Devices (${CLIENT_NAMES[o.client]}; ${o.window} unacked QoS 1 publishes each), platform` +
        ' and InfluxDB share this machine over loopback; "stored" is counted in InfluxDB after ingest.flush().' +
        " An acknowledgement means the reading is in the durable log: fdatasync'd with fsync on (the default)," +
        ' only written (page cache) with fsync off.' +
        (RATE_LIMIT_OFF
          ? ' The per-device rate limit is off (ingest.maxReadingsPerSecond: 0): the 50 bench devices each send hundreds to thousands of readings/s.'
          : '') +
        ` Durable log on ${machine.disk}.`,
    );
    console.log(`\nbench finished in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await env.close();
  }
}

main().then(
  // Explicit exit: a lingering keep-alive socket or timer in a dependency must not keep the bench hanging.
  () => process.exit(0),
  (err: Error) => {
    console.error(`bench failed: ${err instanceof UsageError ? err.message : (err.stack ?? err.message)}`);
    process.exit(1);
  },
);
