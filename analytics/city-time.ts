/**
 * Calendar days and months in the city's time zone (IANA name from the city profile), for the daily air index
 * and the street lights' energy per day and month, from the platform's time-zone offsets (core/time-zone.ts).
 */
import { assertTimeZone, utcOffsetMs } from '../core/time-zone.ts';

export const HOUR_MS = 3_600_000;

/** Start of the (UTC-aligned) hour containing `t`: hourly means are bucketed by observation time. */
export const hourStart = (t: number): number => Math.floor(t / HOUR_MS) * HOUR_MS;

export interface CityClock {
  /** Start of the city-local day containing `t`, epoch ms. */
  dayStart(t: number): number;
  /** Start of the city-local month containing `t`, epoch ms. */
  monthStart(t: number): number;
  /** 'YYYY-MM-DD' of the city-local day of `t`. */
  dayKey(t: number): string;
  /** 'YYYY-MM' of the city-local month of `t`. */
  monthKey(t: number): string;
}

export function createCityClock(timeZone: string): CityClock {
  assertTimeZone(timeZone);
  /** The local wall clock of `t` as a UTC date (its getUTC* fields are the local ones). */
  const local = (t: number) => new Date(t + utcOffsetMs(t, timeZone));
  const pad = (n: number) => String(n).padStart(2, '0');
  // The offset at `t` is used for the day's and month's start: exact for zones without daylight saving.
  return {
    dayStart(t) {
      const l = local(t);
      return Date.UTC(l.getUTCFullYear(), l.getUTCMonth(), l.getUTCDate()) - utcOffsetMs(t, timeZone);
    },
    monthStart(t) {
      const l = local(t);
      return Date.UTC(l.getUTCFullYear(), l.getUTCMonth(), 1) - utcOffsetMs(t, timeZone);
    },
    dayKey(t) {
      const l = local(t);
      return `${l.getUTCFullYear()}-${pad(l.getUTCMonth() + 1)}-${pad(l.getUTCDate())}`;
    },
    monthKey(t) {
      const l = local(t);
      return `${l.getUTCFullYear()}-${pad(l.getUTCMonth() + 1)}`;
    },
  };
}
