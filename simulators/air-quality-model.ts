/**
 * A simulated air-quality station: PM, gases and weather of a northern Vietnamese city, with the station's own
 * character (road nearby, dust), weather-like drifts, a PM cycle peaking at night, photochemical ozone, and
 * pollution episodes (winter inversions, crop burning) about one every five days.
 */
import type { AirQualityReading } from '../core/contract.ts';
import { assertTimeZone } from '../core/time-zone.ts';
import {
  bump,
  chance,
  clamp,
  DAY_MS,
  type DeviceModel,
  gaussian,
  localHour,
  localWeekday,
  ouStep,
  type Rng,
  round,
  stepHours,
  trafficLoad,
  uniform,
} from './model-kit.ts';

export interface AirQualityModelOptions {
  timeZone: string;
}

/** Pollution episodes (winter inversions, crop burning): about one every 5 days, lasting 4–18 h. */
const EPISODE_RATE_PER_HOUR = 1 / 120;

export function createAirQualityModel(rng: Rng, opts: AirQualityModelOptions): DeviceModel<AirQualityReading> {
  const { timeZone } = opts;
  assertTimeZone(timeZone);
  // Station character: how busy the road nearby is, how dusty the surroundings (PM10/PM2.5 ratio).
  const basePm25 = uniform(rng, 26, 38);
  const coarseRatio = uniform(rng, 1.4, 1.7);
  const roadside = uniform(rng, 0.6, 1.4);
  const baseO3 = uniform(rng, 60, 90);
  const baseSo2 = uniform(rng, 6, 18);
  const tempOffset = uniform(rng, -0.8, 0.8);

  // Slow, correlated weather-like drifts in log space (PM) and in °C / fraction (meteo).
  let pmDrift = 0.2 * gaussian(rng);
  let gasDrift = 0.15 * gaussian(rng);
  let tempDrift = 1.2 * gaussian(rng);
  let humDrift = 0.05 * gaussian(rng);
  let episode: { elapsed: number; duration: number; peak: number } | undefined;
  // Start in the steady state: a fleet booted together should not all begin with clean air.
  if (rng() < EPISODE_RATE_PER_HOUR * 11) {
    const duration = uniform(rng, 4, 18);
    episode = { elapsed: uniform(rng, 0, duration), duration, peak: uniform(rng, 110, 220) };
  }
  let last: number | undefined;

  return {
    next(at) {
      const now = at.getTime();
      const dt = stepHours(last, now);
      if (last === undefined || now > last) last = now;

      pmDrift = ouStep(pmDrift, dt, 8, 0.25, rng);
      gasDrift = ouStep(gasDrift, dt, 4, 0.15, rng);
      tempDrift = ouStep(tempDrift, dt, 24, 1.2, rng);
      humDrift = ouStep(humDrift, dt, 12, 0.05, rng);
      if (episode) {
        episode.elapsed += dt;
        if (episode.elapsed >= episode.duration) episode = undefined;
      } else if (dt > 0 && rng() < chance(EPISODE_RATE_PER_HOUR, dt)) {
        episode = { elapsed: 0, duration: uniform(rng, 4, 18), peak: uniform(rng, 110, 220) };
      }

      const h = localHour(at, timeZone);
      const load = trafficLoad(h, localWeekday(at, timeZone));
      // Northern Vietnam: PM builds up in the evening and night under a shallow boundary layer and clears in
      // the afternoon when mixing is deepest; the morning commute adds a shoulder.
      const pmCycle = 1 + 0.38 * Math.cos((2 * Math.PI * (h - 22)) / 24) + 0.12 * bump(h, 8, 1);
      const episodeExtra = episode ? episode.peak * Math.sin((Math.PI * episode.elapsed) / episode.duration) : 0;
      const pm25 = Math.max(1, basePm25 * pmCycle * Math.exp(pmDrift) * (1 + 0.04 * gaussian(rng)) + episodeExtra);
      const pm10 = pm25 * clamp(coarseRatio + 0.05 * gaussian(rng), 1.3, 1.8);
      const pm1 = pm25 * uniform(rng, 0.7, 0.8);

      const gas = Math.exp(gasDrift);
      const daylight = Math.max(0, Math.sin((Math.PI * (h - 6.5)) / 12.5));
      const no2 = Math.max(2, (10 + 45 * roadside * load) * gas * (1 + 0.06 * gaussian(rng)));
      // Ozone is photochemical (afternoon peak) and titrated by fresh NO at night and in traffic.
      const o3 = Math.max(2, (8 + baseO3 * daylight ** 1.3 - 0.15 * no2) * gas * (1 + 0.06 * gaussian(rng)));
      const so2 = Math.max(1, baseSo2 * (0.8 + 0.4 * load) * gas * (1 + 0.08 * gaussian(rng)));
      const co = Math.max(150, (500 + 1100 * roadside * load + 6 * episodeExtra) * pmCycle * gas * (1 + 0.05 * gaussian(rng)));

      const dayOfYear = (now % (365.25 * DAY_MS)) / DAY_MS;
      // Seasonal mean ~18 °C in January to ~29 °C in July; daily minimum near dawn, maximum mid-afternoon.
      const seasonal = 23.5 - 5.5 * Math.cos((2 * Math.PI * (dayOfYear - 15)) / 365.25);
      const diurnal = -Math.cos((2 * Math.PI * (h - 2.5)) / 24);
      const temperature = clamp(seasonal + tempOffset + 4 * diurnal + tempDrift + 0.15 * gaussian(rng), 15, 35);
      const relativeHumidity = clamp(0.76 - 0.14 * diurnal + humDrift + 0.01 * gaussian(rng), 0.5, 0.95);
      const noise = clamp(46 + 26 * Math.min(load, 1.1) + 1.5 * gaussian(rng), 45, 80);

      return {
        dateObserved: at.toISOString(),
        pm1: round(pm1, 1),
        pm25: round(pm25, 1),
        pm10: round(pm10, 1),
        no2: round(no2, 1),
        o3: round(o3, 1),
        so2: round(so2, 1),
        co: round(co, 1),
        temperature: round(temperature, 1),
        relativeHumidity: round(relativeHumidity, 3),
        noise: round(noise, 1),
      };
    },
  };
}
