/**
 * InfluxDB line protocol for derived data: measurement `aqi` (tags scope, id, zone, period) and measurement
 * `indicators` (tags scope, id, zone, family). Field types are fixed here by name, never guessed from the JS
 * value: InfluxDB refuses a later write of another type into the same field of a shard.
 */
import type { AqiEvent, IndexValue, IndicatorEvent } from '../core/bus.ts';

export const AQI_MEASUREMENT = 'aqi';
export const INDICATORS_MEASUREMENT = 'indicators';

/** Indicator values written as InfluxDB integers; booleans and strings by their JS type; every other number a float. */
export const INTEGER_INDICATORS = new Set([
  'vehiclesPerHour',
  'congestionLevel',
  'congestedJunctions',
  'lampsOn',
  'lampsDimmed',
  'lampsFaulty',
  'lampsOnInDaylight',
]);

const KEY_ESCAPE = /[,= ]/g;
const esc = (s: string) => s.replace(KEY_ESCAPE, (c) => `\\${c}`);
const str = (s: string) => `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;
const float = (v: number) => (Number.isInteger(v) ? `${v}.0` : String(v));

function tags(t: Record<string, string | undefined>): string {
  return Object.keys(t)
    .sort()
    .filter((k) => t[k])
    .map((k) => `,${k}=${esc(t[k] as string)}`)
    .join('');
}

function indexFields(prefix: string, v: IndexValue | null, out: string[]): void {
  if (!v) return;
  out.push(`${prefix}_aqi=${Math.round(v.aqi)}i`, `${prefix}_level=${v.level}i`, `${prefix}_category=${str(v.category)}`);
  out.push(`${prefix}_dominant=${str(v.dominant)}`);
  for (const [p, s] of Object.entries(v.subIndices)) out.push(`${prefix}_sub_${esc(p)}=${Math.round(s)}i`);
}

/** One `aqi` point (time = start of the hour or day); undefined when neither index exists. */
export function aqiLine(e: AqiEvent): string | undefined {
  const f: string[] = [];
  indexFields('vn', e.vn, f);
  indexFields('epa', e.epa, f);
  if (!f.length) return undefined;
  return `${AQI_MEASUREMENT}${tags({ scope: e.scope, id: e.id, zone: e.zone, period: e.period })} ${f.join(',')} ${e.time}`;
}

/** One `indicators` point; `extra` adds fields kept for restoring state after a restart (not in the event). */
export function indicatorLine(e: IndicatorEvent, extra: Record<string, number | boolean | string> = {}): string | undefined {
  const f: string[] = [];
  for (const [k, v] of Object.entries({ ...e.values, ...extra })) {
    if (typeof v === 'boolean') f.push(`${esc(k)}=${v}`);
    else if (typeof v === 'string') f.push(`${esc(k)}=${str(v)}`);
    else if (Number.isFinite(v)) f.push(`${esc(k)}=${INTEGER_INDICATORS.has(k) ? `${Math.round(v)}i` : float(v)}`);
  }
  if (!f.length) return undefined;
  return `${INDICATORS_MEASUREMENT}${tags({ scope: e.scope, id: e.id, zone: e.zone, family: e.family })} ${f.join(',')} ${Math.round(e.time)}`;
}
