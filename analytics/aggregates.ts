/**
 * Zone and city indicators of traffic and street lights: which (zone or city, family) subjects changed, their
 * throttled emission on the bus and their storage at the store tick. The values themselves come from each
 * family's parts (sums over the subjects in scope, then the values), computed when they go out (never per
 * reading: a busy zone would pay for each). The city's figure is the merge of its zones' sums; in cluster mode
 * (zone-share.ts) a zone another node serves is taken from that node's result.
 */
import type { Family } from '../ingest/index.ts';
import type { IndicatorEvent } from '../core/bus.ts';
import { indicatorLine } from './points.ts';
import type { FamilyContext } from './types.ts';
import type { ClusterView } from './zone-share.ts';

/**
 * A family's indicators over a scope, as sums `P` that add up across zones: the sums over the subjects whose
 * zone `inScope` keeps, computed at `now`; whether a scope has subjects of the family; the merge of several
 * scopes' sums; and the indicator values from sums.
 */
export interface FamilyParts<P> {
  partial(inScope: (zone: string) => boolean, now: number): P;
  present(p: P): boolean;
  merge(ps: P[]): P;
  values(p: P): Record<string, number>;
}

export interface ZoneAggregates {
  /** A device of `family` in `zone` changed: its zone's and the city's indicators are stored and emitted. */
  touch(zone: string, family: Family): void;
  /** Cluster mode: another node's ward changed: the city's indicators of `family` are emitted (its node stores them). */
  touchCity(family: Family): void;
  /** Zone (`id` a zone id) or city (`id` = 'city') indicators of a family, computed now. */
  aggregate(id: string, family: Family): IndicatorEvent | undefined;
  /** A zone's sums per family, as this node computes them now (what cluster mode shares). */
  zoneParts(zone: string): Partial<Record<Family, unknown>>;
  /** Hands the subjects changed since the last store tick to the output's pending points. */
  storeChanged(): void;
  /** Cancels the emission waiting for its interval. */
  stop(): void;
}

const keyOf = (id: string, family: Family) => `${id}\u0000${family}`;
const splitKey = (k: string) => k.split('\u0000') as [string, Family];

export function createZoneAggregates(
  ctx: FamilyContext,
  families: Partial<Record<Family, FamilyParts<any>>>,
  /** Cluster mode: zones other nodes serve, and the zones they know of (zone-share.ts). */
  view?: () => ClusterView | undefined,
  /** The zones this node has subjects of, per family. */
  localZones?: (family: Family) => Iterable<string>,
): ZoneAggregates {
  const { opts, bus, output } = ctx;
  /** Zone/city indicator subjects changed since the last store tick and since the last emit. */
  const storeDirty = new Set<string>();
  const emitDirty = new Set<string>();
  let indicatorTimer: NodeJS.Timeout | undefined;

  /** The sums of a family over a zone, or the city (the merge of every zone's sums, wherever they were computed). */
  function sumsOf(id: string, family: Family, now: number): unknown {
    const fam = families[family];
    if (!fam) return undefined;
    const v = view?.();
    if (!v) return fam.partial((zone) => id === 'city' || zone === id, now);
    if (id !== 'city') {
      const r = v.remote(id);
      return r ? r.parts[family] : fam.partial((zone) => zone === id, now);
    }
    const zones = new Set([...(localZones?.(family) ?? []), ...v.zones()]);
    const parts: unknown[] = [];
    for (const zone of zones) {
      const r = v.remote(zone);
      const p = r ? r.parts[family] : fam.partial((z) => z === zone, now);
      if (p !== undefined) parts.push(p);
    }
    return fam.merge(parts);
  }

  function aggregate(id: string, family: Family): IndicatorEvent | undefined {
    const fam = families[family];
    const now = Date.now();
    const sums = sumsOf(id, family, now);
    if (!fam || sums === undefined || (id !== 'city' && !fam.present(sums))) return undefined;
    return {
      scope: id === 'city' ? 'city' : 'zone',
      id,
      ...(id === 'city' ? {} : { zone: id }),
      family,
      time: now,
      values: fam.values(sums),
    };
  }

  function emitAggregates(): void {
    indicatorTimer = undefined;
    for (const k of emitDirty) {
      const [id, family] = splitKey(k);
      const e = aggregate(id, family);
      if (e) bus.emit('indicator', e);
    }
    emitDirty.clear();
  }

  return {
    aggregate,
    zoneParts(zone) {
      const now = Date.now();
      const out: Partial<Record<Family, unknown>> = {};
      for (const [family, fam] of Object.entries(families) as [Family, FamilyParts<unknown>][]) {
        const p = fam.partial((z) => z === zone, now);
        if (fam.present(p)) out[family] = p;
      }
      return out;
    },
    touch(zone, family) {
      for (const id of [zone, 'city']) {
        const k = keyOf(id, family);
        if (opts.storeIntervalMs === 0) {
          const e = aggregate(id, family);
          if (e) output.store(`i|${k}`, () => indicatorLine(e), family, id);
        } else storeDirty.add(k);
        if (opts.indicatorEmitIntervalMs === 0) {
          const e = aggregate(id, family);
          if (e) bus.emit('indicator', e);
        } else {
          emitDirty.add(k);
          indicatorTimer ??= setTimeout(emitAggregates, opts.indicatorEmitIntervalMs);
        }
      }
    },
    touchCity(family) {
      if (opts.indicatorEmitIntervalMs === 0) {
        const e = aggregate('city', family);
        if (e) bus.emit('indicator', e);
        return;
      }
      emitDirty.add(keyOf('city', family));
      indicatorTimer ??= setTimeout(emitAggregates, opts.indicatorEmitIntervalMs);
    },
    storeChanged() {
      for (const key of storeDirty) {
        const [id, family] = splitKey(key);
        const e = aggregate(id, family);
        if (e) output.store(`i|${key}`, () => indicatorLine(e), family, id);
      }
      storeDirty.clear();
    },
    stop() {
      clearTimeout(indicatorTimer);
    },
  };
}
