/**
 * Wall-clock times of a city (its IANA time zone) for schedules: `HH:MM` or `HH:MM:SS` local times, and the
 * instants at which they occur. Pure functions; Intl does the zone arithmetic (no DST table of our own).
 */
import { utcOffsetMs } from '../core/time-zone.ts';

const DAY_MS = 86_400_000;

/** `HH:MM` or `HH:MM:SS`, 24-hour clock. */
export const TIME_OF_DAY_PATTERN = '^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$';

/** Seconds since local midnight of `HH:MM[:SS]`; throws on anything else. */
export function parseTimeOfDay(s: string): number {
  if (!new RegExp(TIME_OF_DAY_PATTERN).test(s)) throw new RangeError(`not a time of day (HH:MM or HH:MM:SS): ${s}`);
  const [h, m, sec] = s.split(':').map(Number) as [number, number, number | undefined];
  return h * 3600 + m * 60 + (sec ?? 0);
}

/** The UTC instant of a local wall-clock time given as ms since the local epoch (two passes settle DST edges). */
function localToUtc(localMs: number, timeZone: string): number {
  let utc = localMs - utcOffsetMs(localMs, timeZone);
  utc = localMs - utcOffsetMs(utc, timeZone);
  return utc;
}

/** `HH:MM:SS` of an instant in the zone. */
export function formatTimeOfDay(utcMs: number, timeZone: string): string {
  const local = utcMs + utcOffsetMs(utcMs, timeZone);
  const sec = Math.floor((((local % DAY_MS) + DAY_MS) % DAY_MS) / 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(Math.floor(sec / 3600))}:${pad(Math.floor(sec / 60) % 60)}:${pad(sec % 60)}`;
}

/**
 * The latest instant in (sinceMs, nowMs] at which the local time of day is one of `edges` (seconds since
 * local midnight), with the key of that edge; undefined when none passed. Only the last three local days are
 * looked at: every edge recurs daily, so the latest one is always among them.
 */
export function latestEdge<K extends string>(
  edges: Record<K, number>,
  sinceMs: number,
  nowMs: number,
  timeZone: string,
): { edge: K; at: number } | undefined {
  if (!(nowMs > sinceMs)) return undefined;
  const today = Math.floor((nowMs + utcOffsetMs(nowMs, timeZone)) / DAY_MS);
  let best: { edge: K; at: number } | undefined;
  for (let day = today; day >= today - 2; day--) {
    for (const edge of Object.keys(edges) as K[]) {
      const at = localToUtc(day * DAY_MS + edges[edge] * 1000, timeZone);
      if (at > sinceMs && at <= nowMs && (!best || at > best.at)) best = { edge, at };
    }
    if (best) break; // an earlier day only holds earlier instants
  }
  return best;
}
