/**
 * A simulated traffic lane counter: vehicles counted over each reporting period from the daily load curve
 * (motorcycle-dominated, lorries at night), with speed and occupancy from the lane's volume/capacity ratio so
 * that the numbers of one reading agree with each other.
 */
import { type TrafficReading, VEHICLE_TYPES } from '../core/contract.ts';
import { assertTimeZone } from '../core/time-zone.ts';
import {
  binomial,
  clamp,
  type DeviceModel,
  gaussian,
  localHour,
  localWeekday,
  logistic,
  ouStep,
  poisson,
  type Rng,
  round,
  stepHours,
  trafficLoad,
  uniform,
} from './model-kit.ts';

export interface TrafficModelOptions {
  timeZone: string;
  /** Lane number, from 1 (default 1). */
  laneId?: number;
  /** Counting period ending at each `next(at)`, seconds: the device's reporting interval. */
  periodSeconds: number;
}

type VehicleType = (typeof VEHICLE_TYPES)[number];

export function createTrafficModel(rng: Rng, opts: TrafficModelOptions): DeviceModel<TrafficReading> {
  const { timeZone, periodSeconds } = opts;
  const laneId = opts.laneId ?? 1;
  assertTimeZone(timeZone);
  if (!(periodSeconds > 0)) throw new RangeError(`periodSeconds must be > 0, got ${periodSeconds}`);

  // A busy urban lane in Vietnam moves dense motorcycle streams: tens of vehicles a minute at peak.
  const peakPerMinute = uniform(rng, 30, 70);
  // Capacity close to the peak demand, so the rush hours of some lanes tip into congestion and others do not.
  const capacityPerMinute = peakPerMinute * uniform(rng, 0.95, 1.15);
  const freeSpeed = uniform(rng, 38, 50);
  const motorcycle = uniform(rng, 0.77, 0.84);
  const rest = {
    car: uniform(rng, 0.1, 0.14),
    bus: uniform(rng, 0.008, 0.015),
    lorry: uniform(rng, 0.02, 0.035),
    bicycle: uniform(rng, 0.015, 0.035),
  };
  let demandDrift = 0.1 * gaussian(rng);
  let last: number | undefined;

  function shares(h: number): Record<VehicleType, number> {
    // Lorries are kept out of the centre by day and come at night; buses do not run in the small hours.
    const night = 1 - logistic((h - 5.5) / 0.4) * logistic((22 - h) / 0.4);
    const lorry = rest.lorry * (1 + 2 * night);
    const bus = rest.bus * (1 - 0.9 * night);
    const others = rest.car + bus + lorry + rest.bicycle;
    const scale = (1 - motorcycle) / others;
    return { motorcycle, car: rest.car * scale, bus: bus * scale, lorry: lorry * scale, bicycle: rest.bicycle * scale };
  }

  return {
    next(at) {
      const now = at.getTime();
      demandDrift = ouStep(demandDrift, stepHours(last, now), 0.5, 0.1, rng);
      if (last === undefined || now > last) last = now;

      const periodMinutes = periodSeconds / 60;
      const mid = new Date(now - (periodSeconds * 1000) / 2);
      const h = localHour(mid, timeZone);
      const load = trafficLoad(h, localWeekday(mid, timeZone));
      const intensity = poisson(rng, peakPerMinute * load * Math.exp(demandDrift) * periodMinutes);

      const p = shares(h);
      const byType = {} as Record<VehicleType, number>;
      let remaining = intensity;
      let pLeft = 1;
      VEHICLE_TYPES.forEach((type, i) => {
        // Sequential binomials: a multinomial split whose parts always add up to the total.
        const k = i === VEHICLE_TYPES.length - 1 ? remaining : binomial(rng, remaining, p[type] / pLeft);
        byType[type] = k;
        remaining -= k;
        pLeft = Math.max(1e-9, pLeft - p[type]);
      });

      // Speed and occupancy follow the lane's volume/capacity ratio (a fundamental-diagram shape), from the
      // counted vehicles, so the three numbers of one reading agree with each other.
      const ratio = intensity / (capacityPerMinute * periodMinutes);
      const jitter = 0.02 * Math.min(1, ratio + 0.05) * gaussian(rng);
      const occupancy = clamp(0.01 * ratio + 0.55 * ratio ** 1.8 + jitter, 0, 0.98);
      const speed = clamp(freeSpeed * (1 - 0.72 * Math.min(ratio, 1.25) ** 2.2) + 1.5 * gaussian(rng), 4, 70);

      const reading: TrafficReading = {
        dateObserved: at.toISOString(),
        dateObservedFrom: new Date(now - periodSeconds * 1000).toISOString(),
        dateObservedTo: at.toISOString(),
        laneId,
        intensity,
        occupancy: round(occupancy, 3),
        congested: occupancy >= 0.5,
        intensityByVehicleType: byType,
      };
      // Nobody passed, so there is no speed to average: leave it out rather than invent one.
      if (intensity > 0) reading.averageVehicleSpeed = round(speed, 1);
      return reading;
    },
  };
}
