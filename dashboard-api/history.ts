/**
 * Reads history from InfluxDB: a device's readings over a range with an aggregation window (mean of
 * numeric fields, last of enums and booleans), and a device's last stored reading.
 */
import { escape as influxEscape, type InfluxDB } from 'influx';
import { FIELD_KINDS, type Family } from '../ingest/index.ts';

export interface HistoryTarget {
  influx: InfluxDB;
  database: string;
  retentionPolicy: string;
}

export interface SeriesPoint {
  /** epoch ms (start of the window when aggregated) */
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

function from(t: HistoryTarget, family: Family): string {
  return `${influxEscape.quoted(t.database)}.${influxEscape.quoted(t.retentionPolicy)}.${influxEscape.quoted(family)}`;
}

export async function queryReadings(
  t: HistoryTarget,
  q: { device: string; family: Family; fromMs: number; toMs: number; window: Window; fields?: string[] },
): Promise<{ window: Exclude<Window, 'auto'>; points: SeriesPoint[] }> {
  const kinds = FIELD_KINDS[q.family];
  const fields = (q.fields?.length ? q.fields : Object.keys(kinds)).filter((f) => f in kinds);
  const window = q.window === 'auto' ? chooseWindow(q.fromMs, q.toMs) : q.window;
  const where = `WHERE "device" = ${influxEscape.stringLit(q.device)} AND time >= ${q.fromMs}ms AND time < ${q.toMs}ms`;
  let sql: string;
  if (window === 'raw') {
    sql = `SELECT ${fields.map((f) => influxEscape.quoted(f)).join(', ')} FROM ${from(t, q.family)} ${where} ORDER BY time ASC LIMIT ${RAW_LIMIT}`;
  } else {
    const sel = fields.map((f) => {
      const fn = kinds[f] === 'float' || kinds[f] === 'integer' ? 'mean' : 'last';
      return `${fn}(${influxEscape.quoted(f)}) AS ${influxEscape.quoted(f)}`;
    });
    sql = `SELECT ${sel.join(', ')} FROM ${from(t, q.family)} ${where} GROUP BY time(${window}) fill(none)`;
  }
  return { window, points: rowsOf(await t.influx.queryRaw(sql, { precision: 'ms' })) };
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
