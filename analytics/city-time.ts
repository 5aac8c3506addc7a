/**
 * Calendar days and months in the city's time zone (IANA name from the city profile), for the daily air index
 * and the street lights' energy per day and month. Built on Intl (no time-zone library needed).
 */

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
  const fmt = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
  const parts = (t: number) => {
    const o: Record<string, number> = {};
    for (const p of fmt.formatToParts(new Date(t))) if (p.type !== 'literal') o[p.type] = Number(p.value);
    return o as { year: number; month: number; day: number; hour: number; minute: number; second: number };
  };
  /** Offset of local time from UTC at `t`, ms (the offset at `t` is used for the day's start: exact without DST). */
  const offset = (t: number) => {
    const p = parts(t);
    const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
    return asUtc - Math.floor(t / 1000) * 1000;
  };
  const pad = (n: number) => String(n).padStart(2, '0');
  return {
    dayStart(t) {
      const p = parts(t);
      return Date.UTC(p.year, p.month - 1, p.day) - offset(t);
    },
    monthStart(t) {
      const p = parts(t);
      return Date.UTC(p.year, p.month - 1, 1) - offset(t);
    },
    dayKey(t) {
      const p = parts(t);
      return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
    },
    monthKey(t) {
      const p = parts(t);
      return `${p.year}-${pad(p.month)}`;
    },
  };
}
