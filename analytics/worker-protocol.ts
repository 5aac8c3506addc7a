/**
 * Messages between analytics on the store worker thread (processor.ts) and its main-thread side (worker-host.ts),
 * over a MessagePort of their own.
 */
import type { Family, InfluxTarget } from '../ingest/index.ts';
import type { AqiEvent, IndicatorEvent } from '../core/bus.ts';
import type { CityProfile } from '../registry/index.ts';
import type { AnalyticsOptions, CurrentAqi } from './types.ts';

export interface ProcessorData {
  opts: AnalyticsOptions;
  target: InfluxTarget;
  profile: CityProfile;
}

export type ToProcessor =
  /** Restore the state from InfluxDB and take readings; answered with `done`. */
  | { t: 'start'; id: number }
  /** Store the last state and stop; answered with `done`. */
  | { t: 'stop'; id: number }
  | { t: 'currentAqi'; id: number }
  | { t: 'indicators'; id: number; filter: { scope?: IndicatorEvent['scope']; zone?: string; family?: Family } }
  /** A device's location, asked for by `device` (null: the registry has none). */
  | { t: 'location'; rid: number; location: { lat: number; lon: number } | null };

export type FromProcessor =
  | { t: 'aqi'; e: AqiEvent }
  | { t: 'indicator'; e: IndicatorEvent }
  | { t: 'done'; id: number; value?: { stations: CurrentAqi[]; zones: CurrentAqi[] } | IndicatorEvent[] }
  /** The registry's location of a device (street lights: daylight). */
  | { t: 'device'; rid: number; id: string };

/** One message per turn of the worker's event loop, with the count of air computations. */
export interface ProcessorPost {
  msgs: FromProcessor[];
  computations: number;
}
