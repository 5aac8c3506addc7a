/**
 * Air quality: the hourly means per station and pollutant that readings add to, and when a station's and its
 * zone's indices are computed, stored and emitted. A reading only adds to its hour's sums; the indices are
 * computed from them at most once per `aqiEmitIntervalMs` per station (on the reading when the last computation
 * is that old, else once the interval has passed, for every hour changed meanwhile), so what a reading costs does
 * not grow with how often a station reports. The index arithmetic itself is in air-station.ts.
 */
import type { EnrichedReading } from '../ingest/index.ts';
import type { AqiEvent } from '../core/bus.ts';
import { VN_POLLUTANTS, type VnPollutant } from './aqi.ts';
import { affectedByLateHour, dayEvent, hourEvent, newStation, pruneHours, zoneEvent, type Acc, type Station } from './air-station.ts';
import { HOUR_MS, hourStart } from './city-time.ts';
import { aqiLine } from './points.ts';
import type { RestoreSource } from './restore-query.ts';
import type { CurrentAqi, FamilyContext } from './types.ts';

export interface AirQuality {
  /** Adds a reading to its hour's sums; `live` (not a restore) schedules the station's computation. */
  onReading(r: EnrichedReading, live: boolean): void;
  /** Rebuilds the hourly sums from InfluxDB's hourly aggregates of the raw readings, and the indices from them. */
  restore(source: RestoreSource, now: number, future: number): Promise<void>;
  /** Current indices per station and per zone (a station with readings not yet in its index is computed first). */
  currentAqi(): { stations: CurrentAqi[]; zones: CurrentAqi[] };
  /** Current indices of a zone and of its stations (pending computations of them done first). */
  zoneAqi(zone: string): { aqi?: CurrentAqi; stations: CurrentAqi[] };
  /** Computations of a station's indices since start. */
  computations(): number;
  stations(): number;
  /** Runs the deferred computations without emitting (their points are stored by the last flush). */
  stop(): void;
}

/** `changed(zone)`: a zone's live index was computed anew (cluster mode shares it). */
export function createAirQuality(ctx: FamilyContext, isStopped: () => boolean, changed?: (zone: string) => void): AirQuality {
  const { opts, bus, log, clock, output } = ctx;
  const stations = new Map<string, Station>();
  const zoneAqi = new Map<string, CurrentAqi>();
  let airComputations = 0;

  function stationOf(id: string, zone: string): Station {
    let st = stations.get(id);
    if (!st) {
      st = newStation(id, zone);
      stations.set(id, st);
    }
    return st;
  }

  function onAir(r: EnrichedReading, live: boolean): void {
    const st = stationOf(r.device, r.zone);
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
      pruneHours(st, opts.airHoursKept);
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

  /** Computes a station's indices from its hour means: its newest hour and day, and the hours that changed before it. */
  function computeStation(st: Station, emit = !isStopped()): void {
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
        const a = affectedByLateHour(st, hour, opts.airHoursKept, clock);
        for (const h of a.hours) hours.add(h);
        for (const d of a.days) days.add(d);
      }
      const late = { hours: [...hours].sort((x, y) => x - y), days: [...days].sort((x, y) => x - y) };
      for (const h of late.hours) {
        const e = hourEvent(st, h);
        output.store(key(e), () => aqiLine(e), 'airQuality', st.id);
      }
      for (const d of late.days) {
        const e = dayEvent(st, d);
        output.store(key(e), () => aqiLine(e), 'airQuality', st.id);
      }
      recomputeZonePast(st.zone, late);
    }
    for (const e of [hourEvent(st, st.newestHour), dayEvent(st, clock.dayStart(st.newestHour))]) {
      output.store(key(e), () => aqiLine(e), 'airQuality', st.id);
      if (e.period === 'hour') st.hour = e;
      else st.day = e;
      if (emit) output.throttled(`aqi|station|${st.id}|${e.period}`, opts.aqiEmitIntervalMs, () => bus.emit('aqi', e));
    }
    recomputeZone(st.zone, emit);
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
      output.store(`a|zone|${zone}|${period}|${newest}`, () => aqiLine(e), 'airQuality', zone);
      if (emit) output.throttled(`aqi|zone|${zone}|${period}`, opts.aqiEmitIntervalMs, () => bus.emit('aqi', e));
    }
    zoneAqi.set(zone, cur);
    if (emit) changed?.(zone);
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
      output.store(`a|zone|${zone}|${period}|${time}`, () => aqiLine(e), 'airQuality', zone);
    };
    for (const h of late.hours) pastOf('hour', h);
    for (const d of late.days) pastOf('day', d);
  }

  return {
    onReading: onAir,
    async restore(source, now, future) {
      // Hourly mean and count per station and pollutant, as the live path would have accumulated them.
      const sel = VN_POLLUTANTS.map((p) => `mean("${p}") AS "${p}_mean", count("${p}") AS "${p}_n"`).join(', ');
      const airFrom = hourStart(now) - opts.airHoursKept * HOUR_MS;
      const air = await source.query(
        `SELECT ${sel} FROM ${source.from('airQuality')} WHERE time >= ${airFrom}ms AND time <= ${future}ms GROUP BY time(1h), "device", "zone" fill(none)`,
      );
      for (const row of air) {
        const id = row.device as string;
        const st = stationOf(id, row.zone as string);
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
    },
    currentAqi() {
      // A reader gets the indices of every reading received, not those of the last throttled computation.
      if (!isStopped()) for (const st of stations.values()) if (st.timer) computeStation(st);
      return {
        stations: [...stations.values()]
          .filter((s) => s.hour || s.day)
          .map((s) => ({ scope: 'station' as const, id: s.id, zone: s.zone, hour: s.hour, day: s.day })),
        zones: [...zoneAqi.values()],
      };
    },
    zoneAqi(zone) {
      if (!isStopped()) for (const st of stations.values()) if (st.zone === zone && st.timer) computeStation(st);
      const aqi = zoneAqi.get(zone);
      return {
        ...(aqi ? { aqi } : {}),
        stations: [...stations.values()]
          .filter((s) => s.zone === zone && (s.hour || s.day))
          .map((s) => ({ scope: 'station' as const, id: s.id, zone: s.zone, hour: s.hour, day: s.day })),
      };
    },
    computations: () => airComputations,
    stations: () => stations.size,
    stop() {
      for (const st of stations.values()) computeStation(st, false);
    },
  };
}
