/**
 * citypulse end-to-end benchmark: MQTT devices → broker → ingest → InfluxDB and the live socket.io API.
 *
 *   npm run bench [-- all|throughput|latency] [--devices=50] [--seconds=10] [--runs=3] [--window=20]
 *                 [--rate=2000] [--latency-seconds=10] [--samples=20] [--warmup=3]
 *
 * Everything runs on this machine over loopback: a private InfluxDB in a temp folder, a fresh platform per run
 * on ephemeral ports, and the devices in a child process. Prints each run, the medians, and a markdown table
 * for the README. Exits 0 when every run finished (loss is reported, not a failure), 1 on an error.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runLatency, runThroughput, startBenchEnv, type BenchEnv, type CpuShare, type LatencyRun, type ThroughputRun } from './e2e.ts';
import { int, markdownTable, median, ms, textTable } from './stats.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const COMMANDS = ['all', 'throughput', 'latency'] as const;
type Command = (typeof COMMANDS)[number];

/** A mistake on the command line: the message is enough, no stack trace. */
class UsageError extends Error {}

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
}

function parseOptions(argv: string[]): Options {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      devices: { type: 'string', default: '50' },
      seconds: { type: 'string', default: '10' },
      runs: { type: 'string', default: '3' },
      window: { type: 'string', default: '20' },
      rate: { type: 'string', default: '2000' },
      'latency-seconds': { type: 'string', default: '10' },
      samples: { type: 'string', default: '20' },
      warmup: { type: 'string', default: '3' },
    },
  });
  const command = (positionals[0] ?? 'all') as Command;
  if (!COMMANDS.includes(command) || positionals.length > 1)
    throw new UsageError(`usage: bench/index.ts [${COMMANDS.join('|')}] [--option=value ...]`);
  const num = (name: keyof typeof values, max: number, min = 1) => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v < min || v > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}`);
    return v;
  };
  // Upper bounds keep the load loopback-sized and the run short, whatever is typed.
  return {
    command,
    devices: num('devices', 1000),
    seconds: num('seconds', 60),
    runs: num('runs', 9),
    window: num('window', 1000),
    rate: num('rate', 50_000),
    latencySeconds: num('latency-seconds', 60),
    samples: num('samples', 200),
    warmup: num('warmup', 30, 0),
  };
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(REPO, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

function printMachine(env: BenchEnv): { cpu: string; memory: string; node: string; influxdb: string } {
  const cpus = os.cpus();
  const info = {
    cpu: `${cpus[0]?.model.trim() ?? 'unknown'} × ${cpus.length}`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    packages: ['aedes', 'mqtt', 'influx', 'socket.io', 'socket.io-client'].map((p) => `${p} ${packageVersion(p)}`).join(', '),
    influxdb: `InfluxDB ${env.influxVersion} (private instance, ${env.influx.url})`,
  };
  console.log('Machine');
  for (const [k, v] of Object.entries(info)) console.log(`  ${k.padEnd(9)} ${v}`);
  return info;
}

/** Each run's row plus a median row; `cells` turns a run into its row. */
function runsTable<R>(header: string[], runs: R[], cells: (r: R) => number[], format: ((n: number) => string)[]): string {
  const rows = runs.map((r, i) => [`run ${i + 1}`, ...cells(r).map((v, j) => (format[j] as (n: number) => string)(v))]);
  const med = header.slice(1).map((_, j) => median(runs.map((r) => cells(r)[j] as number)));
  rows.push(['median', ...med.map((v, j) => (format[j] as (n: number) => string)(v))]);
  return textTable(header, rows);
}

// CPU while the devices ran, in % of one core: the platform process, the device process and influxd share the cores.
const CPU_HEADER = ['cpu% platform', 'devices', 'influxd', 'others', 'idle'];
const cpuCells = (c: CpuShare) => [c.platform, c.devices, c.influxd, c.others, c.idle];

/** Prints the evidence for any loss or platform warning: the writer's counters and the first log lines. */
function explainLoss(runs: (ThroughputRun | LatencyRun)[], label = 'run'): void {
  for (const [i, r] of runs.entries()) {
    if (r.loss === 0 && !r.warnings.length) continue;
    const w =
      'writer' in r
        ? ` writer stored=${r.writer.stored} dropped=${r.writer.dropped} rejected=${r.writer.rejected} deadLetters=${r.writer.deadLetters} flushed=${r.flushed}`
        : '';
    console.log(`  ! ${label === 'run' ? `run ${i + 1}` : label}: loss ${r.loss}, platform warnings ${r.warnings.length}.${w}`);
    for (const line of r.warnings.slice(0, 3)) console.log(`    ${line.slice(0, 300)}`);
  }
}

/** "median (min–max)": on a shared VM the spread between runs is part of the result. */
function spread(values: number[]): string {
  return values.length > 1 ? `${int(median(values))} (${int(Math.min(...values))}–${int(Math.max(...values))})` : int(median(values));
}

interface Figure {
  figure: string;
  value: string;
  command: string;
}

async function throughputPhase(env: BenchEnv, o: Options, readingsPerMessage: number): Promise<Figure[]> {
  const title = `Throughput, QoS 1 end to end, ${readingsPerMessage} reading${readingsPerMessage > 1 ? 's' : ''}/message`;
  console.log(`\n${title}: ${o.devices} devices, ${o.window} unacked publishes per device, ${o.seconds} s, ${o.runs} runs`);
  const opts = { devices: o.devices, window: o.window, readingsPerMessage };
  if (o.warmup) {
    // The first seconds in a fresh process run unoptimised code (JIT): measured once, shown, not counted.
    const w = await runThroughput(env, { ...opts, seconds: o.warmup }, `tp${readingsPerMessage}_warmup`);
    console.log(
      `  warm-up ${o.warmup} s (not counted): ${int(w.ackedPerSecond)} acked readings/s, ${int(w.ackedReadings)} acked, ${int(w.storedReadings)} stored, loss ${int(w.loss)}`,
    );
    explainLoss([w], 'warm-up');
  }
  const runs: ThroughputRun[] = [];
  for (let i = 0; i < o.runs; i++) {
    runs.push(await runThroughput(env, { ...opts, seconds: o.seconds }, `tp${readingsPerMessage}_${i + 1}`));
    process.stdout.write(`  run ${i + 1}/${o.runs} done\n`);
  }
  console.log(
    runsTable(
      ['', 'acked', 'stored', 'loss', 'publish s', 'acked/s', 'e2e s', 'stored/s', ...CPU_HEADER],
      runs,
      (r) => [
        r.ackedReadings,
        r.storedReadings,
        r.loss,
        r.publishSeconds,
        r.ackedPerSecond,
        r.endToEndSeconds,
        r.storedPerSecond,
        ...cpuCells(r.cpu),
      ],
      [int, int, int, (n) => n.toFixed(2), int, (n) => n.toFixed(2), int, int, int, int, int, int],
    ),
  );
  explainLoss(runs);
  const totalLoss = runs.reduce((s, r) => s + r.loss, 0);
  const totalAcked = runs.reduce((s, r) => s + r.ackedReadings, 0);
  const cmd = '`npm run bench -- throughput`';
  const what = `${o.devices} devices, QoS 1, ${readingsPerMessage} reading${readingsPerMessage > 1 ? 's' : ''}/message`;
  return [
    { figure: `Acknowledged readings/s (${what})`, value: spread(runs.map((r) => r.ackedPerSecond)), command: cmd },
    { figure: `Stored readings/s, publish → in InfluxDB (${what})`, value: spread(runs.map((r) => r.storedPerSecond)), command: cmd },
    { figure: `Acknowledged but not stored (${what}, ${o.runs} runs)`, value: `${int(totalLoss)} of ${int(totalAcked)}`, command: cmd },
  ];
}

async function latencyPhase(env: BenchEnv, o: Options): Promise<Figure[]> {
  console.log(
    `\nLatency at ${int(o.rate)} readings/s over ${o.devices} devices (1 reading/message, QoS 1), ${o.latencySeconds} s, ${o.runs} runs;` +
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
      runs,
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
      [int, ms, ms, ms, int, ms, ms, int, int, int, int, int, int, int],
    ),
  );
  explainLoss(runs);
  const cmd = '`npm run bench -- latency`';
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

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const started = Date.now();
  const env = await startBenchEnv();
  // Ctrl-C: stop a running platform, the device process and InfluxDB, and remove the temp folder.
  process.once('SIGINT', () => void env.close().finally(() => process.exit(130)));
  try {
    const machine = printMachine(env);
    console.log('  platform  one process: aedes broker + ingest (default settings) + API; devices in a child process; loopback');
    const figures: Figure[] = [];
    if (o.command !== 'latency') {
      figures.push(...(await throughputPhase(env, o, 1)));
      figures.push(...(await throughputPhase(env, o, 10)));
    }
    if (o.command !== 'throughput') figures.push(...(await latencyPhase(env, o)));

    console.log(
      `\nREADME table (medians of ${o.runs} runs; ${machine.cpu}, ${machine.memory}, Node ${machine.node}, InfluxDB ${env.influxVersion}):\n`,
    );
    console.log(
      markdownTable(
        ['Figure', 'Value', 'Command'],
        figures.map((f) => [f.figure, f.value, f.command]),
      ),
    );
    console.log(
      `\nRates: median of the runs (min–max in brackets). Devices (MQTT.js, ${o.window} unacked QoS 1 publishes each), platform` +
        ' and InfluxDB share this machine over loopback; "stored" is counted in InfluxDB after ingest.flush().',
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
