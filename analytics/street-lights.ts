/**
 * Street lights per lamp: on, dimmed, faulty, burning in daylight (from the lamp's location and the sun), burning
 * hours today and energy today and this month from the lamp's energy counter, and the zone and city summaries.
 * A lamp's stored point carries a checkpoint (the counter and last state) so that a restart goes on from it.
 */
import type { EnrichedReading } from '../ingest/index.ts';
import type { IndicatorEvent } from '../core/bus.ts';
import type { CityProfile, Device } from '../registry/index.ts';
import type { FamilyParts } from './aggregates.ts';
import { HOUR_MS } from './city-time.ts';
import { indicatorLine, INDICATORS_MEASUREMENT } from './points.ts';
import { rowToReading, type RestoreSource } from './restore-query.ts';
import { isDaylight } from './sun.ts';
import type { FamilyContext } from './types.ts';

interface Lamp {
  id: string;
  zone: string;
  lastT: number;
  powerState?: string;
  illuminance?: number;
  powerW?: number;
  status?: string;
  counter?: number;
  energyDay: { key: string; kwh: number };
  energyMonth: { key: string; kwh: number };
  burnDay: { key: string; hours: number };
  onInDaylight: boolean;
}

type LatLon = { lat: number; lon: number };

export interface StreetLights {
  /** The lamp's location: known, or a lookup in the registry (the zone's centre, else the city's, without one). */
  locationOf(r: EnrichedReading): LatLon | Promise<LatLon>;
  /** Applies a reading at the lamp's location; `live` (not a restore) emits and stores the lamp's indicators. */
  onReading(r: EnrichedReading, loc: LatLon, live: boolean): void;
  /** Each lamp's last checkpoint this month, then the raw readings after it; returns how many readings were replayed. */
  restore(source: RestoreSource, now: number, future: number): Promise<number>;
  /** Current indicators of every lamp (of `zone` when given). */
  devices(zone?: string): IndicatorEvent[];
  /** The zones that have lamps. */
  zones(): string[];
  lamps(): number;
  parts: FamilyParts<LightsPartial>;
}

/** A zone's (or the city's) street-light indicators: sums that add up across zones, and whether it has lamps. */
export interface LightsPartial {
  values: {
    powerNowW: number;
    energyTodayKWh: number;
    energyMonthKWh: number;
    lampsOn: number;
    lampsDimmed: number;
    lampsFaulty: number;
    lampsOnInDaylight: number;
    burningHoursToday: number;
  };
  any: boolean;
}

const noLights = (): LightsPartial => ({
  values: {
    powerNowW: 0,
    energyTodayKWh: 0,
    energyMonthKWh: 0,
    lampsOn: 0,
    lampsDimmed: 0,
    lampsFaulty: 0,
    lampsOnInDaylight: 0,
    burningHoursToday: 0,
  },
  any: false,
});

const isOn = (l: Lamp) => l.powerState === 'on' || l.powerState === 'low';

/** State kept in the stored lamp point so that a restart can go on from it. */
function lampCheckpoint(l: Lamp): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  if (l.counter !== undefined) out.energyCounterKWh = l.counter;
  if (l.powerState !== undefined) out.powerState = l.powerState;
  if (l.status !== undefined) out.lampStatus = l.status;
  if (l.illuminance !== undefined) out.illuminanceLevel = l.illuminance;
  return out;
}

/** `changed(zone)`: a lamp of the zone emitted new indicators (its zone and city aggregates follow). */
export function createStreetLights(
  ctx: FamilyContext,
  registry: { profile: CityProfile; devices: { get(id: string): Promise<Device | undefined> } },
  changed: (zone: string) => void,
): StreetLights {
  const { opts, bus, clock, output } = ctx;
  const lamps = new Map<string, Lamp>();
  const locations = new Map<string, LatLon | Promise<LatLon>>();
  const zoneCentre = new Map(registry.profile.zones.filter((z) => z.centre).map((z) => [z.id, z.centre as LatLon]));

  function locationOf(r: EnrichedReading): LatLon | Promise<LatLon> {
    const known = locations.get(r.device);
    if (known !== undefined) return known;
    const fallback = zoneCentre.get(r.zone) ?? registry.profile.centre;
    const p = registry.devices
      .get(r.device)
      .then((d) => d?.location ?? fallback)
      .catch(() => fallback)
      .then((loc) => {
        locations.set(r.device, loc);
        return loc;
      });
    locations.set(r.device, p);
    return p;
  }

  function lampValues(l: Lamp, today = clock.dayKey(l.lastT)): Record<string, number | boolean> {
    const on = isOn(l);
    const fault = (l.status !== undefined && l.status !== 'ok') || (on && l.powerW !== undefined && l.powerW < opts.lampMinPowerW);
    return {
      on,
      dimmed: on && l.illuminance !== undefined && l.illuminance < 1,
      fault,
      onInDaylight: on && l.onInDaylight,
      powerW: l.powerW ?? 0,
      burningHoursToday: l.burnDay.key === today ? l.burnDay.hours : 0,
      energyTodayKWh: l.energyDay.key === today ? l.energyDay.kwh : 0,
      energyMonthKWh: l.energyMonth.key === clock.monthKey(l.lastT) ? l.energyMonth.kwh : 0,
    };
  }

  function onStreetLight(r: EnrichedReading, loc: LatLon, live: boolean): void {
    let l = lamps.get(r.device);
    if (!l) {
      l = {
        id: r.device,
        zone: r.zone,
        lastT: Number.NEGATIVE_INFINITY,
        energyDay: { key: '', kwh: 0 },
        energyMonth: { key: '', kwh: 0 },
        burnDay: { key: '', hours: 0 },
        onInDaylight: false,
      };
      lamps.set(r.device, l);
    }
    if (r.time <= l.lastT) return; // older than the lamp's last reading (or a resend): ignored
    l.zone = r.zone;
    const f = r.fields;
    const day = clock.dayKey(r.time);
    const month = clock.monthKey(r.time);
    if (l.energyDay.key !== day) l.energyDay = { key: day, kwh: 0 };
    if (l.energyMonth.key !== month) l.energyMonth = { key: month, kwh: 0 };
    if (l.burnDay.key !== day) l.burnDay = { key: day, hours: 0 };
    // Burning time: the interval since the previous reading, when the lamp was on then (bounded by
    // lampMaxGapMs, and only the part of it inside the reading's day).
    if (isOn(l) && Number.isFinite(l.lastT)) {
      const from = Math.max(l.lastT, r.time - opts.lampMaxGapMs, clock.dayStart(r.time));
      if (r.time > from) l.burnDay.hours += (r.time - from) / HOUR_MS;
    }
    if (typeof f.energyConsumed === 'number') {
      if (l.counter !== undefined) {
        const delta = f.energyConsumed - l.counter;
        // A counter that went down restarted (replaced meter, firmware reset): what it shows now is new energy.
        const used = delta < 0 ? f.energyConsumed : delta;
        l.energyDay.kwh += used;
        l.energyMonth.kwh += used;
      }
      l.counter = f.energyConsumed;
    }
    if (typeof f.powerState === 'string') l.powerState = f.powerState;
    if (typeof f.illuminanceLevel === 'number') l.illuminance = f.illuminanceLevel;
    if (typeof f.powerConsumption === 'number') l.powerW = f.powerConsumption;
    if (typeof f.status === 'string') l.status = f.status;
    l.lastT = r.time;
    l.onInDaylight = isOn(l) && isDaylight(r.time, loc.lat, loc.lon, opts.daylightMarginMs);
    if (!live) return;
    const e: IndicatorEvent = { scope: 'device', id: l.id, zone: l.zone, family: 'streetLight', time: r.time, values: lampValues(l) };
    bus.emit('indicator', e);
    const checkpoint = lampCheckpoint(l);
    output.store(`i|device|${l.id}`, () => indicatorLine(e, checkpoint), 'streetLight', l.id);
    changed(l.zone);
  }

  return {
    locationOf,
    onReading: onStreetLight,
    async restore(source, now, future) {
      const monthStart = clock.monthStart(now);
      const points = await source.query(
        `SELECT * FROM ${source.from(INDICATORS_MEASUREMENT)} WHERE "scope" = 'device' AND "family" = 'streetLight' AND time >= ${monthStart}ms AND time <= ${future}ms GROUP BY "id" ORDER BY time DESC LIMIT 1`,
      );
      for (const row of points) {
        const t = row.time as number;
        const num = (k: string) => (typeof row[k] === 'number' ? (row[k] as number) : undefined);
        lamps.set(row.id as string, {
          id: row.id as string,
          zone: row.zone as string,
          lastT: t,
          powerState: (row.powerState as string | null) ?? undefined,
          status: (row.lampStatus as string | null) ?? undefined,
          illuminance: num('illuminanceLevel'),
          powerW: num('powerW'),
          counter: num('energyCounterKWh'),
          energyDay: { key: clock.dayKey(t), kwh: num('energyTodayKWh') ?? 0 },
          energyMonth: { key: clock.monthKey(t), kwh: num('energyMonthKWh') ?? 0 },
          burnDay: { key: clock.dayKey(t), hours: num('burningHoursToday') ?? 0 },
          onInDaylight: row.onInDaylight === true,
        });
      }
      const oldestCheckpoint = Math.min(now, ...[...lamps.values()].map((l) => l.lastT));
      const replayFrom = Math.max(monthStart, now - opts.restoreMaxReplayMs, lamps.size ? oldestCheckpoint : monthStart);
      const lampRows = await source.query(
        `SELECT * FROM ${source.from('streetLight')} WHERE time > ${replayFrom - 1}ms AND time <= ${future}ms`,
      );
      for (const row of lampRows) {
        const r = rowToReading(row, 'streetLight');
        onStreetLight(r, await locationOf(r), false);
      }
      return lampRows.length;
    },
    devices(zone) {
      const out: IndicatorEvent[] = [];
      for (const l of lamps.values()) {
        if (!zone || l.zone === zone)
          out.push({ scope: 'device', id: l.id, zone: l.zone, family: 'streetLight', time: l.lastT, values: lampValues(l) });
      }
      return out;
    },
    zones: () => [...lamps.values()].map((l) => l.zone),
    lamps: () => lamps.size,
    parts: {
      partial(inScope, now) {
        const today = clock.dayKey(now);
        const month = clock.monthKey(now);
        const p = noLights();
        const values = p.values;
        for (const l of lamps.values()) {
          if (!inScope(l.zone)) continue;
          p.any = true;
          const v = lampValues(l, today);
          values.powerNowW += l.powerW ?? 0;
          if (l.energyDay.key === today) values.energyTodayKWh += l.energyDay.kwh;
          if (l.energyMonth.key === month) values.energyMonthKWh += l.energyMonth.kwh;
          if (v.on) values.lampsOn++;
          if (v.dimmed) values.lampsDimmed++;
          if (v.fault) values.lampsFaulty++;
          if (v.onInDaylight) values.lampsOnInDaylight++;
          values.burningHoursToday += v.burningHoursToday as number;
        }
        return p;
      },
      present: (p) => p.any,
      merge(ps) {
        const m = noLights();
        for (const p of ps) {
          m.any ||= p.any;
          for (const k of Object.keys(m.values) as (keyof LightsPartial['values'])[]) m.values[k] += p.values[k];
        }
        return m;
      },
      values: (p) => ({ ...p.values }),
    },
  };
}
