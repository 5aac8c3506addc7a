/**
 * An air station's state and the indices computed from it, without scheduling or output: the hourly sums
 * per pollutant, the hourly (NowCast) and daily index of a given hour or city day, which stored indices a late
 * hour changes, and a zone's index as its worst station's. Pure functions of the station, so that the
 * computation is read apart from when it runs.
 */
import type { AqiEvent } from '../core/bus.ts';
import {
  dayPmHours,
  epaDailyAqi,
  epaHourlyAqi,
  O3_8H_PREVIOUS_HOURS,
  VN_POLLUTANTS,
  vnDailyAqi,
  vnHourlyAqi,
  type DaySeries,
  type MaybeNumber,
  type VnPollutant,
} from './aqi.ts';
import { HOUR_MS, type CityClock } from './city-time.ts';

export interface Acc {
  sum: number;
  n: number;
}

export interface Station {
  id: string;
  zone: string;
  hours: Map<number, Map<VnPollutant, Acc>>;
  newestHour: number;
  hour: AqiEvent | null;
  day: AqiEvent | null;
  /** Hours whose means changed since the station's indices were last computed (computeStation). */
  changed: Set<number>;
  /** When they were last computed (Date.now()): the next computation waits aqiEmitIntervalMs from it. */
  computedAt: number;
  /** The deferred computation, while one is due. */
  timer: NodeJS.Timeout | undefined;
}

export function newStation(id: string, zone: string): Station {
  return {
    id,
    zone,
    hours: new Map(),
    newestHour: 0,
    hour: null,
    day: null,
    changed: new Set(),
    computedAt: 0,
    timer: undefined,
  };
}

function hourMean(st: Station, hour: number, p: VnPollutant): MaybeNumber {
  const a = st.hours.get(hour)?.get(p);
  return a && a.n > 0 ? a.sum / a.n : undefined;
}

/** NowCast reaches back this many hours: a late hour changes the hourly index of itself and the 11 after it. */
const NOWCAST_HOURS = 12;

export function hourEvent(st: Station, hour: number): AqiEvent {
  const series: Partial<Record<VnPollutant, MaybeNumber[]>> = {};
  for (const p of VN_POLLUTANTS) series[p] = Array.from({ length: NOWCAST_HOURS }, (_, i) => hourMean(st, hour - i * HOUR_MS, p));
  return { scope: 'station', id: st.id, zone: st.zone, period: 'hour', time: hour, vn: vnHourlyAqi(series), epa: epaHourlyAqi(series) };
}

/** The daily index of the city day starting at `dayStart`, with the count of its hours that have a PM mean. */
export function dayEvent(st: Station, dayStart: number): AqiEvent {
  const day: { -readonly [K in keyof DaySeries]: MaybeNumber[] } = {};
  for (const p of VN_POLLUTANTS) {
    const xs: MaybeNumber[] = [];
    for (let h = dayStart; h < dayStart + 24 * HOUR_MS; h += HOUR_MS) xs.push(hourMean(st, h, p));
    day[p] = xs;
  }
  day.o3PreviousEvening = Array.from({ length: O3_8H_PREVIOUS_HOURS }, (_, i) =>
    hourMean(st, dayStart - (O3_8H_PREVIOUS_HOURS - i) * HOUR_MS, 'o3'),
  );
  const base = { scope: 'station' as const, id: st.id, zone: st.zone, period: 'day' as const, time: dayStart };
  return { ...base, vn: vnDailyAqi(day), epa: epaDailyAqi(day), hours: dayPmHours(day) };
}

/** Drops the hours older than the `hoursKept` before the station's newest. */
export function pruneHours(st: Station, hoursKept: number): void {
  const oldest = st.newestHour - hoursKept * HOUR_MS;
  for (const h of st.hours.keys()) if (h < oldest) st.hours.delete(h);
}

/**
 * The hours and city days whose stored index a reading of `hour` changes, besides the station's newest hour
 * and its day (recomputed on every reading): a late hour changes the hourly index of every hour whose NowCast
 * window holds it (itself and the 11 after it, up to the newest), the daily index of its day, and, when it is
 * one of the 7 last hours of its day, the next day's (its O3 8-hour means reach back into them). Only hours and
 * days whose inputs are all still kept in memory: the others cannot be recomputed from it.
 */
export function affectedByLateHour(st: Station, hour: number, hoursKept: number, clock: CityClock): { hours: number[]; days: number[] } {
  if (hour >= st.newestHour || !st.hours.has(hour)) return { hours: [], days: [] };
  const oldestKept = st.newestHour - hoursKept * HOUR_MS;
  const hours: number[] = [];
  for (let h = hour; h < st.newestHour && h < hour + NOWCAST_HOURS * HOUR_MS; h += HOUR_MS) {
    if (h - (NOWCAST_HOURS - 1) * HOUR_MS >= oldestKept) hours.push(h);
  }
  const newestDay = clock.dayStart(st.newestHour);
  const days: number[] = [];
  for (const d of new Set([clock.dayStart(hour), clock.dayStart(hour + O3_8H_PREVIOUS_HOURS * HOUR_MS)])) {
    if (d < newestDay && d - O3_8H_PREVIOUS_HOURS * HOUR_MS >= oldestKept) days.push(d);
  }
  return { hours, days };
}

/**
 * The zone's index for one hour or day: its worst station's (the highest VN_AQI and, separately, the highest
 * EPA AQI) among `evs`, the members' indices for that period; a day without any station's daily index carries
 * the hours of its most complete station.
 */
export function zoneEvent(zone: string, period: AqiEvent['period'], time: number, evs: AqiEvent[]): AqiEvent {
  const worst = (pick: (e: AqiEvent) => number) => evs.reduce((a, b) => (pick(b) > pick(a) ? b : a));
  const e: AqiEvent = {
    scope: 'zone',
    id: zone,
    zone,
    period,
    time,
    vn: worst((x) => x.vn?.aqi ?? -1).vn,
    epa: worst((x) => x.epa?.aqi ?? -1).epa,
  };
  if (period === 'day') e.hours = Math.max(...evs.map((x) => x.hours ?? 0));
  return e;
}
