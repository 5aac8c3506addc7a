/**
 * End-to-end measurements on the real platform: a private InfluxDB, a platform on ephemeral loopback ports and
 * the device load generator (bench/load.ts) in a child process.
 *
 * Each run gets a fresh platform with its own data folder and its own InfluxDB database (dropped afterwards),
 * so "stored" is simply the point count of that database and runs cannot disturb each other's numbers.
 */
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HostRequest, HostResponse, HostStarted } from './platform-host.ts';
import { deviceFamilies, type Load } from './families.ts';
import { benchOverrides, provisionBenchDevices, type PlatformOptions } from './settings.ts';
export { RATE_LIMIT_OFF } from './settings.ts';
import { loadConfig, type ConfigInput } from '../platform/config.ts';
import { startLocalInflux, type LocalInflux } from '../platform/influxdb-local.ts';
import { createPlatform, type Platform, type PlatformAddresses } from '../platform/platform.ts';
import { Aedes } from 'aedes';
import type { Family } from '../core/contract.ts';
import {
  COUNTED_FIELD,
  type BenchDevice,
  type IdleArgs,
  type IdleResult,
  type LatencyArgs,
  type LatencyResult,
  type LoadClient,
  type LoadRequest,
  type LoadResponse,
  type SinkArgs,
  type SinkResult,
  type SocketsArgs,
  type SocketsResult,
  type StormArgs,
  type StormResult,
  type ThroughputArgs,
  type ThroughputResult,
} from './load.ts';
import { summarize, type LatencySummary } from './stats.ts';

/** Observation times start an hour back: inside the 90 d retention, and runs of a few seconds never reach "now". */
const timeBase = () => Date.now() - 3_600_000;

export interface BenchEnv {
  /** The running InfluxDB; replaced by restartInflux() (same folder and port, new process). */
  influx: LocalInflux;
  /** From the X-Influxdb-Version header of /ping. */
  influxVersion: string;
  load: LoadGenerator;
  /** The devices' MQTT client in every load and the baseline's subscriber (bench/lean-client.ts or MQTT.js). */
  client: LoadClient;
  /** What the devices of every run report, unless a run says otherwise: the city's mix or one family. */
  families: Load;
  /**
   * A second device process, started on first use: the baseline's subscriber, the fan-out's load sockets, and
   * half of the idle devices (a process may hold 20,000 file descriptors).
   */
  helper(): LoadGenerator;
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

export async function startBenchEnv(client: LoadClient = 'lean', families: Load = 'mix'): Promise<BenchEnv> {
  const tmp = await mkdtemp(join(tmpdir(), 'citypulse-bench-'));
  let env: BenchEnv | undefined;
  let influx: LocalInflux | undefined;
  let load: LoadGenerator | undefined;
  let second: LoadGenerator | undefined;
  let closing: Promise<void> | undefined;
  const active = new Set<() => Promise<void>>();
  const close = () =>
    (closing ??= (async () => {
      await Promise.all([...active].map((stop) => stop()));
      await load?.close();
      await second?.close();
      // The current instance: the drain phase replaces the first one (stop() is idempotent).
      await (env?.influx ?? influx)?.stop();
      await rm(tmp, { recursive: true, force: true });
    })());
  try {
    influx = await startLocalInflux({ dir: join(tmp, 'influxdb') });
    const ping = await fetch(`${influx.url}/ping`);
    const influxVersion = ping.headers.get('x-influxdb-version') ?? 'unknown';
    load = new LoadGenerator();
    env = {
      influx,
      influxVersion,
      load,
      client,
      families,
      helper: () => (second ??= new LoadGenerator()),
      dir: tmp,
      active,
      close,
    };
    return env;
  } catch (err) {
    await close();
    throw err;
  }
}

/** A command without its id (distributed over the union of commands). */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/**
 * A forked bench process (tsx loaded in it too) answering commands over IPC: `{ id, … }` out, `{ id, ok, … }`
 * back. 'advanced' serialization carries the bigint timestamps. Closing the IPC channel ends the child.
 */
class IpcChild<Req extends { id: number }, Res extends { id: number; ok: boolean; error?: string }> {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve(v: Res): void; reject(e: Error): void }>();
  private nextId = 1;
  private exited = false;

  constructor(
    file: string,
    private readonly label: string,
    private readonly killAfterMs: number,
  ) {
    this.child = fork(fileURLToPath(new URL(file, import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m: Res) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m);
      else p.reject(new Error(`${label}: ${m.error}`));
    });
    this.child.on('exit', (code, signal) => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error(`${label} exited (${signal ?? `code ${code}`})`));
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Sends a command (its id is filled in); resolves with the child's successful answer. */
  request(req: WithoutId<Req>): Promise<Res> {
    if (this.exited) return Promise.reject(new Error(`${this.label} is not running`));
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.child.send({ ...req, id });
    });
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.disconnect(); // the child exits when its IPC channel closes (no command runs by now)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), this.killAfterMs);
    await gone;
    clearTimeout(timer);
  }
}

/** The forked device process (bench/load.ts), one command at a time over IPC. */
export class LoadGenerator extends IpcChild<LoadRequest, LoadResponse> {
  constructor() {
    super('./load.ts', 'load generator', 5000);
  }

  throughput(args: ThroughputArgs): Promise<Answer<ThroughputResult>> {
    return this.command('throughput', args) as Promise<Answer<ThroughputResult>>;
  }

  latency(args: LatencyArgs): Promise<Answer<LatencyResult>> {
    return this.command('latency', args) as Promise<Answer<LatencyResult>>;
  }

  sink(args: SinkArgs): Promise<Answer<SinkResult>> {
    return this.command('sink', args) as Promise<Answer<SinkResult>>;
  }

  sinkStop(): Promise<Answer<SinkResult>> {
    return this.command('sinkStop', {}) as Promise<Answer<SinkResult>>;
  }

  idle(args: IdleArgs): Promise<Answer<IdleResult>> {
    return this.command('idle', args) as Promise<Answer<IdleResult>>;
  }

  release(): Promise<Answer<IdleResult>> {
    return this.command('release', {}) as Promise<Answer<IdleResult>>;
  }

  storm(args: StormArgs): Promise<Answer<StormResult>> {
    return this.command('storm', args) as Promise<Answer<StormResult>>;
  }

  sockets(args: SocketsArgs): Promise<Answer<SocketsResult>> {
    return this.command('sockets', args) as Promise<Answer<SocketsResult>>;
  }

  socketsStop(): Promise<Answer<SocketsResult>> {
    return this.command('socketsStop', {}) as Promise<Answer<SocketsResult>>;
  }

  private async command(cmd: LoadRequest['cmd'], args: unknown): Promise<Answer<unknown>> {
    const m = (await this.request({ cmd, args } as WithoutId<LoadRequest>)) as LoadResponse & { ok: true };
    return { result: m.result, cpuMs: m.cpuMs };
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
  /** CPU time of the platform process meanwhile, ms: per reading, the figure other processes disturb least. */
  platformMs: number;
  /**
   * The platform's main thread alone (MQTT, validation, analytics, sockets), % of one core: its ceiling is 100,
   * whatever the store worker thread and Node's helper threads use besides.
   */
  mainThread: number;
  /** The store worker thread (durable log, InfluxDB writer), % of one core; NaN where not measured. */
  storeThread: number;
  /** CPU time of the main thread and of the store worker thread meanwhile, ms (per reading: ÷ readings). */
  mainThreadMs: number;
  storeThreadMs: number;
}

/**
 * Starts measuring CPU of this process (the platform) and influxd; `stop(devicesCpuMs)` adds the device
 * process's own figure. On 2 cores the three compete, so the shares explain where a throughput ceiling is.
 * No `influxdPid`: InfluxDB is stopped (an outage), its share is 0.
 */
function cpuMeter(influxdPid: number | undefined, storeThreadId?: number): { stop(devicesCpuMs: number): CpuShare } {
  const wall0 = process.hrtime.bigint();
  const own0 = process.cpuUsage();
  // The main thread's task id is the process id.
  const threadMs = (tid: number | undefined) => (tid === undefined ? Number.NaN : statCpuMs(`/proc/self/task/${tid}/stat`));
  const main0 = threadMs(process.pid);
  const store0 = threadMs(storeThreadId);
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
      const mainMs = threadMs(process.pid) - main0;
      const storeMs = threadMs(storeThreadId) - store0;
      return {
        platform: pct(platform),
        devices: pct(devicesCpuMs),
        influxd: pct(influxd),
        // Machine-wide busy time minus ours: catches short-lived processes too (other sessions' test runs).
        others: Math.max(0, pct(machine1.busy - machine0.busy - platform - devicesCpuMs - influxd)),
        idle: pct(machine1.idle - machine0.idle),
        platformMs: platform,
        mainThread: pct(mainMs),
        storeThread: pct(storeMs),
        mainThreadMs: mainMs,
        storeThreadMs: storeMs,
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
  return statCpuMs(`/proc/${pid}/stat`);
}

/** utime + stime from a /proc stat file: a process's, or one thread's (`/proc/self/task/<tid>/stat`). */
function statCpuMs(file: string): number {
  try {
    // Fields after the parenthesised command name: state is field 3, utime 14 and stime 15.
    const stat = readFileSync(file, 'utf8');
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

/**
 * A run's cleanup, registered with the bench (which runs it on an abort too) until it has run, and run once:
 * `stop` (the platform), then its database and data folder.
 */
function runCleanup(env: BenchEnv, database: string, dataDir: string, stop: () => Promise<void>): () => Promise<void> {
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      await stop();
      await dropDatabase(env.influx.url, database);
      await rm(dataDir, { recursive: true, force: true });
      env.active.delete(cleanup);
    })());
  env.active.add(cleanup);
  return cleanup;
}

/**
 * Drops a run's database after killing the queries still running on it. A SELECT … INTO still running there
 * (a catch-up or a continuous query) and DROP DATABASE deadlocked InfluxDB 1.6 here: every later write to any
 * database timed out until influxd was killed (the stalled storm run). Best effort: a failure leaves a
 * database behind, which the bench's InfluxDB folder removal takes away.
 */
async function dropDatabase(influxUrl: string, database: string): Promise<void> {
  try {
    const running = (await influxQuery(influxUrl, '', 'SHOW QUERIES')).results?.[0]?.series?.[0]?.values ?? [];
    for (const [qid, query, db] of running as [number, string, string][])
      if (db === database || query.includes(`${database}.`) || query.includes(`"${database}"`))
        await influxQuery(influxUrl, '', `KILL QUERY ${qid}`).catch(() => undefined);
    await influxQuery(influxUrl, '', `DROP DATABASE "${database}"`);
  } catch {
    /* best effort */
  }
}

/**
 * Starts a fresh platform (own data folder and database) with `deviceCount` devices of `families` (the bench's
 * choice unless the run says otherwise), runs `fn`, cleans up.
 */
async function withPlatform<T>(
  env: BenchEnv,
  name: string,
  deviceCount: number,
  fn: (ctx: RunContext) => Promise<T>,
  opts: PlatformOptions = {},
  families: Load = env.families,
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
  const config = loadConfig({ env: {}, overrides: benchOverrides(env.influx.url, dataDir, database, opts) });
  const platform = createPlatform(config, { logDestination });
  const cleanup = runCleanup(env, database, dataDir, () => platform.stop());
  try {
    const addr = await platform.start();
    const devices = await provisionBenchDevices(platform, deviceFamilies(families, deviceCount));
    // The platform's event-loop delay over the run (what every reading waits behind), printed per run.
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    // CITYPULSE_BENCH_ALLOC_PROFILE=<run name> (tp1_on_1, say): an allocation profile of that run, garbage
    // included, to <run name>.heapprofile (open it in Chrome DevTools' Memory tab). GC cost follows allocation.
    const allocProfile = process.env.CITYPULSE_BENCH_ALLOC_PROFILE === name ? new Session() : undefined;
    if (allocProfile) {
      allocProfile.connect();
      await allocProfile.post('HeapProfiler.startSampling', {
        samplingInterval: 4096,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      } as never);
    }
    // CITYPULSE_BENCH_CPU_PROFILE=<run name>: a CPU profile of that run alone (the platform's thread; the devices
    // are other processes) to <run name>.cpuprofile, for bench/cpu-profile.ts.
    const cpuProfile = process.env.CITYPULSE_BENCH_CPU_PROFILE === name ? new Session() : undefined;
    if (cpuProfile) {
      cpuProfile.connect();
      await cpuProfile.post('Profiler.enable');
      await cpuProfile.post('Profiler.setSamplingInterval', { interval: 200 });
      await cpuProfile.post('Profiler.start');
    }
    try {
      return await fn({ platform, addr, database, devices, warnings, expected });
    } finally {
      if (cpuProfile) {
        const r = (await cpuProfile.post('Profiler.stop')) as { profile: unknown };
        writeFileSync(`${name}.cpuprofile`, JSON.stringify(r.profile));
        cpuProfile.disconnect();
        console.log(`  ${name}: CPU profile written to ${name}.cpuprofile`);
      }
      if (allocProfile) {
        const r = (await allocProfile.post('HeapProfiler.stopSampling')) as { profile: unknown };
        writeFileSync(`${name}.heapprofile`, JSON.stringify(r.profile));
        allocProfile.disconnect();
        console.log(`  ${name}: allocation profile written to ${name}.heapprofile`);
      }
      loop.disable();
      const ms = (ns: number) => (ns / 1e6).toFixed(0);
      console.log(
        `  ${name}: platform event-loop delay p50 / p99 / max ${ms(loop.percentile(50))} / ${ms(loop.percentile(99))} / ${ms(loop.max)} ms`,
      );
    }
  } finally {
    await cleanup();
  }
}

export interface ThroughputOptions {
  devices: number;
  seconds: number;
  window: number;
  readingsPerMessage: number;
  /** durability.fsync (true is the default). */
  fsync: boolean;
  /** What the devices report (default: the bench's choice, BenchEnv.families). */
  families?: Load;
}

export interface ThroughputRun {
  fsync: boolean;
  families: Load;
  ackedReadings: number;
  /** Acknowledged readings per family (a mix: how the load split). */
  readingsByFamily: Partial<Record<Family, number>>;
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
      const cpu = cpuMeter(env.influx.pid, platform.parts.ingest.storeThreadId());
      const { result: r, cpuMs } = await env.load.throughput({
        mqttUrl: addr.mqtt,
        client: env.client,
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
        families: o.families ?? env.families,
        ackedReadings: r.readings,
        readingsByFamily: r.readingsByFamily,
        ackedMessages: r.messages,
        storedReadings: stored,
        loss: r.readings - stored,
        publishSeconds,
        ackedPerSecond: r.readings / publishSeconds,
        endToEndSeconds,
        storedPerSecond: stored / endToEndSeconds,
        flushed,
        writer: await writerCounters(platform),
        cpu: cpuShare,
        warnings,
      };
    },
    { fsync: o.fsync },
    o.families,
  );
}

export interface LatencyOptions {
  devices: number;
  seconds: number;
  rate: number;
  samples: number;
  /** The measuring socket asks for batched events. */
  batch?: boolean;
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

export async function runLatency(
  env: BenchEnv,
  o: LatencyOptions,
  name: string,
  /** Runs before the load starts; its result runs once the load ended (extra sockets of the fan-out). */
  around?: (platform: Platform, addr: PlatformAddresses) => Promise<() => Promise<void>>,
): Promise<LatencyRun> {
  return withPlatform(env, name, o.devices, async ({ platform, addr, database, devices, warnings }) => {
    const after = await around?.(platform, addr);
    const cpu = cpuMeter(env.influx.pid, platform.parts.ingest.storeThreadId());
    const { result: r, cpuMs } = await env.load.latency({
      mqttUrl: addr.mqtt,
      client: env.client,
      apiUrl: addr.api,
      apiToken: platform.adminToken,
      influxUrl: env.influx.url,
      database,
      devices,
      seconds: o.seconds,
      rate: o.rate,
      samples: o.samples,
      base: timeBase(),
      batch: o.batch,
    });
    const cpuShare = cpu.stop(cpuMs);
    await after?.();
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
        const outageCpu = cpuMeter(undefined, ingest.storeThreadId());
        const { result: r, cpuMs } = await env.load.throughput({
          mqttUrl: addr.mqtt,
          client: env.client,
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
        const drainCpu = cpuMeter(env.influx.pid, ingest.storeThreadId());
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
          writer: await writerCounters(platform),
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

async function writerCounters(platform: Platform): Promise<WriterCounters> {
  const s = platform.parts.ingest.state();
  const last = (await platform.parts.ingest.deadLetters.list({ limit: 1 }))[0];
  return {
    stored: s.writer.stored,
    dropped: s.writer.dropped,
    rejected: s.writer.rejected,
    deadLetters: s.deadLetters,
    lastDeadLetter: last ? `${last.code}: ${last.reason}` : undefined,
  };
}

/** Readings stored in the run's database, every family's measurement (its default retention policy is the platform's). */
async function countReadings(influxUrl: string, database: string): Promise<number> {
  let n = 0;
  for (const [family, field] of Object.entries(COUNTED_FIELD)) {
    const body = await influxQuery(influxUrl, database, `SELECT count("${field}") FROM "${family}"`);
    n += (body.results?.[0]?.series?.[0]?.values[0]?.[1] as number | undefined) ?? 0;
  }
  return n;
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

// ---------- the bare-broker baseline ----------

export interface BaselineRun {
  ackedReadings: number;
  ackedMessages: number;
  /** Messages the one subscriber received (relayed by the broker). */
  relayedMessages: number;
  /** acked − relayed messages (0: the broker relayed everything it acknowledged). */
  loss: number;
  publishSeconds: number;
  ackedPerSecond: number;
  cpu: CpuShare;
}

/**
 * A bare Aedes broker (defaults, no hooks, in this process as the platform would be) relaying QoS 1 to one
 * QoS 1 subscriber in the helper process, loaded by the same load generator with the same payloads as the
 * throughput runs: the ceiling the platform's broker path is compared with.
 */
export async function runBaseline(
  env: BenchEnv,
  o: { devices: number; seconds: number; window: number; readingsPerMessage: number; families?: Load },
): Promise<BaselineRun> {
  const aedes = await Aedes.createBroker();
  const server = net.createServer(aedes.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const sink = env.helper();
  try {
    await sink.sink({ mqttUrl: url, client: env.client, topic: 'devices/+/telemetry' });
    const devices = deviceFamilies(o.families ?? env.families, o.devices).map((family, i) => ({
      id: `base-${String(i).padStart(4, '0')}`,
      token: 'x',
      family,
    }));
    const cpu = cpuMeter(env.influx.pid);
    const { result: r, cpuMs } = await env.load.throughput({
      mqttUrl: url,
      client: env.client,
      devices,
      seconds: o.seconds,
      window: o.window,
      readingsPerMessage: o.readingsPerMessage,
      base: timeBase(),
    });
    const share = cpu.stop(cpuMs);
    // The last relays may trail the publishers' acks by a moment.
    await new Promise((res) => setTimeout(res, 1000));
    const relayed = (await sink.sinkStop()).result.messages;
    const publishSeconds = Number(r.lastAckNs - r.startNs) / 1e9;
    return {
      ackedReadings: r.readings,
      ackedMessages: r.messages,
      relayedMessages: relayed,
      loss: r.messages - relayed,
      publishSeconds,
      ackedPerSecond: r.readings / publishSeconds,
      cpu: share,
    };
  } finally {
    await sink.sinkStop().catch(() => undefined);
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

// ---------- idle connections and memory ----------

/** Resident memory of a process, MiB, from /proc/<pid>/status (VmRSS), as `ps` and `top` show it. */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/**
 * Resident memory after `seconds` of idleness: no forced GC, so the figure is what a deployment holds once V8's
 * own memory reducer has run (it compacts the heap and shrinks the young generation some seconds after the
 * allocation rate drops; about 20 s after 15,000 connections here). A forced gc() measures more, not less: it
 * neither shrinks the young generation nor compacts every fragmented page.
 */
async function idleRss(pid: number, seconds: number): Promise<number> {
  for (let i = 0; i < seconds; i++) await new Promise((r) => setTimeout(r, 1000));
  return rssMiB(pid);
}

/** A platform in its own process (bench/platform-host.ts), one command at a time over IPC. */
class PlatformProcess extends IpcChild<HostRequest, HostResponse> {
  constructor() {
    // NODE_OPTIONS (a V8 flag, say) reaches the child through the environment, as with `npm start`.
    super('./platform-host.ts', 'platform process', 15_000);
  }

  private async call<T>(req: WithoutId<HostRequest>): Promise<T> {
    return ((await this.request(req)) as HostResponse & { ok: true }).result as T;
  }
  start(overrides: ConfigInput, devices: number): Promise<HostStarted> {
    return this.call({ cmd: 'start', overrides, devices });
  }
  online(): Promise<number> {
    return this.call({ cmd: 'online' });
  }
  async heapMiB(): Promise<number> {
    return (await this.call<number>({ cmd: 'heap' })) / 2 ** 20;
  }
  /** Stops the platform; its warnings. */
  stop(): Promise<string[]> {
    return this.call({ cmd: 'stop' });
  }
}

export interface ConnectionsRun {
  devices: number;
  connected: number;
  /** Platform's count of online devices once every device had its CONNACK. */
  online: number;
  connectSeconds: number;
  /** Resident memory of the platform process (the platform alone), MiB, after `settleSeconds` idle. */
  rssBeforeMiB: number;
  rssAfterMiB: number;
  /** Resident memory right after the last device was online, before the idle memory reducer ran, MiB. */
  rssConnectedMiB: number;
  settleSeconds: number;
  /** V8 heap in use before and after, MiB (live objects and not yet collected garbage). */
  heapBeforeMiB: number;
  heapAfterMiB: number;
  /** (after − before) / devices, KiB. */
  perDeviceKiB: number;
  /** Resident memory while the devices connected, MiB (sampled every 100 ms). */
  rssPeakMiB: number;
  warnings: string[];
}

/**
 * Broker limits for thousands of bench devices connecting from one loopback address (real ones come from many).
 * maxConnections: with the bench's api.maxConnections (settings.ts) and the platform's own share, the 20,000
 * descriptors of a process (platform/descriptor-budget.ts), and room above --idle-devices' 18,000.
 */
export const MANY_DEVICES_BROKER: ConfigInput['broker'] = { maxConnectionAttemptsPerAddress: 0, maxConnections: 18_400 };

/**
 * Idle devices held by one platform: a platform in its own process (bench/platform-host.ts, the same settings
 * as the other runs), `devices` MQTT connections (half in each device process), the platform process's resident
 * memory before and after (each after `settleSeconds` idle, see idleRss), and the platform's own online count.
 */
export async function runConnections(
  env: BenchEnv,
  o: { devices: number; concurrency: number; settleSeconds: number },
  name: string,
): Promise<ConnectionsRun> {
  const dataDir = await mkdtemp(join(env.dir, 'platform-'));
  const database = `bench_${name}`;
  const host = new PlatformProcess();
  const cleanup = runCleanup(env, database, dataDir, () => host.close());
  const gens = [env.load, env.helper()];
  let parts: BenchDevice[][] = [];
  try {
    const { mqtt, devices } = await host.start(
      benchOverrides(env.influx.url, dataDir, database, { broker: MANY_DEVICES_BROKER }),
      o.devices,
    );
    const rssBefore = await idleRss(host.pid, o.settleSeconds);
    const heapBefore = await host.heapMiB();
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(host.pid))), 100);
    const half = Math.ceil(devices.length / 2);
    parts = [devices.slice(0, half), devices.slice(half)].filter((p) => p.length);
    try {
      const t0 = process.hrtime.bigint();
      const answers = await Promise.all(
        parts.map((p, i) =>
          (gens[i] as LoadGenerator).idle({
            mqttUrl: mqtt,
            devices: p,
            concurrency: o.concurrency,
            keepaliveSeconds: 300,
            client: env.client,
          }),
        ),
      );
      const connectSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      // The 'client' event (online) may trail the CONNACK by a tick.
      let online = await host.online();
      for (const until = Date.now() + 5000; online < devices.length && Date.now() < until; online = await host.online())
        await new Promise((r) => setTimeout(r, 50));
      clearInterval(sampler);
      const rssConnected = rssMiB(host.pid);
      peak = Math.max(peak, rssConnected);
      const rssAfter = await idleRss(host.pid, o.settleSeconds);
      const heapAfter = await host.heapMiB();
      const warnings = await host.stop();
      return {
        devices: devices.length,
        connected: answers.reduce((n, a) => n + a.result.connected, 0),
        online,
        connectSeconds,
        rssBeforeMiB: rssBefore,
        rssAfterMiB: rssAfter,
        rssConnectedMiB: rssConnected,
        settleSeconds: o.settleSeconds,
        heapBeforeMiB: heapBefore,
        heapAfterMiB: heapAfter,
        perDeviceKiB: ((rssAfter - rssBefore) * 1024) / Math.max(1, online),
        rssPeakMiB: peak,
        warnings,
      };
    } finally {
      clearInterval(sampler);
    }
  } finally {
    await Promise.all(parts.map((_, i) => (gens[i] as LoadGenerator).release().catch(() => undefined)));
    await cleanup();
  }
}

// ---------- reconnect storm ----------

export interface StormRun {
  devices: number;
  /** Readings flushed per device after reconnecting. */
  backlog: number;
  ackedReadings: number;
  storedReadings: number;
  loss: number;
  /** Cut → last device reconnected (CONNACK), s. */
  reconnectSeconds: number;
  /** Cut → last PUBACK, s. */
  ackedSeconds: number;
  /** Cut → every acknowledged reading stored in InfluxDB (ingest.flush), s: the storm absorbed. */
  storedSeconds: number;
  connectRetries: number;
  /**
   * Connections the kernel dropped because a listen queue was full (TcpExt ListenOverflows, machine-wide) from
   * the cut to the end; undefined where /proc/net/netstat cannot be read.
   */
  listenOverflows: number | undefined;
  /** Batched dashboard sockets subscribed to everything during the storm, the frames they received, and how many the server closed. */
  sockets: number;
  socketFrames: number;
  socketsClosed: number;
  flushed: boolean;
  writer: WriterCounters;
  cpu: CpuShare;
  warnings: string[];
}

/** The kernel's TcpExt ListenOverflows counter (Linux), or undefined. */
function listenOverflows(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const names = (lines[i] as string).split(' ');
      if (names[0] !== 'TcpExt:') continue;
      const k = names.indexOf('ListenOverflows');
      const v = Number((lines[i + 1] as string).split(' ')[k]);
      return k > 0 && Number.isFinite(v) ? v : undefined;
    }
  } catch {
    // not Linux
  }
  return undefined;
}

/**
 * `devices` idle devices (platform defaults, rate limit included; only the per-address connection limits are
 * lifted) lose their connections at once, reconnect at once and each flush `backlog` readings (QoS 1,
 * `readingsPerMessage` a message). Measured: cut → every acknowledged reading stored; acked vs stored.
 */
export async function runStorm(
  env: BenchEnv,
  o: { devices: number; backlog: number; readingsPerMessage: number; window: number; concurrency: number; sockets: number },
  name: string,
): Promise<StormRun> {
  return withPlatform(
    env,
    name,
    o.devices,
    async ({ platform, addr, database, devices, warnings }) => {
      const half = Math.ceil(devices.length / 2);
      const parts = [devices.slice(0, half), devices.slice(half)].filter((p) => p.length);
      const gens = [env.load, env.helper()];
      await Promise.all(
        parts.map((p, i) =>
          (gens[i] as LoadGenerator).idle({
            mqttUrl: addr.mqtt,
            devices: p,
            concurrency: o.concurrency,
            keepaliveSeconds: 300,
            client: env.client,
          }),
        ),
      );
      // Operators' screens watching everything while it happens (batched sockets, as the dashboard's): every
      // disconnect and reconnect is a status change they receive.
      if (o.sockets > 0)
        await (gens[1] as LoadGenerator).sockets({ apiUrl: addr.api, apiToken: platform.adminToken, count: o.sockets, batch: true });
      const cpu = cpuMeter(env.influx.pid, platform.parts.ingest.storeThreadId());
      const overflowsBefore = listenOverflows();
      const base = timeBase();
      const answers = await Promise.all(
        parts.map((_, i) =>
          (gens[i] as LoadGenerator).storm({
            mqttUrl: addr.mqtt,
            client: env.client,
            backlog: o.backlog,
            readingsPerMessage: o.readingsPerMessage,
            window: o.window,
            base,
            timeoutSeconds: 120,
          }),
        ),
      );
      const flushed = await platform.parts.ingest.flush(120_000);
      const storedNs = process.hrtime.bigint();
      const overflowsAfter = listenOverflows();
      const screens = o.sockets > 0 ? (await (gens[1] as LoadGenerator).socketsStop()).result : { frames: 0, bytes: 0, closed: 0 };
      const cpuMs = answers.reduce((n, a) => n + a.cpuMs, 0);
      const share = cpu.stop(cpuMs);
      const stored = await countReadings(env.influx.url, database);
      const rs = answers.map((a) => a.result);
      // Both device processes cut at about the same moment; the earlier cut is the start.
      // biome-ignore lint/complexity/useMathMinMax: bigints, which Math.min does not take
      const cut = rs.reduce((m, r) => (r.cutNs < m ? r.cutNs : m), rs[0]?.cutNs ?? 0n);
      // biome-ignore lint/complexity/useMathMinMax: bigints, which Math.max does not take
      const max = (f: (r: StormResult) => bigint) => rs.reduce((m, r) => (f(r) > m ? f(r) : m), 0n);
      const secs = (t: bigint) => Number(t - cut) / 1e9;
      const acked = rs.reduce((n, r) => n + r.readings, 0);
      return {
        devices: devices.length,
        backlog: o.backlog,
        ackedReadings: acked,
        storedReadings: stored,
        loss: acked - stored,
        reconnectSeconds: secs(max((r) => r.reconnectedNs)),
        ackedSeconds: secs(max((r) => r.lastAckNs)),
        storedSeconds: secs(storedNs),
        connectRetries: rs.reduce((n, r) => n + r.connectRetries, 0),
        listenOverflows: overflowsBefore === undefined || overflowsAfter === undefined ? undefined : overflowsAfter - overflowsBefore,
        sockets: o.sockets,
        socketFrames: screens.frames,
        socketsClosed: screens.closed,
        flushed,
        writer: await writerCounters(platform),
        cpu: share,
        warnings,
      };
    },
    { broker: MANY_DEVICES_BROKER, rateLimit: true },
  );
}

// ---------- fan-out ----------

export interface FanoutRun extends LatencyRun {
  sockets: number;
  /** Frames and bytes the load sockets received, and how many of them the server closed (slow consumers). */
  loadFrames: number;
  loadBytes: number;
  loadClosed: number;
}

/**
 * The latency run with `sockets − 1` more dashboard sockets subscribed to everything (raw WebSocket clients in
 * the helper process); the measuring socket subscribes last, so the server writes to it last.
 */
export async function runFanout(env: BenchEnv, o: LatencyOptions & { sockets: number; batch: boolean }, name: string): Promise<FanoutRun> {
  const helper = env.helper();
  let load: SocketsResult = { frames: 0, bytes: 0, closed: 0 };
  const run = await runLatency(env, o, name, async (platform, addr) => {
    await helper.sockets({ apiUrl: addr.api, apiToken: platform.adminToken, count: o.sockets - 1, batch: o.batch });
    return async () => {
      load = (await helper.socketsStop()).result;
    };
  });
  return { ...run, sockets: o.sockets, loadFrames: load.frames, loadBytes: load.bytes, loadClosed: load.closed };
}
