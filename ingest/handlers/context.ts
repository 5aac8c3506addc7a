import type { DeviceError, EnrichedReading } from '../../core/contract.ts';
import type { DeadLetterStore } from '../dead-letters.ts';
import type { ReadingRateLimiter } from '../rate-limit.ts';
import type { ResendGuard } from '../resend-guard.ts';
import type { createReadingParser } from '../validate.ts';
import type { LiveBus } from '../../core/bus.ts';
import type { Logger } from '../../core/logger.ts';
import type { Metrics } from '../../core/metrics.ts';

/** Where accepted readings go: the log (the local durable log, or the replicated log in cluster mode). */
export interface ReadingSink {
  /** Appends, and hands the readings to the live bus at the moment the mode says; resolves once they are durable. */
  append(readings: EnrichedReading[]): Promise<void>;
  /**
   * While the log has no room: resolves once there is room again, or rejects with ConnectionClosedError
   * when `closed` aborts first. Undefined when there is room.
   */
  whenSpace(closed?: AbortSignal): Promise<void> | undefined;
}

/** What every message handler of ingest works with. */
export interface IngestContext {
  parse: ReturnType<typeof createReadingParser>;
  rateLimit: ReadingRateLimiter;
  /** Keeps the times of a QoS 1 message's time-less readings for its resend. */
  resends: Pick<ResendGuard, 'stamp'>;
  sink: ReadingSink;
  deadLetters: DeadLetterStore;
  bus: LiveBus;
  publishError: (deviceId: string, err: DeviceError) => void;
  metrics?: Metrics;
  logger: Logger;
}

/** A handler's answer: resolve before acknowledging the message (undefined = acknowledge now). */
export type HandlerResult = Promise<void> | undefined;
