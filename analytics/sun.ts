/**
 * Daylight at a place and time, from suncalc (a well-kept solar-position library) rather than hand-written
 * astronomy. Used by the street-light indicators and the "lamp on in daylight" rule, for every lamp reading.
 *
 * suncalc's times are cached per place (rounded to ~100 m) and UTC hour: they only change when the nearest
 * solar noon does, i.e. around solar midnight, when it is night on both sides. The cache is bounded.
 */
import SunCalc from 'suncalc';

const HOUR_MS = 3_600_000;
const CACHE_MAX = 10_000;
const cache = new Map<string, { rise: number; set: number }>();

function timesAt(time: number, lat: number, lon: number): { rise: number; set: number } {
  const hour = Math.floor(time / HOUR_MS);
  const key = `${lat.toFixed(3)},${lon.toFixed(3)},${hour}`;
  let t = cache.get(key);
  if (!t) {
    const s = SunCalc.getTimes(new Date(hour * HOUR_MS), lat, lon);
    t = { rise: s.sunrise.getTime(), set: s.sunset.getTime() };
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(key, t);
  }
  return t;
}

/**
 * True between sunrise and sunset at (lat, lon), with a margin at each end (ms) so that a lamp switching at
 * dusk or dawn is not counted as "on in daylight": daylight = [sunrise + margin, sunset - margin].
 */
export function isDaylight(time: number, lat: number, lon: number, marginMs = 30 * 60_000): boolean {
  const { rise, set } = timesAt(time, lat, lon);
  // Polar day or night: suncalc gives NaN; decide by the sun's altitude.
  if (Number.isNaN(rise) || Number.isNaN(set)) return SunCalc.getPosition(new Date(time), lat, lon).altitude > 0;
  return time >= rise + marginMs && time <= set - marginMs;
}

/** Sunrise and sunset (epoch ms) of the day containing `time` at (lat, lon). */
export function sunTimes(time: number, lat: number, lon: number): { sunrise: number; sunset: number } {
  const t = SunCalc.getTimes(new Date(time), lat, lon);
  return { sunrise: t.sunrise.getTime(), sunset: t.sunset.getTime() };
}
