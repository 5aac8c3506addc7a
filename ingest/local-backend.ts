/**
 * Single-node mode's backend: the local durable log and the InfluxDB writer on the store worker (store.ts,
 * store-worker.ts). A message is acknowledged once its readings are fsynced here; they reach the live bus as
 * they are accepted, before InfluxDB confirms them, so live views keep streaming while InfluxDB is down.
 */
import type { EnrichedReading } from '../core/contract.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { BackendHooks, ReadingBackend } from './backend.ts';
import type { InfluxTarget, WriterOptions } from './influx-writer.ts';
import { toLine } from './line-protocol.ts';
import type { ProcessorSpec } from './processor.ts';
import { ReadingStore } from './store.ts';

export interface LocalBackendOptions {
  log: { dir: string; maxBytes: number; segmentBytes: number; fsync: boolean };
  influx: InfluxTarget;
  /** The writer's options, with the retention edge it checks again when it sends. */
  writer: WriterOptions;
  /** Late readings (older than the continuous queries look back) are marked for the tiers' catch-up; 0 = never. */
  lateAfterMs: number;
}

export function createLocalBackend(
  opts: LocalBackendOptions,
  hooks: BackendHooks,
  deps: { metrics?: Metrics; logger: Logger; processor?: () => ProcessorSpec },
): ReadingBackend {
  const logger = deps.logger;
  const store = new ReadingStore(
    {
      log: opts.log,
      influx: opts.influx,
      writer: opts.writer,
      shipper: { memoryPoints: opts.writer.maxBufferedPoints, chunk: opts.writer.batchSize },
      lateAfterMs: opts.lateAfterMs,
    },
    {
      prepareDatabase: hooks.prepareDatabase,
      late: hooks.late,
      // The times a resend must reproduce are saved before the readings they stamp can reach the disk.
      beforeSend: hooks.beforeSend,
      deadLetter: hooks.deadLetter,
      ...(deps.processor ? { processor: deps.processor } : {}),
    },
    deps,
  );
  let wasFull = false;
  return {
    sink: {
      append(readings: EnrichedReading[]) {
        const durable = store.append(readings.map((r) => ({ line: toLine(r), family: r.family, device: r.device })));
        // One node: the durable log, not the live bus's listeners, is what a restart goes on from.
        void hooks.live(readings);
        return durable;
      },
      whenSpace(closed) {
        if (!store.full()) {
          if (wasFull) {
            wasFull = false;
            logger.info(store.state().log, 'durable log has room again: devices are read at full speed');
          }
          return undefined;
        }
        if (!wasFull) {
          wasFull = true;
          logger.warn(store.state().log, 'durable log disk budget full: slowing devices down (acknowledgements withheld, sockets paused)');
        }
        return store.whenSpace(closed);
      },
    },
    async start() {
      const replay = await store.open();
      if (replay.to > replay.from) {
        logger.info(
          { points: replay.to - replay.from, tornRecords: replay.torn },
          'durable log: replaying readings not confirmed by InfluxDB',
        );
      }
      try {
        await hooks.prepareDatabase();
      } catch (err) {
        // Not fatal: readings wait in the log and the database is created when InfluxDB answers again.
        logger.warn({ err: (err as Error).message }, 'InfluxDB not ready at start; readings wait in the durable log');
      }
      store.replay(replay.from, replay.to);
    },
    full: () => store.full(),
    flush: (timeoutMs) => store.flush(timeoutMs),
    drain: (timeoutMs) => store.flush(timeoutMs),
    leftBehind: 'stopping with readings not yet in InfluxDB: they stay in the durable log for the next start',
    close: () => store.close(),
    state() {
      const { log: u, waiting: w, writer } = store.state();
      return {
        writer,
        log: { points: u.points, bytes: u.bytes, oldestMs: u.oldestMs, segments: u.segments, full: u.full, waitingOnDisk: w.disk },
      };
    },
    osThreadId: () => store.osThreadId,
  };
}
