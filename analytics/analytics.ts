/**
 * Analytics: air-quality indices and derived indicators, computed continuously from the
 * bus's `reading` events, kept in memory for the API, emitted on the bus (`aqi`, `indicator`) and stored in
 * InfluxDB (measurements `aqi` and `indicators`). This file wires the families together and owns the lifecycle.
 *
 * - Air (air.ts, air-station.ts): hourly means per station and pollutant, bucketed by observation time (UTC hours;
 *   kept `airHoursKept` hours); a reading only adds to its hour's sums. From them the station's hourly index
 *   (VN_AQI with NowCast for PM, US EPA beside it; c1 = the running mean of the hour) and daily index (city-local
 *   day; a day needs 18 hours with a PM mean, the O3 8-hour means reach back into the previous evening) are
 *   computed for the station's newest hour and, after a late reading or a new hour, for every stored hour and day
 *   the changed hours affect (affectedByLateHour): on the reading when the station's last computation is at least
 *   `aqiEmitIntervalMs` old, else once that interval has passed, for all the readings in between. A zone's index
 *   is its WORST station: among the zone's stations whose current index is for the zone's newest hour (or day),
 *   the highest VN_AQI (and, separately, the highest EPA AQI).
 * - Traffic per junction (traffic.ts), street lights per lamp (street-lights.ts), and their zone and city
 *   aggregates (aggregates.ts; see README). Points and events leave through output.ts.
 * - State is rebuilt at start from InfluxDB: air from hourly aggregates of the raw readings, traffic by
 *   replaying the raw readings of the last window, lamps from their last stored `indicators` point (a
 *   checkpoint with the energy counter) plus the raw readings after it. So a restart keeps an hour's NowCast
 *   and a day's energy.
 * - Cluster mode (`deps.share`, zone-share.ts): a ward's devices are all processed by one node; each node shares
 *   its wards' results, and zone and city figures (API, events) are served over every node's wards. Device
 *   indicators stay with the node processing the device.
 */
import type { EnrichedReading, Family } from '../ingest/index.ts';
import type { IndicatorEvent } from '../core/bus.ts';
import { silentLogger } from '../core/logger.ts';
import { createZoneAggregates } from './aggregates.ts';
import { createAirQuality } from './air.ts';
import { createCityClock } from './city-time.ts';
import { createDerivedOutput } from './output.ts';
import { AQI_MEASUREMENT, INDICATORS_MEASUREMENT } from './points.ts';
import { createReports, type Reports } from './reports.ts';
import { createRestoreSource } from './restore-query.ts';
import { createStreetLights } from './street-lights.ts';
import { createTraffic } from './traffic.ts';
import type { AnalyticsDeps, AnalyticsOptions, CurrentAqi, FamilyContext } from './types.ts';
import { createClusterView, type ClusterView, type ZoneResult } from './zone-share.ts';

export type { AnalyticsDeps, AnalyticsOptions, CongestionThresholds, CurrentAqi } from './types.ts';

export type IndicatorFilter = { scope?: IndicatorEvent['scope']; zone?: string; family?: Family };

/** Analytics as the API and the platform use it: in this thread, or on the store worker (worker-host.ts). */
export interface Analytics {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Current indices per station and per zone (a station with readings not yet in its index is computed first). */
  currentAqi(): CurrentAqiList | Promise<CurrentAqiList>;
  /** Computations of a station's indices since start: at most one per station per `aqiEmitIntervalMs` while readings arrive. */
  airComputations(): number;
  /** Current indicators (computed now), filtered. */
  indicators(filter?: IndicatorFilter): IndicatorEvent[] | Promise<IndicatorEvent[]>;
  /** Daily and monthly operator reports, aggregated in InfluxDB from the raw readings (reports.ts). */
  reports: Reports;
}

export type CurrentAqiList = { stations: CurrentAqi[]; zones: CurrentAqi[] };

/** Analytics in this thread: its reads answer at once. */
export interface LocalAnalytics extends Analytics {
  currentAqi(): CurrentAqiList;
  indicators(filter?: IndicatorFilter): IndicatorEvent[];
}

export function createAnalytics(opts: AnalyticsOptions, deps: AnalyticsDeps): LocalAnalytics {
  const log = deps.logger ?? silentLogger;
  const output = createDerivedOutput(deps.target, opts, log);
  const ctx: FamilyContext = { opts, bus: deps.bus, log, clock: createCityClock(opts.timezone), output };
  let storeTimer: NodeJS.Timeout | undefined;
  let started = false;
  let stopped = false;

  let view: ClusterView | undefined;
  const air = createAirQuality(
    ctx,
    () => stopped,
    (zone) => view?.changed(zone),
  );
  const traffic = createTraffic(ctx, (zone) => {
    view?.changed(zone);
    aggregates.touch(zone, 'traffic');
  });
  const lights = createStreetLights(ctx, deps, (zone) => {
    view?.changed(zone);
    aggregates.touch(zone, 'streetLight');
  });
  const aggregates = createZoneAggregates(
    ctx,
    { traffic: traffic.parts, streetLight: lights.parts },
    () => view,
    (family) => (family === 'traffic' ? traffic.zones() : family === 'streetLight' ? lights.zones() : []),
  );
  /** This node's result for a ward it processes (cluster mode). */
  const zoneResult = (zone: string): ZoneResult => ({
    node: deps.share?.node as string,
    zone,
    at: Date.now(),
    parts: aggregates.zoneParts(zone),
    ...air.zoneAqi(zone),
  });

  function flushStore(): void {
    aggregates.storeChanged();
    output.flushPending();
  }

  function onReading(r: EnrichedReading): void {
    try {
      if (r.family === 'airQuality') air.onReading(r, true);
      else if (r.family === 'traffic') traffic.onReading(r, true);
      else if (r.family === 'streetLight') {
        const loc = lights.locationOf(r);
        if (loc instanceof Promise)
          loc.then((l) => lights.onReading(r, l, !stopped)).catch((err) => log.error({ err }, 'lamp reading failed'));
        else lights.onReading(r, loc, true);
      }
    } catch (err) {
      // A bad reading must never take the bus (and so ingest) down with it.
      log.error({ err, device: r.device }, 'analytics failed on a reading');
    }
  }

  async function restore(): Promise<void> {
    const source = createRestoreSource(deps.influx, deps.target);
    const now = Date.now();
    const future = now + 86_400_000; // readings up to ingest's maxFutureMs ahead are accepted
    await air.restore(source, now, future);
    const replayedTraffic = await traffic.restore(source, now, future);
    const replayedLamps = await lights.restore(source, now, future);
    log.info(
      { stations: air.stations(), junctions: traffic.junctions(), lamps: lights.lamps(), replayed: replayedTraffic + replayedLamps },
      'analytics state restored from InfluxDB',
    );
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
      if (deps.share) {
        // Another node's ward changed: the city's figures of its families go out again from here too.
        const v = createClusterView(deps.share, zoneResult, log, (r) => {
          for (const family of Object.keys(r.parts) as Family[]) aggregates.touchCity(family);
        });
        try {
          await v.start();
        } catch (err) {
          // Not fatal: results of other nodes arrive once the share answers; until then this node's own wards.
          log.warn({ err: (err as Error).message }, 'results of the other nodes not read at start');
        }
        view = v;
      }
      deps.bus.on('reading', onReading);
      if (opts.storeIntervalMs > 0) storeTimer = setInterval(flushStore, opts.storeIntervalMs);
    },
    async stop() {
      if (!started || stopped) return;
      stopped = true;
      deps.bus.off('reading', onReading);
      air.stop(); // deferred computations: their points are stored below
      clearInterval(storeTimer);
      aggregates.stop();
      output.cancelEmits();
      flushStore(); // the last state of every subject, so that the next start goes on from it
      await view?.stop();
      await output.stop();
    },
    reports: createReports(opts, { source: createRestoreSource(deps.influx, deps.target), profile: deps.profile, clock: ctx.clock }),
    currentAqi() {
      const here = air.currentAqi();
      const v = view;
      if (!v) return here;
      // Cluster mode: every ward, from the node serving it.
      const zones = new Set([...here.zones.map((z) => z.id), ...here.stations.map((s) => s.zone), ...v.zones()]);
      const out: { stations: CurrentAqi[]; zones: CurrentAqi[] } = { stations: [], zones: [] };
      for (const zone of zones) {
        const r = v.remote(zone);
        if (r) {
          if (r.aqi) out.zones.push(r.aqi);
          out.stations.push(...r.stations);
        } else {
          const z = here.zones.find((x) => x.id === zone);
          if (z) out.zones.push(z);
          out.stations.push(...here.stations.filter((s) => s.zone === zone));
        }
      }
      return out;
    },
    airComputations: () => air.computations(),
    indicators(filter = {}) {
      const out: IndicatorEvent[] = [];
      const fam = (f: Family) => !filter.family || filter.family === f;
      if (!filter.scope || filter.scope === 'device') {
        if (fam('traffic')) for (const e of traffic.devices(filter.zone)) out.push(e);
        if (fam('streetLight')) for (const e of lights.devices(filter.zone)) out.push(e);
      }
      const zones = new Set([...traffic.zones(), ...lights.zones(), ...(view?.zones() ?? [])]);
      for (const f of ['traffic', 'streetLight'] as const) {
        if (!fam(f)) continue;
        if (!filter.scope || filter.scope === 'zone') {
          for (const z of zones) {
            if (filter.zone && z !== filter.zone) continue;
            const e = aggregates.aggregate(z, f);
            if (e) out.push(e);
          }
        }
        if ((!filter.scope || filter.scope === 'city') && !filter.zone) {
          const e = aggregates.aggregate('city', f);
          if (e) out.push(e);
        }
      }
      return out;
    },
  };
}

export { AQI_MEASUREMENT, INDICATORS_MEASUREMENT };
