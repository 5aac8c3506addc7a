/**
 * Zone and city indicators of traffic and street lights: which (zone or city, family) subjects changed, their
 * throttled emission on the bus and their storage at the store tick. The values themselves come from each
 * family's summary, computed when they go out (never per reading: a busy zone would pay for each).
 */
import type { Family } from '../ingest/index.ts';
import type { IndicatorEvent } from '../core/bus.ts';
import { indicatorLine } from './points.ts';
import type { FamilyContext } from './types.ts';

/**
 * A family's values over the subjects of a zone (`id` a zone id) or the city (`id` = 'city') that `inScope`
 * keeps, computed at `now`; undefined when the zone has none of its subjects.
 */
export type FamilySummary = (id: string, inScope: (zone: string) => boolean, now: number) => Record<string, number> | undefined;

export interface ZoneAggregates {
  /** A device of `family` in `zone` changed: its zone's and the city's indicators are stored and emitted. */
  touch(zone: string, family: Family): void;
  /** Zone (`id` a zone id) or city (`id` = 'city') indicators of a family, computed now. */
  aggregate(id: string, family: Family): IndicatorEvent | undefined;
  /** Hands the subjects changed since the last store tick to the output's pending points. */
  storeChanged(): void;
  /** Cancels the emission waiting for its interval. */
  stop(): void;
}

const keyOf = (id: string, family: Family) => `${id}\u0000${family}`;
const splitKey = (k: string) => k.split('\u0000') as [string, Family];

export function createZoneAggregates(ctx: FamilyContext, summaries: Partial<Record<Family, FamilySummary>>): ZoneAggregates {
  const { opts, bus, output } = ctx;
  /** Zone/city indicator subjects changed since the last store tick and since the last emit. */
  const storeDirty = new Set<string>();
  const emitDirty = new Set<string>();
  let indicatorTimer: NodeJS.Timeout | undefined;

  function aggregate(id: string, family: Family): IndicatorEvent | undefined {
    const inScope = (zone: string) => id === 'city' || zone === id;
    const now = Date.now();
    const base = {
      scope: id === 'city' ? ('city' as const) : ('zone' as const),
      id,
      ...(id === 'city' ? {} : { zone: id }),
      family,
      time: now,
    };
    const values = summaries[family]?.(id, inScope, now);
    return values ? { ...base, values } : undefined;
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
