/**
 * What each bus event means for the rules: a reading updates its device's field state (partial readings merge;
 * an older reading counts as data for noData rules but changes no field) and is evaluated by the reading rules
 * of its family, with the virtual `daylight` at the device's location and the rate of change where a rule asks;
 * a status event and an AQI index by the status and AQI rules. The periodic tick re-evaluates what changes
 * without events: silence (noData) and the sun (daylight).
 */
import { isDaylight } from '../analytics/sun.ts';
import type { EnrichedReading } from '../core/contract.ts';
import type { AlarmRecord, AqiEvent, StatusEvent } from '../core/bus.ts';
import type { CityProfile, Device, DeviceStore } from '../registry/index.ts';
import { allOf, type AlarmLifecycle } from './lifecycle.ts';
import type { CompiledRule, Fields } from './rules.ts';

export interface RuleEvaluation {
  /** Whether any reading rule watches the family (a reading of another family is not even queued). */
  watches(family: string): boolean;
  /**
   * Synchronous unless the device's location must be looked up first or an alarm is raised or cleared (then a
   * promise, resolved once the store committed it); the same for the others.
   */
  onReading(ev: EnrichedReading): void | Promise<void>;
  onStatus(ev: Pick<StatusEvent, 'device' | 'family' | 'zone' | 'state' | 'at'>): void | Promise<void>;
  onAqi(ev: AqiEvent): void | Promise<void>;
  tick(): void | Promise<void>;
  /** The registry's devices, for their locations (a reading of one not listed looks it up). */
  knowDevices(devices: readonly Device[]): void;
  /** A device seen before is not connected when devices become reachable: offline, and silent, from `at`. */
  unreachableSince(d: Pick<Device, 'id' | 'family' | 'zone'>, at: number): void | Promise<void>;
}

/** What a no-data rule sees when a reading arrives (shared: not one object per reading). */
const NOT_SILENT: Fields = Object.freeze({ silentMs: 0, silentS: 0 });

export function createRuleEvaluation(
  rules: readonly CompiledRule[],
  lifecycle: AlarmLifecycle,
  deps: { devices: Pick<DeviceStore, 'get'>; profile: CityProfile },
  now: () => number,
): RuleEvaluation {
  const { tracker, observe } = lifecycle;
  /** Latest fields and observation time per device (merged partial readings). */
  const deviceState = new Map<string, { time: number; fields: Fields }>();
  const deviceMeta = new Map<string, Pick<Device, 'location' | 'zone' | 'family'>>();
  const zoneCentre = new Map(deps.profile.zones.filter((z) => z.centre).map((z) => [z.id, z.centre as { lat: number; lon: number }]));

  function locationOf(device: string, zone: string): { lat: number; lon: number } {
    return deviceMeta.get(device)?.location ?? zoneCentre.get(zone) ?? deps.profile.centre;
  }
  function daylightAt(time: number, loc: { lat: number; lon: number }): boolean {
    return isDaylight(time, loc.lat, loc.lon); // cached per place and hour in analytics/sun.ts
  }

  async function ensureMeta(device: string): Promise<void> {
    if (deviceMeta.has(device)) return;
    const d = await deps.devices.get(device);
    if (d) deviceMeta.set(device, { location: d.location, zone: d.zone, family: d.family });
  }

  const readingRules = rules.filter((r) => r.rule.source === 'reading');
  const needsLocation = readingRules.some((r) => r.usesDaylight);

  /** Reading rules per family, computed once (not filtered per reading). */
  const rulesByFamily = new Map<string, CompiledRule[]>();
  const relevantRules = (family: string) => {
    let list = rulesByFamily.get(family);
    if (!list) {
      list = readingRules.filter((r) => !r.rule.family || r.rule.family === family);
      rulesByFamily.set(family, list);
    }
    return list;
  };

  function onReading(ev: EnrichedReading): void | Promise<void> {
    if (!relevantRules(ev.family).length) return;
    if (needsLocation && !deviceMeta.has(ev.device)) return ensureMeta(ev.device).then(() => evaluateReading(ev));
    return evaluateReading(ev);
  }

  function evaluateReading(ev: EnrichedReading): void | Promise<void> {
    const at = now();
    const relevant = relevantRules(ev.family);
    const prevState = deviceState.get(ev.device);
    let fields: Fields | undefined;
    if (!prevState) {
      fields = { ...ev.fields };
      deviceState.set(ev.device, { time: ev.time, fields });
    } else if (ev.time >= prevState.time) {
      // Merged in place (one object per device, not one per reading); what a rule keeps of it (the message) is
      // taken when the alarm is raised.
      prevState.time = ev.time;
      fields = Object.assign(prevState.fields, ev.fields);
    }
    let writes: (void | Promise<void>)[] | undefined;
    for (const c of relevant) {
      const kind = c.rule.kind;
      const t = tracker(c, ev.device, 'device', ev.family, ev.zone);
      if (kind === 'noData') {
        t.lastDataAt = at;
        const w = observe(t, NOT_SILENT, at);
        if (w !== undefined) {
          writes ??= [];
          writes.push(w);
        }
        continue;
      }
      if (!fields) continue;
      let f: Fields = fields;
      if (c.usesDaylight) {
        t.location = locationOf(ev.device, ev.zone);
        f = { ...fields, daylight: daylightAt(ev.time, t.location) };
      }
      if (kind === 'rateOfChange') {
        // Only a reading that carries the field gives a new rate.
        const v = ev.fields[c.rule.field as string];
        if (typeof v !== 'number') continue;
        const prev = t.prev;
        t.prev = { v, t: ev.time };
        if (!prev || ev.time <= prev.t) continue;
        f = { ...f, ratePerMinute: ((v - prev.v) / (ev.time - prev.t)) * 60_000 };
      }
      if (c.where && !c.where(f)) continue;
      const w = observe(t, f, at);
      if (w !== undefined) {
        writes ??= [];
        writes.push(w);
      }
    }
    return writes && allOf(writes);
  }

  function onStatus(ev: Pick<StatusEvent, 'device' | 'family' | 'zone' | 'state' | 'at'>): void | Promise<void> {
    const at = now();
    const f: Fields = { state: ev.state, online: ev.state === 'online', at: ev.at, device: ev.device, zone: ev.zone };
    const writes: (void | Promise<void>)[] = [];
    for (const c of rules) {
      if (c.rule.source !== 'status' || (c.rule.family && c.rule.family !== ev.family)) continue;
      if (c.where && !c.where(f)) continue;
      writes.push(observe(tracker(c, ev.device, 'device', ev.family as AlarmRecord['family'], ev.zone), f, at));
    }
    return allOf(writes);
  }

  function onAqi(ev: AqiEvent): void | Promise<void> {
    const at = now();
    const f = ev as unknown as Fields;
    const writes: (void | Promise<void>)[] = [];
    for (const c of rules) {
      if (c.rule.source !== 'aqi' || (c.rule.scope ?? 'station') !== ev.scope) continue;
      if (c.where && !c.where(f)) continue;
      const scope = ev.scope === 'station' ? ('device' as const) : ('zone' as const);
      writes.push(observe(tracker(c, ev.id, scope, scope === 'device' ? 'airQuality' : undefined, ev.zone), f, at));
    }
    return allOf(writes);
  }

  function tick(): void | Promise<void> {
    const at = now();
    const writes: (void | Promise<void>)[] = [];
    for (const t of lifecycle.trackers()) {
      const r = t.rule;
      if (r.rule.kind === 'noData') {
        if (t.lastDataAt === undefined) continue;
        const silentMs = at - t.lastDataAt;
        writes.push(observe(t, { silentMs, silentS: Math.round(silentMs / 1000) }, at));
      } else if (r.usesDaylight && t.fields && t.location) {
        // The sun moves without readings: re-evaluate at the current time.
        writes.push(observe(t, { ...t.fields, daylight: daylightAt(at, t.location) }, at));
      } else if (t.raiseSince !== null || t.clearSince !== null) writes.push(lifecycle.step(t, at));
    }
    return allOf(writes);
  }

  return {
    watches: (family) => relevantRules(family).length > 0,
    onReading,
    onStatus,
    onAqi,
    tick,
    knowDevices(devices) {
      for (const d of devices) deviceMeta.set(d.id, { location: d.location, zone: d.zone, family: d.family });
    },
    unreachableSince(d, at) {
      const w = onStatus({ device: d.id, family: d.family, zone: d.zone, state: 'offline', at: new Date(at).toISOString() });
      for (const c of readingRules) {
        if (c.rule.kind !== 'noData' || (c.rule.family && c.rule.family !== d.family)) continue;
        const t = tracker(c, d.id, 'device', d.family, d.zone);
        t.lastDataAt ??= at;
      }
      return w;
    },
  };
}
