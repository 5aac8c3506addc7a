/**
 * How a fleet is doing: the counters it reports, the readings-per-second rate over a sliding window, and the
 * one-line summary for a terminal.
 */

export interface FleetProgress {
  devices: number;
  connected: number;
  published: number;
  readingsPerSecond: number;
  publishErrors: number;
  rejected: number;
  connectErrors: number;
  /** Commands received by street lights (repeats included). */
  commands: number;
}

const RATE_WINDOW_MS = 5_000;
const RATE_SLOT_MS = 100;

/** Readings per second over the last few seconds: fixed slots in a ring, each remembering which absolute slot it counts. */
export function createRateMeter(): { count(): void; start(): void; perSecond(): number } {
  const slotCount = RATE_WINDOW_MS / RATE_SLOT_MS;
  const slotIds = new Array<number>(slotCount).fill(-1);
  const slotCounts = new Array<number>(slotCount).fill(0);
  let startedAt = 0;
  return {
    count() {
      const slot = Math.floor(Date.now() / RATE_SLOT_MS);
      const i = slot % slotCount;
      if (slotIds[i] !== slot) [slotIds[i], slotCounts[i]] = [slot, 0];
      slotCounts[i]!++;
    },
    start() {
      startedAt = Date.now();
    },
    perSecond() {
      if (!startedAt) return 0;
      const now = Date.now();
      const current = Math.floor(now / RATE_SLOT_MS);
      let sum = 0;
      for (let i = 0; i < slotCount; i++) if (slotIds[i]! > current - slotCount) sum += slotCounts[i]!;
      // Divide by the time actually covered, or the first seconds of a run would read low.
      const windowMs = Math.min(RATE_WINDOW_MS, Math.max(RATE_SLOT_MS, now - startedAt));
      return (sum * 1000) / windowMs;
    },
  };
}

/** One line for a terminal, e.g. "devices 298/298 online · 12.3 readings/s · 1234 sent · 0 rejected · 0 errors". */
export function formatProgress(p: FleetProgress): string {
  const errors = p.publishErrors + p.connectErrors;
  const detail = errors ? ` (${p.connectErrors} connect, ${p.publishErrors} publish)` : '';
  return (
    `devices ${p.connected}/${p.devices} online · ${p.readingsPerSecond.toFixed(1)} readings/s · ` +
    `${p.published} sent · ${p.rejected} rejected · ${errors} errors${detail}`
  );
}
