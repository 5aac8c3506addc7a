/**
 * VN_AQI of Decision 1459/QĐ-TCMT (12 Nov 2019) as pure functions: the breakpoint table and sub-indices, the
 * hourly index (NowCast for PM, 1-hour means for the gases) and the daily index (24-hour PM means, daily maxima
 * of the gases, O3 8-hour means reaching back into the previous evening). Rules marked [QĐ-1459] follow the
 * decision; rules marked [CP] are this platform's choice where the decision says nothing (see the README).
 */
import type { IndexValue } from '../core/bus.ts';
import { AQI_MAX, indexValue, vnCategory } from './aqi-categories.ts';

/** Pollutants of VN_AQI (all in µg/m³, CO too). */
export const VN_POLLUTANTS = ['pm25', 'pm10', 'o3', 'no2', 'so2', 'co'] as const;
export type VnPollutant = (typeof VN_POLLUTANTS)[number];

/** Rows of the VN_AQI breakpoint table: O3 has a 1-hour and an 8-hour row. */
export const VN_ROWS = ['o3_1h', 'o3_8h', 'co', 'so2', 'no2', 'pm10', 'pm25'] as const;
export type VnRow = (typeof VN_ROWS)[number];

/** I_i: the index value at each breakpoint. */
export const VN_INDEX_BREAKPOINTS = [0, 50, 100, 150, 200, 300, 400, 500] as const;

/**
 * BP_i per row, µg/m³ [QĐ-1459, table]. The O3 8-hour row ends at 400 µg/m³ (index 300): above it the 8-hour
 * row is not used and the 1-hour row decides.
 */
export const VN_BREAKPOINTS: Readonly<Record<VnRow, readonly number[]>> = {
  o3_1h: [0, 160, 200, 300, 400, 800, 1000, 1200],
  o3_8h: [0, 100, 120, 170, 210, 400],
  co: [0, 10000, 30000, 45000, 60000, 90000, 120000, 150000],
  so2: [0, 125, 350, 550, 800, 1600, 2100, 2630],
  no2: [0, 100, 200, 700, 1200, 2350, 3100, 3850],
  pm10: [0, 50, 150, 250, 350, 420, 500, 600],
  pm25: [0, 25, 50, 80, 150, 250, 350, 500],
};

/**
 * Sub-index of one concentration on one row (unrounded), by linear interpolation [QĐ-1459]:
 * AQI_x = (I_{i+1} − I_i) / (BP_{i+1} − BP_i) × (C − BP_i) + I_i for BP_i ≤ C ≤ BP_{i+1}.
 * Above the top breakpoint: 500, except the O3 8-hour row, which is not used above its top (undefined).
 */
export function vnSubIndex(row: VnRow, c: number): number | undefined {
  if (!Number.isFinite(c) || c < 0) return undefined;
  const bp = VN_BREAKPOINTS[row];
  for (let i = 0; i + 1 < bp.length; i++) {
    const lo = bp[i] as number;
    const hi = bp[i + 1] as number;
    if (c <= hi) {
      const ilo = VN_INDEX_BREAKPOINTS[i] as number;
      const ihi = VN_INDEX_BREAKPOINTS[i + 1] as number;
      return ((ihi - ilo) / (hi - lo)) * (c - lo) + ilo;
    }
  }
  return row === 'o3_8h' ? undefined : AQI_MAX;
}

/** Concentrations for one VN_AQI computation, µg/m³, already averaged for the period (see vnHourly/vnDaily). */
export type VnConcentrations = Partial<Record<VnRow, number>>;

/**
 * VN_AQI of concentrations that are already the right means for the period. The overall index is the
 * maximum sub-index, rounded to an integer; PM10 or PM2.5 must be present, else null [QĐ-1459].
 * Sub-indices are reported per pollutant (O3: the higher of its 1-hour and 8-hour rows), rounded.
 */
export function vnAqi(c: VnConcentrations): IndexValue | null {
  if (c.pm10 === undefined && c.pm25 === undefined) return null;
  const raw: Partial<Record<VnPollutant, number>> = {};
  for (const row of VN_ROWS) {
    const v = c[row];
    if (v === undefined) continue;
    const s = vnSubIndex(row, v);
    if (s === undefined) continue;
    const p: VnPollutant = row === 'o3_1h' || row === 'o3_8h' ? 'o3' : row;
    raw[p] = Math.max(raw[p] ?? 0, s);
  }
  return indexValue(raw, vnCategory);
}

/** A missing hourly mean. */
export type MaybeNumber = number | null | undefined;

/**
 * NowCast of PM10/PM2.5 from the last 12 hourly means, `hours[0]` = c1 (the newest) .. `hours[11]` = c12
 * [QĐ-1459]: w* = Cmin / Cmax over the hours present; w = w* when w* > 1/2, else 1/2;
 * NowCast = Σ w^(i−1) c_i / Σ w^(i−1) over the hours present (a missing hour has weight 0).
 * At least two of c1..c3 must be present, else null. Hours past the 12th are ignored.
 */
export function nowCast(hours: readonly MaybeNumber[]): number | null {
  const h = hours.slice(0, 12);
  const present = (v: MaybeNumber): v is number => typeof v === 'number' && Number.isFinite(v);
  if (h.slice(0, 3).filter(present).length < 2) return null;
  const vals = h.filter(present);
  const cmin = Math.min(...vals);
  const cmax = Math.max(...vals);
  const wStar = cmax > 0 ? cmin / cmax : 1;
  // [QĐ-1459] w = w* when w* > 1/2, else 1/2
  const w = Math.max(wStar, 0.5);
  let num = 0;
  let den = 0;
  h.forEach((c, i) => {
    if (!present(c)) return;
    const weight = w ** i;
    num += weight * c;
    den += weight;
  });
  return num / den;
}

/** Hourly means per pollutant, newest first: `series.pm25[0]` is the current hour (c1), `[1]` the one before. */
export type HourlySeries = Partial<Record<VnPollutant, readonly MaybeNumber[]>>;

/** The concentrations the hourly index uses: NowCast for PM, the 1-hour mean for the gases (O3 1 h row). */
export function hourlyConcentrations(series: HourlySeries): VnConcentrations {
  const out: VnConcentrations = {};
  for (const p of ['pm25', 'pm10'] as const) {
    const nc = series[p] ? nowCast(series[p]) : null;
    if (nc !== null) out[p] = nc;
  }
  for (const [p, row] of [
    ['so2', 'so2'],
    ['co', 'co'],
    ['no2', 'no2'],
    ['o3', 'o3_1h'],
  ] as const) {
    const c1 = series[p]?.[0];
    if (typeof c1 === 'number' && Number.isFinite(c1)) out[row] = c1;
  }
  return out;
}

/** Hourly VN_AQI (AQI_h) [QĐ-1459]. */
export function vnHourlyAqi(series: HourlySeries): IndexValue | null {
  return vnAqi(hourlyConcentrations(series));
}

/**
 * Hourly means of one city day per pollutant in time order: index 0 = the day's first hour (the one ending 01:00)
 * .. 23 = its last (ending 00:00); missing = null. `o3PreviousEvening` holds the O3 means of the 7 hours before
 * the day (ending 18:00 .. 00:00 of the previous day, oldest first): the day's first 8-hour O3 means reach back
 * into them.
 */
export type DaySeries = Partial<Record<VnPollutant, readonly MaybeNumber[]>> & { o3PreviousEvening?: readonly MaybeNumber[] };

/** Hours of the previous day an 8-hour O3 mean of the day reaches back into (the one ending 01:00 starts 17:00). */
export const O3_8H_PREVIOUS_HOURS = 7;

/**
 * [CP] An 8-hour mean needs at least this many of its 8 hourly means (75 %, as the US EPA rule for O3).
 */
export const O3_8H_MIN_HOURS = 6;

/**
 * A daily value of a pollutant needs at least this many of the day's 24 hourly means (75 %, the US EPA rule,
 * applied to VN_AQI too): with fewer, the day has no daily value of it yet.
 */
export const DAY_MIN_HOURS = 18;

const presentValues = (xs: readonly MaybeNumber[] | undefined): number[] =>
  (xs ?? []).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));

/** The day's hours with a PM mean (the more complete of PM2.5 and PM10): the daily VN_AQI needs DAY_MIN_HOURS. */
export function dayPmHours(day: DaySeries): number {
  return Math.max(presentValues(day.pm25?.slice(0, 24)).length, presentValues(day.pm10?.slice(0, 24)).length);
}

/**
 * The concentrations the daily index uses [QĐ-1459]: PM the 24-hour mean (of the hours present), SO2, NO2 and
 * CO the day's maximum 1-hour mean, O3 the day's maximum 1-hour mean (1 h row) and maximum 8-hour mean (8 h row;
 * not used above 400 µg/m³). The day has 24 eight-hour O3 means, one ending at each of its hours, the first
 * reaching back to the previous day's hour ending 18:00. A pollutant with fewer than DAY_MIN_HOURS hourly means
 * in the day is left out.
 */
export function dailyConcentrations(day: DaySeries): VnConcentrations {
  const out: VnConcentrations = {};
  for (const p of ['pm25', 'pm10'] as const) {
    const v = presentValues(day[p]?.slice(0, 24));
    if (v.length >= DAY_MIN_HOURS) out[p] = v.reduce((a, b) => a + b, 0) / v.length;
  }
  for (const p of ['so2', 'no2', 'co'] as const) {
    const v = presentValues(day[p]?.slice(0, 24));
    if (v.length >= DAY_MIN_HOURS) out[p] = Math.max(...v);
  }
  const o3 = Array.from({ length: 24 }, (_, i) => day.o3?.[i]);
  const o3v = presentValues(o3);
  if (o3v.length < DAY_MIN_HOURS) return out;
  out.o3_1h = Math.max(...o3v);
  const before = day.o3PreviousEvening ?? [];
  // The 7 evening hours (missing ones as undefined) then the day's 24: the window ending at the day's hour i is
  // hours i .. i + 7 of this array.
  const hours = [...Array.from({ length: O3_8H_PREVIOUS_HOURS }, (_, i) => before[before.length - O3_8H_PREVIOUS_HOURS + i]), ...o3];
  let max8: number | undefined;
  for (let end = O3_8H_PREVIOUS_HOURS; end < hours.length; end++) {
    const w = presentValues(hours.slice(end - 7, end + 1));
    if (w.length < O3_8H_MIN_HOURS) continue;
    const m = w.reduce((a, b) => a + b, 0) / w.length;
    if (max8 === undefined || m > max8) max8 = m;
  }
  if (max8 !== undefined && max8 <= VN_BREAKPOINTS.o3_8h[VN_BREAKPOINTS.o3_8h.length - 1]!) out.o3_8h = max8;
  return out;
}

/** Daily VN_AQI (AQI_d) [QĐ-1459]. */
export function vnDailyAqi(day: DaySeries): IndexValue | null {
  return vnAqi(dailyConcentrations(day));
}
