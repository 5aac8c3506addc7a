/**
 * What every simulated device model is built from: the seeded random stream, the city's local hour and
 * weekday, the model interface, random draws (normal, Poisson, binomial), mean-reverting drifts exact for any
 * step length, and the daily traffic load curve that both traffic counts and air pollution follow.
 * Pure and deterministic, like the models (see models.ts).
 */
import { utcOffsetMs } from '../core/time-zone.ts';

export type Rng = () => number;

/** mulberry32: tiny, fast, and good enough for telemetry noise; returns [0, 1). */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------------------
// Local time

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/** Fractional hour of the day, [0, 24), in that IANA time zone. */
export function localHour(at: Date, timeZone: string): number {
  const local = at.getTime() + utcOffsetMs(at.getTime(), timeZone);
  return (((local % DAY_MS) + DAY_MS) % DAY_MS) / HOUR_MS;
}

/** Day of the week in that zone, 0 = Sunday. */
export function localWeekday(at: Date, timeZone: string): number {
  const day = Math.floor((at.getTime() + utcOffsetMs(at.getTime(), timeZone)) / DAY_MS);
  return (((day + 4) % 7) + 7) % 7; // 1970-01-01 was a Thursday
}

// ---------------------------------------------------------------------------------------------------------
// Shared helpers

export interface DeviceModel<R> {
  /** The reading observed at `at`. Calls are expected in time order; a step back in time changes no state. */
  next(at: Date): R;
}

export const round = (x: number, digits: number): number => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
export const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));
export const uniform = (rng: Rng, lo: number, hi: number): number => lo + (hi - lo) * rng();

export function gaussian(rng: Rng): number {
  // Box–Muller; 1 - rng() keeps the log argument in (0, 1].
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}

export const bump = (h: number, centre: number, width: number): number => Math.exp(-0.5 * ((h - centre) / width) ** 2);
export const logistic = (x: number): number => 1 / (1 + Math.exp(-x));

/**
 * One step of a mean-reverting (Ornstein–Uhlenbeck) process around 0 with stationary deviation `sigma`.
 * Exact for any step length, so the variability does not depend on how often a device reports.
 */
export function ouStep(x: number, dtHours: number, tauHours: number, sigma: number, rng: Rng): number {
  const decay = Math.exp(-dtHours / tauHours);
  return x * decay + sigma * Math.sqrt(1 - decay * decay) * gaussian(rng);
}

/** Elapsed hours since the previous call; 0 on the first call and when time goes backwards. */
export function stepHours(prev: number | undefined, now: number): number {
  return prev === undefined || now <= prev ? 0 : (now - prev) / HOUR_MS;
}

/** Probability that an event with `ratePerHour` happens within `dtHours`. */
export const chance = (ratePerHour: number, dtHours: number): number => 1 - Math.exp(-ratePerHour * dtHours);

export function poisson(rng: Rng, mean: number): number {
  if (mean <= 0) return 0;
  if (mean > 30) return Math.max(0, Math.round(mean + Math.sqrt(mean) * gaussian(rng)));
  // Knuth: exact and cheap for the small counts of short periods and quiet night hours.
  const limit = Math.exp(-mean);
  let k = 0;
  let p = rng();
  while (p > limit) {
    k++;
    p *= rng();
  }
  return k;
}

export function binomial(rng: Rng, n: number, p: number): number {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  if (n < 40) {
    let k = 0;
    for (let i = 0; i < n; i++) if (rng() < p) k++;
    return k;
  }
  return clamp(Math.round(n * p + Math.sqrt(n * p * (1 - p)) * gaussian(rng)), 0, n);
}

/**
 * Relative traffic load for a local hour, ~0.02 at 3 am to ~1 at the rush-hour peaks: a day plateau from
 * ~05:30 to ~22:00, rush hours around 07:00–08:30 and 16:30–18:30, a small lunchtime wave. Weekends keep
 * the plateau but lose most of the commute peaks. Shared by traffic (counts) and air quality (NO2, CO, noise).
 */
export function trafficLoad(h: number, weekday: number): number {
  const weekend = weekday === 0 || weekday === 6;
  const day = logistic((h - 5.6) / 0.45) * logistic((22.2 - h) / 0.7);
  const rush = bump(h, 7.7, 0.55) + 1.05 * bump(h, 17.5, 0.65);
  const lunch = 0.12 * (bump(h, 11.3, 0.5) + bump(h, 13.4, 0.5));
  return 0.02 + (weekend ? 0.45 : 0.5) * day + (weekend ? 0.2 : 0.5) * rush + lunch;
}
