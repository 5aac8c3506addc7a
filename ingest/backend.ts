/**
 * Where accepted readings go on their way to InfluxDB, and the one place they reach the live bus from. Two
 * implementations, chosen once at start by `ingest.cluster.amqpUrls`:
 * - single node (local-backend.ts): the local durable log on the store worker; a PUBACK means fsynced here,
 *   and readings reach the live bus as they are accepted;
 * - cluster mode (cluster-backend.ts): the replicated log on RabbitMQ quorum queues; a PUBACK means stored by a
 *   quorum of RabbitMQ nodes, and readings reach the live bus from the partition's active consumer once
 *   InfluxDB stored them, so each reading reaches it once in the whole cluster.
 */
import type { EnrichedReading } from '../core/contract.ts';
import type { ReadingSink } from './handlers/index.ts';
import type { PendingPoint, WriterState } from './influx-writer.ts';
import type { PartitionConsumerState } from './partition-consumer.ts';
import type { ReplicatedLogState } from './replicated-log.ts';

/** What a backend needs from ingest. */
export interface BackendHooks {
  /** Creates the database and the tiers; throws while InfluxDB does not answer. */
  prepareDatabase(): Promise<void>;
  /** Points InfluxDB refused for good: dead-letter them (synchronously and durably). */
  deadLetter(points: PendingPoint[], reason: string): void;
  /** A stored reading older than the continuous queries look back. */
  late(family: string, time: number): void;
  /** Right before accepted readings can become durable: what must be durable before them is written. */
  beforeSend(): void;
  /**
   * Hands readings to the live bus (analytics, alarms, dashboards); a promise when its listeners still commit
   * what the readings caused (alarms raised): cluster mode acknowledges the queue once it resolves.
   */
  live(readings: EnrichedReading[]): Promise<void> | undefined;
  /** Cluster mode: a replicated log message that is not a batch of readings (dead-lettered, never retried). */
  unreadable(payload: string, reason: string): void;
}

/** The backlog as health and metrics show it. */
export interface BacklogState {
  /** Readings accepted and not yet confirmed by InfluxDB (single node) or by the replicated log and this node's writes. */
  points: number;
  bytes: number;
  oldestMs: number;
  segments: number;
  /** True while devices are slowed down (disk budget, or unconfirmed readings, used up). */
  full: boolean;
  waitingOnDisk: number;
}

/** Cluster mode's view: the edge's publisher and this node's partition consumers. */
export interface ClusterState {
  publisher: ReplicatedLogState;
  consumer: Omit<PartitionConsumerState, 'writer'>;
}

export interface ReadingBackend {
  /** Opens the log (single node: replays what an earlier run left) and starts shipping to InfluxDB. */
  start(): Promise<void>;
  /** What the telemetry handler appends to. */
  readonly sink: ReadingSink;
  /** True while new messages wait for room (devices are slowed down). */
  full(): boolean;
  /** Resolves true once everything accepted so far is confirmed by InfluxDB (or refused), false on timeout. */
  flush(timeoutMs: number): Promise<boolean>;
  /** On stop: writes (or hands to another node) what this node holds, at most `timeoutMs`; false if some is left. */
  drain(timeoutMs: number): Promise<boolean>;
  /** What `drain` could not finish stays where: logged when it returned false. */
  readonly leftBehind: string;
  close(): Promise<void>;
  state(): { writer: WriterState; log: BacklogState; cluster?: ClusterState };
  /** The store worker's thread id (single node, Linux, after start). */
  osThreadId(): number | undefined;
  /** Cluster mode: hands the partitions this node is active for over to another node (partition-consumer.ts). */
  handOver?(partitions: readonly number[]): Promise<void>;
}
