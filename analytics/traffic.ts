/**
 * Traffic per junction: vehicles per hour and average speed over a sliding window of readings (running sums, so
 * a reading costs O(1) however many the window holds), the congestion level from the latest reading, and the
 * zone and city summaries of the junctions that reported within the window.
 */
import type { EnrichedReading } from '../ingest/index.ts';
import type { IndicatorEvent } from '../core/bus.ts';
import type { FamilyParts } from './aggregates.ts';
import { HOUR_MS } from './city-time.ts';
import { indicatorLine } from './points.ts';
import { rowToReading, type RestoreSource } from './restore-query.ts';
import type { FamilyContext } from './types.ts';

interface Junction {
  id: string;
  zone: string;
  /** Readings inside the window, by observation time (from index `head` on: evicted entries are skipped, not shifted). */
  window: { t: number; intensity: number; speed?: number }[];
  head: number;
  /**
   * Running sums over the window (vehicles, speed·vehicles, vehicles with a speed, speeds, readings with a speed),
   * so a reading costs O(1) however many readings the window holds (a device flushing a backlog fills it).
   * Recomputed from the window once as many readings were evicted as it holds, so float error cannot build up.
   */
  sums: { vehicles: number; wsum: number; w: number; ssum: number; sn: number; evicted: number };
  latestT: number;
  /** The latest reading's values, updated in place. */
  latest: { occupancy?: number; speed?: number; congested?: boolean; intensity: number };
  /** Its key in the store's pending map (built once, not per reading). */
  storeKey: string;
}

export interface Traffic {
  /** Adds a reading to its junction's window; `live` (not a restore) emits and stores the junction's indicators. */
  onReading(r: EnrichedReading, live: boolean): void;
  /** Replays the raw readings of the last window; returns how many. */
  restore(source: RestoreSource, now: number, future: number): Promise<number>;
  /** Current indicators of every junction (of `zone` when given). */
  devices(zone?: string): IndicatorEvent[];
  /** The zones that have junctions. */
  zones(): string[];
  junctions(): number;
  parts: FamilyParts<TrafficPartial>;
}

/**
 * What a zone's (or the city's) traffic indicators are made of: sums that add up across zones, so the city's
 * figure is the merge of its zones' (cluster mode merges zones computed on different nodes).
 */
export interface TrafficPartial {
  /** Junctions that reported within the window. */
  n: number;
  vph: number;
  congested: number;
  /** Average speeds weighted by vehicles per hour, and the weights. */
  speedSum: number;
  speedW: number;
  /** The scope has junctions (reporting or not). */
  known: boolean;
}

function addToSums(s: Junction['sums'], x: { intensity: number; speed?: number }, sign: 1 | -1): void {
  s.vehicles += sign * x.intensity;
  if (x.speed !== undefined) {
    s.wsum += sign * x.speed * x.intensity;
    s.w += sign * x.intensity;
    s.ssum += sign * x.speed;
    s.sn += sign;
  }
}

/** Drops readings at or before `from` from the window (and its sums). */
function evictWindow(j: Junction, from: number): void {
  const s = j.sums;
  while (j.head < j.window.length && (j.window[j.head] as { t: number }).t <= from) {
    const x = j.window[j.head++] as Junction['window'][number];
    addToSums(s, x, -1);
    s.evicted++;
  }
  // Compact the array once half of it is evicted (amortised O(1) per reading).
  if (j.head > 64 && j.head * 2 > j.window.length) {
    j.window = j.window.slice(j.head);
    j.head = 0;
  }
  if (s.evicted > j.window.length - j.head) {
    // As many evictions as readings left: recompute exactly (amortised O(1)), so rounding never accumulates.
    const fresh = { vehicles: 0, wsum: 0, w: 0, ssum: 0, sn: 0, evicted: 0 };
    for (let k = j.head; k < j.window.length; k++) addToSums(fresh, j.window[k] as Junction['window'][number], 1);
    j.sums = fresh;
  }
}

/** `changed(zone)`: a junction of the zone emitted new indicators (its zone and city aggregates follow). */
export function createTraffic(ctx: FamilyContext, changed: (zone: string) => void): Traffic {
  const { opts, bus, output } = ctx;
  const junctions = new Map<string, Junction>();

  function congestionLevel(j: Junction): number {
    const c = opts.congestion;
    const { occupancy: occ, congested } = j.latest;
    const speed = j.latest.intensity > 0 ? j.latest.speed : undefined; // no vehicles: speed says nothing
    if (congested === true) return 3;
    if ((occ !== undefined && occ >= c.occupancyCongested) || (speed !== undefined && speed <= c.speedCongestedKmh)) return 3;
    if ((occ !== undefined && occ >= c.occupancyHeavy) || (speed !== undefined && speed <= c.speedHeavyKmh)) return 2;
    if ((occ !== undefined && occ >= c.occupancyModerate) || (speed !== undefined && speed <= c.speedModerateKmh)) return 1;
    return 0;
  }

  function junctionValues(j: Junction): Record<string, number> {
    const { vehicles, wsum, w, ssum, sn } = j.sums;
    const out: Record<string, number> = {
      vehiclesPerHour: Math.round((vehicles * HOUR_MS) / opts.trafficWindowMs),
      congestionLevel: congestionLevel(j),
    };
    if (w > 0) out.averageSpeed = wsum / w;
    else if (sn > 0) out.averageSpeed = ssum / sn;
    return out;
  }

  function onTraffic(r: EnrichedReading, live: boolean): void {
    let j = junctions.get(r.device);
    if (!j) {
      j = {
        id: r.device,
        zone: r.zone,
        window: [],
        head: 0,
        sums: { vehicles: 0, wsum: 0, w: 0, ssum: 0, sn: 0, evicted: 0 },
        latestT: 0,
        latest: { intensity: 0, speed: undefined, occupancy: undefined, congested: undefined },
        storeKey: `i|device|${r.device}`,
      };
      junctions.set(r.device, j);
    }
    j.zone = r.zone;
    const f = r.fields;
    const intensity = typeof f.intensity === 'number' ? f.intensity : 0;
    const speed = typeof f.averageVehicleSpeed === 'number' ? f.averageVehicleSpeed : undefined;
    // The reading's time is the end of its counting period (dateObserved, else dateObservedTo): the whole
    // count belongs to the window that contains that time. The window is in time order, so its place is found
    // from the end (readings mostly arrive in order), and a resent reading is the one just before it (no set
    // of times: hashing each time cost more than this).
    let i = j.window.length;
    while (i > j.head && (j.window[i - 1] as { t: number }).t > r.time) i--;
    if (i > j.head && (j.window[i - 1] as { t: number }).t === r.time) return; // a resent reading
    const entry = { t: r.time, intensity, speed };
    if (i === j.window.length) j.window.push(entry);
    else j.window.splice(i, 0, entry);
    addToSums(j.sums, entry, 1);
    if (r.time >= j.latestT) {
      j.latestT = r.time;
      const latest = j.latest;
      latest.intensity = intensity;
      latest.speed = speed;
      latest.occupancy = typeof f.occupancy === 'number' ? f.occupancy : undefined;
      latest.congested = typeof f.congested === 'boolean' ? f.congested : undefined;
    }
    evictWindow(j, j.latestT - opts.trafficWindowMs);
    if (!live) return;
    const e: IndicatorEvent = { scope: 'device', id: j.id, zone: j.zone, family: 'traffic', time: r.time, values: junctionValues(j) };
    bus.emit('indicator', e);
    output.store(j.storeKey, () => indicatorLine(e), 'traffic', j.id);
    changed(j.zone);
  }

  return {
    onReading: onTraffic,
    async restore(source, now, future) {
      const traffic = await source.query(
        `SELECT * FROM ${source.from('traffic')} WHERE time > ${now - opts.trafficWindowMs - 300_000}ms AND time <= ${future}ms`,
      );
      for (const row of traffic) onTraffic(rowToReading(row, 'traffic'), false);
      return traffic.length;
    },
    devices(zone) {
      const out: IndicatorEvent[] = [];
      for (const j of junctions.values()) {
        if (!zone || j.zone === zone)
          out.push({ scope: 'device', id: j.id, zone: j.zone, family: 'traffic', time: j.latestT, values: junctionValues(j) });
      }
      return out;
    },
    zones: () => [...junctions.values()].map((j) => j.zone),
    junctions: () => junctions.size,
    parts: {
      partial(inScope, now) {
        const p: TrafficPartial = { n: 0, vph: 0, congested: 0, speedSum: 0, speedW: 0, known: false };
        for (const j of junctions.values()) {
          if (!inScope(j.zone)) continue;
          p.known = true;
          // A junction that has not reported within the window no longer counts.
          if (j.latestT <= now - opts.trafficWindowMs) continue;
          const v = junctionValues(j);
          p.n++;
          p.vph += v.vehiclesPerHour as number;
          if (v.averageSpeed !== undefined) {
            const w = Math.max(v.vehiclesPerHour as number, 1e-9);
            p.speedSum += v.averageSpeed * w;
            p.speedW += w;
          }
          if (v.congestionLevel === 3) p.congested++;
        }
        return p;
      },
      present: (p) => p.n > 0 || p.known,
      merge(ps) {
        const m: TrafficPartial = { n: 0, vph: 0, congested: 0, speedSum: 0, speedW: 0, known: false };
        for (const p of ps) {
          m.n += p.n;
          m.vph += p.vph;
          m.congested += p.congested;
          m.speedSum += p.speedSum;
          m.speedW += p.speedW;
          m.known ||= p.known;
        }
        return m;
      },
      values(p) {
        const values: Record<string, number> = { vehiclesPerHour: p.vph, congestedJunctions: p.congested };
        if (p.speedW > 0) values.averageSpeed = p.speedSum / p.speedW;
        return values;
      },
    },
  };
}
