/**
 * Analytics: air-quality indices and derived indicators, computed continuously from the
 * bus's `reading` events, kept in memory for the API, emitted on the bus (`aqi`, `indicator`) and stored in
 * InfluxDB (measurements `aqi` and `indicators`).
 *
 * - Air: hourly means per station and pollutant, bucketed by observation time (UTC hours; kept
 *   `airHoursKept` hours); a reading only adds to its hour's sums. From them the station's hourly index (VN_AQI
 *   with NowCast for PM, US EPA beside it; c1 = the running mean of the hour) and daily index (city-local day; a
 *   day needs 18 hours with a PM mean, the O3 8-hour means reach back into the previous evening) are computed
 *   for the station's newest hour and, after a late reading or a new hour, for every stored hour and day the
 *   changed hours affect (affectedByLateHour): on the reading when the station's last computation is at least
 *   `aqiEmitIntervalMs` old, else once that interval has passed, for all the readings in between. A zone's index
 *   is its WORST station: among the zone's stations whose current index is for the zone's newest hour (or day),
 *   the highest VN_AQI (and, separately, the highest EPA AQI).
 * - Traffic per junction, street lights per lamp, and their zone and city aggregates (see README).
 * - State is rebuilt at start from InfluxDB: air from hourly aggregates of the raw readings, traffic by
 *   replaying the raw readings of the last window, lamps from their last stored `indicators` point (a
 *   checkpoint with the energy counter) plus the raw readings after it. So a restart keeps an hour's NowCast
 *   and a day's energy.
 */
import type { InfluxDB } from 'influx';
import type { EnrichedReading, Family, InfluxTarget } from '../ingest/index.ts';
import { InfluxWriter } from '../ingest/index.ts';
import type { AqiEvent, IndicatorEvent, LiveBus } from '../core/bus.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { CityProfile, Device } from '../registry/index.ts';
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
import { createCityClock, HOUR_MS, hourStart } from './city-time.ts';
import { aqiLine, AQI_MEASUREMENT, indicatorLine, INDICATORS_MEASUREMENT } from './points.ts';
import { isDaylight } from './sun.ts';

export interface CongestionThresholds {
  /** Occupancy (0..1) at or above which a junction is moderate / heavy / congested. */
  occupancyModerate: number;
  occupancyHeavy: number;
  occupancyCongested: number;
  /** Average speed (km/h, only when vehicles were counted) at or below which it is moderate / heavy / congested. */
  speedModerateKmh: number;
  speedHeavyKmh: number;
  speedCongestedKmh: number;
}

export interface AnalyticsOptions {
  /** IANA time zone of the city (days and months). */
  timezone: string;
  /** Least time between two `aqi` events of one subject and period, ms (0 = every change). */
  aqiEmitIntervalMs: number;
  /** Least time between two zone or city `indicator` events of one subject, ms (device events go out on each reading). */
  indicatorEmitIntervalMs: number;
  /** At most one stored point per subject (and hour or day for `aqi`) per interval, ms (0 = every change). */
  storeIntervalMs: number;
  /**
   * Hourly means kept per air station, hours (at least 36: a city day plus the 12 hours of NowCast before its
   * last hours, or the 7 evening hours of its O3 8-hour means).
   */
  airHoursKept: number;
  /** Sliding window of the traffic indicators, ms. */
  trafficWindowMs: number;
  congestion: CongestionThresholds;
  /** A lamp that should be on (on/low) drawing less than this is a fault, W. */
  lampMinPowerW: number;
  /** Longest gap between two readings of a lamp counted as burning time, ms. */
  lampMaxGapMs: number;
  /** Daylight = sunrise + margin .. sunset − margin, ms. */
  daylightMarginMs: number;
  /** At start, raw readings at most this old are replayed to rebuild lamp state, ms. */
  restoreMaxReplayMs: number;
  /** A derived point waits at most this long before its batch is written to InfluxDB, ms. */
  writeMaxAgeMs: number;
}

export interface AnalyticsDeps {
  bus: LiveBus;
  /** `influx` client for the restore queries. */
  influx: InfluxDB;
  /** Where derived points are written (same database and retention policy as the readings). */
  target: InfluxTarget;
  profile: CityProfile;
  /** Device registry lookup (lamp locations for daylight). */
  devices: { get(id: string): Promise<Device | undefined> };
  logger?: Logger;
  /** Awaited before the state is restored (the platform flushes ingest's durable log into InfluxDB). */
  beforeRestore?: () => Promise<unknown>;
}

/** Current index values of a subject, for the API. */
export interface CurrentAqi {
  scope: 'station' | 'zone';
  id: string;
  zone: string;
  hour: AqiEvent | null;
  day: AqiEvent | null;
}

export interface Analytics {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Current indices per station and per zone (a station with readings not yet in its index is computed first). */
  currentAqi(): { stations: CurrentAqi[]; zones: CurrentAqi[] };
  /** Computations of a station's indices since start: at most one per station per `aqiEmitIntervalMs` while readings arrive. */
  airComputations(): number;
  /** Current indicators (computed now), filtered. */
  indicators(filter?: { scope?: IndicatorEvent['scope']; zone?: string; family?: Family }): IndicatorEvent[];
}

interface Acc {
  sum: number;
  n: number;
}

interface Station {
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

interface Junction {
  id: string;
  zone: string;
  /** Readings inside the window, by observation time (from index `head` on: evicted entries are skipped, not shifted). */
  window: { t: number; intensity: number; speed?: number }[];
  head: number;
  /**
   * Running sums over the window (vehicles, speed·vehicles, vehicles with a speed, speeds, readings with a speed),
   * so a reading costs O(1) however many readings the window holds (a device flushing a backlog fills it).
   * Recomputed from the window once as many readings were evicted as it holds, so float error cannot build up.
   */
  sums: { vehicles: number; wsum: number; w: number; ssum: number; sn: number; evicted: number };
  latestT: number;
  /** The latest reading's values, updated in place. */
  latest: { occupancy?: number; speed?: number; congested?: boolean; intensity: number };
  /** Its key in the store's pending map (built once, not per reading). */
  storeKey: string;
}

interface Lamp {
  id: string;
  zone: string;
  lastT: number;
  powerState?: string;
  illuminance?: number;
  powerW?: number;
  status?: string;
  counter?: number;
  energyDay: { key: string; kwh: number };
  energyMonth: { key: string; kwh: number };
  burnDay: { key: string; hours: number };
  onInDaylight: boolean;
}

const TAG_COLUMNS = new Set(['device', 'zone', 'time']);

export function createAnalytics(opts: AnalyticsOptions, deps: AnalyticsDeps): Analytics {
  const log = deps.logger ?? silentLogger;
  const clock = createCityClock(opts.timezone);
  const stations = new Map<string, Station>();
  const zoneAqi = new Map<string, CurrentAqi>();
  const junctions = new Map<string, Junction>();
  const lamps = new Map<string, Lamp>();
  const locations = new Map<string, { lat: number; lon: number } | Promise<{ lat: number; lon: number }>>();
  const zoneCentre = new Map(deps.profile.zones.filter((z) => z.centre).map((z) => [z.id, z.centre as { lat: number; lon: number }]));
  // Derived data can be recomputed from the raw readings, so it is written straight to InfluxDB by this
  // component's own writer, not through ingest's durable log.
  const writer = new InfluxWriter(
    deps.target,
    { batchSize: 5000, batchMaxAgeMs: opts.writeMaxAgeMs, writeConcurrency: 1, maxBufferedPoints: 200_000, retryMaxDelayMs: 5000 },
    {
      logger: log,
      onRejected: (points, reason) => log.warn({ points: points.length, reason }, 'InfluxDB refused derived points'),
    },
  );
  /** Lines waiting for the next store tick, by subject key (the latest value of a subject wins). */
  const pending = new Map<string, { line: () => string | undefined; family: Family; device: string }>();
  /** Zone/city indicator subjects changed since the last store tick and since the last emit. */
  const storeDirty = new Set<string>();
  const emitDirty = new Set<string>();
  const lastEmit = new Map<string, number>();
  const emitTimers = new Map<string, NodeJS.Timeout>();
  let storeTimer: NodeJS.Timeout | undefined;
  let indicatorTimer: NodeJS.Timeout | undefined;
  let started = false;
  let stopped = false;

  // ---------- storage and emission ----------

  /**
   * Stores a subject's point: now (storeIntervalMs 0) or at the next store tick, the latest call per key winning.
   * `line` builds the line protocol: only when it is written, not on every reading that supersedes it.
   */
  function store(key: string, line: () => string | undefined, family: Family, device: string): void {
    if (opts.storeIntervalMs === 0) {
      const text = line();
      if (text) writer.writePoints([{ line: text, family, device }]);
    } else {
      // The subject's entry is reused: a busy device supersedes its point on every reading.
      const p = pending.get(key);
      if (p) p.line = line;
      else pending.set(key, { line, family, device });
    }
  }

  function flushStore(): void {
    for (const key of storeDirty) {
      const [id, family] = splitKey(key);
      const e = aggregate(id, family);
      if (e) store(`i|${key}`, () => indicatorLine(e), family, id);
    }
    storeDirty.clear();
    const points: { line: string; family: Family; device: string }[] = [];
    for (const p of pending.values()) {
      const line = p.line();
      if (line) points.push({ line, family: p.family, device: p.device });
    }
    if (points.length) writer.writePoints(points);
    pending.clear();
  }

  /** Emits at most once per `intervalMs` per key, the last call winning (a trailing emit follows a throttled one). */
  function throttled(key: string, intervalMs: number, fire: () => void): void {
    if (intervalMs === 0) {
      fire();
      return;
    }
    const now = Date.now();
    const last = lastEmit.get(key) ?? 0;
    const old = emitTimers.get(key);
    if (old) clearTimeout(old);
    const run = () => {
      emitTimers.delete(key);
      lastEmit.set(key, Date.now());
      fire();
    };
    if (now - last >= intervalMs) run();
    else emitTimers.set(key, setTimeout(run, intervalMs - (now - last)));
  }

  // ---------- air ----------

  function hourMean(st: Station, hour: number, p: VnPollutant): MaybeNumber {
    const a = st.hours.get(hour)?.get(p);
    return a && a.n > 0 ? a.sum / a.n : undefined;
  }

  /** NowCast reaches back this many hours: a late hour changes the hourly index of itself and the 11 after it. */
  const NOWCAST_HOURS = 12;

  function hourEvent(st: Station, hour: number): AqiEvent {
    const series: Partial<Record<VnPollutant, MaybeNumber[]>> = {};
    for (const p of VN_POLLUTANTS) series[p] = Array.from({ length: NOWCAST_HOURS }, (_, i) => hourMean(st, hour - i * HOUR_MS, p));
    return { scope: 'station', id: st.id, zone: st.zone, period: 'hour', time: hour, vn: vnHourlyAqi(series), epa: epaHourlyAqi(series) };
  }

  /** The daily index of the city day starting at `dayStart`, with the count of its hours that have a PM mean. */
  function dayEvent(st: Station, dayStart: number): AqiEvent {
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

  function newStation(id: string, zone: string): Station {
    const st: Station = {
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
    stations.set(id, st);
    return st;
  }

  /**
   * A reading only adds to its hour's running sums (O(1)): the indices, which read 12 NowCast hours and a day's
   * 24 (and more for a late hour) per pollutant, are computed from the sums by computeStation, at most once per
   * aqiEmitIntervalMs per station — what a reading costs does not grow with how often a station reports.
   */
  function onAir(r: EnrichedReading, live: boolean): void {
    const st = stations.get(r.device) ?? newStation(r.device, r.zone);
    st.zone = r.zone;
    const hour = hourStart(r.time);
    // Older than the hours kept: it would be pruned at once, and changes no index that can still be computed.
    if (hour < st.newestHour - opts.airHoursKept * HOUR_MS) return;
    let b: Map<VnPollutant, Acc> | undefined;
    for (const p of VN_POLLUTANTS) {
      const v = r.fields[p];
      if (typeof v !== 'number') continue;
      b ??= st.hours.get(hour);
      if (!b) {
        b = new Map();
        st.hours.set(hour, b);
      }
      const a = b.get(p);
      if (a) {
        a.sum += v;
        a.n++;
      } else b.set(p, { sum: v, n: 1 });
    }
    if (!b) return;
    if (hour > st.newestHour) {
      st.newestHour = hour;
      pruneHours(st);
    }
    if (live) airChanged(st, hour);
  }

  /**
   * Hour `hour` of the station changed: its indices are computed now when the last computation is at least
   * aqiEmitIntervalMs old (a station reporting every minute is computed on each reading, as before), else once
   * that interval has passed, for every hour that changed meanwhile (a new hour, a late reading, a backlog).
   */
  function airChanged(st: Station, hour: number): void {
    st.changed.add(hour);
    if (st.timer) return;
    const wait = st.computedAt + opts.aqiEmitIntervalMs - Date.now();
    if (wait <= 0) computeStation(st);
    else st.timer = setTimeout(() => computeStation(st), wait);
  }

  let airComputations = 0;

  /** Computes a station's indices from its hour means: its newest hour and day, and the hours that changed before it. */
  function computeStation(st: Station, emit = !stopped): void {
    clearTimeout(st.timer);
    st.timer = undefined;
    if (!st.changed.size) return;
    const late = [...st.changed].filter((h) => h < st.newestHour);
    st.changed.clear();
    st.computedAt = Date.now();
    airComputations++;
    try {
      recomputeStation(st, late, emit);
    } catch (err) {
      log.error({ err, station: st.id }, 'air-quality index computation failed');
    }
  }

  function pruneHours(st: Station): void {
    const oldest = st.newestHour - opts.airHoursKept * HOUR_MS;
    for (const h of st.hours.keys()) if (h < oldest) st.hours.delete(h);
  }

  /**
   * The hours and city days whose stored index a reading of `hour` changes, besides the station's newest hour
   * and its day (recomputed on every reading): a late hour changes the hourly index of every hour whose NowCast
   * window holds it (itself and the 11 after it, up to the newest), the daily index of its day, and, when it is
   * one of the 7 last hours of its day, the next day's (its O3 8-hour means reach back into them). Only hours and
   * days whose inputs are all still kept in memory: the others cannot be recomputed from it.
   */
  function affectedByLateHour(st: Station, hour: number): { hours: number[]; days: number[] } {
    if (hour >= st.newestHour || !st.hours.has(hour)) return { hours: [], days: [] };
    const oldestKept = st.newestHour - opts.airHoursKept * HOUR_MS;
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
   * Recomputes the station's newest hour and its day (current: stored and emitted) and, for the hours before it
   * that changed (`lateHours`), the stored indices they change (affectedByLateHour).
   */
  function recomputeStation(st: Station, lateHours: readonly number[], emit = true): void {
    const key = (e: AqiEvent) => `a|station|${st.id}|${e.period}|${e.time}`;
    if (lateHours.length) {
      // Several late hours (a computation covers every hour changed since the last): each index they change once.
      const hours = new Set<number>();
      const days = new Set<number>();
      for (const hour of lateHours) {
        const a = affectedByLateHour(st, hour);
        for (const h of a.hours) hours.add(h);
        for (const d of a.days) days.add(d);
      }
      const late = { hours: [...hours].sort((x, y) => x - y), days: [...days].sort((x, y) => x - y) };
      for (const h of late.hours) {
        const e = hourEvent(st, h);
        store(key(e), () => aqiLine(e), 'airQuality', st.id);
      }
      for (const d of late.days) {
        const e = dayEvent(st, d);
        store(key(e), () => aqiLine(e), 'airQuality', st.id);
      }
      recomputeZonePast(st.zone, late);
    }
    for (const e of [hourEvent(st, st.newestHour), dayEvent(st, clock.dayStart(st.newestHour))]) {
      store(key(e), () => aqiLine(e), 'airQuality', st.id);
      if (e.period === 'hour') st.hour = e;
      else st.day = e;
      if (emit) throttled(`aqi|station|${st.id}|${e.period}`, opts.aqiEmitIntervalMs, () => deps.bus.emit('aqi', e));
    }
    recomputeZone(st.zone, emit);
  }

  /**
   * The zone's index for one hour or day: its worst station's (the highest VN_AQI and, separately, the highest
   * EPA AQI) among `evs`, the members' indices for that period; a day without any station's daily index carries
   * the hours of its most complete station.
   */
  function zoneEvent(zone: string, period: AqiEvent['period'], time: number, evs: AqiEvent[]): AqiEvent {
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

  function recomputeZone(zone: string, emit: boolean): void {
    const members = [...stations.values()].filter((s) => s.zone === zone);
    const cur: CurrentAqi = { scope: 'zone', id: zone, zone, hour: null, day: null };
    for (const period of ['hour', 'day'] as const) {
      const evs = members.map((s) => s[period]).filter((e): e is AqiEvent => !!e);
      if (!evs.length) continue;
      const newest = Math.max(...evs.map((e) => e.time));
      const e = zoneEvent(
        zone,
        period,
        newest,
        evs.filter((x) => x.time === newest),
      );
      cur[period] = e;
      store(`a|zone|${zone}|${period}|${newest}`, () => aqiLine(e), 'airQuality', zone);
      if (emit) throttled(`aqi|zone|${zone}|${period}`, opts.aqiEmitIntervalMs, () => deps.bus.emit('aqi', e));
    }
    zoneAqi.set(zone, cur);
  }

  /**
   * Recomputes the zone's stored index of past hours and days a late reading changed, from the indices of its
   * stations that have hourly means in that hour (or day), as the live path counted the stations reporting then.
   */
  function recomputeZonePast(zone: string, late: { hours: number[]; days: number[] }): void {
    const members = [...stations.values()].filter((s) => s.zone === zone);
    const pastOf = (period: AqiEvent['period'], time: number) => {
      const evs: AqiEvent[] = [];
      for (const s of members) {
        if (period === 'hour' && s.hours.has(time)) evs.push(hourEvent(s, time));
        else if (period === 'day' && [...s.hours.keys()].some((h) => h >= time && h < time + 24 * HOUR_MS)) evs.push(dayEvent(s, time));
      }
      if (!evs.length) return;
      const e = zoneEvent(zone, period, time, evs);
      store(`a|zone|${zone}|${period}|${time}`, () => aqiLine(e), 'airQuality', zone);
    };
    for (const h of late.hours) pastOf('hour', h);
    for (const d of late.days) pastOf('day', d);
  }

  // ---------- traffic ----------

  function congestionLevel(j: Junction): number {
    const c = opts.congestion;
    const { occupancy: occ, congested } = j.latest;
    const speed = j.latest.intensity > 0 ? j.latest.speed : undefined; // no vehicles: speed says nothing
    if (congested === true) return 3;
    if ((occ !== undefined && occ >= c.occupancyCongested) || (speed !== undefined && speed <= c.speedCongestedKmh)) return 3;
    if ((occ !== undefined && occ >= c.occupancyHeavy) || (speed !== undefined && speed <= c.speedHeavyKmh)) return 2;
    if ((occ !== undefined && occ >= c.occupancyModerate) || (speed !== undefined && speed <= c.speedModerateKmh)) return 1;
    return 0;
  }

  function junctionValues(j: Junction): Record<string, number> {
    const { vehicles, wsum, w, ssum, sn } = j.sums;
    const out: Record<string, number> = {
      vehiclesPerHour: Math.round((vehicles * HOUR_MS) / opts.trafficWindowMs),
      congestionLevel: congestionLevel(j),
    };
    if (w > 0) out.averageSpeed = wsum / w;
    else if (sn > 0) out.averageSpeed = ssum / sn;
    return out;
  }

  function onTraffic(r: EnrichedReading, live: boolean): void {
    let j = junctions.get(r.device);
    if (!j) {
      j = {
        id: r.device,
        zone: r.zone,
        window: [],
        head: 0,
        sums: { vehicles: 0, wsum: 0, w: 0, ssum: 0, sn: 0, evicted: 0 },
        latestT: 0,
        latest: { intensity: 0, speed: undefined, occupancy: undefined, congested: undefined },
        storeKey: `i|device|${r.device}`,
      };
      junctions.set(r.device, j);
    }
    j.zone = r.zone;
    const f = r.fields;
    const intensity = typeof f.intensity === 'number' ? f.intensity : 0;
    const speed = typeof f.averageVehicleSpeed === 'number' ? f.averageVehicleSpeed : undefined;
    // The reading's time is the end of its counting period (dateObserved, else dateObservedTo): the whole
    // count belongs to the window that contains that time. The window is in time order, so its place is found
    // from the end (readings mostly arrive in order), and a resent reading is the one just before it (no set
    // of times: hashing each time cost more than this).
    let i = j.window.length;
    while (i > j.head && (j.window[i - 1] as { t: number }).t > r.time) i--;
    if (i > j.head && (j.window[i - 1] as { t: number }).t === r.time) return; // a resent reading
    const entry = { t: r.time, intensity, speed };
    if (i === j.window.length) j.window.push(entry);
    else j.window.splice(i, 0, entry);
    addToSums(j.sums, entry, 1);
    if (r.time >= j.latestT) {
      j.latestT = r.time;
      const latest = j.latest;
      latest.intensity = intensity;
      latest.speed = speed;
      latest.occupancy = typeof f.occupancy === 'number' ? f.occupancy : undefined;
      latest.congested = typeof f.congested === 'boolean' ? f.congested : undefined;
    }
    evictWindow(j, j.latestT - opts.trafficWindowMs);
    if (!live) return;
    const e: IndicatorEvent = { scope: 'device', id: j.id, zone: j.zone, family: 'traffic', time: r.time, values: junctionValues(j) };
    deps.bus.emit('indicator', e);
    store(j.storeKey, () => indicatorLine(e), 'traffic', j.id);
    touchAggregates(j.zone, 'traffic');
  }

  function addToSums(s: Junction['sums'], x: { intensity: number; speed?: number }, sign: 1 | -1): void {
    s.vehicles += sign * x.intensity;
    if (x.speed !== undefined) {
      s.wsum += sign * x.speed * x.intensity;
      s.w += sign * x.intensity;
      s.ssum += sign * x.speed;
      s.sn += sign;
    }
  }

  /** Drops readings at or before `from` from the window (and its sums). */
  function evictWindow(j: Junction, from: number): void {
    const s = j.sums;
    while (j.head < j.window.length && (j.window[j.head] as { t: number }).t <= from) {
      const x = j.window[j.head++] as Junction['window'][number];
      addToSums(s, x, -1);
      s.evicted++;
    }
    // Compact the array once half of it is evicted (amortised O(1) per reading).
    if (j.head > 64 && j.head * 2 > j.window.length) {
      j.window = j.window.slice(j.head);
      j.head = 0;
    }
    if (s.evicted > j.window.length - j.head) {
      // As many evictions as readings left: recompute exactly (amortised O(1)), so rounding never accumulates.
      const fresh = { vehicles: 0, wsum: 0, w: 0, ssum: 0, sn: 0, evicted: 0 };
      for (let k = j.head; k < j.window.length; k++) addToSums(fresh, j.window[k] as Junction['window'][number], 1);
      j.sums = fresh;
    }
  }

  // ---------- street lights ----------

  function locationOf(r: EnrichedReading): { lat: number; lon: number } | Promise<{ lat: number; lon: number }> {
    const known = locations.get(r.device);
    if (known !== undefined) return known;
    const fallback = zoneCentre.get(r.zone) ?? deps.profile.centre;
    const p = deps.devices
      .get(r.device)
      .then((d) => d?.location ?? fallback)
      .catch(() => fallback)
      .then((loc) => {
        locations.set(r.device, loc);
        return loc;
      });
    locations.set(r.device, p);
    return p;
  }

  const isOn = (l: Lamp) => l.powerState === 'on' || l.powerState === 'low';

  function lampValues(l: Lamp, today = clock.dayKey(l.lastT)): Record<string, number | boolean> {
    const on = isOn(l);
    const fault = (l.status !== undefined && l.status !== 'ok') || (on && l.powerW !== undefined && l.powerW < opts.lampMinPowerW);
    return {
      on,
      dimmed: on && l.illuminance !== undefined && l.illuminance < 1,
      fault,
      onInDaylight: on && l.onInDaylight,
      powerW: l.powerW ?? 0,
      burningHoursToday: l.burnDay.key === today ? l.burnDay.hours : 0,
      energyTodayKWh: l.energyDay.key === today ? l.energyDay.kwh : 0,
      energyMonthKWh: l.energyMonth.key === clock.monthKey(l.lastT) ? l.energyMonth.kwh : 0,
    };
  }

  /** State kept in the stored lamp point so that a restart can go on from it. */
  function lampCheckpoint(l: Lamp): Record<string, number | string> {
    const out: Record<string, number | string> = {};
    if (l.counter !== undefined) out.energyCounterKWh = l.counter;
    if (l.powerState !== undefined) out.powerState = l.powerState;
    if (l.status !== undefined) out.lampStatus = l.status;
    if (l.illuminance !== undefined) out.illuminanceLevel = l.illuminance;
    return out;
  }

  function onStreetLight(r: EnrichedReading, loc: { lat: number; lon: number }, live: boolean): void {
    let l = lamps.get(r.device);
    if (!l) {
      l = {
        id: r.device,
        zone: r.zone,
        lastT: Number.NEGATIVE_INFINITY,
        energyDay: { key: '', kwh: 0 },
        energyMonth: { key: '', kwh: 0 },
        burnDay: { key: '', hours: 0 },
        onInDaylight: false,
      };
      lamps.set(r.device, l);
    }
    if (r.time <= l.lastT) return; // older than the lamp's last reading (or a resend): ignored
    l.zone = r.zone;
    const f = r.fields;
    const day = clock.dayKey(r.time);
    const month = clock.monthKey(r.time);
    if (l.energyDay.key !== day) l.energyDay = { key: day, kwh: 0 };
    if (l.energyMonth.key !== month) l.energyMonth = { key: month, kwh: 0 };
    if (l.burnDay.key !== day) l.burnDay = { key: day, hours: 0 };
    // Burning time: the interval since the previous reading, when the lamp was on then (bounded by
    // lampMaxGapMs, and only the part of it inside the reading's day).
    if (isOn(l) && Number.isFinite(l.lastT)) {
      const from = Math.max(l.lastT, r.time - opts.lampMaxGapMs, clock.dayStart(r.time));
      if (r.time > from) l.burnDay.hours += (r.time - from) / HOUR_MS;
    }
    if (typeof f.energyConsumed === 'number') {
      if (l.counter !== undefined) {
        const delta = f.energyConsumed - l.counter;
        // A counter that went down restarted (replaced meter, firmware reset): what it shows now is new energy.
        const used = delta < 0 ? f.energyConsumed : delta;
        l.energyDay.kwh += used;
        l.energyMonth.kwh += used;
      }
      l.counter = f.energyConsumed;
    }
    if (typeof f.powerState === 'string') l.powerState = f.powerState;
    if (typeof f.illuminanceLevel === 'number') l.illuminance = f.illuminanceLevel;
    if (typeof f.powerConsumption === 'number') l.powerW = f.powerConsumption;
    if (typeof f.status === 'string') l.status = f.status;
    l.lastT = r.time;
    l.onInDaylight = isOn(l) && isDaylight(r.time, loc.lat, loc.lon, opts.daylightMarginMs);
    if (!live) return;
    const e: IndicatorEvent = { scope: 'device', id: l.id, zone: l.zone, family: 'streetLight', time: r.time, values: lampValues(l) };
    deps.bus.emit('indicator', e);
    const checkpoint = lampCheckpoint(l);
    store(`i|device|${l.id}`, () => indicatorLine(e, checkpoint), 'streetLight', l.id);
    touchAggregates(l.zone, 'streetLight');
  }

  // ---------- zone and city aggregates ----------

  const keyOf = (id: string, family: Family) => `${id}\u0000${family}`;
  const splitKey = (k: string) => k.split('\u0000') as [string, Family];

  function touchAggregates(zone: string, family: Family): void {
    for (const id of [zone, 'city']) {
      const k = keyOf(id, family);
      if (opts.storeIntervalMs === 0) {
        const e = aggregate(id, family);
        if (e) store(`i|${k}`, () => indicatorLine(e), family, id);
      } else storeDirty.add(k);
      if (opts.indicatorEmitIntervalMs === 0) {
        const e = aggregate(id, family);
        if (e) deps.bus.emit('indicator', e);
      } else {
        emitDirty.add(k);
        indicatorTimer ??= setTimeout(emitAggregates, opts.indicatorEmitIntervalMs);
      }
    }
  }

  function emitAggregates(): void {
    indicatorTimer = undefined;
    for (const k of emitDirty) {
      const [id, family] = splitKey(k);
      const e = aggregate(id, family);
      if (e) deps.bus.emit('indicator', e);
    }
    emitDirty.clear();
  }

  /** Zone (`id` a zone id) or city (`id` = 'city') indicators of a family, computed now. */
  function aggregate(id: string, family: Family): IndicatorEvent | undefined {
    const inScope = (zone: string) => id === 'city' || zone === id;
    const now = Date.now();
    const base = {
      scope: id === 'city' ? ('city' as const) : ('zone' as const),
      id,
      ...(id === 'city' ? {} : { zone: id }),
      family,
      time: now,
    };
    if (family === 'traffic') {
      let n = 0;
      let vph = 0;
      let speedW = 0;
      let speedSum = 0;
      let congested = 0;
      for (const j of junctions.values()) {
        // A junction that has not reported within the window no longer counts.
        if (!inScope(j.zone) || j.latestT <= now - opts.trafficWindowMs) continue;
        const v = junctionValues(j);
        n++;
        vph += v.vehiclesPerHour as number;
        if (v.averageSpeed !== undefined) {
          const w = Math.max(v.vehiclesPerHour as number, 1e-9);
          speedSum += v.averageSpeed * w;
          speedW += w;
        }
        if (v.congestionLevel === 3) congested++;
      }
      if (!n && id !== 'city' && ![...junctions.values()].some((j) => j.zone === id)) return undefined;
      const values: Record<string, number> = { vehiclesPerHour: vph, congestedJunctions: congested };
      if (speedW > 0) values.averageSpeed = speedSum / speedW;
      return { ...base, values };
    }
    if (family === 'streetLight') {
      const today = clock.dayKey(now);
      const month = clock.monthKey(now);
      const values = {
        powerNowW: 0,
        energyTodayKWh: 0,
        energyMonthKWh: 0,
        lampsOn: 0,
        lampsDimmed: 0,
        lampsFaulty: 0,
        lampsOnInDaylight: 0,
        burningHoursToday: 0,
      };
      let any = false;
      for (const l of lamps.values()) {
        if (!inScope(l.zone)) continue;
        any = true;
        const v = lampValues(l, today);
        values.powerNowW += l.powerW ?? 0;
        if (l.energyDay.key === today) values.energyTodayKWh += l.energyDay.kwh;
        if (l.energyMonth.key === month) values.energyMonthKWh += l.energyMonth.kwh;
        if (v.on) values.lampsOn++;
        if (v.dimmed) values.lampsDimmed++;
        if (v.fault) values.lampsFaulty++;
        if (v.onInDaylight) values.lampsOnInDaylight++;
        values.burningHoursToday += v.burningHoursToday as number;
      }
      if (!any && id !== 'city') return undefined;
      return { ...base, values };
    }
    return undefined;
  }

  // ---------- readings ----------

  function onReading(r: EnrichedReading): void {
    try {
      if (r.family === 'airQuality') onAir(r, true);
      else if (r.family === 'traffic') onTraffic(r, true);
      else if (r.family === 'streetLight') {
        const loc = locationOf(r);
        if (loc instanceof Promise)
          loc.then((l) => onStreetLight(r, l, !stopped)).catch((err) => log.error({ err }, 'lamp reading failed'));
        else onStreetLight(r, loc, true);
      }
    } catch (err) {
      // A bad reading must never take the bus (and so ingest) down with it.
      log.error({ err, device: r.device }, 'analytics failed on a reading');
    }
  }

  // ---------- restore ----------

  async function query(sql: string): Promise<Record<string, unknown>[]> {
    const raw = (await deps.influx.queryRaw(sql, { precision: 'ms', database: deps.target.database })) as {
      results?: { series?: { columns: string[]; values: unknown[][]; tags?: Record<string, string> }[]; error?: string }[];
    };
    const out: Record<string, unknown>[] = [];
    for (const r of raw.results ?? []) {
      if (r.error) throw new Error(r.error);
      for (const s of r.series ?? []) {
        for (const v of s.values) out.push({ ...s.tags, ...Object.fromEntries(s.columns.map((c, i) => [c, v[i]])) });
      }
    }
    return out;
  }

  const from = (m: string) => `"${deps.target.database}"."${deps.target.retentionPolicy}"."${m}"`;

  async function restore(): Promise<void> {
    const now = Date.now();
    const future = now + 86_400_000; // readings up to ingest's maxFutureMs ahead are accepted
    // Air: hourly mean and count per station and pollutant, as the live path would have accumulated them.
    const sel = VN_POLLUTANTS.map((p) => `mean("${p}") AS "${p}_mean", count("${p}") AS "${p}_n"`).join(', ');
    const airFrom = hourStart(now) - opts.airHoursKept * HOUR_MS;
    const air = await query(
      `SELECT ${sel} FROM ${from('airQuality')} WHERE time >= ${airFrom}ms AND time <= ${future}ms GROUP BY time(1h), "device", "zone" fill(none)`,
    );
    for (const row of air) {
      const id = row.device as string;
      const st = stations.get(id) ?? newStation(id, row.zone as string);
      const hour = row.time as number;
      const b = new Map<VnPollutant, Acc>();
      for (const p of VN_POLLUTANTS) {
        const n = row[`${p}_n`] as number | null;
        const m = row[`${p}_mean`] as number | null;
        if (n && m !== null) b.set(p, { sum: m * n, n });
      }
      if (!b.size) continue;
      st.hours.set(hour, b);
      st.newestHour = Math.max(st.newestHour, hour);
    }
    for (const st of stations.values()) recomputeStation(st, [], false);

    // Traffic: replay the raw readings of the last window.
    const traffic = await query(
      `SELECT * FROM ${from('traffic')} WHERE time > ${now - opts.trafficWindowMs - 300_000}ms AND time <= ${future}ms`,
    );
    for (const row of traffic) onTraffic(rowToReading(row, 'traffic'), false);

    // Street lights: the last stored checkpoint of each lamp this month, then the raw readings after it.
    const monthStart = clock.monthStart(now);
    const points = await query(
      `SELECT * FROM ${from(INDICATORS_MEASUREMENT)} WHERE "scope" = 'device' AND "family" = 'streetLight' AND time >= ${monthStart}ms AND time <= ${future}ms GROUP BY "id" ORDER BY time DESC LIMIT 1`,
    );
    for (const row of points) {
      const t = row.time as number;
      const num = (k: string) => (typeof row[k] === 'number' ? (row[k] as number) : undefined);
      lamps.set(row.id as string, {
        id: row.id as string,
        zone: row.zone as string,
        lastT: t,
        powerState: (row.powerState as string | null) ?? undefined,
        status: (row.lampStatus as string | null) ?? undefined,
        illuminance: num('illuminanceLevel'),
        powerW: num('powerW'),
        counter: num('energyCounterKWh'),
        energyDay: { key: clock.dayKey(t), kwh: num('energyTodayKWh') ?? 0 },
        energyMonth: { key: clock.monthKey(t), kwh: num('energyMonthKWh') ?? 0 },
        burnDay: { key: clock.dayKey(t), hours: num('burningHoursToday') ?? 0 },
        onInDaylight: row.onInDaylight === true,
      });
    }
    const oldestCheckpoint = Math.min(now, ...[...lamps.values()].map((l) => l.lastT));
    const replayFrom = Math.max(monthStart, now - opts.restoreMaxReplayMs, lamps.size ? oldestCheckpoint : monthStart);
    const lampRows = await query(`SELECT * FROM ${from('streetLight')} WHERE time > ${replayFrom - 1}ms AND time <= ${future}ms`);
    for (const row of lampRows) {
      const r = rowToReading(row, 'streetLight');
      onStreetLight(r, await locationOf(r), false);
    }
    log.info(
      { stations: stations.size, junctions: junctions.size, lamps: lamps.size, replayed: traffic.length + lampRows.length },
      'analytics state restored from InfluxDB',
    );
  }

  function rowToReading(row: Record<string, unknown>, family: Family): EnrichedReading {
    const fields: Record<string, number | boolean | string> = {};
    for (const [k, v] of Object.entries(row)) if (!TAG_COLUMNS.has(k) && v !== null && v !== undefined) fields[k] = v as number;
    return { device: row.device as string, zone: row.zone as string, family, time: row.time as number, fields };
  }

  return {
    async start() {
      if (started) return;
      started = true;
      try {
        await deps.beforeRestore?.();
        await restore();
      } catch (err) {
        // Not fatal: the indices and indicators build up again from new readings.
        log.warn({ err: (err as Error).message }, 'analytics could not restore its state from InfluxDB');
      }
      deps.bus.on('reading', onReading);
      if (opts.storeIntervalMs > 0) storeTimer = setInterval(flushStore, opts.storeIntervalMs);
    },
    async stop() {
      if (!started || stopped) return;
      stopped = true;
      deps.bus.off('reading', onReading);
      for (const st of stations.values()) computeStation(st, false); // deferred computations: their points are stored below
      clearInterval(storeTimer);
      clearTimeout(indicatorTimer);
      for (const t of emitTimers.values()) clearTimeout(t);
      emitTimers.clear();
      flushStore(); // the last state of every subject, so that the next start goes on from it
      await writer.stop();
    },
    currentAqi() {
      // A reader gets the indices of every reading received, not those of the last throttled computation.
      if (!stopped) for (const st of stations.values()) if (st.timer) computeStation(st);
      return {
        stations: [...stations.values()]
          .filter((s) => s.hour || s.day)
          .map((s) => ({ scope: 'station' as const, id: s.id, zone: s.zone, hour: s.hour, day: s.day })),
        zones: [...zoneAqi.values()],
      };
    },
    airComputations: () => airComputations,
    indicators(filter = {}) {
      const out: IndicatorEvent[] = [];
      const fam = (f: Family) => !filter.family || filter.family === f;
      if (!filter.scope || filter.scope === 'device') {
        for (const j of junctions.values()) {
          if (fam('traffic') && (!filter.zone || j.zone === filter.zone))
            out.push({ scope: 'device', id: j.id, zone: j.zone, family: 'traffic', time: j.latestT, values: junctionValues(j) });
        }
        for (const l of lamps.values()) {
          if (fam('streetLight') && (!filter.zone || l.zone === filter.zone))
            out.push({ scope: 'device', id: l.id, zone: l.zone, family: 'streetLight', time: l.lastT, values: lampValues(l) });
        }
      }
      const zones = new Set([...junctions.values(), ...lamps.values()].map((x) => x.zone));
      for (const f of ['traffic', 'streetLight'] as const) {
        if (!fam(f)) continue;
        if (!filter.scope || filter.scope === 'zone') {
          for (const z of zones) {
            if (filter.zone && z !== filter.zone) continue;
            const e = aggregate(z, f);
            if (e) out.push(e);
          }
        }
        if ((!filter.scope || filter.scope === 'city') && !filter.zone) {
          const e = aggregate('city', f);
          if (e) out.push(e);
        }
      }
      return out;
    },
  };
}

export { AQI_MEASUREMENT, INDICATORS_MEASUREMENT };
