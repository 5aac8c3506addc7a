/**
 * End-to-end measurements on the real platform: a private InfluxDB, a platform on ephemeral loopback ports and
 * the device load generator (bench/load.ts) in a child process.
 *
 * Each run gets a fresh platform with its own data folder and its own InfluxDB database (dropped afterwards),
 * so "stored" is simply the point count of that database and runs cannot disturb each other's numbers.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { leafZones } from '../registry/index.ts';
import { CONFIG_SCHEMA, loadConfig, type ConfigInput } from '../platform/config.ts';
import { startLocalInflux, type LocalInflux } from '../platform/influxdb-local.ts';
import { createPlatform, type Platform, type PlatformAddresses } from '../platform/platform.ts';
import type { BenchDevice, LatencyArgs, LatencyResult, LoadRequest, LoadResponse, ThroughputArgs, ThroughputResult } from './load.ts';
import { summarize, type LatencySummary } from './stats.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));

/**
 * The per-device reading rate limit (ingest.maxReadingsPerSecond, when this version of the platform has it) is
 * switched off for the bench: 50 bench devices stand in for thousands of real ones, each sending hundreds to
 * thousands of readings a second, and a per-device policy would measure the policy, not the pipeline.
 */
export const RATE_LIMIT_OFF: boolean = 'maxReadingsPerSecond' in CONFIG_SCHEMA.properties.ingest.properties;
const benchIngest = (RATE_LIMIT_OFF ? { maxReadingsPerSecond: 0 } : {}) as ConfigInput['ingest'];

/** Observation times start an hour back: inside the 90 d retention, and runs of a few seconds never reach "now". */
const timeBase = () => Date.now() - 3_600_000;

export interface BenchEnv {
  /** The running InfluxDB; replaced by restartInflux() (same folder and port, new process). */
  influx: LocalInflux;
  /** From the X-Influxdb-Version header of /ping. */
  influxVersion: string;
  load: LoadGenerator;
  /** Temp folder of this bench: InfluxDB and every run's platform data live below it. */
  dir: string;
  /** Cleanups of runs in progress, so close() on Ctrl-C also stops a running platform. */
  active: Set<() => Promise<void>>;
  /** Stops any running platform, the load generator and InfluxDB, and removes the temp folder. Idempotent. */
  close(): Promise<void>;
}

/** Stops the bench's InfluxDB (an outage); restartInflux() starts it again on the same folder and port. */
export async function stopInflux(env: BenchEnv): Promise<void> {
  await env.influx.stop();
}

/** Starts InfluxDB again on the folder and port of the stopped one; resolves once /ping answers. */
export async function restartInflux(env: BenchEnv): Promise<void> {
  const { dir, port } = env.influx;
  env.influx = await startLocalInflux({ dir, port });
}

export async function startBenchEnv(): Promise<BenchEnv> {
  const tmp = await mkdtemp(join(tmpdir(), 'citypulse-bench-'));
  let env: BenchEnv | undefined;
  let influx: LocalInflux | undefined;
  let load: LoadGenerator | undefined;
  let closing: Promise<void> | undefined;
  const active = new Set<() => Promise<void>>();
  const close = () =>
    (closing ??= (async () => {
      await Promise.all([...active].map((stop) => stop()));
      await load?.close();
      // The current instance: the drain phase replaces the first one (stop() is idempotent).
      await (env?.influx ?? influx)?.stop();
      await rm(tmp, { recursive: true, force: true });
    })());
  try {
    influx = await startLocalInflux({ dir: join(tmp, 'influxdb') });
    const ping = await fetch(`${influx.url}/ping`);
    const influxVersion = ping.headers.get('x-influxdb-version') ?? 'unknown';
    load = new LoadGenerator();
    env = { influx, influxVersion, load, dir: tmp, active, close };
    return env;
  } catch (err) {
    await close();
    throw err;
  }
}

/** The forked device process (bench/load.ts), one command at a time over IPC. */
export class LoadGenerator {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve(v: Answer<unknown>): void; reject(e: Error): void }>();
  private nextId = 1;
  private exited = false;

  constructor() {
    // tsx must be loaded in the child as well; 'advanced' serialization carries the bigint timestamps.
    this.child = fork(fileURLToPath(new URL('./load.ts', import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m: LoadResponse) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve({ result: m.result, cpuMs: m.cpuMs });
      else p.reject(new Error(`load generator: ${m.error}`));
    });
    this.child.on('exit', (code, signal) => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`load generator exited (${signal ?? `code ${code}`})`));
      this.pending.clear();
    });
  }

  throughput(args: ThroughputArgs): Promise<Answer<ThroughputResult>> {
    return this.request({ id: this.nextId++, cmd: 'throughput', args }) as Promise<Answer<ThroughputResult>>;
  }

  latency(args: LatencyArgs): Promise<Answer<LatencyResult>> {
    return this.request({ id: this.nextId++, cmd: 'latency', args }) as Promise<Answer<LatencyResult>>;
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.disconnect(); // the child exits when its IPC channel closes (no command runs by now)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }

  private request(req: LoadRequest): Promise<Answer<unknown>> {
    if (this.exited) return Promise.reject(new Error('load generator is not running'));
    return new Promise((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      this.child.send(req);
    });
  }
}

/** A load command's result and the CPU time the device process spent on it. */
interface Answer<T> {
  result: T;
  cpuMs: number;
}

/** CPU use while a load command ran, in % of one core (so 200 % is both cores of a 2-core machine). */
export interface CpuShare {
  platform: number;
  devices: number;
  influxd: number;
  /** Everything else busy on the machine, kernel included (other sessions' tests, say): high = a disturbed run. */
  others: number;
  /** Unused CPU: a throughput run with idle CPU is limited by something other than CPU. */
  idle: number;
}

/**
 * Starts measuring CPU of this process (the platform) and influxd; `stop(devicesCpuMs)` adds the device
 * process's own figure. On 2 cores the three compete, so the shares explain where a throughput ceiling is.
 * No `influxdPid`: InfluxDB is stopped (an outage), its share is 0.
 */
function cpuMeter(influxdPid: number | undefined): { stop(devicesCpuMs: number): CpuShare } {
  const wall0 = process.hrtime.bigint();
  const own0 = process.cpuUsage();
  const influxCpuMs = () => (influxdPid === undefined ? 0 : procCpuMs(influxdPid));
  const influx0 = influxCpuMs();
  const machine0 = machineCpuMs();
  return {
    stop(devicesCpuMs) {
      const wallMs = Number(process.hrtime.bigint() - wall0) / 1e6;
      const own = process.cpuUsage(own0);
      const machine1 = machineCpuMs();
      const pct = (cpuMs: number) => (100 * cpuMs) / wallMs;
      const platform = (own.user + own.system) / 1000;
      const influxd = influxCpuMs() - influx0;
      return {
        platform: pct(platform),
        devices: pct(devicesCpuMs),
        influxd: pct(influxd),
        // Machine-wide busy time minus ours: catches short-lived processes too (other sessions' test runs).
        others: Math.max(0, pct(machine1.busy - machine0.busy - platform - devicesCpuMs - influxd)),
        idle: pct(machine1.idle - machine0.idle),
      };
    },
  };
}

/** Busy and idle CPU ms of the whole machine since boot, from /proc/stat (NaN where missing). */
function machineCpuMs(): { busy: number; idle: number } {
  try {
    const [, ...ticks] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/);
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    const [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.slice(0, 8).map(Number) as number[];
    return {
      busy: ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) * 10,
      idle: ((idle ?? 0) + (iowait ?? 0)) * 10,
    };
  } catch {
    return { busy: Number.NaN, idle: Number.NaN };
  }
}

/** utime + stime of a process from /proc (Linux; clock ticks of 10 ms, the kernel's USER_HZ); NaN elsewhere. */
function procCpuMs(pid: number): number {
  try {
    // Fields after the parenthesised command name: state is field 3, utime 14 and stime 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

interface RunContext {
  platform: Platform;
  addr: PlatformAddresses;
  database: string;
  devices: BenchDevice[];
  /** Platform log lines at warn level or above during the run (the first few are echoed to stderr). */
  warnings: string[];
  /** Lines matching the run's `expected` pattern (an outage the bench caused itself): counted, not echoed. */
  expected: string[];
}

interface PlatformOptions {
  /** durability.fsync of the platform (default: the shipped default, true). */
  fsync?: boolean;
  /** Log lines the run causes on purpose (InfluxDB stopped): kept apart from the warnings. */
  expected?: RegExp;
}

/** Starts a fresh platform (own data folder and database) with `deviceCount` traffic counters, runs `fn`, cleans up. */
async function withPlatform<T>(
  env: BenchEnv,
  name: string,
  deviceCount: number,
  fn: (ctx: RunContext) => Promise<T>,
  opts: PlatformOptions = {},
): Promise<T> {
  const dataDir = await mkdtemp(join(env.dir, 'platform-'));
  const database = `bench_${name}`;
  const warnings: string[] = [];
  const expected: string[] = [];
  const logDestination = {
    write(line: string) {
      if (opts.expected?.test(line)) return void expected.push(line.trimEnd());
      warnings.push(line.trimEnd());
      if (warnings.length <= 5) process.stderr.write(`  [platform] ${line}`);
    },
  };
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      cityProfile: join(REPO, 'cities/bac-giang.json'),
      broker: { host: '127.0.0.1', port: 0 },
      api: { host: '127.0.0.1', port: 0 },
      influx: { url: env.influx.url, database },
      log: { level: 'warn' },
      simulate: { enabled: false },
      // ingest and durability: defaults on purpose (the figures are for the shipped settings), but for the
      // fsync comparison and the per-device rate limit (RATE_LIMIT_OFF). The durable log is in dataDir/wal, on the file system of the temp folder.
      ...(opts.fsync === undefined ? {} : { durability: { fsync: opts.fsync } }),
      ingest: benchIngest,
    },
  });
  const platform = createPlatform(config, { logDestination });
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await platform.stop();
      await influxQuery(env.influx.url, '', `DROP DATABASE "${database}"`).catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    })());
  env.active.add(cleanup);
  try {
    const addr = await platform.start();
    const profile = platform.parts.profile;
    const zone = leafZones(profile)[0] ?? profile.zones[0];
    if (!zone) throw new Error('the city profile has no zones');
    const devices: BenchDevice[] = [];
    for (let i = 0; i < deviceCount; i++) {
      const { device, token } = await platform.parts.devices.provision({
        id: `tf-bench-${String(i).padStart(4, '0')}`,
        family: 'traffic',
        zone: zone.id,
        location: profile.centre,
      });
      devices.push({ id: device.id, token });
    }
    return await fn({ platform, addr, database, devices, warnings, expected });
  } finally {
    await cleanup();
    env.active.delete(cleanup);
  }
}

export interface ThroughputOptions {
  devices: number;
  seconds: number;
  window: number;
  readingsPerMessage: number;
  /** durability.fsync (true is the default). */
  fsync: boolean;
}

export interface ThroughputRun {
  fsync: boolean;
  ackedReadings: number;
  ackedMessages: number;
  storedReadings: number;
  /** acked − stored: acknowledged readings that are not in InfluxDB after flush (negative = more stored). */
  loss: number;
  /** First publish → last PUBACK, s. */
  publishSeconds: number;
  ackedPerSecond: number;
  /** First publish → ingest.flush() resolved, s. */
  endToEndSeconds: number;
  storedPerSecond: number;
  /** ingest.flush() resolved true (false = timed out with readings still buffered). */
  flushed: boolean;
  /** The writer's own counters and the dead-letter count, to explain any loss. */
  writer: WriterCounters;
  cpu: CpuShare;
  warnings: string[];
}

export async function runThroughput(env: BenchEnv, o: ThroughputOptions, name: string): Promise<ThroughputRun> {
  return withPlatform(
    env,
    name,
    o.devices,
    async ({ platform, addr, database, devices, warnings }) => {
      const cpu = cpuMeter(env.influx.pid);
      const { result: r, cpuMs } = await env.load.throughput({
        mqttUrl: addr.mqtt,
        devices,
        seconds: o.seconds,
        window: o.window,
        readingsPerMessage: o.readingsPerMessage,
        base: timeBase(),
      });
      const cpuShare = cpu.stop(cpuMs);
      const flushed = await platform.parts.ingest.flush(60_000);
      const flushedNs = process.hrtime.bigint();
      const stored = await countReadings(env.influx.url, database);
      const publishSeconds = Number(r.lastAckNs - r.startNs) / 1e9;
      const endToEndSeconds = Number(flushedNs - r.startNs) / 1e9;
      return {
        fsync: o.fsync,
        ackedReadings: r.readings,
        ackedMessages: r.messages,
        storedReadings: stored,
        loss: r.readings - stored,
        publishSeconds,
        ackedPerSecond: r.readings / publishSeconds,
        endToEndSeconds,
        storedPerSecond: stored / endToEndSeconds,
        flushed,
        writer: writerCounters(platform),
        cpu: cpuShare,
        warnings,
      };
    },
    { fsync: o.fsync },
  );
}

export interface LatencyOptions {
  devices: number;
  seconds: number;
  rate: number;
  samples: number;
}

export interface LatencyRun {
  published: number;
  acked: number;
  socket: LatencySummary;
  socketMissing: number;
  queryable: LatencySummary;
  storedReadings: number;
  /** published − stored after flush. */
  loss: number;
  cpu: CpuShare;
  warnings: string[];
}

export async function runLatency(env: BenchEnv, o: LatencyOptions, name: string): Promise<LatencyRun> {
  return withPlatform(env, name, o.devices, async ({ platform, addr, database, devices, warnings }) => {
    const cpu = cpuMeter(env.influx.pid);
    const { result: r, cpuMs } = await env.load.latency({
      mqttUrl: addr.mqtt,
      apiUrl: addr.api,
      apiToken: platform.adminToken,
      influxUrl: env.influx.url,
      database,
      devices,
      seconds: o.seconds,
      rate: o.rate,
      samples: o.samples,
      base: timeBase(),
    });
    const cpuShare = cpu.stop(cpuMs);
    await platform.parts.ingest.flush(60_000);
    const stored = await countReadings(env.influx.url, database);
    return {
      published: r.published,
      acked: r.acked,
      socket: summarize(r.socketLatenciesMs),
      socketMissing: r.socketMissing,
      queryable: summarize(r.queryableMs),
      storedReadings: stored,
      loss: r.published - stored,
      cpu: cpuShare,
      warnings,
    };
  });
}

export interface DrainOptions {
  devices: number;
  /** Readings published while InfluxDB is stopped, split evenly over the devices (rounded up). */
  readings: number;
  readingsPerMessage: number;
  window: number;
}

export interface DrainRun {
  /** Readings acknowledged (PUBACK) while InfluxDB was stopped. */
  ackedReadings: number;
  /** Readings the devices were told to publish (acked < target: the acks stopped coming, a stall). */
  targetReadings: number;
  /** First publish → last PUBACK during the outage, s. */
  publishSeconds: number;
  ackedPerSecond: number;
  /** ingest.state().log.points once every publish was acknowledged. */
  backlog: number;
  /** durableLog.backlogReadings of GET /api/v1/health at the same moment. */
  healthBacklog: number;
  /** The writer's stored count during the outage (0 expected: InfluxDB was down). */
  storedDuringOutage: number;
  /** InfluxDB process start → /ping answers, s (not part of the drain). */
  restartSeconds: number;
  /** InfluxDB answering → first readings confirmed (what is left of the writer's retry back-off), s. */
  firstConfirmSeconds: number;
  /** InfluxDB answering → backlog 0 (ingest.flush resolved), s. */
  drainSeconds: number;
  /** backlog / drainSeconds: readings/s from InfluxDB back to an empty log. */
  drainPerSecond: number;
  /** Readings confirmed from the first confirmation on, per s: the rate once the writes flow. */
  activeDrainPerSecond: number;
  /** ingest.flush() resolved true (false = timed out with a backlog left: a stall). */
  flushed: boolean;
  /** ingest.state() when flush returned: the evidence if it did not drain. */
  finalState: { logPoints: number; buffered: number; inFlight: number; healthy: boolean; lastError?: string };
  storedReadings: number;
  /** acked − stored after the drain. */
  loss: number;
  writer: WriterCounters;
  outageCpu: CpuShare;
  drainCpu: CpuShare;
  warnings: string[];
  /** Log lines of the outage itself ("InfluxDB unavailable"): expected, counted apart from the warnings. */
  outageLogLines: number;
}

/** Log lines the platform writes because the bench stopped InfluxDB on purpose. */
const OUTAGE_LINES = /InfluxDB unavailable: buffering and retrying/;

/**
 * Backlog drain after an outage: a fresh platform (defaults, InfluxDB up at start), then InfluxDB is stopped,
 * the devices publish a fixed number of QoS 1 readings (acknowledged from the durable log alone), the backlog
 * is checked, InfluxDB is restarted on the same folder and port, and the time until the log is fully confirmed
 * (ingest.flush) gives the drain rate. The devices stay idle during the drain: the backlog is all there is.
 */
export async function runDrain(env: BenchEnv, o: DrainOptions, name: string): Promise<DrainRun> {
  return withPlatform(
    env,
    name,
    o.devices,
    async ({ platform, addr, database, devices, warnings, expected }) => {
      const ingest = platform.parts.ingest;
      const perDevice = Math.ceil(o.readings / o.devices);
      await stopInflux(env);
      // Whatever fails from here on, the next runs need InfluxDB back.
      let down = true;
      try {
        const outageCpu = cpuMeter(undefined);
        const { result: r, cpuMs } = await env.load.throughput({
          mqttUrl: addr.mqtt,
          devices,
          seconds: 120, // a time limit only: the run ends when every device sent its readings
          window: o.window,
          readingsPerMessage: o.readingsPerMessage,
          readingsPerDevice: perDevice,
          base: timeBase(),
        });
        const outageShare = outageCpu.stop(cpuMs);
        const s0 = ingest.state();
        const health = (await (await fetch(`${addr.api}/api/v1/health`)).json()) as { durableLog: { backlogReadings: number } };

        const t0 = process.hrtime.bigint();
        down = false;
        await restartInflux(env);
        const tReady = process.hrtime.bigint();
        const drainCpu = cpuMeter(env.influx.pid);
        let first: { t: bigint; points: number } | undefined;
        const sampler = setInterval(() => {
          const points = ingest.state().log.points;
          if (points < s0.log.points) {
            first = { t: process.hrtime.bigint(), points };
            clearInterval(sampler);
          }
        }, 10);
        let flushed: boolean;
        try {
          flushed = await ingest.flush(90_000);
        } finally {
          clearInterval(sampler);
        }
        const tEmpty = process.hrtime.bigint();
        const drainShare = drainCpu.stop(0);
        const s1 = ingest.state();
        const stored = await countReadings(env.influx.url, database);
        const secs = (a: bigint, b: bigint) => Number(b - a) / 1e9;
        const drainSeconds = secs(tReady, tEmpty);
        const publishSeconds = Number(r.lastAckNs - r.startNs) / 1e9;
        return {
          ackedReadings: r.readings,
          targetReadings: perDevice * o.devices,
          publishSeconds,
          ackedPerSecond: r.readings / publishSeconds,
          backlog: s0.log.points,
          healthBacklog: health.durableLog.backlogReadings,
          storedDuringOutage: s0.writer.stored,
          restartSeconds: secs(t0, tReady),
          firstConfirmSeconds: first ? secs(tReady, first.t) : Number.NaN,
          drainSeconds,
          drainPerSecond: flushed ? s0.log.points / drainSeconds : Number.NaN,
          activeDrainPerSecond: flushed && first ? first.points / secs(first.t, tEmpty) : Number.NaN,
          flushed,
          finalState: {
            logPoints: s1.log.points,
            buffered: s1.writer.buffered,
            inFlight: s1.writer.inFlight,
            healthy: s1.writer.healthy,
            lastError: s1.writer.lastError,
          },
          storedReadings: stored,
          loss: r.readings - stored,
          writer: writerCounters(platform),
          outageCpu: outageShare,
          drainCpu: drainShare,
          warnings,
          outageLogLines: expected.length,
        };
      } finally {
        if (down) await restartInflux(env);
      }
    },
    { expected: OUTAGE_LINES },
  );
}

export interface WriterCounters {
  stored: number;
  dropped: number;
  rejected: number;
  deadLetters: number;
  /** Code and reason of the newest dead letter: why acknowledged readings were refused, if any were. */
  lastDeadLetter?: string;
}

function writerCounters(platform: Platform): WriterCounters {
  const s = platform.parts.ingest.state();
  const last = platform.parts.ingest.deadLetters.list({ limit: 1 })[0];
  return {
    stored: s.writer.stored,
    dropped: s.writer.dropped,
    rejected: s.writer.rejected,
    deadLetters: s.deadLetters,
    lastDeadLetter: last ? `${last.code}: ${last.reason}` : undefined,
  };
}

/** Points of the traffic measurement in the run's database (its default retention policy is the platform's). */
async function countReadings(influxUrl: string, database: string): Promise<number> {
  const body = await influxQuery(influxUrl, database, 'SELECT count("intensity") FROM "traffic"');
  return (body.results?.[0]?.series?.[0]?.values[0]?.[1] as number | undefined) ?? 0;
}

type QueryBody = { results?: { series?: { values: unknown[][] }[]; error?: string }[] };

async function influxQuery(influxUrl: string, database: string, q: string): Promise<QueryBody> {
  const params = new URLSearchParams({ q, epoch: 'ms' });
  if (database) params.set('db', database);
  // POST: InfluxDB 1.x refuses DROP and other writes through GET /query.
  const res = await fetch(`${influxUrl}/query?${params}`, { method: 'POST' });
  const body = (await res.json()) as QueryBody;
  const error = body.results?.[0]?.error;
  if (!res.ok || error) throw new Error(`InfluxDB query failed (HTTP ${res.status}): ${error ?? JSON.stringify(body)}\nquery: ${q}`);
  return body;
}
