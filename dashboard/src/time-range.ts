/**
 * Time ranges of the filters: presets (the last hour … 30 days) and days picked in a date field, which are days
 * of the city (its time zone), not of the browser.
 */
export const PRESETS = [
  { id: 'all', ms: 0, key: 'timeAll' },
  { id: '1h', ms: 3_600_000, key: 'time1h' },
  { id: '24h', ms: 86_400_000, key: 'time24h' },
  { id: '7d', ms: 7 * 86_400_000, key: 'time7d' },
  { id: '30d', ms: 30 * 86_400_000, key: 'time30d' },
] as const;
export type PresetId = (typeof PRESETS)[number]['id'];

/** The offset of `timeZone` from UTC at `ms`, in ms. */
function offsetMs(timeZone: string, ms: number): number {
  const parts: Record<string, number> = {};
  const f = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
  for (const p of f.formatToParts(new Date(ms))) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  const asUtc = Date.UTC(parts.year as number, (parts.month as number) - 1, parts.day, parts.hour, parts.minute, parts.second);
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/** The start (or the last millisecond) of a day `yyyy-mm-dd` of the city, as ISO 8601; undefined when empty. */
export function cityDay(day: string, timeZone: string, end = false): string | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!m) return undefined;
  const guess = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) + (end ? 86_400_000 - 1 : 0);
  return new Date(guess - offsetMs(timeZone, guess)).toISOString();
}

/** since/until of a filter: a preset counts back from now; custom days are the city's days. */
export function rangeOf(preset: PresetId | 'custom', from: string, to: string, timeZone: string): { since?: string; until?: string } {
  if (preset === 'custom') return { since: cityDay(from, timeZone), until: cityDay(to, timeZone, true) };
  const p = PRESETS.find((x) => x.id === preset);
  return p?.ms ? { since: new Date(Date.now() - p.ms).toISOString() } : {};
}
