/**
 * Air-quality indices as pure functions (no I/O): VN_AQI of Decision 1459/QĐ-TCMT (12 Nov 2019) and, beside
 * it for comparison only, the US EPA AQI for PM2.5 (2024 breakpoints) and PM10. The two are separate types and
 * functions and never mixed: a number always travels with the scale it belongs to (`vn` / `epa`).
 *
 * Sources: ../shared/domain.md (transcription of the decision's table, its formulas and worked example; the
 * EPA breakpoints). Rules marked [QĐ-1459] follow the decision; rules marked [CP] are this platform's choice
 * where the decision says nothing (documented in the README).
 */
import type { IndexValue } from '../core/bus.ts';

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

/** Highest index value: concentrations above a row's top breakpoint cap here. */
export const AQI_MAX = 500;

export interface Rgb {
  r: number;
  g: number;
  b: number;
}

export interface AqiCategory {
  /** 1..6 */
  level: number;
  key: string;
  /** Inclusive index range of the category. */
  min: number;
  max: number;
  name: { vi: string; en: string };
  rgb: Rgb;
  /** '#rrggbb' */
  color: string;
}

const hex = (c: Rgb) => `#${[c.r, c.g, c.b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
const category = (
  level: number,
  key: string,
  min: number,
  max: number,
  vi: string,
  en: string,
  rgb: [number, number, number],
): AqiCategory => {
  const c = { r: rgb[0], g: rgb[1], b: rgb[2] };
  return { level, key, min, max, name: { vi, en }, rgb: c, color: hex(c) };
};

/** VN_AQI categories with their Vietnamese and English names and colours [QĐ-1459]. */
export const VN_CATEGORIES: readonly AqiCategory[] = [
  category(1, 'good', 0, 50, 'Tốt', 'Good', [0, 228, 0]),
  category(2, 'moderate', 51, 100, 'Trung bình', 'Moderate', [255, 255, 0]),
  category(3, 'poor', 101, 150, 'Kém', 'Poor', [255, 126, 0]),
  category(4, 'bad', 151, 200, 'Xấu', 'Bad', [255, 0, 0]),
  category(5, 'veryBad', 201, 300, 'Rất xấu', 'Very bad', [143, 63, 151]),
  category(6, 'hazardous', 301, 500, 'Nguy hại', 'Hazardous', [126, 0, 35]),
];

/** US EPA AQI categories (its own names; Vietnamese translations for the dashboard). */
export const EPA_CATEGORIES: readonly AqiCategory[] = [
  category(1, 'good', 0, 50, 'Tốt', 'Good', [0, 228, 0]),
  category(2, 'moderate', 51, 100, 'Trung bình', 'Moderate', [255, 255, 0]),
  category(3, 'unhealthyForSensitiveGroups', 101, 150, 'Không tốt cho nhóm nhạy cảm', 'Unhealthy for Sensitive Groups', [255, 126, 0]),
  category(4, 'unhealthy', 151, 200, 'Có hại cho sức khỏe', 'Unhealthy', [255, 0, 0]),
  category(5, 'veryUnhealthy', 201, 300, 'Rất có hại cho sức khỏe', 'Very Unhealthy', [143, 63, 151]),
  category(6, 'hazardous', 301, 500, 'Nguy hiểm', 'Hazardous', [126, 0, 35]),
];

/** The category of an (integer) index value on a scale. */
function categoryOf(categories: readonly AqiCategory[], aqi: number): AqiCategory {
  for (const c of categories) if (aqi <= c.max) return c;
  return categories[categories.length - 1] as AqiCategory;
}

export const vnCategory = (aqi: number): AqiCategory => categoryOf(VN_CATEGORIES, aqi);
export const epaCategory = (aqi: number): AqiCategory => categoryOf(EPA_CATEGORIES, aqi);

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

/**
 * Tolerance of the rounding: the interpolation's binary floating point leaves an exact half a few ulps short
 * (O3 161.2 µg/m³ is exactly 51.5 but computes as 51.49999999999999), far below this.
 */
export const ROUNDING_EPSILON = 1e-9;

/**
 * An index rounded to an integer, half up on the exact value [QĐ-1459: 55.7 µg/m³ PM2.5 → 109.5 → 110]: a value
 * within ROUNDING_EPSILON below a half counts as the half.
 */
export function roundIndex(x: number): number {
  return Math.floor(x + 0.5 + ROUNDING_EPSILON);
}

function indexValue(raw: Partial<Record<string, number>>, cat: (aqi: number) => AqiCategory): IndexValue | null {
  let dominant = '';
  let max = -1;
  const subIndices: Record<string, number> = {};
  for (const [p, s] of Object.entries(raw)) {
    if (s === undefined) continue;
    subIndices[p] = roundIndex(s);
    if (s > max) {
      max = s;
      dominant = p;
    }
  }
  if (max < 0) return null;
  const aqi = roundIndex(max);
  const k = cat(aqi);
  return { aqi, level: k.level, category: k.key, dominant, subIndices };
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

// ---- US EPA AQI (comparison only) ----

export const EPA_POLLUTANTS = ['pm25', 'pm10'] as const;
export type EpaPollutant = (typeof EPA_POLLUTANTS)[number];

/** One EPA band: concentrations [cLo, cHi] map to index [iLo, iHi]. */
export interface EpaBand {
  cLo: number;
  cHi: number;
  iLo: number;
  iHi: number;
}

const band = (cLo: number, cHi: number, iLo: number, iHi: number): EpaBand => ({ cLo, cHi, iLo, iHi });

/** US EPA breakpoints: PM2.5 as revised in 2024 (µg/m³, truncated to 0.1), PM10 (µg/m³, truncated to an integer). */
export const EPA_BREAKPOINTS: Readonly<Record<EpaPollutant, readonly EpaBand[]>> = {
  pm25: [
    band(0.0, 9.0, 0, 50),
    band(9.1, 35.4, 51, 100),
    band(35.5, 55.4, 101, 150),
    band(55.5, 125.4, 151, 200),
    band(125.5, 225.4, 201, 300),
    band(225.5, 325.4, 301, 500),
  ],
  pm10: [
    band(0, 54, 0, 50),
    band(55, 154, 51, 100),
    band(155, 254, 101, 150),
    band(255, 354, 151, 200),
    band(355, 424, 201, 300),
    band(425, 604, 301, 500),
  ],
};

/** EPA truncation of a concentration: PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³ (with a guard against 35.4 × 10 = 353.99…). */
export function epaTruncate(p: EpaPollutant, c: number): number {
  return p === 'pm25' ? Math.floor(c * 10 + 1e-9) / 10 : Math.floor(c + 1e-9);
}

/** EPA sub-index (unrounded) of one concentration; above the top band it caps at 500. */
export function epaSubIndex(p: EpaPollutant, c: number): number | undefined {
  if (!Number.isFinite(c) || c < 0) return undefined;
  const t = epaTruncate(p, c);
  for (const b of EPA_BREAKPOINTS[p]) {
    if (t <= b.cHi) return ((b.iHi - b.iLo) / (b.cHi - b.cLo)) * (t - b.cLo) + b.iLo;
  }
  return AQI_MAX;
}

/** EPA AQI of PM concentrations for the period (24-hour means, or NowCast for the hourly value); null without PM. */
export function epaAqi(c: Partial<Record<EpaPollutant, number>>): IndexValue | null {
  const raw: Partial<Record<EpaPollutant, number>> = {};
  for (const p of EPA_POLLUTANTS) {
    const v = c[p];
    if (v === undefined) continue;
    const s = epaSubIndex(p, v);
    if (s !== undefined) raw[p] = s;
  }
  return indexValue(raw, epaCategory);
}

/** Hourly EPA AQI from the NowCast of PM2.5 and PM10 (the EPA NowCast has the same weights and 1/2 floor). */
export function epaHourlyAqi(series: HourlySeries): IndexValue | null {
  const c = hourlyConcentrations({ pm25: series.pm25, pm10: series.pm10 });
  return epaAqi({ pm25: c.pm25, pm10: c.pm10 });
}

/** Daily EPA AQI from the 24-hour PM means. */
export function epaDailyAqi(day: DaySeries): IndexValue | null {
  const c = dailyConcentrations({ pm25: day.pm25, pm10: day.pm10 });
  return epaAqi({ pm25: c.pm25, pm10: c.pm10 });
}

// ---- Scales, for the API and the dashboard ----

export interface AqiScale {
  id: 'vn_aqi' | 'us_epa_aqi';
  name: { vi: string; en: string };
  source: string;
  categories: readonly AqiCategory[];
}

export const VN_AQI_SCALE = {
  id: 'vn_aqi',
  name: { vi: 'Chỉ số chất lượng không khí Việt Nam (VN_AQI)', en: 'Vietnam Air Quality Index (VN_AQI)' },
  source: 'Decision 1459/QĐ-TCMT of 12 Nov 2019 (Vietnam Environment Administration)',
  unit: 'µg/m³',
  indexBreakpoints: VN_INDEX_BREAKPOINTS,
  breakpoints: VN_BREAKPOINTS,
  categories: VN_CATEGORIES,
} as const satisfies AqiScale & Record<string, unknown>;

export const EPA_AQI_SCALE = {
  id: 'us_epa_aqi',
  name: { vi: 'Chỉ số AQI của Cơ quan Bảo vệ Môi trường Hoa Kỳ (để so sánh)', en: 'US EPA AQI (for comparison)' },
  source: 'US EPA, PM2.5 breakpoints revised 2024; PM2.5 truncated to 0.1 µg/m³, PM10 to 1 µg/m³',
  unit: 'µg/m³',
  breakpoints: EPA_BREAKPOINTS,
  categories: EPA_CATEGORIES,
} as const satisfies AqiScale & Record<string, unknown>;

/** An index value with its category's names and colour, as the API shows it. */
export interface DescribedIndex extends IndexValue {
  scale: 'vn_aqi' | 'us_epa_aqi';
  name: { vi: string; en: string };
  color: string;
  rgb: Rgb;
}

export function describeIndex(scale: 'vn_aqi' | 'us_epa_aqi', v: IndexValue | null): DescribedIndex | null {
  if (!v) return null;
  const c = scale === 'vn_aqi' ? vnCategory(v.aqi) : epaCategory(v.aqi);
  return { scale, ...v, name: c.name, color: c.color, rgb: c.rgb };
}
