/**
 * Value models for simulated devices: pure and deterministic (no I/O, no timers, no Date.now()).
 *
 * A model owns its random stream and its slow state (pollution episodes, a lamp's energy counter, …), so the
 * same seed fed the same sequence of observation times yields the same readings: load tests and demos can be
 * replayed, and a simulator can run faster than real time. State evolves with the time elapsed between calls
 * (not with the number of calls), so a device reporting every 10 s and one reporting every 15 min tell the same
 * story. Shapes follow a northern Vietnamese city (see ../shared/domain.md); the city's time zone is an option.
 *
 * One file per family (air-quality-model.ts, traffic-model.ts, street-light-model.ts) on shared building blocks
 * (model-kit.ts); this file picks a family's model and is where callers import them from.
 */
import type { Family, ReadingByFamily, StreetLightReading } from '../core/contract.ts';
import { type AirQualityModelOptions, createAirQualityModel } from './air-quality-model.ts';
import type { DeviceModel, Rng } from './model-kit.ts';
import { createStreetLightModel, type StreetLightModelOptions } from './street-light-model.ts';
import { createTrafficModel, type TrafficModelOptions } from './traffic-model.ts';

export { type AirQualityModelOptions, createAirQualityModel } from './air-quality-model.ts';
export { createRng, type DeviceModel, localHour, type Rng } from './model-kit.ts';
export {
  createStreetLightModel,
  type StreetLightCommand,
  type StreetLightModel,
  type StreetLightModelOptions,
} from './street-light-model.ts';
export { createTrafficModel, type TrafficModelOptions } from './traffic-model.ts';

export interface ModelOptionsByFamily {
  airQuality: AirQualityModelOptions;
  traffic: TrafficModelOptions;
  streetLight: StreetLightModelOptions;
}

export function createModel<F extends Family>(family: F, rng: Rng, opts: ModelOptionsByFamily[F]): DeviceModel<ReadingByFamily[F]> {
  switch (family) {
    case 'airQuality':
      return createAirQualityModel(rng, opts as AirQualityModelOptions) as DeviceModel<ReadingByFamily[F]>;
    case 'traffic':
      return createTrafficModel(rng, opts as TrafficModelOptions) as DeviceModel<ReadingByFamily[F]>;
    case 'streetLight': {
      const light: DeviceModel<StreetLightReading> = createStreetLightModel(rng, opts as StreetLightModelOptions);
      return light as DeviceModel<ReadingByFamily[F]>;
    }
    default:
      throw new RangeError(`unknown device family: ${String(family)}`);
  }
}
