/**
 * The US EPA AQI for PM2.5 (2024 breakpoints) and PM10, for comparison with VN_AQI only: its bands, truncation
 * and sub-indices, hourly from the NowCast and daily from the 24-hour means (the same inputs VN_AQI uses).
 */
import type { IndexValue } from '../core/bus.ts';
import { AQI_MAX, epaCategory, indexValue } from './aqi-categories.ts';
import { dailyConcentrations, hourlyConcentrations, type DaySeries, type HourlySeries } from './vn-aqi.ts';

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
