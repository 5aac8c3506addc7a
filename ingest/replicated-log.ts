/**
 * Cluster mode's edge side of the replicated log: a message's accepted readings are published to a RabbitMQ
 * quorum queue, and the message's durability promise (which releases its PUBACK through broker/ack-order.ts)
 * resolves only on the broker's publisher confirm. A quorum queue confirms once a majority of its replicas
 * wrote and fsynced the message, so a PUBACK means: on disk on two of three machines.
 *
 * - Partitions: a device's readings go to queue `hash(its zone) % partitions` (FNV-1a, the same on every node;
 *   a device without a zone by its id: `partitionKey`), so one partition holds a device's readings in the order
 *   they were accepted, and the partition's single active consumer (partition-consumer.ts) processes them in that
 *   order. Every device of a ward is in the ward's partition, so one node computes the ward's indicators and
 *   alarms over all its devices (analytics' zone results are then merged across nodes for the city). A device
 *   moved to another ward goes to that ward's partition from its next reading: readings still waiting in the old
 *   partition may be processed after newer ones in the new one (each is stored at its own time all the same).
 * - Batching: readings for one partition are gathered for `batchMs` (or up to MAX_BATCH_READINGS) into one AMQP
 *   message on a confirm channel: one replicated write for many devices' messages.
 * - Confirm, nack, timeout: a confirm resolves every message of the batch. A nack means the queue did not take
 *   the batch (see `renewAfterNack`): it is published again, on a new connection, within its deadline. A batch
 *   not confirmed within `confirmTimeoutMs` of its first reading is refused (the broker then closes each
 *   device's connection without acknowledging, and the device sends again): with the queue's quorum lost,
 *   RabbitMQ neither confirms nor nacks, and acknowledgements wait instead of lying. A resend overwrites its own
 *   point in InfluxDB: readings carry their observation time, and time-less ones get the time their first
 *   delivery got (resend-guard.ts, committed before the batch leaves through `beforeSend`).
 * - Node failure: batches published on a connection that closed before their confirm are published again, in
 *   order, on the connection to the next node (within their deadline): a point stored twice overwrites itself.
 * - A publish to a queue that does not exist (deleted by hand) would be confirmed and dropped by RabbitMQ: batches
 *   are published `mandatory`, and a returned one is rejected like a nack.
 * - Memory: unconfirmed readings are bounded (`maxUnconfirmedReadings`); past it `whenSpace` holds new messages, and
 *   the broker stops reading those devices' sockets (the same back-pressure as the local log's disk budget).
 */
import type { ConfirmChannel } from 'amqplib';
import type { EnrichedReading } from '../core/contract.ts';
import type { Logger } from '../core/logger.ts';
import { AmqpLink, within } from './amqp-link.ts';
import { ConnectionClosedError } from './store.ts';

/** Arguments every partition queue is declared with, by publishers and consumers alike (they must agree). */
export const QUEUE_ARGUMENTS = { 'x-queue-type': 'quorum', 'x-single-active-consumer': true } as const;

/** AMQP `type` of a batch message: its body is a JSON array of enriched readings (core/contract.ts). */
export const BATCH_TYPE = 'citypulse.readings.v1';

/** Readings one AMQP message carries at most: a replicated write of about 150 kB. */
const MAX_BATCH_READINGS = 1000;
/** Opening the channel and declaring the queues: past this, the connection is dropped and another node tried, ms. */
const OPEN_TIMEOUT_MS = 5000;
/**
 * After a nack, how long the channel's other batches may still be confirmed before its connection is renewed, ms;
 * also the shortest time between two renewals while nacks go on (a leader election of a few seconds).
 */
const NACK_RENEW_MS = 500;

export interface ReplicatedLogOptions {
  /** AMQP URLs of the cluster's nodes. */
  urls: readonly string[];
  /** Number of partition queues; every node of the platform must use the same. */
  partitions: number;
  /** Queue names are `<queuePrefix>.<partition>`. */
  queuePrefix: string;
  /** How long readings for one partition are gathered before they are published, ms (0: published every turn). */
  batchMs: number;
  /** A batch not confirmed this long after its first reading is refused (its devices send again), ms. */
  confirmTimeoutMs: number;
  /** Unconfirmed readings held at most; past it new messages wait for room. */
  maxUnconfirmedReadings: number;
}

export interface ReplicatedLogState {
  /** host:port of the node published to, undefined while reconnecting. */
  node: string | undefined;
  connected: boolean;
  /** Readings published and confirmed by a quorum since start. */
  confirmedReadings: number;
  /** Readings refused (nack, return or timeout) since start: their devices were not acknowledged. */
  refusedReadings: number;
  /** Readings waiting for a confirm (gathered, published or waiting for a connection). */
  unconfirmedReadings: number;
  /** Age of the oldest unconfirmed batch, ms. */
  oldestUnconfirmedMs: number;
  /** Batches published again after a connection closed before their confirm, or after a nack, since start. */
  republishedBatches: number;
  /** Batches RabbitMQ nacked since start (each published again within its deadline). */
  nackedBatches: number;
  /** Confirm latency of the last batches (publish → confirm), ms: median and 99th percentile of the last 1,000. */
  confirmMs: { p50: number; p99: number };
}

/** The queue of partition `i`. */
export function queueName(prefix: string, i: number): string {
  return `${prefix}.${i}`;
}

/** The partition of a key: FNV-1a (32 bit) of it, modulo `partitions`. Stable across nodes and versions. */
export function partitionOf(key: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}

/** What a reading is partitioned by: its device's zone (a ward's devices together), else its device id. */
export function partitionKey(r: Pick<EnrichedReading, 'device' | 'zone'>): string {
  return r.zone || r.device;
}

/** A batch's readings could not be made durable in the replicated log. */
export class ReplicatedLogError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplicatedLogError';
  }
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Batch {
  id: number;
  partition: number;
  readings: EnrichedReading[];
  waiters: Waiter[];
  createdAt: number;
  deadline: NodeJS.Timeout | undefined;
  /** open: gathering; queued: waiting to be published; sent: published on `channel`, waiting for its confirm. */
  state: 'open' | 'queued' | 'sent' | 'settled';
  channel: ConfirmChannel | undefined;
  sentAt: number;
  body: Buffer | undefined;
}

interface Partition {
  open: Batch | undefined;
  gather: NodeJS.Timeout | undefined;
  /** Sealed batches not yet settled, in order: queued ones are published in this order. */
  pending: Batch[];
}

export class ReplicatedLogPublisher {
  private readonly link: AmqpLink;
  private channel: ConfirmChannel | undefined;
  private readonly parts: Partition[];
  private nextId = 0;
  private unconfirmed = 0;
  private confirmed = 0;
  private refused = 0;
  private republished = 0;
  private nacked = 0;
  /** Set while a nacked channel waits to be renewed (renewAfterNack). */
  private renewing: NodeJS.Timeout | undefined;
  private lastRenewAt = 0;
  /** Batches returned as unroutable (their confirm follows the return). */
  private readonly returned = new Set<string>();
  private draining = false;
  private stopped = false;
  private readonly latencies: number[] = [];
  private latencyAt = 0;
  private spaceWaiters: (() => void)[] = [];
  private settleWaiters: (() => void)[] = [];
  private opening: Promise<void> | undefined;

  constructor(
    private readonly opts: ReplicatedLogOptions,
    private readonly deps: {
      logger: Logger;
      /** Right before batches are published: what must be durable before the readings they carry. */
      beforeSend?: () => void;
      /** Name shown in RabbitMQ's connection list. */
      name?: string;
    },
  ) {
    this.link = new AmqpLink(opts.urls, deps.name ?? 'citypulse edge', deps.logger);
    this.parts = Array.from({ length: opts.partitions }, () => ({ open: undefined, gather: undefined, pending: [] }));
    this.link.on('up', () => {
      this.opening = this.openChannel().finally(() => (this.opening = undefined));
    });
    this.link.on('down', () => this.channelLost());
  }

  /** Connects and declares the partition queues; resolves once ready or after `waitMs` (then keeps trying). */
  async start(waitMs: number): Promise<boolean> {
    const connected = await this.link.start(waitMs);
    if (connected) await this.opening;
    return this.channel !== undefined;
  }

  /** Appends a message's readings (all of one device); resolves once a quorum confirmed them. */
  append(readings: EnrichedReading[]): Promise<void> {
    if (this.stopped) return Promise.reject(new ReplicatedLogError('replicated log stopped'));
    if (!readings.length) return Promise.resolve();
    const p = partitionOf(partitionKey(readings[0] as EnrichedReading), this.opts.partitions);
    const part = this.parts[p] as Partition;
    let batch = part.open;
    if (!batch) {
      batch = this.newBatch(p);
      part.open = batch;
      const b = batch;
      if (this.opts.batchMs > 0) part.gather = setTimeout(() => this.seal(b), this.opts.batchMs);
      else setImmediate(() => this.seal(b));
    }
    for (const r of readings) batch.readings.push(r);
    this.unconfirmed += readings.length;
    const promise = new Promise<void>((resolve, reject) => (batch as Batch).waiters.push({ resolve, reject }));
    if (batch.readings.length >= MAX_BATCH_READINGS) this.seal(batch);
    return promise;
  }

  /** True while unconfirmed readings fill the bound: new messages then wait (`whenSpace`). */
  full(): boolean {
    return this.unconfirmed >= this.opts.maxUnconfirmedReadings;
  }

  /** While full: resolves once there is room, or rejects with ConnectionClosedError when `closed` aborts first. */
  whenSpace(closed?: AbortSignal): Promise<void> | undefined {
    if (!this.full()) return undefined;
    if (closed?.aborted) return Promise.reject(new ConnectionClosedError());
    return new Promise((resolve, reject) => {
      const waiter = () => {
        closed?.removeEventListener('abort', onClose);
        resolve();
      };
      const onClose = () => {
        this.spaceWaiters = this.spaceWaiters.filter((w) => w !== waiter);
        reject(new ConnectionClosedError());
      };
      closed?.addEventListener('abort', onClose, { once: true });
      this.spaceWaiters.push(waiter);
    });
  }

  /** Resolves true once every reading appended so far is confirmed or refused, false after `timeoutMs`. */
  async settled(timeoutMs: number): Promise<boolean> {
    for (const part of this.parts) if (part.open) this.seal(part.open);
    if (this.unconfirmed === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    let waiter: (() => void) | undefined;
    const done = await Promise.race([
      new Promise<true>((r) => {
        waiter = () => r(true);
        this.settleWaiters.push(waiter);
      }),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    this.settleWaiters = this.settleWaiters.filter((w) => w !== waiter);
    return done;
  }

  state(): ReplicatedLogState {
    let oldest = Number.POSITIVE_INFINITY;
    for (const part of this.parts) {
      const first = part.pending[0] ?? part.open;
      if (first && first.createdAt < oldest) oldest = first.createdAt;
    }
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const pct = (q: number) => (sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number) : 0);
    return {
      node: this.link.node,
      connected: this.channel !== undefined,
      confirmedReadings: this.confirmed,
      refusedReadings: this.refused,
      unconfirmedReadings: this.unconfirmed,
      oldestUnconfirmedMs: Number.isFinite(oldest) ? Date.now() - oldest : 0,
      republishedBatches: this.republished,
      nackedBatches: this.nacked,
      confirmMs: { p50: pct(0.5), p99: pct(0.99) },
    };
  }

  /** Publishes what was gathered, waits (at most `timeoutMs`) for the confirms, refuses what is left, disconnects. */
  async stop(timeoutMs: number): Promise<void> {
    if (this.stopped) return;
    const settled = await this.settled(timeoutMs);
    this.stopped = true;
    clearTimeout(this.renewing);
    if (!settled) {
      this.deps.logger.warn(
        { unconfirmed: this.unconfirmed },
        'stopping with readings not confirmed by the replicated log: their devices were not acknowledged and send them again',
      );
    }
    for (const part of this.parts) {
      clearTimeout(part.gather);
      for (const b of [...part.pending, ...(part.open ? [part.open] : [])])
        this.settle(b, new ReplicatedLogError('replicated log stopped'));
    }
    this.channel = undefined;
    await this.link.stop();
  }

  private newBatch(partition: number): Batch {
    const batch: Batch = {
      id: ++this.nextId,
      partition,
      readings: [],
      waiters: [],
      createdAt: Date.now(),
      deadline: undefined,
      state: 'open',
      channel: undefined,
      sentAt: 0,
      body: undefined,
    };
    // Counted from the first reading: a device waits at most this long for its PUBACK or its connection's end.
    batch.deadline = setTimeout(() => this.expire(batch), this.opts.confirmTimeoutMs);
    return batch;
  }

  private seal(batch: Batch): void {
    if (batch.state !== 'open') return;
    const part = this.parts[batch.partition] as Partition;
    if (part.open === batch) {
      part.open = undefined;
      clearTimeout(part.gather);
      part.gather = undefined;
    }
    batch.state = 'queued';
    part.pending.push(batch);
    this.publishQueued();
  }

  private async openChannel(): Promise<void> {
    const model = this.link.current;
    if (!model) return;
    try {
      const ch = await within(model.createConfirmChannel(), OPEN_TIMEOUT_MS, 'opening the confirm channel');
      ch.on('error', () => undefined); // followed by 'close'
      ch.on('return', (msg) => {
        const id = msg.properties.messageId as string | undefined;
        if (id) this.returned.add(id);
      });
      ch.on('drain', () => {
        if (this.channel !== ch) return;
        this.draining = false;
        this.publishQueued();
      });
      ch.once('close', () => {
        if (this.channel !== ch) return;
        this.channelLost();
        // Closed by RabbitMQ while the connection stays (a channel error): a new connection opens a new channel.
        if (!this.stopped && this.link.current === model) this.link.reset('confirm channel closed by RabbitMQ');
      });
      const declared = Promise.all(
        Array.from({ length: this.opts.partitions }, (_, i) =>
          ch.assertQueue(queueName(this.opts.queuePrefix, i), { durable: true, arguments: { ...QUEUE_ARGUMENTS } }),
        ),
      );
      await within(declared, OPEN_TIMEOUT_MS, 'declaring the partition queues');
      if (this.stopped || this.link.current !== model) return;
      this.channel = ch;
      this.draining = false;
      this.publishQueued();
    } catch (err) {
      // A channel that cannot declare the queues (arguments differing from an existing queue's, a node that fails
      // or hangs mid-way, queues without a leader yet): a new connection, to the next node, tries again.
      this.deps.logger.error({ err: (err as Error).message, node: this.link.node }, 'cannot open the replicated log channel; reconnecting');
      if (this.link.current === model) this.link.reset('replicated log channel failed');
    }
  }

  /**
   * The channel or its connection closed: batches published on it and not confirmed are published again. Also
   * after the channel was retired by renewAfterNack (then `this.channel` is already unset).
   */
  private channelLost(): void {
    this.channel = undefined;
    this.returned.clear(); // their confirms died with the channel
    for (const part of this.parts) {
      for (const b of part.pending) {
        if (b.state === 'sent') {
          b.state = 'queued';
          b.channel = undefined;
        }
      }
    }
  }

  private publishQueued(): void {
    const ch = this.channel;
    if (!ch || this.draining) return;
    let first = true;
    for (const part of this.parts) {
      for (const b of part.pending) {
        if (b.state !== 'queued') continue;
        if (first) {
          // Once per round, before any of its batches can become durable (the resend guard's times).
          this.deps.beforeSend?.();
          first = false;
        }
        if (b.body) this.republished++;
        else b.body = Buffer.from(JSON.stringify(b.readings));
        b.state = 'sent';
        b.channel = ch;
        b.sentAt = Date.now();
        const id = String(b.id);
        let ok: boolean;
        try {
          ok = ch.publish(
            '',
            queueName(this.opts.queuePrefix, b.partition),
            b.body,
            { persistent: true, mandatory: true, messageId: id, type: BATCH_TYPE, contentType: 'application/json' },
            (err: Error | null) => this.confirmedOrNot(b, ch, id, err),
          );
        } catch (err) {
          // The channel closed under us: its batches are published again on the next one.
          this.deps.logger.warn({ err: (err as Error).message }, 'publish failed; the batch waits for the next channel');
          b.state = 'queued';
          b.channel = undefined;
          return;
        }
        if (!ok) {
          // The socket's buffer is full: the rest waits for 'drain'.
          this.draining = true;
          return;
        }
      }
    }
  }

  private confirmedOrNot(b: Batch, ch: ConfirmChannel, id: string, err: Error | null): void {
    const returned = this.returned.delete(id);
    if (b.state !== 'sent' || b.channel !== ch) return; // expired, or published again on a newer channel
    if (!err && !returned) {
      this.recordLatency(Date.now() - b.sentAt);
      this.settle(b);
    } else if (returned) {
      this.settle(b, new ReplicatedLogError(`partition queue ${queueName(this.opts.queuePrefix, b.partition)} missing: readings returned`));
      this.link.reset('a partition queue is missing: declaring the queues again');
    } else if (err?.message === 'message nacked') {
      // amqplib's text for a basic.nack: the queue did not take the batch. Published again within its deadline.
      this.nacked++;
      b.state = 'queued';
      b.channel = undefined;
      this.renewAfterNack(ch);
    } else {
      // The channel closed before the confirm ('channel closed'): published again on the next channel.
      b.state = 'queued';
      b.channel = undefined;
    }
  }

  /**
   * A nack from a quorum queue here means the channel could not hand the batch to the queue's leader, and on
   * RabbitMQ 3.10 a channel can stay in that state for good: its queue client (rabbit_fifo_client) learns the
   * queue's servers, leader first, from the queue's record at the channel's first publish to it. A channel opened
   * while the old leader's node was going away (as ours are, on the next node, within milliseconds of that node
   * closing our connection) can still read the dead node as leader; its first publish then asks that node for the
   * queue's version over RPC, gets `nodedown`, and rejects the publish without remembering anything, so every
   * later publish asks the dead node again and is nacked, long after a new leader was elected (measured: some
   * partitions nacked for as long as the channel lived, over 30 s). Nothing on the channel mends it: a new channel
   * reads the queue's record again. So the channel is retired at once (new batches wait for the next one), its
   * other batches get `NACK_RENEW_MS` to be confirmed, then the connection is renewed (the next node, a new
   * channel, the queues' records as they are now) and the nacked and unconfirmed batches are published again in
   * order. While nacks go on (an election still running) renewals are at most one per `NACK_RENEW_MS`; a batch's
   * deadline still bounds its device's wait.
   */
  private renewAfterNack(ch: ConfirmChannel): void {
    if (this.channel === ch) this.channel = undefined;
    if (this.renewing || this.stopped) return;
    const model = this.link.current;
    const wait = Math.max(NACK_RENEW_MS, this.lastRenewAt + 2 * NACK_RENEW_MS - Date.now());
    this.deps.logger.warn(
      { node: this.link.node, renewInMs: wait },
      'the replicated log nacked a batch: renewing the connection, the batch is published again',
    );
    this.renewing = setTimeout(() => {
      this.renewing = undefined;
      this.lastRenewAt = Date.now();
      if (this.stopped) return;
      if (model && this.link.current === model) this.link.reset('a partition queue nacked a batch');
      else if (!this.channel && this.link.current) this.opening ??= this.openChannel().finally(() => (this.opening = undefined));
    }, wait);
  }

  private expire(b: Batch): void {
    if (b.state === 'settled') return;
    if (b.state === 'open') {
      const part = this.parts[b.partition] as Partition;
      if (part.open === b) {
        part.open = undefined;
        clearTimeout(part.gather);
        part.gather = undefined;
      }
    }
    this.deps.logger.warn(
      { partition: b.partition, readings: b.readings.length, state: b.state, node: this.link.node },
      'replicated log did not confirm in time (quorum lost or no node reachable): devices not acknowledged, they send again',
    );
    this.settle(b, new ReplicatedLogError(`not confirmed by the replicated log within ${this.opts.confirmTimeoutMs} ms`));
  }

  private settle(b: Batch, err?: Error): void {
    if (b.state === 'settled') return;
    b.state = 'settled';
    clearTimeout(b.deadline);
    const part = this.parts[b.partition] as Partition;
    const i = part.pending.indexOf(b);
    if (i >= 0) part.pending.splice(i, 1);
    const wasFull = this.full();
    this.unconfirmed -= b.readings.length;
    if (err) this.refused += b.readings.length;
    else this.confirmed += b.readings.length;
    for (const w of b.waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
    b.waiters = [];
    b.body = undefined;
    if (wasFull && !this.full()) {
      const w = this.spaceWaiters;
      this.spaceWaiters = [];
      for (const fn of w) fn();
    }
    if (this.unconfirmed === 0 && this.settleWaiters.length) {
      const w = this.settleWaiters;
      this.settleWaiters = [];
      for (const fn of w) fn();
    }
  }

  private recordLatency(ms: number): void {
    if (this.latencies.length < 1000) this.latencies.push(ms);
    else {
      this.latencies[this.latencyAt] = ms;
      this.latencyAt = (this.latencyAt + 1) % 1000;
    }
  }
}
