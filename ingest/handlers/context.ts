import type { DeviceError } from '../contract.ts';
import type { DeadLetterStore } from '../dead-letters.ts';
import type { InfluxWriter } from '../influx-writer.ts';
import type { createReadingParser } from '../validate.ts';
import type { LiveBus } from '../../platform/bus.ts';
import type { Logger } from '../../platform/logger.ts';
import type { Metrics } from '../../platform/metrics.ts';

/** What every message handler of ingest works with. */
export interface IngestContext {
  parse: ReturnType<typeof createReadingParser>;
  writer: Pick<InfluxWriter, 'write'>;
  deadLetters: DeadLetterStore;
  bus: LiveBus;
  publishError: (deviceId: string, err: DeviceError) => void;
  metrics?: Metrics;
  logger: Logger;
}
