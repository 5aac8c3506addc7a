/**
 * Local time in an IANA time zone (the city profile's), built on Intl: the one place the platform turns an
 * instant into a wall-clock offset. Used by the simulators (rush hours, dusk), analytics (city days and
 * months) and commands (schedule edges).
 */
const HOUR_MS = 3_600_000;

const formatters = new Map<string, Intl.DateTimeFormat>();
/** Per zone: UTC hour bucket → offset. Bounded so a long replay cannot grow it without limit. */
const offsetCache = new Map<string, Map<number, number>>();
const OFFSET_CACHE_MAX = 256;

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    // Throws RangeError for an unknown zone: factories call this so a bad profile fails at start-up.
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

function computeOffsetMs(utcMs: number, timeZone: string): number {
  const parts: Record<string, number> = {};
  for (const p of formatterFor(timeZone).formatToParts(new Date(utcMs))) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  const asUtc = Date.UTC(parts.year as number, (parts.month as number) - 1, parts.day, parts.hour, parts.minute, parts.second);
  return asUtc - Math.floor(utcMs / 1000) * 1000;
}

/**
 * Offset of the zone from UTC at that instant, ms (local = utc + offset). Intl formatting costs microseconds
 * a call and the simulators and analytics need it per reading, so the offset is computed once per zone and
 * UTC hour: zones change offset on whole UTC hours (Vietnam never does). A zone whose transitions fall on a
 * half hour may be off by the shift for at most that half hour.
 */
export function utcOffsetMs(utcMs: number, timeZone: string): number {
  const bucket = Math.floor(utcMs / HOUR_MS);
  let zoneCache = offsetCache.get(timeZone);
  if (!zoneCache) {
    zoneCache = new Map();
    offsetCache.set(timeZone, zoneCache);
  }
  let offset = zoneCache.get(bucket);
  if (offset === undefined) {
    if (zoneCache.size >= OFFSET_CACHE_MAX) zoneCache.clear();
    offset = computeOffsetMs(bucket * HOUR_MS, timeZone);
    zoneCache.set(bucket, offset);
  }
  return offset;
}

/** Throws RangeError when `timeZone` is not a known IANA zone. */
export function assertTimeZone(timeZone: string): void {
  formatterFor(timeZone);
}
