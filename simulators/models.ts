/**
 * Value models for simulated devices: pure and deterministic (no I/O, no timers, no Date.now()).
 *
 * A model owns its random stream and its slow state (pollution episodes, a lamp's energy counter, …), so the
 * same seed fed the same sequence of observation times yields the same readings: load tests and demos can be
 * replayed, and a simulator can run faster than real time. State evolves with the time elapsed between calls
 * (not with the number of calls), so a device reporting every 10 s and one reporting every 15 min tell the same
 * story. Shapes follow a northern Vietnamese city (see ../shared/domain.md); the city's time zone is an option.
 */
import type { AirQualityReading, Family, ReadingByFamily, StreetLightReading, TrafficReading } from '../core/contract.ts';
import { VEHICLE_TYPES } from '../core/contract.ts';
import { assertTimeZone, utcOffsetMs } from '../core/time-zone.ts';

export type Rng = () => number;

/** mulberry32: tiny, fast, and good enough for telemetry noise; returns [0, 1). */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------------------
// Local time

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** Fractional hour of the day, [0, 24), in that IANA time zone. */
export function localHour(at: Date, timeZone: string): number {
  const local = at.getTime() + utcOffsetMs(at.getTime(), timeZone);
  return (((local % DAY_MS) + DAY_MS) % DAY_MS) / HOUR_MS;
}

/** Day of the week in that zone, 0 = Sunday. */
function localWeekday(at: Date, timeZone: string): number {
  const day = Math.floor((at.getTime() + utcOffsetMs(at.getTime(), timeZone)) / DAY_MS);
  return (((day + 4) % 7) + 7) % 7; // 1970-01-01 was a Thursday
}

// ---------------------------------------------------------------------------------------------------------
// Shared helpers

export interface DeviceModel<R> {
  /** The reading observed at `at`. Calls are expected in time order; a step back in time changes no state. */
  next(at: Date): R;
}

const round = (x: number, digits: number): number => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
const clamp = (x: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, x));
const uniform = (rng: Rng, lo: number, hi: number): number => lo + (hi - lo) * rng();

function gaussian(rng: Rng): number {
  // Box–Muller; 1 - rng() keeps the log argument in (0, 1].
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}

const bump = (h: number, centre: number, width: number): number => Math.exp(-0.5 * ((h - centre) / width) ** 2);
const logistic = (x: number): number => 1 / (1 + Math.exp(-x));

/**
 * One step of a mean-reverting (Ornstein–Uhlenbeck) process around 0 with stationary deviation `sigma`.
 * Exact for any step length, so the variability does not depend on how often a device reports.
 */
function ouStep(x: number, dtHours: number, tauHours: number, sigma: number, rng: Rng): number {
  const decay = Math.exp(-dtHours / tauHours);
  return x * decay + sigma * Math.sqrt(1 - decay * decay) * gaussian(rng);
}

/** Elapsed hours since the previous call; 0 on the first call and when time goes backwards. */
function stepHours(prev: number | undefined, now: number): number {
  return prev === undefined || now <= prev ? 0 : (now - prev) / HOUR_MS;
}

/** Probability that an event with `ratePerHour` happens within `dtHours`. */
const chance = (ratePerHour: number, dtHours: number): number => 1 - Math.exp(-ratePerHour * dtHours);

function poisson(rng: Rng, mean: number): number {
  if (mean <= 0) return 0;
  if (mean > 30) return Math.max(0, Math.round(mean + Math.sqrt(mean) * gaussian(rng)));
  // Knuth: exact and cheap for the small counts of short periods and quiet night hours.
  const limit = Math.exp(-mean);
  let k = 0;
  let p = rng();
  while (p > limit) {
    k++;
    p *= rng();
  }
  return k;
}

function binomial(rng: Rng, n: number, p: number): number {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  if (n < 40) {
    let k = 0;
    for (let i = 0; i < n; i++) if (rng() < p) k++;
    return k;
  }
  return clamp(Math.round(n * p + Math.sqrt(n * p * (1 - p)) * gaussian(rng)), 0, n);
}

/**
 * Relative traffic load for a local hour, ~0.02 at 3 am to ~1 at the rush-hour peaks: a day plateau from
 * ~05:30 to ~22:00, rush hours around 07:00–08:30 and 16:30–18:30, a small lunchtime wave. Weekends keep
 * the plateau but lose most of the commute peaks. Shared by traffic (counts) and air quality (NO2, CO, noise).
 */
function trafficLoad(h: number, weekday: number): number {
  const weekend = weekday === 0 || weekday === 6;
  const day = logistic((h - 5.6) / 0.45) * logistic((22.2 - h) / 0.7);
  const rush = bump(h, 7.7, 0.55) + 1.05 * bump(h, 17.5, 0.65);
  const lunch = 0.12 * (bump(h, 11.3, 0.5) + bump(h, 13.4, 0.5));
  return 0.02 + (weekend ? 0.45 : 0.5) * day + (weekend ? 0.2 : 0.5) * rush + lunch;
}

// ---------------------------------------------------------------------------------------------------------
// Air quality

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

// ---------------------------------------------------------------------------------------------------------
// Traffic

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

// ---------------------------------------------------------------------------------------------------------
// Street lights

export interface StreetLightModelOptions {
  timeZone: string;
  /** Lamp power at full output, W (default: one of the common LED ratings, 60–150 W). */
  ratedPowerW?: number;
  /** Chance per day that a working lamp fails (default 0.001); a failed lamp is repaired after 1–4 days. */
  faultProbability?: number;
}

const LED_RATINGS_W = [60, 90, 100, 120, 150] as const;

/** A command a street light carries out (the contract's CommandAction). */
export interface StreetLightCommand {
  powerState?: 'on' | 'off';
  illuminanceLevel?: number;
}

export interface StreetLightModel extends DeviceModel<StreetLightReading> {
  /**
   * Carries out a command at `at`: `off` → level 0; `illuminanceLevel` → that level (0 = off); `on` alone →
   * the level commanded before if above 0, else full output. The command overrides the lamp's own
   * dusk-to-dawn programme until the next command or the programme's next switching point (dusk, the start of
   * night dimming, its end, dawn), whichever comes first: a lamp switched on at noon goes dark again at the
   * programme's next change, not never. Returns the level now commanded.
   */
  command(action: StreetLightCommand, at: Date): number;
}

/** Power state shown for a dimming level: off at 0, on at full output, low (dimmed) between. */
const stateForLevel = (level: number): StreetLightReading['powerState'] => (level <= 0 ? 'off' : level >= 1 ? 'on' : 'low');

export function createStreetLightModel(rng: Rng, opts: StreetLightModelOptions): StreetLightModel {
  const { timeZone } = opts;
  assertTimeZone(timeZone);
  const ratedPowerW = opts.ratedPowerW ?? LED_RATINGS_W[Math.floor(rng() * LED_RATINGS_W.length)]!;
  const faultProbability = clamp(opts.faultProbability ?? 0.001, 0, 1);
  const faultRatePerHour = faultProbability >= 1 ? Infinity : -Math.log(1 - faultProbability) / 24;

  // The schedule is the city's (dusk ~17:45, dim 00:00–05:00, dawn ~05:45); controllers' clocks and photocells
  // spread switching over a few minutes rather than every lamp in the city flipping in the same second.
  const onAt = 17.75 + uniform(rng, -0.08, 0.08);
  const offAt = 5.75 + uniform(rng, -0.08, 0.08);
  const dimFrom = 0;
  const dimTo = 5;
  const bootMinutes = 1;
  const standbyW = uniform(rng, 0.3, 0.6);

  let energyKWh = uniform(rng, 150, 3000);
  let voltageDrift = 2 * gaussian(rng);
  // Hours until a failed lamp is repaired, 0 while it works. Start in the steady state (failure rate × mean
  // repair time) so a fresh fleet already has its few dark lamps.
  let repairInHours = 0;
  if (faultRatePerHour === Infinity) repairInHours = Infinity;
  else if (rng() < faultProbability * 2.5) repairInHours = uniform(rng, 1, 96);
  let lastTime: number | undefined;
  let lastPowerW: number | undefined;
  /** A command in force: its level and the programme segment it was given in (it ends when that changes). */
  let override: { level: number; segment: string } | undefined;

  /** The lamp's own programme at local hour h. */
  function programme(h: number): { powerState: StreetLightReading['powerState']; level: number; segment: string } {
    const lit = h >= onAt || h < offAt;
    const sinceOn = (h - onAt + 24) % 24;
    if (!lit) return { powerState: 'off', level: 0, segment: 'off' };
    if (sinceOn * 60 < bootMinutes) return { powerState: 'bootingUp', level: 0.3, segment: 'on' };
    if (h >= dimFrom && h < dimTo) return { powerState: 'low', level: 0.5, segment: 'low' };
    return { powerState: 'on', level: 1, segment: 'on' };
  }

  return {
    command(action, at) {
      const segment = programme(localHour(at, timeZone)).segment;
      let level: number;
      if (action.powerState === 'off') level = 0;
      else if (action.illuminanceLevel !== undefined) level = clamp(action.illuminanceLevel, 0, 1);
      else level = override && override.level > 0 ? override.level : 1;
      override = { level, segment };
      return level;
    },
    next(at) {
      const now = at.getTime();
      const dt = stepHours(lastTime, now);

      if (repairInHours > 0) {
        repairInHours = Math.max(0, repairInHours - dt);
      } else if (faultRatePerHour === Infinity || (dt > 0 && rng() < chance(faultRatePerHour, dt))) {
        repairInHours = faultRatePerHour === Infinity ? Infinity : uniform(rng, 24, 96);
      }
      const faulty = repairInHours > 0;

      const own = programme(localHour(at, timeZone));
      if (override && override.segment !== own.segment) override = undefined; // the programme switched: it rules again
      let { powerState, level } = own;
      if (override) [powerState, level] = [stateForLevel(override.level), override.level];

      // A dead lamp is still commanded on: it shows as "on" drawing nothing, which is how operators spot it.
      const lampW = faulty ? 0 : ratedPowerW * level * (1 + 0.02 * gaussian(rng));
      const powerW = Math.max(0, standbyW + lampW);
      voltageDrift = ouStep(voltageDrift, dt, 1, 2, rng);
      const voltage = clamp(225 + voltageDrift + 0.5 * gaussian(rng), 220, 230);

      // Trapezoid over the interval; a switch inside it is smeared, which a meter's own sampling also does.
      if (dt > 0 && lastPowerW !== undefined) energyKWh += (((lastPowerW + powerW) / 2) * dt) / 1000;
      if (lastTime === undefined || now > lastTime) {
        lastTime = now;
        lastPowerW = powerW;
      }

      return {
        dateObserved: at.toISOString(),
        powerState,
        illuminanceLevel: round(level, 3), // the commanded dimming level, as SDM defines it
        powerConsumption: round(powerW, 1),
        energyConsumed: round(energyKWh, 3),
        voltage: round(voltage, 1),
        current: round(powerW / voltage, 3),
        status: faulty ? 'defectiveLamp' : 'ok',
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Dispatch

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
