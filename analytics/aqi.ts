/**
 * Air-quality indices as pure functions (no I/O): VN_AQI of Decision 1459/QĐ-TCMT (12 Nov 2019) and, beside
 * it for comparison only, the US EPA AQI for PM2.5 (2024 breakpoints) and PM10. The two are separate types and
 * functions and never mixed: a number always travels with the scale it belongs to (`vn` / `epa`).
 *
 * Sources: ../shared/domain.md (transcription of the decision's table, its formulas and worked example; the
 * EPA breakpoints). Rules marked [QĐ-1459] follow the decision; rules marked [CP] are this platform's choice
 * where the decision says nothing (documented in the README).
 *
 * VN_AQI is in vn-aqi.ts, the EPA AQI in epa-aqi.ts, what they share (categories, rounding) in aqi-categories.ts;
 * this file adds the scales as the API and the dashboard describe them, and is where callers import all of it.
 */
import type { IndexValue } from '../core/bus.ts';
import { EPA_CATEGORIES, epaCategory, type AqiCategory, type Rgb, VN_CATEGORIES, vnCategory } from './aqi-categories.ts';
import { EPA_BREAKPOINTS } from './epa-aqi.ts';
import { VN_BREAKPOINTS, VN_INDEX_BREAKPOINTS } from './vn-aqi.ts';

// indexValue stays inside the scales' files: callers get index values from the scale functions.
export {
  AQI_MAX,
  type AqiCategory,
  EPA_CATEGORIES,
  epaCategory,
  type Rgb,
  ROUNDING_EPSILON,
  roundIndex,
  VN_CATEGORIES,
  vnCategory,
} from './aqi-categories.ts';
export * from './epa-aqi.ts';
export * from './vn-aqi.ts';

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
