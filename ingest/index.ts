/** Public face of ingest: the device contract (it validates it) and the stream processor. */
export * from '../core/contract.ts';
export { createIngest } from './ingest.ts';
export type { Ingest, IngestDeps, IngestOptions, IngestState } from './ingest.ts';
export { createInfluxClient, ensureDatabase } from './influx-admin.ts';
export { InfluxWriter } from './influx-writer.ts';
export type { InfluxTarget, PendingPoint, WriterOptions, WriterState } from './influx-writer.ts';
export type { DeadLetter, DeadLetterStore } from './dead-letters.ts';
export type { DeviceMeta } from './validate.ts';
export type { Delivery } from './resend-guard.ts';
export { fromLine, toLine } from './line-protocol.ts';
export type { ProcessorContext, ProcessorFactory, ProcessorSpec, ReadingProcessor } from './processor.ts';
export { LAST_VALUE_FIELDS, Downsampler, ensureTiers, tierSelect } from './downsample.ts';
export type { DownsampledMeasurements, Tier } from './downsample.ts';
