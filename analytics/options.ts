/**
 * Options of analytics (`analytics.*`): how often indices and indicators are emitted and stored, the windows
 * kept in memory, congestion thresholds, street-light faults and the replay at start.
 */
import { section } from '../core/options.ts';

export const ANALYTICS_OPTIONS = section({
  offMainThread: {
    type: 'boolean',
    // Off by default: back to back on the bench machine it cost more CPU a reading than it took off the main thread
    // at 10 readings/message, and stored fewer readings/s (docs/benchmarks.md).
    default: false,
    description:
      'Single-node mode: compute indices and indicators on the store worker thread, from the readings it makes durable, instead of on the main thread (which speaks MQTT and validates); cluster mode always computes on the main thread',
  },
  aqiEmitIntervalMs: {
    type: 'integer',
    minimum: 0,
    default: 5000,
    description:
      "Least time between two `aqi` events of one station or zone and period, and between two computations of a station's indices while its readings arrive, ms (0 = on every change)",
  },
  indicatorEmitIntervalMs: {
    type: 'integer',
    minimum: 0,
    default: 2000,
    description: 'Least time between two zone or city `indicator` events, ms (device indicators go out on each reading; 0 = every change)',
  },
  storeIntervalMs: {
    type: 'integer',
    minimum: 0,
    default: 60000,
    description:
      'Indices and indicators are stored in InfluxDB at most once per subject per interval (and on stop), ms; 0 = on every change',
  },
  airHoursKept: {
    type: 'integer',
    // A city-local day (24 h) plus the 12 hours of NowCast before it.
    minimum: 36,
    maximum: 168,
    default: 48,
    description: 'Hourly means kept in memory per air station, hours',
  },
  trafficWindowMs: {
    type: 'integer',
    minimum: 60000,
    default: 3600000,
    description: 'Sliding window of vehiclesPerHour and averageSpeed by observation time, ms (counts are scaled to one hour)',
  },
  congestion: section({
    occupancyModerate: {
      type: 'number',
      minimum: 0,
      maximum: 1,
      default: 0.15,
      description: 'Occupancy from which a junction is moderate (level 1)',
    },
    occupancyHeavy: {
      type: 'number',
      minimum: 0,
      maximum: 1,
      default: 0.35,
      description: 'Occupancy from which a junction is heavy (level 2)',
    },
    occupancyCongested: {
      type: 'number',
      minimum: 0,
      maximum: 1,
      default: 0.6,
      description: 'Occupancy from which a junction is congested (level 3; a reading with congested=true is level 3 too)',
    },
    speedModerateKmh: {
      type: 'number',
      minimum: 0,
      default: 30,
      description: 'Average speed (km/h, when vehicles were counted) at or below which a junction is moderate',
    },
    speedHeavyKmh: {
      type: 'number',
      minimum: 0,
      default: 20,
      description: 'Average speed at or below which a junction is heavy, km/h',
    },
    speedCongestedKmh: {
      type: 'number',
      minimum: 0,
      default: 10,
      description: 'Average speed at or below which a junction is congested, km/h',
    },
  }),
  lampMinPowerW: {
    type: 'number',
    minimum: 0,
    default: 1,
    description: 'A street light that should be on (powerState on or low) drawing less than this is a fault, W',
  },
  lampMaxGapMs: {
    type: 'integer',
    minimum: 1000,
    default: 1800000,
    description: 'Longest gap between two readings of a lit lamp counted as burning time, ms',
  },
  daylightMarginMs: {
    type: 'integer',
    minimum: 0,
    default: 1800000,
    description: 'Daylight for onInDaylight is sunrise + margin .. sunset − margin (a lamp switching at dusk is not flagged), ms',
  },
  restoreMaxReplayMs: {
    type: 'integer',
    minimum: 0,
    default: 86400000,
    description: "At start, raw street-light readings at most this old are replayed after each lamp's last stored state, ms",
  },
  writeMaxAgeMs: {
    type: 'integer',
    minimum: 1,
    maximum: 60000,
    default: 1000,
    description: 'A stored index or indicator waits at most this long before its batch is written to InfluxDB, ms',
  },
  redisUrl: {
    type: 'string',
    default: '',
    pattern: '^(|rediss?://.+)$',
    description:
      'Cluster mode: the Redis (redis://host:port) through which each node shares the results of the wards it processes, so that the zone and city figures of every node cover every ward (see docs/cluster.md). Empty = a single node, or each node its own wards. Redis unreachable: logged, each node serves the wards it last heard of',
  },
});
