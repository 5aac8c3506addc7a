/**
 * A simulated street light: the city's dusk-to-dawn programme with night dimming, commands that override it
 * until its next switching point, an LED's power and a meter's energy counter, and lamp failures repaired after
 * a few days (a dead lamp shows as on drawing nothing, as operators see it).
 */
import type { StreetLightReading } from '../core/contract.ts';
import { assertTimeZone } from '../core/time-zone.ts';
import { chance, clamp, type DeviceModel, gaussian, localHour, ouStep, type Rng, round, stepHours, uniform } from './model-kit.ts';

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
