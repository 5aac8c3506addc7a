/**
 * Reads history from InfluxDB: a device's readings over a range with an aggregation window (mean of
 * numeric fields, last of enums and booleans), and a device's last stored reading.
 */
import { escape as influxEscape, type InfluxDB } from 'influx';
import { LAST_VALUE_FIELDS, FIELD_KINDS, type Family, type Tier } from '../ingest/index.ts';
import { durationMs } from '../ingest/rate-limit.ts';
import { utcOffsetMs } from '../platform/time-zone.ts';

export interface HistoryTarget {
  influx: InfluxDB;
  database: string;
  /** The raw readings' retention policy. */
  retentionPolicy: string;
  /** IANA time zone of the city (the profile's): windows of a day are city days. */
  timezone: string;
  /** Downsampled tiers (1-minute, 1-hour means), finest first; empty = raw only. */
  tiers?: readonly Tier[];
  /** Whether late readings of a range are still waiting to be recomputed into the tiers (ingest's downsampler). */
  tiersBehind?: (measurement: string, fromMs: number, toMs: number) => boolean;
}

export interface SeriesPoint {
  /** epoch ms (start of the window when aggregated; a 1d window starts at the city's midnight) */
  time: number;
  [field: string]: number | string | boolean | null;
}

/** Windows a client may ask for; `auto` picks the smallest that gives at most ~500 points. */
export const WINDOWS = ['raw', 'auto', '10s', '1m', '5m', '15m', '1h', '6h', '1d'] as const;
export type Window = (typeof WINDOWS)[number];
const WINDOW_MS: Record<string, number> = { '10s': 1e4, '1m': 6e4, '5m': 3e5, '15m': 9e5, '1h': 3.6e6, '6h': 2.16e7, '1d': 8.64e7 };
const MAX_POINTS = 500;
const RAW_LIMIT = 10000;

export function chooseWindow(fromMs: number, toMs: number): Exclude<Window, 'auto'> {
  const range = toMs - fromMs;
  for (const [w, ms] of Object.entries(WINDOW_MS)) if (range / ms <= MAX_POINTS) return w as Exclude<Window, 'auto'>;
  return '1d';
}

/**
 * The GROUP BY time offset that makes windows longer than an hour follow the city's clock: a 1d window is a
 * city day (Asia/Ho_Chi_Minh, UTC+7: 17:00 UTC to 17:00 UTC), a 6h window a quarter of it. InfluxDB aligns windows
 * to the epoch (UTC midnight) without it. The offset at `at` is used: exact for zones without daylight saving.
 */
export function cityWindowOffsetMs(windowMs: number, timeZone: string, at: number): number {
  if (windowMs <= 3_600_000) return 0;
  return ((-utcOffsetMs(at, timeZone) % windowMs) + windowMs) % windowMs;
}

function from(t: HistoryTarget, family: Family, rp = t.retentionPolicy): string {
  return `${influxEscape.quoted(t.database)}.${influxEscape.quoted(rp)}.${influxEscape.quoted(family)}`;
}

/**
 * The tier a window reads from: the coarsest tier whose interval divides the window and still holds the
 * start of the range; undefined = raw. A 1-year chart (window 1d) reads hourly means, a day (1m..5m) minute means.
 */
export function chooseTier(t: HistoryTarget, window: Exclude<Window, 'auto'>, fromMs: number, now = Date.now()): Tier | undefined {
  if (window === 'raw') return undefined;
  const w = WINDOW_MS[window] as number;
  let best: Tier | undefined;
  for (const tier of t.tiers ?? []) {
    const every = durationMs(tier.every);
    if (every > w || w % every !== 0) continue;
    if (tier.duration !== 'INF' && fromMs < now - durationMs(tier.duration) - w) continue;
    if (!best || every > durationMs(best.every)) best = tier;
  }
  return best;
}

/**
 * A device's readings over [fromMs, toMs). Aggregated windows read the chosen tier up to the last interval
 * its continuous query has surely written (two intervals back), and the raw readings after it, so the newest
 * minutes of a chart are never missing.
 */
export async function queryReadings(
  t: HistoryTarget,
  q: { device: string; family: Family; fromMs: number; toMs: number; window: Window; fields?: string[] },
  now = Date.now(),
): Promise<{ window: Exclude<Window, 'auto'>; tier: string; points: SeriesPoint[] }> {
  const kinds = FIELD_KINDS[q.family];
  const fields = (q.fields?.length ? q.fields : Object.keys(kinds)).filter((f) => f in kinds);
  const window = q.window === 'auto' ? chooseWindow(q.fromMs, q.toMs) : q.window;
  const device = `"device" = ${influxEscape.stringLit(q.device)}`;
  if (window === 'raw') {
    const sql = `SELECT ${fields.map((f) => influxEscape.quoted(f)).join(', ')} FROM ${from(t, q.family)} WHERE ${device} AND time >= ${q.fromMs}ms AND time < ${q.toMs}ms ORDER BY time ASC LIMIT ${RAW_LIMIT}`;
    return { window, tier: t.retentionPolicy, points: rowsOf(await t.influx.queryRaw(sql, { precision: 'ms' })) };
  }
  const sel = fields
    .map((f) => {
      const fn = (kinds[f] === 'float' || kinds[f] === 'integer') && !LAST_VALUE_FIELDS.has(f) ? 'mean' : 'last';
      return `${fn}(${influxEscape.quoted(f)}) AS ${influxEscape.quoted(f)}`;
    })
    .join(', ');
  const w = WINDOW_MS[window] as number;
  const offset = cityWindowOffsetMs(w, t.timezone, q.fromMs);
  const aggregate = async (rp: string, a: number, b: number) =>
    a >= b
      ? []
      : rowsOf(
          await t.influx.queryRaw(
            `SELECT ${sel} FROM ${from(t, q.family, rp)} WHERE ${device} AND time >= ${a}ms AND time < ${b}ms GROUP BY time(${window}, ${offset}ms) fill(none)`,
            { precision: 'ms' },
          ),
        );
  let tier = chooseTier(t, window, q.fromMs, now);
  // Late readings not yet in the tiers (a backlog just flushed): read the raw readings instead.
  if (tier && t.tiersBehind?.(q.family, q.fromMs, q.toMs)) tier = undefined;
  if (!tier) return { window, tier: t.retentionPolicy, points: await aggregate(t.retentionPolicy, q.fromMs, q.toMs) };
  // On a window boundary, so that no window is split between the tier and the raw readings.
  const cut = Math.max(q.fromMs, Math.min(q.toMs, Math.floor((now - 2 * durationMs(tier.every) - offset) / w) * w + offset));
  const [older, newer] = await Promise.all([aggregate(tier.name, q.fromMs, cut), aggregate(t.retentionPolicy, cut, q.toMs)]);
  return { window, tier: cut > q.fromMs ? tier.name : t.retentionPolicy, points: older.concat(newer) };
}

export async function queryLastReading(t: HistoryTarget, device: string, family: Family): Promise<SeriesPoint | undefined> {
  const fields = Object.keys(FIELD_KINDS[family]).map((f) => influxEscape.quoted(f));
  const sql = `SELECT ${fields.join(', ')} FROM ${from(t, family)} WHERE "device" = ${influxEscape.stringLit(device)} ORDER BY time DESC LIMIT 1`;
  return rowsOf(await t.influx.queryRaw(sql, { precision: 'ms' }))[0];
}

interface RawResult {
  results?: { series?: { columns: string[]; values: unknown[][] }[]; error?: string }[];
}

function rowsOf(raw: RawResult): SeriesPoint[] {
  const out: SeriesPoint[] = [];
  for (const r of raw.results ?? []) {
    if (r.error) throw new Error(r.error);
    for (const s of r.series ?? []) {
      for (const v of s.values) {
        const p: SeriesPoint = { time: 0 };
        s.columns.forEach((c, i) => {
          const val = v[i];
          if (c === 'time') p.time = val as number;
          else if (val !== null) p[c] = val as number | string | boolean;
        });
        out.push(p);
      }
    }
  }
  return out;
}
