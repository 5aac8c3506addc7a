/**
 * Options of the telemetry path: where readings are stored (`influx.*`: the InfluxDB target, raw retention,
 * the downsampled tiers, the local InfluxDB's port), how they get there (`ingest.*`: batches, limits per
 * device and message, dead letters; `ingest.cluster.*`: cluster mode's replicated log on RabbitMQ) and the
 * durable log that holds them until InfluxDB confirms in single-node mode (`durability.*`).
 */
import { port, section } from '../core/options.ts';

export const INFLUX_OPTIONS = section({
  url: {
    type: 'string',
    default: '',
    description: 'InfluxDB v1 HTTP API base URL (1.x, or 2.x/3.x v1 compatibility); empty = run a local InfluxDB',
  },
  database: { type: 'string', pattern: '^[A-Za-z0-9_]+$', default: 'citypulse', description: 'Database name' },
  retentionPolicy: { type: 'string', pattern: '^[A-Za-z0-9_]+$', default: 'raw', description: 'Retention policy for raw readings' },
  retentionDuration: {
    type: 'string',
    pattern: '^(INF|[0-9]+[hdw])$',
    default: '90d',
    description: 'How long raw readings are kept (InfluxDB duration: 90d, 52w, INF)',
  },
  username: { type: 'string', default: '', description: 'InfluxDB user (empty = no credentials sent)' },
  password: { type: 'string', default: '', description: 'InfluxDB password (sent as HTTP Basic; never logged)' },
  localPort: port('Port of the local InfluxDB started when url is empty (0 = any free port)', 8086),
  downsample: section({
    enabled: {
      type: 'boolean',
      default: true,
      description: 'Keep 1-minute and 1-hour means in their own retention policies (`minute`, `hour`), filled by continuous queries',
    },
    minuteRetention: {
      type: 'string',
      pattern: '^(INF|[0-9]+[hdw])$',
      default: '52w',
      description: 'How long 1-minute means are kept (retention policy `minute`)',
    },
    hourRetention: {
      type: 'string',
      pattern: '^(INF|[0-9]+[hdw])$',
      default: '260w',
      description: 'How long 1-hour means are kept (retention policy `hour`)',
    },
    lateAfterMs: {
      type: 'integer',
      minimum: 60000,
      maximum: 240000,
      default: 180000,
      description:
        'A reading stored this long after its observation time is missed by the continuous queries; its hour is recomputed into the tiers, ms',
    },
    catchUpIntervalMs: {
      type: 'integer',
      minimum: 100,
      default: 10000,
      description: 'How often late readings are recomputed into the tiers, ms',
    },
  }),
});

export const INGEST_OPTIONS = section({
  batchSize: {
    type: 'integer',
    minimum: 1,
    // InfluxDB 1.x sizing guidance: 5,000-10,000 points a request; larger batches hit its body limits.
    maximum: 10000,
    default: 5000,
    description: 'Points per InfluxDB write request at most',
  },
  batchMaxAgeMs: {
    type: 'integer',
    minimum: 1,
    maximum: 10000,
    default: 200,
    description: 'A reading waits at most this long before its batch is written, ms',
  },
  writeConcurrency: {
    type: 'integer',
    minimum: 1,
    // More requests in flight overload InfluxDB 1.6 (HTTP 500 "error syncing wal"); 2 was measured best.
    maximum: 4,
    default: 2,
    description: 'InfluxDB write requests in flight at most',
  },
  maxBufferedPoints: {
    type: 'integer',
    minimum: 1000,
    default: 500000,
    description: 'Readings held in memory on their way to InfluxDB; beyond it they wait in the durable log on disk and are read back later',
  },
  retryMaxDelayMs: {
    type: 'integer',
    minimum: 100,
    default: 1000,
    description: 'Longest back-off between retries of a failed write, ms',
  },
  maxReadingsPerMessage: {
    type: 'integer',
    minimum: 1,
    maximum: 10000,
    default: 1000,
    description: 'Readings one telemetry message may carry; a longer array is rejected whole',
  },
  maxReadingsPerSecond: {
    type: 'number',
    minimum: 0,
    default: 20,
    description: 'Readings a device may send a second on average (token bucket; 0 = no limit); the excess is rejected with a reason',
  },
  readingsBurst: {
    type: 'integer',
    minimum: 1,
    default: 10000,
    description: 'Burst of the per-device rate limit: a device flushing its backlog after an outage may send this many at once',
  },
  maxFutureMs: {
    type: 'integer',
    minimum: 0,
    default: 86400000,
    description: 'Observation times further ahead than this are rejected (drifting device clocks), ms',
  },
  maxPastMs: {
    type: 'integer',
    minimum: 0,
    default: 0,
    description: 'Observation times older than this are rejected, ms; 0 = the raw retention duration (older would be dropped by InfluxDB)',
  },
  stopFlushTimeoutMs: {
    type: 'integer',
    minimum: 0,
    default: 10000,
    description: 'On stop, how long to keep writing the durable log to InfluxDB; the rest is written at the next start, ms',
  },
  deadLetterLimit: {
    type: 'integer',
    minimum: 100,
    default: 10000,
    description: 'Dead-letter records kept (oldest removed beyond it)',
  },
  cluster: section({
    amqpUrls: {
      type: 'array',
      items: { type: 'string', pattern: '^amqps?://' },
      default: [],
      description:
        'Cluster mode: AMQP URLs of the RabbitMQ nodes holding the replicated log (quorum queues), comma-separated in the environment; a PUBACK then means a quorum of them stored the reading. Empty = single node (the local durable log, durability.*)',
    },
    partitions: {
      type: 'integer',
      minimum: 1,
      // Each partition is a quorum queue (a Raft group on every node) and a consumer channel on every platform node.
      maximum: 256,
      default: 8,
      description:
        "Partition queues of the replicated log (a device's readings always go to hash(device id) % partitions); the same on every platform node. Changing it moves devices to other partitions: drain the queues first",
    },
    queuePrefix: {
      type: 'string',
      pattern: '^[A-Za-z0-9_.-]{1,200}$',
      default: 'citypulse.readings',
      description:
        'Partition queues are named <queuePrefix>.<n>; platforms sharing a RabbitMQ cluster for different cities need different prefixes',
    },
    batchMs: {
      type: 'integer',
      minimum: 0,
      maximum: 1000,
      default: 5,
      description: 'Readings for one partition are gathered this long into one replicated write, ms (0 = every turn of the event loop)',
    },
    confirmTimeoutMs: {
      type: 'integer',
      minimum: 1000,
      default: 15000,
      description:
        "A batch not confirmed by a quorum this long after its first reading is refused: its devices' connections are closed unacknowledged and they send again, ms. Covers a node failure (the batch is published again to another node) without refusing",
    },
    prefetch: {
      type: 'integer',
      minimum: 1,
      maximum: 1000,
      default: 32,
      description:
        'Unacknowledged messages (batches) one platform node holds per partition while it writes them to InfluxDB; the rest waits in the queues',
    },
    maxUnconfirmedReadings: {
      type: 'integer',
      minimum: 1000,
      default: 100000,
      description:
        'Readings one platform node holds waiting for the replicated log to confirm; beyond it devices are slowed down (acknowledgements withheld, sockets paused)',
    },
  }),
});

export const DURABILITY_OPTIONS = section({
  dir: { type: 'string', default: '', description: 'Folder of the durable log; empty = dataDir/wal' },
  maxBytes: {
    type: 'integer',
    minimum: 65536,
    default: 1073741824,
    description: 'Disk budget of the durable log, bytes; when it is used up devices are slowed down, nothing is dropped',
  },
  segmentBytes: {
    type: 'integer',
    minimum: 4096,
    default: 16777216,
    description: 'Size of one log segment file, bytes (a segment is deleted once InfluxDB confirmed all of it)',
  },
  fsync: {
    type: 'boolean',
    default: true,
    description: 'fdatasync each group of appends before acknowledging (off: faster, a power cut can lose the last acknowledged readings)',
  },
});
