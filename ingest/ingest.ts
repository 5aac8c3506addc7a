/**
 * The stream processor: telemetry from the broker's `published` hook → validation → enrichment → batched
 * InfluxDB writes and the live bus; rejections → dead letters and the device's errors topic.
 */
import type { InfluxDB } from 'influx';
import type { DeviceError } from './contract.ts';
import { SqliteDeadLetterStore, type DeadLetterStore } from './dead-letters.ts';
import { dispatch, type IngestContext } from './handlers/index.ts';
import { createInfluxClient, ensureDatabase } from './influx-admin.ts';
import { InfluxWriter, type InfluxTarget, type WriterOptions, type WriterState } from './influx-writer.ts';
import { createReadingParser, type DeviceMeta } from './validate.ts';
import type { LiveBus } from '../platform/bus.ts';
import { silentLogger, type Logger } from '../platform/logger.ts';
import type { Metrics } from '../platform/metrics.ts';

export interface IngestOptions {
  influx: InfluxTarget & { retentionDuration: string };
  writer: WriterOptions;
  maxReadingsPerMessage: number;
  /** SQLite file of the dead-letter store (':memory:' in tests). */
  deadLetterFile: string;
  deadLetterLimit: number;
}

export interface IngestDeps {
  bus: LiveBus;
  /** Publishes a DeviceError on `devices/{id}/errors` (wired to the broker by the platform). */
  publishError: (deviceId: string, err: DeviceError) => void;
  metrics?: Metrics;
  logger?: Logger;
}

export interface IngestState {
  writer: WriterState;
  deadLetters: number;
  databaseReady: boolean;
}

export interface Ingest {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Handles one message of an authenticated device; returns false for a topic kind ingest does not take. */
  handleMessage(device: DeviceMeta, kind: string, payload: Buffer, receivedAt?: number): boolean;
  /** Resolves once everything accepted so far is written (true) or the timeout passed (false). */
  flush(timeoutMs?: number): Promise<boolean>;
  state(): IngestState;
  readonly deadLetters: DeadLetterStore;
  readonly influx: InfluxDB;
}

export function createIngest(opts: IngestOptions, deps: IngestDeps): Ingest {
  const logger = deps.logger ?? silentLogger;
  const influx = createInfluxClient(opts.influx);
  const deadLetters = new SqliteDeadLetterStore(opts.deadLetterFile, opts.deadLetterLimit);
  let databaseReady = false;
  const prepareDatabase = async () => {
    await ensureDatabase(influx, opts.influx, opts.influx.retentionDuration);
    databaseReady = true;
  };
  const writer = new InfluxWriter(opts.influx, opts.writer, {
    metrics: deps.metrics,
    logger,
    onDatabaseMissing: prepareDatabase,
    onRejected(points, reason) {
      const at = new Date().toISOString();
      for (const p of points) {
        deps.metrics?.readingsRejected.inc({ family: p.family, code: 'CP_INGEST_STORE_REJECTED' });
        deadLetters.add({ at, device: p.device, code: 'CP_INGEST_STORE_REJECTED', reason, payload: p.line });
      }
    },
  });
  const ctx: IngestContext = {
    parse: createReadingParser({ maxReadingsPerMessage: opts.maxReadingsPerMessage }),
    writer,
    deadLetters,
    bus: deps.bus,
    publishError: deps.publishError,
    metrics: deps.metrics,
    logger,
  };
  let stopped = false;

  return {
    deadLetters,
    influx,
    async start() {
      try {
        await prepareDatabase();
      } catch (err) {
        // Not fatal: readings are buffered and the database is created when InfluxDB answers again.
        logger.warn({ err: (err as Error).message }, 'InfluxDB not ready at start; buffering until it is');
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await writer.stop();
      deadLetters.close();
    },
    handleMessage(device, kind, payload, receivedAt = Date.now()) {
      if (stopped) return false;
      return dispatch(ctx, kind, device, payload, receivedAt);
    },
    flush: (timeoutMs) => writer.flush(timeoutMs),
    state: () => ({ writer: writer.state(), deadLetters: deadLetters.count(), databaseReady }),
  };
}
