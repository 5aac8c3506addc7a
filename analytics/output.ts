/**
 * Where analytics' derived points and events leave: the store of points by subject (written now, or at the next
 * store tick with the latest point per subject winning) and the throttle of bus events per subject. Shared by
 * every family so that one writer and one set of timers serve them all.
 */
import type { Family, InfluxTarget } from '../ingest/index.ts';
import { InfluxWriter } from '../ingest/index.ts';
import type { Logger } from '../core/logger.ts';

export interface DerivedOutput {
  /**
   * Stores a subject's point: now (storeIntervalMs 0) or at the next store tick, the latest call per key winning.
   * `line` builds the line protocol: only when it is written, not on every reading that supersedes it.
   */
  store(key: string, line: () => string | undefined, family: Family, device: string): void;
  /** Emits at most once per `intervalMs` per key, the last call winning (a trailing emit follows a throttled one). */
  throttled(key: string, intervalMs: number, fire: () => void): void;
  /** Writes the points waiting for the store tick. */
  flushPending(): void;
  /** Cancels the trailing emits still waiting. */
  cancelEmits(): void;
  /** Writes what the writer holds and stops it. */
  stop(): Promise<void>;
}

export function createDerivedOutput(
  target: InfluxTarget,
  timing: { storeIntervalMs: number; writeMaxAgeMs: number },
  log: Logger,
): DerivedOutput {
  // Derived data can be recomputed from the raw readings, so it is written straight to InfluxDB by this
  // component's own writer, not through ingest's durable log.
  const writer = new InfluxWriter(
    target,
    { batchSize: 5000, batchMaxAgeMs: timing.writeMaxAgeMs, writeConcurrency: 1, maxBufferedPoints: 200_000, retryMaxDelayMs: 5000 },
    {
      logger: log,
      onRejected: (points, reason) => log.warn({ points: points.length, reason }, 'InfluxDB refused derived points'),
    },
  );
  /** Lines waiting for the next store tick, by subject key (the latest value of a subject wins). */
  const pending = new Map<string, { line: () => string | undefined; family: Family; device: string }>();
  const lastEmit = new Map<string, number>();
  const emitTimers = new Map<string, NodeJS.Timeout>();

  return {
    store(key, line, family, device) {
      if (timing.storeIntervalMs === 0) {
        const text = line();
        if (text) writer.writePoints([{ line: text, family, device }]);
      } else {
        // The subject's entry is reused: a busy device supersedes its point on every reading.
        const p = pending.get(key);
        if (p) p.line = line;
        else pending.set(key, { line, family, device });
      }
    },
    throttled(key, intervalMs, fire) {
      if (intervalMs === 0) {
        fire();
        return;
      }
      const now = Date.now();
      const last = lastEmit.get(key) ?? 0;
      const old = emitTimers.get(key);
      if (old) clearTimeout(old);
      const run = () => {
        emitTimers.delete(key);
        lastEmit.set(key, Date.now());
        fire();
      };
      if (now - last >= intervalMs) run();
      else emitTimers.set(key, setTimeout(run, intervalMs - (now - last)));
    },
    flushPending() {
      const points: { line: string; family: Family; device: string }[] = [];
      for (const p of pending.values()) {
        const line = p.line();
        if (line) points.push({ line, family: p.family, device: p.device });
      }
      if (points.length) writer.writePoints(points);
      pending.clear();
    },
    cancelEmits() {
      for (const t of emitTimers.values()) clearTimeout(t);
      emitTimers.clear();
    },
    stop: () => writer.stop(),
  };
}
