/**
 * Batching InfluxDB writer over the v1 HTTP API (`POST /write?db=&rp=&precision=ms`), which InfluxDB 1.x
 * serves natively and 2.x/3.x through their v1 compatibility layer.
 *
 * - Batches are bounded by size (`batchSize` points) and age (`batchMaxAgeMs`), at most `writeConcurrency`
 *   requests in flight (more overloads InfluxDB 1.6: HTTP 500 "error syncing wal").
 * - Unavailable (network error, timeout, 5xx, 404 database not found): the batch goes back to the front of
 *   the queue and is retried with exponential back-off; readings keep being accepted into the buffer.
 * - Rejected (400): a partial write keeps the good points. The points InfluxDB's message names (a field type
 *   conflict, an unparsable line) are dead-lettered with its reason; when it dropped more than it named (points
 *   beyond the retention policy, `max-values-per-tag`), the rest of the batch is bisected and sent again until
 *   every dropped point stands alone and is dead-lettered: resending a stored point overwrites it (same series
 *   and time), so nothing is counted stored that InfluxDB did not keep. Any other 400 is bisected the same way,
 *   so one bad point never blocks the rest and is never retried forever.
 * - The retention window is checked again when a batch is sent, not only when a reading arrives: a point that
 *   an outage or a long backlog took past the edge (`retentionMs`, less a margin for the request) is
 *   dead-lettered with its reason instead of being silently dropped by InfluxDB.
 * - The buffer is bounded (`maxBufferedPoints`): past it the oldest batch is dropped, counted in metrics and
 *   logged as an error (behind the durable log the store worker sets no bound: the log is the buffer).
 *
 * The HTTP request and its outcome are in influx-http.ts, the reading of a partial write's message in
 * partial-write.ts.
 */
import type { EnrichedReading, Family } from '../core/contract.ts';
import { type InfluxTarget, InfluxWriteEndpoint } from './influx-http.ts';
import { toLine } from './line-protocol.ts';
import { readPartialWrite } from './partial-write.ts';
import type { Metrics } from '../core/metrics.ts';
import type { Logger } from '../core/logger.ts';
import { silentLogger } from '../core/logger.ts';

export type { InfluxTarget } from './influx-http.ts';

export interface WriterOptions {
  batchSize: number;
  batchMaxAgeMs: number;
  writeConcurrency: number;
  maxBufferedPoints: number;
  retryMaxDelayMs: number;
  /** Request timeout, ms (a timed-out batch is retried; a replay overwrites itself). */
  requestTimeoutMs?: number;
  /**
   * The retention policy's duration, ms (0 or absent: infinite). A point older than now − retentionMs +
   * RETENTION_MARGIN_MS when its batch is sent is dead-lettered, not sent: InfluxDB would drop it.
   */
  retentionMs?: number;
}

/**
 * How close to the retention edge a point may be when its batch is sent, ms: the request, InfluxDB's own clock
 * and a retry must not carry it over the edge after the check.
 */
export const RETENTION_MARGIN_MS = 60_000;

/** A point waiting to be written. */
export interface PendingPoint {
  line: string;
  family: Family;
  device: string;
  /** Sequence number in the durable log, confirmed there once the point is stored or refused. */
  seq?: number;
}

export interface WriterDeps {
  metrics?: Metrics;
  logger?: Logger;
  /** Points InfluxDB refused for good, with its reason (dead-letter them). */
  onRejected?: (points: PendingPoint[], reason: string) => void;
  /** Points InfluxDB confirmed stored. */
  onStored?: (points: PendingPoint[]) => void;
  /** After every write request (success or not): the buffer may have room again. */
  onProgress?: () => void;
  /** Called when InfluxDB answers "database not found" (a fresh or wiped server): create it again. */
  onDatabaseMissing?: () => Promise<void>;
}

export interface WriterState {
  buffered: number;
  inFlight: number;
  /** False from the first failed request until the next successful one. */
  healthy: boolean;
  lastError?: string;
  lastSuccessAt?: string;
  stored: number;
  dropped: number;
  rejected: number;
}

export class InfluxWriter {
  private open: PendingPoint[] = [];
  private readonly ready: PendingPoint[][] = [];
  private readyPoints = 0;
  private inFlight = 0;
  private ageTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAt = 0;
  private retryDelay = 0;
  private readonly endpoint: InfluxWriteEndpoint;
  private readonly log: Logger;
  private readonly st: WriterState = { buffered: 0, inFlight: 0, healthy: true, stored: 0, dropped: 0, rejected: 0 };
  private idleWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(
    target: InfluxTarget,
    private readonly opts: WriterOptions,
    private readonly deps: WriterDeps = {},
  ) {
    this.endpoint = new InfluxWriteEndpoint(target, opts);
    this.log = deps.logger ?? silentLogger;
  }

  /** Queues one reading. Never blocks and never throws; see the class comment for what happens next. */
  write(r: EnrichedReading): void {
    this.writePoints([{ line: toLine(r), family: r.family, device: r.device }]);
  }

  /** Queues points already in line protocol (from the durable log). */
  writePoints(points: PendingPoint[]): void {
    for (const p of points) {
      this.open.push(p);
      if (this.open.length >= this.opts.batchSize) this.seal();
    }
    if (this.open.length && !this.ageTimer) this.ageTimer = setTimeout(() => this.seal(), this.opts.batchMaxAgeMs);
  }

  state(): WriterState {
    return { ...this.st, buffered: this.readyPoints + this.open.length, inFlight: this.inFlight };
  }

  /** Resolves true once everything queued so far is written (or refused), false after `timeoutMs`. */
  async flush(timeoutMs = 30000): Promise<boolean> {
    this.seal();
    if (this.isIdle()) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(done);
    });
  }

  /** Flushes for at most `timeoutMs`, then stops; what could not be written is logged with its count. */
  async stop(timeoutMs = 10000): Promise<void> {
    if (this.stopped) return;
    const flushed = await this.flush(timeoutMs);
    this.stopped = true;
    clearTimeout(this.ageTimer);
    clearTimeout(this.retryTimer);
    if (!flushed) {
      const lost = this.readyPoints + this.open.length;
      this.log.warn({ unwritten: lost }, 'InfluxDB writer stopped with points not confirmed by InfluxDB');
    }
    this.endpoint.destroy();
  }

  private isIdle(): boolean {
    return this.readyPoints === 0 && this.open.length === 0 && this.inFlight === 0;
  }

  private seal(): void {
    clearTimeout(this.ageTimer);
    this.ageTimer = undefined;
    if (this.open.length) {
      this.ready.push(this.open);
      this.readyPoints += this.open.length;
      this.open = [];
      this.enforceBound();
    }
    this.pump();
  }

  private enforceBound(): void {
    while (this.readyPoints > this.opts.maxBufferedPoints && this.ready.length > 1) {
      const dropped = this.ready.shift() as PendingPoint[];
      this.readyPoints -= dropped.length;
      this.st.dropped += dropped.length;
      this.deps.metrics?.readingsDropped.inc(dropped.length);
      this.log.error(
        {
          code: 'CP_INGEST_BUFFER_OVERFLOW',
          dropped: dropped.length,
          buffered: this.readyPoints,
          maxBufferedPoints: this.opts.maxBufferedPoints,
        },
        'write buffer full while InfluxDB is unavailable: oldest readings dropped',
      );
    }
    this.deps.metrics?.bufferedPoints.set(this.readyPoints);
  }

  private pump(): void {
    if (this.stopped) return;
    while (this.inFlight < this.opts.writeConcurrency && this.ready.length && Date.now() >= this.retryAt) {
      const batch = this.ready.shift() as PendingPoint[];
      this.readyPoints -= batch.length;
      this.inFlight++;
      void this.send(batch);
    }
    if (this.isIdle()) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async send(batch: PendingPoint[]): Promise<void> {
    batch = this.withinRetention(batch);
    if (!batch.length) {
      this.inFlight--;
      this.pump();
      this.deps.onProgress?.();
      return;
    }
    const started = process.hrtime.bigint();
    const outcome = await this.endpoint.post(batch.map((p) => p.line).join('\n'));
    this.inFlight--;
    const m = this.deps.metrics;
    m?.writeLatency.observe(Number(process.hrtime.bigint() - started) / 1e9);
    if (outcome.kind === 'ok') {
      this.succeeded(batch);
    } else if (outcome.kind === 'unavailable') {
      m?.influxErrors.inc({ kind: 'unavailable' });
      this.ready.unshift(batch);
      this.readyPoints += batch.length;
      this.failed(outcome.reason);
      if (outcome.missingDb && this.deps.onDatabaseMissing) {
        await this.deps.onDatabaseMissing().catch((err: Error) => this.log.warn({ err: err.message }, 'cannot create database'));
      }
    } else {
      m?.influxErrors.inc({ kind: 'rejected' });
      this.rejected(batch, outcome.reason);
    }
    this.deps.metrics?.bufferedPoints.set(this.readyPoints);
    this.pump();
    this.deps.onProgress?.();
  }

  /**
   * The points of `batch` InfluxDB would still keep; the others are dead-lettered with the reason. The time is
   * the line's last token, in ms (line-protocol.ts writes it so).
   */
  private withinRetention(batch: PendingPoint[]): PendingPoint[] {
    const ms = this.opts.retentionMs ?? 0;
    if (ms <= 0) return batch;
    const edge = Date.now() - ms + RETENTION_MARGIN_MS;
    const beyond: PendingPoint[] = [];
    for (const p of batch) {
      if (Number(p.line.slice(p.line.lastIndexOf(' ') + 1)) < edge) beyond.push(p);
    }
    if (!beyond.length) return batch;
    this.giveUp(
      beyond,
      `observation time is past the retention policy's edge when written (older than ${Math.round(ms / 3_600_000)} h less ${RETENTION_MARGIN_MS / 1000} s): InfluxDB would drop it`,
    );
    const out = new Set(beyond);
    return batch.filter((p) => !out.has(p));
  }

  private succeeded(batch: PendingPoint[]): void {
    if (!batch.length) return;
    this.st.stored += batch.length;
    this.st.lastSuccessAt = new Date().toISOString();
    if (!this.st.healthy) this.log.info({ buffered: this.readyPoints }, 'InfluxDB writes succeed again');
    this.st.healthy = true;
    this.st.lastError = undefined;
    this.retryDelay = 0;
    this.retryAt = 0;
    this.deps.onStored?.(batch);
    const m = this.deps.metrics;
    if (m) {
      m.writeBatchSize.observe(batch.length);
      const perFamily = new Map<Family, number>();
      for (const p of batch) perFamily.set(p.family, (perFamily.get(p.family) ?? 0) + 1);
      for (const [family, n] of perFamily) m.readingsStored.inc({ family }, n);
    }
  }

  private failed(reason: string): void {
    if (this.st.healthy) this.log.error({ reason, buffered: this.readyPoints }, 'InfluxDB unavailable: buffering and retrying');
    this.st.healthy = false;
    this.st.lastError = reason;
    this.retryDelay = Math.min(this.retryDelay ? this.retryDelay * 2 : 100, this.opts.retryMaxDelayMs);
    this.retryAt = Date.now() + this.retryDelay;
    clearTimeout(this.retryTimer);
    // The timer is the authority on when to retry: it may fire a millisecond before Date.now() reaches
    // retryAt, and a pump that then sent nothing would leave the writer waiting forever.
    this.retryTimer = setTimeout(() => {
      this.retryAt = 0;
      this.pump();
    }, this.retryDelay);
  }

  private rejected(batch: PendingPoint[], reason: string): void {
    if (/partial write/.test(reason)) {
      // InfluxDB stored the good points of the batch; find the ones its message names.
      const { bad, dropped } = readPartialWrite(batch, reason);
      const badSet = new Set(bad);
      const rest = bad.length ? batch.filter((p) => !badSet.has(p)) : batch;
      if (bad.length === 0 && batch.length === 1) {
        // The one point of the batch was dropped, whatever the message says about it.
        this.giveUp(batch, reason);
        return;
      }
      this.giveUp(bad, reason);
      if (dropped <= bad.length) {
        this.succeeded(rest);
      } else if (rest.length) {
        // InfluxDB dropped points it did not name: none of the rest is known to be stored. Sent again in halves,
        // each half that comes back partial is split again, until every dropped point stands alone.
        this.log.debug(
          { reason, dropped, named: bad.length, points: rest.length },
          'partial write names fewer points than it dropped: bisecting',
        );
        this.requeueHalves(rest);
      }
    } else if (batch.length === 1) {
      this.giveUp(batch, reason);
    } else {
      // Nothing of the batch was stored: split it until the bad points stand alone.
      this.requeueHalves(batch);
    }
  }

  private requeueHalves(batch: PendingPoint[]): void {
    if (batch.length === 1) {
      this.ready.unshift(batch);
    } else {
      const mid = batch.length >> 1;
      this.ready.unshift(batch.slice(0, mid), batch.slice(mid));
    }
    this.readyPoints += batch.length;
  }

  private giveUp(points: PendingPoint[], reason: string): void {
    if (!points.length) return;
    this.st.rejected += points.length;
    this.log.warn({ reason, points: points.length }, 'InfluxDB refused points: dead-lettered');
    this.deps.onRejected?.(points, reason);
  }
}
