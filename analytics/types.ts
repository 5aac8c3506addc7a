/**
 * Options, dependencies and shared context of analytics: one file every family module and the orchestrator
 * import, so that none of them has to import another for its types.
 */
import type { InfluxDB } from 'influx';
import type { Family, InfluxTarget } from '../ingest/index.ts';
import type { AqiEvent, LiveBus } from '../core/bus.ts';
import type { Logger } from '../core/logger.ts';
import type { CityProfile, Device } from '../registry/index.ts';
import type { CityClock } from './city-time.ts';
import type { DerivedOutput } from './output.ts';

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
  /** Cluster mode: how the nodes share their wards' results (zone-share.ts); absent on one node. */
  share?: ZoneShare;
}

/** Current index values of a subject, for the API. */
export interface CurrentAqi {
  scope: 'station' | 'zone';
  id: string;
  zone: string;
  hour: AqiEvent | null;
  day: AqiEvent | null;
}

/** What every family module gets from the orchestrator: options, the bus, the city's calendar and the output. */
export interface FamilyContext {
  opts: AnalyticsOptions;
  bus: LiveBus;
  log: Logger;
  clock: CityClock;
  output: DerivedOutput;
}

/** Cluster mode (zone-share.ts): */
/** What a node computed for one ward. */
export interface ZoneResult {
  /** The node that computed it (unique in the cluster). */
  node: string;
  zone: string;
  /** When it was computed, ms (the newest result of a ward wins). */
  at: number;
  /** The ward's mergeable sums per family (aggregates.ts); a family the ward has no device of is absent. */
  parts: Partial<Record<Family, unknown>>;
  /** The ward's air-quality index and its stations' (absent without stations). */
  aqi?: CurrentAqi;
  stations: CurrentAqi[];
}

/** How results travel between the nodes of a cluster (the platform implements it on Redis). */
export interface ZoneShare {
  /** This node's name, unique in the cluster. */
  readonly node: string;
  /** Sends a result to every node (this one hears it back, or not: it keeps its own anyway). */
  publish(r: ZoneResult): void;
  /** Calls `onResult` for each result published from now on; resolves with the newest result of each ward so far. */
  subscribe(onResult: (r: ZoneResult) => void): Promise<ZoneResult[]>;
  close(): Promise<void>;
}
