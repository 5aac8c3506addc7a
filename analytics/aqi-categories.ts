/**
 * What the two air-quality scales (VN_AQI and the US EPA AQI) share, each with its own tables: the categories
 * with their names and colours, the cap of an index, the rounding of an index to an integer, and the index value
 * built from sub-indices (the highest decides). Pure functions, like the scales that use them.
 */
import type { IndexValue } from '../core/bus.ts';

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

/** The index of sub-indices (unrounded, by pollutant): the highest, rounded, with its category and dominant pollutant. */
export function indexValue(raw: Partial<Record<string, number>>, cat: (aqi: number) => AqiCategory): IndexValue | null {
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
