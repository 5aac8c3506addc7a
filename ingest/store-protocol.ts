/**
 * Messages between ingest (the platform's main thread) and the store worker (`store-worker.ts`), which owns the
 * durable log, the log shipper and the InfluxDB writer.
 */
import type { DurableLogOptions } from './durable-log.ts';
import type { InfluxTarget, PendingPoint, WriterOptions, WriterState } from './influx-writer.ts';
import type { ProcessorSpec } from './processor.ts';
import type { ShipperOptions } from './shipper.ts';

export interface StoreWorkerData {
  log: Omit<DurableLogOptions, 'logger'>;
  influx: InfluxTarget;
  writer: WriterOptions;
  shipper: ShipperOptions;
  /** A stored reading older than this (ms) is reported back as late, for the tiers' catch-up; 0 = never. */
  lateAfterMs: number;
  /** pino level name: the worker forwards only log records at or above it. */
  logLevel: string;
  /** Module to load (the boot file loads TypeScript through tsx). */
  entry: string;
  /** A processor of appended readings loaded in the worker (its port is transferred). */
  processor?: ProcessorSpec;
}

/** What the log and the writer look like from the main thread; sent with every batch of worker messages. */
export interface StoreState {
  writer: WriterState;
  log: { points: number; bytes: number; oldestMs: number; segments: number; full: boolean };
  waiting: { memory: number; disk: number };
}

export type ToWorker =
  /** Points appended in order: `text` holds their records (`family \t device \t line`), `lens` their lengths. */
  | { t: 'append'; text: string; lens: Uint32Array }
  /** Open the log; the worker answers `opened`. */
  | { t: 'open'; id: number }
  /** Ship what the log held at open (after the database is prepared, or failed to be). */
  | { t: 'replay'; from: number; to: number }
  /** Points dead-lettered by the main thread: the log no longer needs them. */
  | { t: 'confirm'; seqs: number[] }
  | { t: 'flush'; id: number; timeoutMs: number }
  | { t: 'dbReady'; id: number }
  /** Stop shipping and close the log (after a flush); the worker answers `closed`. */
  | { t: 'close'; id: number };

export type FromWorker =
  | { t: 'opened'; id: number; from: number; to: number; torn: number; osThreadId: number | undefined }
  /** The first `upTo` points appended since the worker started are durable (or, `failed`, could not be). */
  | { t: 'durable'; upTo: number }
  | { t: 'failed'; upTo: number; error: string }
  /** Stored readings older than lateAfterMs, as pairs of family and observation time. */
  | { t: 'late'; marks: (string | number)[] }
  /** Points InfluxDB refused for good: dead-letter them, then confirm them. */
  | { t: 'rejected'; points: PendingPoint[]; reason: string }
  | { t: 'flushed'; id: number; ok: boolean }
  | { t: 'dbMissing'; id: number }
  | { t: 'closed'; id: number }
  /** Writer metric updates, applied to the platform's prom-client metrics. */
  | { t: 'metric'; name: string; op: 'inc' | 'observe' | 'set'; args: unknown[] }
  /** A pino record of the worker (JSON line). */
  | { t: 'log'; line: string };

export interface WorkerPost {
  msgs: FromWorker[];
  state: StoreState;
}
