/**
 * Daylight at a place and time, from suncalc (a well-kept solar-position library) rather than hand-written
 * astronomy. Used by the street-light indicators and the "lamp on in daylight" rule.
 */
import SunCalc from 'suncalc';

/**
 * True between sunrise and sunset at (lat, lon), with a margin at each end (ms) so that a lamp switching at
 * dusk or dawn is not counted as "on in daylight": daylight = [sunrise + margin, sunset - margin].
 */
export function isDaylight(time: number, lat: number, lon: number, marginMs = 30 * 60_000): boolean {
  const t = SunCalc.getTimes(new Date(time), lat, lon);
  const rise = t.sunrise.getTime();
  const set = t.sunset.getTime();
  // Polar day or night: suncalc gives NaN; decide by the sun's altitude.
  if (Number.isNaN(rise) || Number.isNaN(set)) return SunCalc.getPosition(new Date(time), lat, lon).altitude > 0;
  return time >= rise + marginMs && time <= set - marginMs;
}

/** Sunrise and sunset (epoch ms) of the day containing `time` at (lat, lon). */
export function sunTimes(time: number, lat: number, lon: number): { sunrise: number; sunset: number } {
  const t = SunCalc.getTimes(new Date(time), lat, lon);
  return { sunrise: t.sunrise.getTime(), sunset: t.sunset.getTime() };
}
