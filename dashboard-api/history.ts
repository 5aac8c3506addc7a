/**
 * Reads history from InfluxDB: a device's readings over a range with an aggregation window (mean of
 * numeric fields, last of enums and booleans), and a device's last stored reading.
 */
import { escape as influxEscape, type InfluxDB } from 'influx';
import { LAST_VALUE_FIELDS, FIELD_KINDS, type Family, type Tier } from '../ingest/index.ts';
import { durationMs } from '../ingest/rate-limit.ts';
import { PlatformError } from '../core/errors.ts';
import { utcOffsetMs } from '../core/time-zone.ts';

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

/** The earliest time a history query may ask for (2000-01-01T00:00:00Z): no reading of the platform is older. */
export const HISTORY_EARLIEST_MS = Date.UTC(2000, 0, 1);
/** How far past now a history query may reach, ms (a day: clocks of devices and clients run a little ahead). */
export const HISTORY_FUTURE_MS = 86_400_000;
/** Windows of an explicitly chosen size a query may span at most (as many as the raw window's points). */
export const MAX_WINDOWS = RAW_LIMIT;
/** The bounds of `from` and `to`, for the API description. */
export const HISTORY_RANGE_TEXT = 'between 2000-01-01T00:00:00Z and now + 1 day';

const invalid = (detail: string, errors: string[]) => new PlatformError('CP_API_VALIDATION', detail, { details: errors });

/**
 * The range [fromMs, toMs) of a history query from its `from` and `to` (ISO 8601; `to` defaults to now, `from`
 * to `to` − `defaultSpanMs`). Throws CP_API_VALIDATION (400) with every reason: a time that does not parse,
 * one outside [HISTORY_EARLIEST_MS, now + HISTORY_FUTURE_MS], or `from` not before `to`. InfluxDB answers times
 * outside its range with an error, which must not reach a viewer as a 500.
 */
export function parseRange(q: { from?: string; to?: string }, defaultSpanMs: number, now = Date.now()): { fromMs: number; toMs: number } {
  const errors: string[] = [];
  const latest = now + HISTORY_FUTURE_MS;
  const check = (name: 'from' | 'to', text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const ms = Date.parse(text);
    if (!Number.isFinite(ms)) errors.push(`query.${name} is not a date-time`);
    else if (ms < HISTORY_EARLIEST_MS || ms > latest) errors.push(`query.${name} must be ${HISTORY_RANGE_TEXT}`);
    else return ms;
    return undefined;
  };
  const to = check('to', q.to);
  const from = check('from', q.from);
  if (errors.length) throw invalid('`from` or `to` is out of range', errors);
  const toMs = to ?? now;
  const fromMs = from ?? Math.max(HISTORY_EARLIEST_MS, toMs - defaultSpanMs);
  if (!(fromMs < toMs)) throw invalid('`from` must be before `to`', ['query.from must be before query.to']);
  return { fromMs, toMs };
}

/**
 * The fields a readings query asks for, each checked against the family's contract (core/contract.ts);
 * undefined = all of them. Throws CP_API_VALIDATION naming the unknown ones and the family's fields.
 */
export function parseFields(family: Family, text: string | undefined): string[] | undefined {
  const asked = [
    ...new Set(
      (text ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
  if (!asked.length) return undefined;
  const kinds = FIELD_KINDS[family];
  const unknown = asked.filter((f) => !Object.hasOwn(kinds, f));
  if (unknown.length) {
    throw invalid(`unknown field(s) of ${family}: ${unknown.join(', ')}`, [
      `query.fields must name fields of ${family}: ${Object.keys(kinds).join(', ')}`,
    ]);
  }
  return asked;
}

/** Throws CP_API_VALIDATION when an explicitly chosen window would cut the range into more than MAX_WINDOWS. */
export function checkWindowCount(window: Window, fromMs: number, toMs: number): void {
  const ms = WINDOW_MS[window];
  if (!ms || (toMs - fromMs) / ms <= MAX_WINDOWS) return;
  throw invalid(`window ${window} cuts the range into more than ${MAX_WINDOWS} windows`, [
    `query.window ${window} is too small for this range: choose a larger window, auto, or a shorter range`,
  ]);
}

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
  const asked = (q.fields ?? []).filter((f) => Object.hasOwn(kinds, f));
  const fields = asked.length ? asked : Object.keys(kinds);
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
