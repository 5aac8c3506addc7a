/**
 * Start time and resident memory of the platform, run either way it can be run: compiled (`node
 * dist/bin/citypulse.js start`, what `npm start` and the systemd service run) or from its TypeScript sources under
 * tsx (`node --import tsx bin/citypulse.ts start`, what `npm run dev` runs).
 *
 *   npm run bench:start [-- --runs=3] [--warmup=1] [--settle-seconds=5] [--modes=compiled,tsx,tsx-cold]
 *
 * Each run is `citypulse start` with the default configuration (its own local influxd and the simulated city) on a
 * fresh temp data folder and free loopback ports, timed from the spawn until
 * - health: GET /api/v1/health answers 200 (broker, ingest, API and InfluxDB up), with the CPU time the platform
 *   process and its helper processes used until then (all threads; influxd not counted), which other load on the
 *   machine stretches much less than the wall time;
 * - ready: the platform printed "Ctrl+C to stop." (the simulated city's devices provisioned and connected too);
 * then, --settle-seconds after ready, the resident memory (VmRSS) of the platform process and of its helper
 * processes: its children other than influxd (which is the same either way), i.e. tsx's esbuild services.
 * Then SIGTERM, and the next run. The modes alternate within each round, so that they share the machine's
 * conditions; warm-up rounds are not reported. tsx is measured with its compile cache warm (its usual state, filled
 * by the previous start) and, as tsx-cold, with an empty one (a fresh TMPDIR: the first start after an install or
 * a change of the sources).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort } from '../platform/influxdb-local.ts';
import { markdownTable, median, textTable } from './stats.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const COMPILED_ENTRY = join(REPO, 'dist', 'bin', 'citypulse.js');

const MODES = {
  compiled: { label: 'compiled (node dist/bin/citypulse.js)', args: [COMPILED_ENTRY], coldCache: false },
  tsx: { label: 'tsx, compile cache warm', args: ['--import', 'tsx', 'bin/citypulse.ts'], coldCache: false },
  'tsx-cold': { label: 'tsx, compile cache empty', args: ['--import', 'tsx', 'bin/citypulse.ts'], coldCache: true },
} as const;
type Mode = keyof typeof MODES;

interface Run {
  mode: Mode;
  /** ms from spawn until /api/v1/health answered 200. */
  healthMs: number;
  /** ms from spawn until "Ctrl+C to stop." (everything started, simulated city included). */
  readyMs: number;
  /** CPU time (user + system, all threads) of the platform process and its helpers until health answered, ms. */
  cpuMs: number;
  /** VmRSS of the platform process, MiB. */
  rssMiB: number;
  /** Children other than influxd (tsx's esbuild services): how many, and their VmRSS together, MiB. */
  helpers: number;
  helpersMiB: number;
}

const READY_LINE = 'Ctrl+C to stop.';

/** Clock ticks a second of /proc/<pid>/stat's times. */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** CPU time (utime + stime: every thread of the process) of `pid`, ms. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

async function vmRssKiB(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''));
  return m ? Number(m[1]) : 0;
}

/** Live children of `pid`: their pid and name (comm). */
async function children(pid: number): Promise<{ pid: number; name: string }[]> {
  const out: { pid: number; name: string }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const close = stat.lastIndexOf(')'); // comm may hold spaces and parentheses
    if (close < 0 || Number(stat.slice(close + 2).split(' ')[1]) !== pid) continue;
    out.push({ pid: Number(entry), name: stat.slice(stat.indexOf('(') + 1, close) });
  }
  return out;
}

/** The environment of a run: this one without any CITYPULSE_* option (the default configuration), plus `extra`. */
function runEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CITYPULSE_') && k !== 'NODE_OPTIONS') env[k] = v;
  return { ...env, ...extra };
}

async function runOnce(mode: Mode, settleSeconds: number): Promise<Run> {
  const dir = await mkdtemp(join(os.tmpdir(), 'citypulse-start-time-'));
  const dataDir = join(dir, 'data');
  const [api, mqtt, influx] = [await freePort(), await freePort(), await freePort()];
  const env = runEnv({
    CITYPULSE_DATA_DIR: dataDir,
    CITYPULSE_API_PORT: String(api),
    CITYPULSE_BROKER_PORT: String(mqtt),
    CITYPULSE_INFLUX_LOCAL_PORT: String(influx),
    ...(MODES[mode].coldCache ? { TMPDIR: dir } : {}),
  });
  const t0 = performance.now();
  const child = spawn(process.execPath, [...MODES[mode].args, 'start'], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let readyMs = 0;
  child.stdout.on('data', (d: Buffer) => (output += d));
  child.stderr.on('data', (d: Buffer) => {
    output += d;
    if (!readyMs && output.includes(READY_LINE)) readyMs = performance.now() - t0;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const fail = (why: string) => new Error(`${mode}: ${why}\n${output.slice(-3000)}`);
  try {
    let healthMs = 0;
    let cpu = 0;
    const until = Date.now() + 120_000;
    while (!healthMs || !readyMs) {
      if (child.exitCode !== null || child.signalCode !== null) throw fail('the platform exited during start');
      if (Date.now() > until) throw fail('not ready after 120 s');
      if (!healthMs) {
        const res = await fetch(`http://127.0.0.1:${api}/api/v1/health`).catch(() => undefined);
        if (res?.ok) {
          healthMs = performance.now() - t0;
          // The platform's own CPU time and its helpers' (tsx's esbuild services), not influxd's.
          const helpers = (await children(child.pid as number)).filter((c) => c.name !== 'influxd');
          cpu = (await Promise.all([child.pid as number, ...helpers.map((h) => h.pid)].map(cpuMs))).reduce((a, b) => a + b, 0);
        } else await res?.body?.cancel();
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, settleSeconds * 1000));
    const pid = child.pid as number;
    const helpers = (await children(pid)).filter((c) => c.name !== 'influxd');
    const helperKiB = (await Promise.all(helpers.map((h) => vmRssKiB(h.pid)))).reduce((a, b) => a + b, 0);
    return {
      mode,
      healthMs,
      readyMs,
      cpuMs: cpu,
      rssMiB: (await vmRssKiB(pid)) / 1024,
      helpers: helpers.length,
      helpersMiB: helperKiB / 1024,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(killer);
    }
    // An influxd left by a killed platform would hold its port: ended when that pid still runs on this data folder.
    const influxd = Number((await readFile(join(dataDir, 'influxdb', 'influxd.pid'), 'utf8').catch(() => '')).trim());
    const cmdline = influxd ? await readFile(`/proc/${influxd}/cmdline`, 'utf8').catch(() => '') : '';
    if (cmdline.includes('influxd') && cmdline.includes(dataDir)) process.kill(influxd, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

/** The 1, 5 and 15 minute load averages of the machine. */
function loadAverage(): string {
  return os
    .loadavg()
    .map((n) => n.toFixed(2))
    .join(' ');
}

function parse() {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '1' },
      'settle-seconds': { type: 'string', default: '5' },
      modes: { type: 'string', default: 'compiled,tsx,tsx-cold' },
    },
  });
  const int = (name: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer from ${min} to ${max}`);
    return n;
  };
  const modes = values.modes.split(',') as Mode[];
  for (const m of modes) if (!(m in MODES)) throw new Error(`--modes: one or more of ${Object.keys(MODES).join(', ')}`);
  return {
    runs: int('runs', values.runs, 1, 9),
    warmup: int('warmup', values.warmup, 0, 3),
    settleSeconds: int('settle-seconds', values['settle-seconds'], 0, 60),
    modes,
  };
}

async function main(): Promise<void> {
  const o = parse();
  if (o.modes.includes('compiled') && !existsSync(COMPILED_ENTRY))
    throw new Error(`${COMPILED_ENTRY} is missing: npm run build (npm run bench:start builds it)`);
  const cpus = os.cpus();
  console.log(
    `Machine: ${cpus[0]?.model.trim() ?? 'unknown'} × ${cpus.length}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}`,
  );
  const loadBefore = loadAverage();
  const runs: Run[] = [];
  for (let round = 1 - o.warmup; round <= o.runs; round++) {
    // The order rotates from round to round, so that no mode always follows another.
    const order = o.modes.map((_, i) => o.modes[(i + round + o.warmup) % o.modes.length] as Mode);
    for (const mode of order) {
      const r = await runOnce(mode, o.settleSeconds);
      const tag = round < 1 ? 'warm-up' : `round ${round}`;
      console.log(
        `${tag.padEnd(8)} ${mode.padEnd(9)} health ${(r.healthMs / 1000).toFixed(2)} s (CPU ${(r.cpuMs / 1000).toFixed(2)} s), ready ${(r.readyMs / 1000).toFixed(2)} s, ` +
          `RSS ${r.rssMiB.toFixed(0)} MiB + ${r.helpers} helper process(es) ${r.helpersMiB.toFixed(0)} MiB`,
      );
      if (round >= 1) runs.push(r);
    }
  }
  const fmt = (values: number[], f: (n: number) => string) =>
    values.length > 1 ? `${f(median(values))} (${f(Math.min(...values))}–${f(Math.max(...values))})` : f(median(values));
  const s = (n: number) => `${(n / 1000).toFixed(2)} s`;
  const mib = (n: number) => `${n.toFixed(0)} MiB`;
  const header = [
    'how it runs',
    'health answers',
    'CPU until health',
    'ready (simulated city on)',
    'RSS platform',
    'helper processes (RSS)',
    'RSS total',
  ];
  const rows = o.modes.map((mode) => {
    const rs = runs.filter((r) => r.mode === mode);
    const col = (value: (r: Run) => number, f: (n: number) => string) => fmt(rs.map(value), f);
    return [
      MODES[mode].label,
      col((r) => r.healthMs, s),
      col((r) => r.cpuMs, s),
      col((r) => r.readyMs, s),
      col((r) => r.rssMiB, mib),
      `${median(rs.map((r) => r.helpers))} (${mib(median(rs.map((r) => r.helpersMiB)))})`,
      col((r) => r.rssMiB + r.helpersMiB, mib),
    ];
  });
  // Wall times stretch when other processes share the cores; the platform's own CPU time much less so.
  console.log(`\nload average before → after: ${loadBefore} → ${loadAverage()}`);
  console.log(`Median (min–max) of ${o.runs} run(s) each; memory ${o.settleSeconds} s after ready:\n`);
  console.log(textTable(header, rows));
  console.log(`\n${markdownTable(header, rows)}`);
  const extra = [
    o.runs !== 3 ? ` --runs=${o.runs}` : '',
    o.warmup !== 1 ? ` --warmup=${o.warmup}` : '',
    o.settleSeconds !== 5 ? ` --settle-seconds=${o.settleSeconds}` : '',
    o.modes.join(',') !== 'compiled,tsx,tsx-cold' ? ` --modes=${o.modes.join(',')}` : '',
  ].join('');
  console.log(`\nCommand: npm run bench:start${extra ? ` --${extra}` : ''}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
