/**
 * The stream processor: telemetry from the broker's authorizePublish hook → validation → enrichment → a durable
 * log (acknowledged once durable) → batched InfluxDB writes, and the live bus; rejections → dead letters and the
 * device's errors topic. The log is the backend (backend.ts): in single-node mode the local durable log on the
 * store worker thread (local-backend.ts, store.ts), in cluster mode the replicated log on RabbitMQ quorum queues
 * (cluster-backend.ts), chosen by `cluster.amqpUrls`.
 */
import type { InfluxDB } from 'influx';
import { FIELD_KINDS, type DeviceError, type EnrichedReading } from '../core/contract.ts';
import type { ClusterState, ReadingBackend } from './backend.ts';
import { createClusterBackend, type ClusterLogOptions } from './cluster-backend.ts';
import { Downsampler, ensureTiers, type DownsampledMeasurements, type Tier } from './downsample.ts';
import { SqliteDeadLetterStore, type DeadLetterStore } from './dead-letters.ts';
import { dispatch, type HandlerResult, type IngestContext } from './handlers/index.ts';
import { createInfluxClient, ensureDatabase } from './influx-admin.ts';
import { RETENTION_MARGIN_MS, type InfluxTarget, type PendingPoint, type WriterOptions, type WriterState } from './influx-writer.ts';
import { createLocalBackend } from './local-backend.ts';
import type { ProcessorSpec } from './processor.ts';
import { ReadingRateLimiter, durationMs } from './rate-limit.ts';
import { ResendGuard, type Delivery } from './resend-guard.ts';
import { createReadingParser, type DeviceMeta } from './validate.ts';
import type { LiveBus } from '../core/bus.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';

export interface IngestOptions {
  influx: InfluxTarget & { retentionDuration: string };
  writer: WriterOptions;
  maxReadingsPerMessage: number;
  /** Accepted observation times: now − maxPastMs (0 = the retention duration) .. now + maxFutureMs. */
  maxPastMs: number;
  maxFutureMs: number;
  /** Per-device readings a second on average (0 = no limit), and the burst a backlog flush may use. */
  maxReadingsPerSecond: number;
  readingsBurst: number;
  /** SQLite file of the dead-letter store (':memory:' in tests). */
  deadLetterFile: string;
  /** SQLite file where the times of unacknowledged time-less QoS 1 messages wait for a resend (':memory:' in tests). */
  resendFile?: string;
  deadLetterLimit: number;
  /** The durable log (single-node mode). */
  log: { dir: string; maxBytes: number; segmentBytes: number; fsync: boolean };
  /** Cluster mode: the replicated log on RabbitMQ quorum queues instead of the local durable log (amqpUrls empty: single node). */
  cluster?: ClusterLogOptions;
  /** On stop, how long to keep shipping the log to InfluxDB; what remains is shipped at the next start, ms. */
  stopFlushTimeoutMs: number;
  /** Retention tiers filled by continuous queries, and the catch-up of late readings (ingest/downsample.ts). */
  downsample?: {
    tiers: Tier[];
    /** A stored reading whose observation time is older than this is recomputed into the tiers by the catch-up, ms. */
    lateAfterMs: number;
    catchUpIntervalMs: number;
    /** Measurements besides the device families (e.g. derived indices), with their field kinds. */
    extra?: DownsampledMeasurements;
  };
}

export interface IngestDeps {
  bus: LiveBus;
  /** Publishes a DeviceError on `devices/{id}/errors` (wired to the broker by the platform). */
  publishError: (deviceId: string, err: DeviceError) => void;
  metrics?: Metrics;
  logger?: Logger;
  /** Where dead letters go instead of `deadLetterFile` (cluster mode: the shared PostgreSQL); ingest closes it at stop. */
  deadLetters?: DeadLetterStore;
  /**
   * After readings were handed to the live bus: what its listeners must have committed first (the alarms they
   * raise), or undefined when nothing waits. Cluster mode acknowledges a replicated log message only after it.
   */
  settled?: () => Promise<void> | undefined;
  /**
   * Single-node mode: a processor on the store worker thread, given every accepted reading there (processor.ts;
   * the platform runs analytics this way). Cluster mode has no store worker and ignores it.
   */
  processor?: () => ProcessorSpec;
}

export interface IngestState {
  writer: WriterState;
  deadLetters: number;
  databaseReady: boolean;
  log: { points: number; bytes: number; oldestSeconds: number; segments: number; full: boolean; waitingOnDisk: number };
  /** Cluster mode only: the replicated log's edge and this node's partition consumers. */
  cluster?: ClusterState;
}

export interface Ingest {
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Handles one message of an authenticated device. `false`: a topic kind ingest does not take; a promise:
   * acknowledge the message only once it resolves (durable, or room in the disk budget).
   */
  handleMessage(
    device: DeviceMeta,
    kind: string,
    payload: Buffer,
    qos?: number,
    receivedAt?: number,
    delivery?: Delivery,
    closed?: AbortSignal,
  ): HandlerResult | false;
  /** The broker handed the PUBACK of a device's QoS 1 message to its connection. */
  acknowledged(deviceId: string, delivery: Delivery): void;
  /** A device's connection ended (`clean`: with a DISCONNECT packet). */
  connectionClosed(deviceId: string, connection: number, clean: boolean): void;
  /** True while the log has no room (disk budget, or unconfirmed readings in cluster mode): messages wait. */
  full(): boolean;
  /** Resolves true once everything accepted so far is confirmed by InfluxDB (or refused), false on timeout. */
  flush(timeoutMs?: number): Promise<boolean>;
  state(): IngestState;
  readonly deadLetters: DeadLetterStore;
  readonly influx: InfluxDB;
  /** The tiers' catch-up and backfill; undefined when downsampling is off. */
  readonly downsampler: Downsampler | undefined;
  /** The store worker's thread id in the operating system (Linux, after start), for per-thread CPU figures. */
  storeThreadId(): number | undefined;
  /**
   * Cluster mode: hands the given partitions, where this node's consumer is the active one, over to the next
   * node consuming them (spreads processing after a node joined). Nothing on one node.
   */
  handOverPartitions(partitions: readonly number[]): Promise<void>;
}

export function createIngest(opts: IngestOptions, deps: IngestDeps): Ingest {
  const logger = deps.logger ?? silentLogger;
  const metrics = deps.metrics;
  const influx = createInfluxClient(opts.influx);
  const deadLetters = deps.deadLetters ?? new SqliteDeadLetterStore(opts.deadLetterFile, opts.deadLetterLimit);
  // A resend comes after the device notices the lost connection (up to 1.5 keep-alives) and reconnects; a message
  // never acknowledged is recognised for a week.
  const resends = new ResendGuard({ file: opts.resendFile ?? ':memory:', uncertainMs: 10 * 60_000, maxAgeMs: 7 * 86_400_000 });
  let databaseReady = false;
  const ds = opts.downsample;
  const measurements: DownsampledMeasurements = { ...FIELD_KINDS, ...ds?.extra };
  const downsampler =
    ds && ds.tiers.length > 0
      ? new Downsampler(influx, opts.influx.database, opts.influx.retentionPolicy, ds.tiers, measurements)
      : undefined;
  const prepareDatabase = async () => {
    await ensureDatabase(influx, opts.influx, opts.influx.retentionDuration);
    if (ds && ds.tiers.length > 0) await ensureTiers(influx, opts.influx.database, opts.influx.retentionPolicy, ds.tiers, measurements);
    databaseReady = true;
  };
  const retentionMs = durationMs(opts.influx.retentionDuration);
  const hooks = {
    prepareDatabase,
    late: (family: string, t: number) => downsampler?.mark(family, t),
    // The times a resend must reproduce are saved before the readings they stamp can become durable.
    beforeSend: () => resends.commit(),
    deadLetter(points: PendingPoint[], reason: string) {
      const at = new Date().toISOString();
      for (const p of points) {
        metrics?.readingsRejected.inc({ family: p.family, code: 'CP_INGEST_STORE_REJECTED' });
        deadLetters.add({ at, device: p.device, code: 'CP_INGEST_STORE_REJECTED', reason, payload: p.line });
      }
    },
    unreadable(payload: string, reason: string) {
      logger.error({ reason }, 'unreadable message in the replicated log: dead-lettered');
      deadLetters.add({ device: '', code: 'CP_INGEST_LOG_UNREADABLE', reason, payload });
    },
    // The one way readings reach the live bus; each backend calls it once per reading (backend.ts says when).
    live(readings: EnrichedReading[]): Promise<void> | undefined {
      for (const r of readings) deps.bus.emit('reading', r);
      return deps.settled?.();
    },
  };
  const backendOpts = {
    influx: opts.influx,
    // The writer checks the retention edge again when it sends: an outage or a backlog can carry an accepted
    // reading past it, and InfluxDB would drop it without naming it.
    writer: { ...opts.writer, retentionMs: Number.isFinite(retentionMs) ? retentionMs : 0 },
    // Late readings (older than the continuous queries look back) are marked for the tiers' catch-up.
    lateAfterMs: downsampler && ds ? ds.lateAfterMs : 0,
  };
  const backend: ReadingBackend =
    opts.cluster && opts.cluster.amqpUrls.length > 0
      ? createClusterBackend({ ...backendOpts, cluster: opts.cluster }, hooks, { metrics, logger })
      : createLocalBackend({ ...backendOpts, log: opts.log }, hooks, {
          metrics,
          logger,
          ...(deps.processor ? { processor: deps.processor } : {}),
        });

  const ctx: IngestContext = {
    parse: createReadingParser({
      maxReadingsPerMessage: opts.maxReadingsPerMessage,
      maxFutureMs: opts.maxFutureMs,
      // Older than the retention policy, InfluxDB would drop an acknowledged reading: refuse it up front, with
      // twice the writer's margin so that a reading accepted now is not past the writer's edge a moment later.
      maxPastMs: Math.min(opts.maxPastMs > 0 ? opts.maxPastMs : Number.POSITIVE_INFINITY, retentionMs - 2 * RETENTION_MARGIN_MS),
    }),
    rateLimit: new ReadingRateLimiter(opts.maxReadingsPerSecond, opts.readingsBurst),
    resends,
    sink: backend.sink,
    deadLetters,
    bus: deps.bus,
    publishError: deps.publishError,
    metrics,
    logger,
  };
  let started = false;
  let stopped = false;
  let gaugeTimer: NodeJS.Timeout | undefined;
  let catchUpTimer: NodeJS.Timeout | undefined;

  const state = (): IngestState => {
    const { log: u, writer, cluster } = backend.state();
    return {
      writer,
      deadLetters: deadLetters.count(),
      databaseReady,
      log: {
        points: u.points,
        bytes: u.bytes,
        oldestSeconds: Math.round(u.oldestMs / 1000),
        segments: u.segments,
        full: u.full,
        waitingOnDisk: u.waitingOnDisk,
      },
      ...(cluster ? { cluster } : {}),
    };
  };

  const flush = (timeoutMs = 30000): Promise<boolean> => backend.flush(timeoutMs);

  return {
    deadLetters,
    influx,
    downsampler,
    async start() {
      await backend.start();
      started = true;
      if (downsampler && ds) {
        catchUpTimer = setInterval(() => {
          if (downsampler.pending() === 0 || !databaseReady) return;
          downsampler.catchUp().catch((err: Error) => logger.warn({ err: err.message }, 'downsampling catch-up failed; retried'));
        }, ds.catchUpIntervalMs);
        catchUpTimer.unref();
      }
      if (metrics) {
        gaugeTimer = setInterval(() => {
          const u = backend.state().log;
          metrics.logBacklogPoints.set(u.points);
          metrics.logBytes.set(u.bytes);
          metrics.logOldestSeconds.set(u.oldestMs / 1000);
          metrics.logFull.set(u.full ? 1 : 0);
        }, 1000);
        gaugeTimer.unref();
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(gaugeTimer);
      clearInterval(catchUpTimer);
      if (started) {
        const drained = await backend.drain(opts.stopFlushTimeoutMs);
        if (!drained) logger.warn(backend.state().log, backend.leftBehind);
      }
      // A catch-up the timer started may still run: wait for it, so no SELECT … INTO of this platform outlives
      // its stop. Then late readings marked but not yet recomputed into the tiers get one last catch-up (the marks
      // live in memory). Both within the stop's flush time.
      if (downsampler) {
        const final = (async () => {
          await downsampler.settled();
          if (downsampler.pending()) await downsampler.catchUp();
        })().then(
          () => true,
          (err: Error) => {
            logger.warn({ err: err.message }, 'final catch-up failed');
            return true;
          },
        );
        let timer: NodeJS.Timeout | undefined;
        const done = await Promise.race([final, new Promise<false>((r) => (timer = setTimeout(() => r(false), opts.stopFlushTimeoutMs)))]);
        clearTimeout(timer);
        if (!done)
          logger.warn(
            { pendingHours: downsampler.pending() },
            'stopping while a downsampling catch-up still runs in InfluxDB; hours not yet recomputed are not resumed at the next start',
          );
      }
      await backend.close();
      await deadLetters.close();
      resends.close();
    },
    handleMessage(device, kind, payload, qos = 0, receivedAt = Date.now(), delivery = undefined, closed = undefined) {
      if (stopped) return false;
      return dispatch(ctx, kind, device, payload, receivedAt, qos, delivery, closed);
    },
    acknowledged(deviceId, delivery) {
      if (!stopped) resends.acknowledged(deviceId, delivery);
    },
    connectionClosed(deviceId, connection, clean) {
      if (!stopped) resends.connectionClosed(deviceId, connection, clean);
    },
    full: () => backend.full(),
    flush,
    state,
    storeThreadId: () => backend.osThreadId(),
    handOverPartitions: async (partitions) => {
      await backend.handOver?.(partitions);
    },
  };
}
