/**
 * Cluster mode: zone and city figures over every node's devices. Readings are partitioned by ward
 * (ingest/replicated-log.ts), so each ward's devices are processed, whole, by the one node active for its
 * partition, and that node computes the ward's indicators and air-quality index as one node would. What it
 * computed is shared: each node publishes a result per ward it processes (the ward's mergeable sums per family,
 * its index and its stations' indices) through a `ZoneShare` (Redis, given by the platform), and every node
 * keeps the newest result of every ward. A node serves a ward from its own state while the newest result of it
 * is its own (or there is none), and from the result otherwise; the city's figures are the merge of every
 * ward's sums, so the API and the sockets of any node give the figures one node would compute over all devices.
 *
 * A ward's result is published shortly after its state changed (at most every PUBLISH_MS) and again every
 * REFRESH_MS while it is this node's (a traffic window moves on without readings). A ward whose partition
 * moved to another node keeps its last result until the new node processes a reading of it.
 */
import type { Logger } from '../core/logger.ts';
import type { ZoneResult, ZoneShare } from './types.ts';

export type { ZoneResult, ZoneShare } from './types.ts';

export interface ClusterView {
  /**
   * The newest result of `zone` when it is another node's and newer than this node's last change of the ward
   * (serve it from there), else undefined (serve it here).
   */
  remote(zone: string): ZoneResult | undefined;
  /** Every ward some node published. */
  zones(): string[];
  /** Marks a ward of this node changed: its result is published within PUBLISH_MS. */
  changed(zone: string): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** At most one result of a ward per this interval, ms. */
export const PUBLISH_MS = 100;
/** A ward this node serves is published again at this interval, ms. */
export const REFRESH_MS = 5000;

/** `heard(r)`: another node's result of a ward, newer than what this node had of it (the city's figures changed). */
export function createClusterView(
  share: ZoneShare,
  compute: (zone: string) => ZoneResult,
  log: Logger,
  heard?: (r: ZoneResult) => void,
): ClusterView {
  const newest = new Map<string, ZoneResult>();
  /** When this node's state of a ward last changed: newer than another node's result, it is served from here. */
  const changedAt = new Map<string, number>();
  const dirty = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let refresh: NodeJS.Timeout | undefined;
  let stopped = false;

  const accept = (r: ZoneResult) => {
    const cur = newest.get(r.zone);
    if (cur && r.at < cur.at) return;
    newest.set(r.zone, r);
    if (r.node !== share.node && !stopped) heard?.(r);
  };

  function publishDirty(): void {
    timer = undefined;
    for (const zone of dirty) {
      try {
        const r = compute(zone);
        accept(r);
        share.publish(r);
      } catch (err) {
        log.error({ err, zone }, 'ward result not computed');
      }
    }
    dirty.clear();
  }

  const remote = (zone: string) => {
    const r = newest.get(zone);
    return r && r.node !== share.node && r.at > (changedAt.get(zone) ?? Number.NEGATIVE_INFINITY) ? r : undefined;
  };

  return {
    remote,
    zones: () => [...newest.keys()],
    changed(zone) {
      if (stopped) return;
      changedAt.set(zone, Date.now());
      dirty.add(zone);
      timer ??= setTimeout(publishDirty, PUBLISH_MS);
    },
    async start() {
      for (const r of await share.subscribe((r) => accept(r))) {
        const cur = newest.get(r.zone);
        if (!cur || r.at >= cur.at) newest.set(r.zone, r);
      }
      refresh = setInterval(() => {
        for (const [zone, r] of newest) if (r.node === share.node && !remote(zone)) dirty.add(zone);
        if (dirty.size) publishDirty();
      }, REFRESH_MS);
      refresh.unref();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      clearInterval(refresh);
      if (dirty.size) publishDirty();
      await share.close();
    },
  };
}
