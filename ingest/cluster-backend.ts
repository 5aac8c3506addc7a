/**
 * Cluster mode's backend: the replicated log on RabbitMQ quorum queues instead of the local durable log.
 * This node is both an edge (replicated-log.ts: a message's readings are published to their device's partition
 * and acknowledged on the quorum's confirm) and a processing node (partition-consumer.ts: it consumes every
 * partition, and where its consumer is the active one it writes the readings to InfluxDB, acknowledges them to
 * the queue and hands them to the live bus). Single-node mode (local-backend.ts) stays the default.
 */
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { BackendHooks, ReadingBackend } from './backend.ts';
import type { InfluxTarget, WriterOptions } from './influx-writer.ts';
import { PartitionConsumer } from './partition-consumer.ts';
import { ReplicatedLogPublisher } from './replicated-log.ts';

export interface ClusterLogOptions {
  /** AMQP URLs of the RabbitMQ nodes. */
  amqpUrls: readonly string[];
  partitions: number;
  queuePrefix: string;
  batchMs: number;
  confirmTimeoutMs: number;
  prefetch: number;
  maxUnconfirmedReadings: number;
}

export interface ClusterBackendOptions {
  cluster: ClusterLogOptions;
  influx: InfluxTarget;
  writer: WriterOptions;
  lateAfterMs: number;
}

/** How long start waits for a RabbitMQ node before going on (it keeps trying; messages wait meanwhile), ms. */
const CONNECT_WAIT_MS = 10_000;

export function createClusterBackend(
  opts: ClusterBackendOptions,
  hooks: BackendHooks,
  deps: { metrics?: Metrics; logger: Logger; name?: string },
): ReadingBackend {
  const { cluster } = opts;
  const logger = deps.logger;
  const name = deps.name ?? `citypulse pid ${process.pid}`;
  const publisher = new ReplicatedLogPublisher(
    {
      urls: cluster.amqpUrls,
      partitions: cluster.partitions,
      queuePrefix: cluster.queuePrefix,
      batchMs: cluster.batchMs,
      confirmTimeoutMs: cluster.confirmTimeoutMs,
      maxUnconfirmedReadings: cluster.maxUnconfirmedReadings,
    },
    { logger, beforeSend: hooks.beforeSend, name: `${name} edge` },
  );
  const consumer = new PartitionConsumer(
    {
      urls: cluster.amqpUrls,
      partitions: cluster.partitions,
      queuePrefix: cluster.queuePrefix,
      prefetch: cluster.prefetch,
      influx: opts.influx,
      writer: opts.writer,
      lateAfterMs: opts.lateAfterMs,
    },
    {
      prepareDatabase: hooks.prepareDatabase,
      deadLetter: hooks.deadLetter,
      late: hooks.late,
      live: hooks.live,
      unreadable: hooks.unreadable,
    },
    { logger, metrics: deps.metrics, name: `${name} processing` },
  );
  let wasFull = false;

  return {
    sink: {
      append: (readings) => publisher.append(readings),
      whenSpace(closed) {
        const room = publisher.whenSpace(closed);
        if (!room) {
          if (wasFull) {
            wasFull = false;
            logger.info('replicated log confirms again: devices are read at full speed');
          }
          return undefined;
        }
        if (!wasFull) {
          wasFull = true;
          logger.warn(
            { unconfirmed: publisher.state().unconfirmedReadings },
            'replicated log: too many readings wait for a confirm; slowing devices down (acknowledgements withheld, sockets paused)',
          );
        }
        return room;
      },
    },
    async start() {
      try {
        await hooks.prepareDatabase();
      } catch (err) {
        // Not fatal: readings wait in the queues and the database is created when InfluxDB answers again.
        logger.warn({ err: (err as Error).message }, 'InfluxDB not ready at start; readings wait in the replicated log');
      }
      const [published, consuming] = await Promise.all([publisher.start(CONNECT_WAIT_MS), consumer.start(CONNECT_WAIT_MS)]);
      if (!published || !consuming) {
        logger.warn(
          { urls: cluster.amqpUrls.length, published, consuming },
          'replicated log not reachable at start: acknowledgements wait until a RabbitMQ node answers',
        );
      }
    },
    full: () => publisher.full(),
    // Everything this node accepted is confirmed, the partition queues hold no ready message and this node holds
    // no delivered one: what another node's consumer is writing right now is not waited for.
    async flush(timeoutMs) {
      const until = Date.now() + timeoutMs;
      if (!(await publisher.settled(timeoutMs))) return false;
      for (;;) {
        if (consumer.idle() && (await consumer.queuedMessages()) === 0 && consumer.idle()) return true;
        if (Date.now() > until) return false;
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async drain(timeoutMs) {
      const until = Date.now() + timeoutMs;
      // The edge first (its readings confirmed or refused), then this node's consumers hand over to another node.
      const published = await publisher.settled(timeoutMs);
      const drained = await consumer.drain(Math.max(0, until - Date.now()));
      return published && drained;
    },
    leftBehind:
      'stopping with readings delivered here not yet in InfluxDB: they go back to their queues and another node (or the next start) writes them',
    async close() {
      await publisher.stop(0);
      await consumer.close();
    },
    state() {
      const p = publisher.state();
      const { writer, ...c } = consumer.state();
      return {
        writer,
        log: {
          points: p.unconfirmedReadings + c.inFlightReadings,
          bytes: 0,
          oldestMs: p.oldestUnconfirmedMs,
          segments: 0,
          full: publisher.full(),
          waitingOnDisk: 0,
        },
        cluster: { publisher: p, consumer: c },
      };
    },
    osThreadId: () => undefined,
    handOver: (partitions) => consumer.handOver(partitions),
  };
}
