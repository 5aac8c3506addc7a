/**
 * A processor: work on accepted readings that needs nothing of MQTT and runs on the store worker thread, off the
 * platform's main thread (analytics, in single-node mode). Ingest does not know what it computes: the platform
 * names a module, the store worker loads it and hands it every reading it appends, once, in append order, from
 * the lines it already holds for the durable log (no second copy of the readings crosses from the main thread).
 * The processor talks to its main-thread side over a MessagePort of its own, and is started again with a new
 * port whenever the store worker is restarted.
 */
import type { MessagePort } from 'node:worker_threads';
import type { EnrichedReading } from '../core/contract.ts';
import type { Logger } from '../core/logger.ts';

/** What the main thread gives ingest for each (re)start of the store worker. */
export interface ProcessorSpec {
  /** URL of the module to load in the store worker; it exports `createProcessor: ProcessorFactory`. */
  module: string;
  /** Structured-clonable data for it. */
  data: unknown;
  /** Its end of a channel to the main thread (transferred to the worker). */
  port: MessagePort;
}

export interface ProcessorContext {
  data: unknown;
  port: MessagePort;
  /** The store worker's logger (records reach the main thread's log with `"thread":"store"`). */
  logger: Logger;
  /**
   * Makes what InfluxDB holds stand still, so that state can be rebuilt from it without missing or counting a
   * reading twice: ships what the log held when the worker started (at most `timeoutMs`), then holds shipping and
   * waits until no write is in flight. Readings keep being appended (and acknowledged) meanwhile.
   */
  quiesce(timeoutMs: number): Promise<void>;
  /** While quiesced: true if the reading of `seq` was handed to InfluxDB (so a query sees it). */
  shipped(seq: number): boolean;
  /** Ships again after quiesce. */
  resume(): void;
}

export interface ReadingProcessor {
  /** Readings the log took, in order; `firstSeq` is the log's sequence number of the first (they are consecutive). */
  readings(readings: EnrichedReading[], firstSeq: number): void;
  /** The store worker closes: finish (e.g. write derived points). */
  close(): Promise<void>;
}

export type ProcessorFactory = (ctx: ProcessorContext) => ReadingProcessor | Promise<ReadingProcessor>;
