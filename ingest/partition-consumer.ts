/**
 * Cluster mode's processing side of the replicated log: every platform node consumes every partition queue
 * (replicated-log.ts), and each queue's single-active-consumer setting lets exactly one consumer of the
 * cluster receive its messages at a time; when that consumer's node stops or its connection breaks, RabbitMQ
 * makes the next one active and hands it every message not yet acknowledged. Per-device order holds because a
 * device's readings live in one partition, which one consumer processes in order.
 *
 * The active consumer writes a message's readings to InfluxDB through the platform's writer (influx-writer.ts:
 * batches across partitions, retries, dead-letters what InfluxDB refuses for good, with the same rules as the
 * single-node log), and only once every reading of the message is stored or dead-lettered does it acknowledge
 * the message to the queue and hand its readings to the live bus, in the partition's order. While InfluxDB is
 * down the writer retries, the unacknowledged messages stay bounded by `prefetch` per partition, and the rest of
 * the backlog waits, replicated, in the queues.
 *
 * A message acknowledged by nobody (the node died while writing it) is delivered again to the next active
 * consumer: its readings are written again and overwrite themselves (same series, same time).
 *
 * What the live bus's listeners commit because of a message (the alarms its readings raise, in the cluster's
 * shared store) is committed before the message is acknowledged: when `live` returns a promise, the partition's
 * acknowledgement (and its next messages' hand-over) waits for it. A failover between that commit and the
 * acknowledgement delivers the message again, and raising the alarm again finds it open: raised once.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { FAMILIES, type EnrichedReading } from '../core/contract.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { AmqpLink, within } from './amqp-link.ts';
import { InfluxWriter, type InfluxTarget, type PendingPoint, type WriterOptions, type WriterState } from './influx-writer.ts';
import { toLine } from './line-protocol.ts';
import { BATCH_TYPE, QUEUE_ARGUMENTS, queueName } from './replicated-log.ts';

export interface PartitionConsumerOptions {
  urls: readonly string[];
  partitions: number;
  queuePrefix: string;
  /** Unacknowledged messages per partition at most (RabbitMQ's prefetch): what a node holds while InfluxDB is down. */
  prefetch: number;
  influx: InfluxTarget;
  writer: WriterOptions;
  /** A stored reading older than this (ms) is marked late for the tiers' catch-up; 0 = never. */
  lateAfterMs: number;
}

export interface PartitionConsumerHooks {
  /** InfluxDB answered "database not found": create it (the writer retries afterwards). */
  prepareDatabase(): Promise<void>;
  /** Points InfluxDB refused for good: dead-letter them (synchronously). */
  deadLetter(points: PendingPoint[], reason: string): void;
  /** A message that is not a batch of readings (or holds malformed ones): dead-letter it with the reason. */
  unreadable(payload: string, reason: string): void;
  /** A stored reading older than the continuous queries look back. */
  late(family: string, time: number): void;
  /**
   * A message's readings, stored (or dead-lettered), in the partition's order; the message is acknowledged to
   * the queue after it returned, or once the promise it returns settled.
   */
  live(readings: EnrichedReading[]): Promise<void> | undefined;
}

export interface PartitionConsumerState {
  node: string | undefined;
  connected: boolean;
  /** Messages delivered to this node per partition since start (0 for partitions where another node is active). */
  delivered: number[];
  /** Messages and readings received and not yet acknowledged. */
  inFlightMessages: number;
  inFlightReadings: number;
  /** Readings acknowledged to the queues since start (stored or dead-lettered). */
  processedReadings: number;
  writer: WriterState;
}

interface Entry {
  id: number;
  partition: number;
  channel: Channel;
  msg: ConsumeMessage;
  readings: EnrichedReading[];
  remaining: number;
  /** Its channel closed: the message will be delivered again; this copy is only written, never acknowledged. */
  orphan: boolean;
}

interface PartitionSlot {
  /** Set from the moment a channel is being opened: one channel (and one consumer) per partition at a time. */
  opening: boolean;
  channel: Channel | undefined;
  consumerTag: string | undefined;
  /** Deliveries on `channel` in order, waiting for their readings to be stored. */
  fifo: Entry[];
  /** A message's live hand-over is being committed: acknowledging and handing over wait for it. */
  committing: boolean;
  reopen: NodeJS.Timeout | undefined;
}

const REOPEN_DELAY_MS = 500;
/** Opening a partition's channel and consumer: past this, the channel is closed and opened again later, ms. */
const OPEN_TIMEOUT_MS = 5000;

export class PartitionConsumer {
  private readonly link: AmqpLink;
  private readonly writer: InfluxWriter;
  private readonly slots: PartitionSlot[];
  private readonly entries = new Map<number, Entry>();
  private readonly delivered: number[];
  private nextId = 0;
  private processed = 0;
  private inFlightReadings = 0;
  private consuming = false;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly opts: PartitionConsumerOptions,
    private readonly hooks: PartitionConsumerHooks,
    private readonly deps: { logger: Logger; metrics?: Metrics; name?: string },
  ) {
    this.link = new AmqpLink(opts.urls, deps.name ?? 'citypulse processing', deps.logger);
    this.slots = Array.from({ length: opts.partitions }, () => ({
      opening: false,
      channel: undefined,
      consumerTag: undefined,
      fifo: [],
      committing: false,
      reopen: undefined,
    }));
    this.delivered = new Array(opts.partitions).fill(0);
    this.writer = new InfluxWriter(
      opts.influx,
      // The queues are the buffer: what the writer holds is bounded by prefetch × partitions messages.
      { ...opts.writer, maxBufferedPoints: Number.MAX_SAFE_INTEGER },
      {
        metrics: deps.metrics,
        logger: deps.logger,
        onDatabaseMissing: () => hooks.prepareDatabase(),
        onStored: (points) => {
          if (opts.lateAfterMs > 0) {
            // The observation time is the line's last token (line-protocol.ts writes it in ms).
            const lateBefore = Date.now() - opts.lateAfterMs;
            for (const p of points) {
              const t = Number(p.line.slice(p.line.lastIndexOf(' ') + 1));
              if (t < lateBefore) hooks.late(p.family, t);
            }
          }
          this.pointsDone(points);
        },
        onRejected: (points, reason) => {
          try {
            hooks.deadLetter(points, reason);
          } catch (err) {
            // Not dead-lettered: the messages are not acknowledged, and a new connection gets them delivered again.
            deps.logger.error({ err: (err as Error).message, points: points.length }, 'cannot dead-letter points InfluxDB refused');
            this.link.reset('dead-lettering failed');
            return;
          }
          this.pointsDone(points);
        },
      },
    );
    this.link.on('up', () => {
      if (this.consuming) for (let i = 0; i < opts.partitions; i++) void this.openPartition(i);
    });
    this.link.on('down', () => {
      for (let i = 0; i < opts.partitions; i++) this.partitionLost(i);
    });
  }

  /** Connects and starts consuming every partition; resolves once consuming or after `waitMs` (then keeps trying). */
  async start(waitMs: number): Promise<boolean> {
    this.consuming = true;
    const connected = await this.link.start(waitMs);
    if (!connected) return false;
    // The link's 'up' started opening every partition; wait (bounded) until each consumes.
    const until = Date.now() + waitMs;
    while (!this.slots.every((s) => s.consumerTag !== undefined) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    return this.slots.every((s) => s.consumerTag !== undefined);
  }

  state(): PartitionConsumerState {
    let messages = 0;
    for (const e of this.entries.values()) if (!e.orphan) messages++;
    return {
      node: this.link.node,
      connected: this.link.current !== undefined,
      delivered: [...this.delivered],
      inFlightMessages: messages,
      inFlightReadings: this.inFlightReadings,
      processedReadings: this.processed,
      writer: this.writer.state(),
    };
  }

  /** True while this node holds no delivered message that is not yet acknowledged. */
  idle(): boolean {
    return this.slots.every((s) => s.fifo.length === 0 && !s.committing);
  }

  /**
   * Hands partitions this node is active for over to another node: their consumers are cancelled (RabbitMQ makes
   * the next waiting consumer active, and delivers it what this node did not acknowledge) and start again as
   * waiting ones. Spreads processing after a node joined; what this node holds of them is written first.
   */
  async handOver(partitions: readonly number[]): Promise<void> {
    await Promise.all(
      partitions.map(async (i) => {
        const slot = this.slots[i];
        if (!slot?.channel) return;
        const ch = slot.channel;
        const tag = slot.consumerTag;
        slot.consumerTag = undefined;
        if (tag) await within(ch.cancel(tag), OPEN_TIMEOUT_MS, `cancelling partition ${i}`).catch(() => undefined);
        // What was delivered before the cancel is written and acknowledged on this channel, then it is closed
        // and the partition consumed again, behind the consumer RabbitMQ made active.
        const until = Date.now() + 30_000;
        while ((slot.fifo.length || slot.committing) && slot.channel === ch && Date.now() < until)
          await new Promise((r) => setTimeout(r, 20));
        if (slot.channel === ch) await within(ch.close(), OPEN_TIMEOUT_MS, `closing partition ${i}`).catch(() => undefined);
      }),
    );
  }

  /** Ready messages in the partition queues (not counting those delivered to a consumer); undefined when unknown. */
  async queuedMessages(): Promise<number | undefined> {
    const model = this.link.current;
    if (!model) return undefined;
    let ch: Channel | undefined;
    try {
      ch = await model.createChannel();
      ch.on('error', () => undefined);
      let n = 0;
      for (let i = 0; i < this.opts.partitions; i++) n += (await ch.checkQueue(queueName(this.opts.queuePrefix, i))).messageCount;
      return n;
    } catch {
      return undefined;
    } finally {
      await ch?.close().catch(() => undefined);
    }
  }

  /**
   * Stops taking messages (the consumers are cancelled: RabbitMQ makes another node's active) and waits, at most
   * `timeoutMs`, until what was delivered here is stored and acknowledged. Resolves false on timeout: those
   * messages are delivered again to the next active consumer once this node disconnects (close()).
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.consuming = false;
    await Promise.all(
      this.slots.map(async (s, i) => {
        clearTimeout(s.reopen);
        const tag = s.consumerTag;
        s.consumerTag = undefined;
        if (s.channel && tag) await within(s.channel.cancel(tag), OPEN_TIMEOUT_MS, `cancelling partition ${i}`).catch(() => undefined);
      }),
    );
    if (this.idle()) return true;
    let timer: NodeJS.Timeout | undefined;
    let waiter: (() => void) | undefined;
    const done = await Promise.race([
      new Promise<true>((r) => {
        waiter = () => r(true);
        this.idleWaiters.push(waiter);
      }),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    this.idleWaiters = this.idleWaiters.filter((w) => w !== waiter);
    return done;
  }

  /** Disconnects (messages not acknowledged go back to their queues) and stops the writer. Idempotent. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.consuming = false;
    for (const s of this.slots) clearTimeout(s.reopen);
    await this.link.stop();
    for (let i = 0; i < this.slots.length; i++) this.partitionLost(i);
    await this.writer.stop(1000);
  }

  private async openPartition(i: number): Promise<void> {
    const slot = this.slots[i] as PartitionSlot;
    const model = this.link.current;
    if (!model || slot.channel || slot.opening || !this.consuming) return;
    slot.opening = true;
    try {
      await this.consumePartition(i, slot, model);
    } finally {
      slot.opening = false;
    }
  }

  private async consumePartition(i: number, slot: PartitionSlot, model: NonNullable<AmqpLink['current']>): Promise<void> {
    const queue = queueName(this.opts.queuePrefix, i);
    let ch: Channel;
    try {
      ch = await within(model.createChannel(), OPEN_TIMEOUT_MS, 'opening a partition channel');
    } catch (err) {
      this.deps.logger.warn({ err: (err as Error).message, partition: i }, 'cannot open a partition channel; retrying');
      this.reopenLater(i);
      return;
    }
    slot.channel = ch;
    ch.on('error', (err: Error) => this.deps.logger.warn({ err: err.message, partition: i }, 'partition channel error'));
    ch.once('close', () => {
      if (slot.channel !== ch) return;
      this.partitionLost(i);
      if (this.link.current === model) this.reopenLater(i);
    });
    try {
      const consumed = (async () => {
        await ch.prefetch(this.opts.prefetch);
        await ch.assertQueue(queue, { durable: true, arguments: { ...QUEUE_ARGUMENTS } });
        return ch.consume(queue, (msg) => this.receive(i, ch, msg), { noAck: false });
      })();
      const { consumerTag } = await within(consumed, OPEN_TIMEOUT_MS, `consuming partition ${i}`);
      if (slot.channel === ch) slot.consumerTag = consumerTag;
      if (!this.consuming && slot.channel === ch) await ch.cancel(consumerTag).catch(() => undefined);
    } catch (err) {
      // Closing the channel drops a consumer that may still register late; its 'close' opens the partition again.
      this.deps.logger.warn({ err: (err as Error).message, partition: i }, 'cannot consume a partition; retrying');
      ch.close().catch(() => undefined); // not waited for: a node that does not answer must not hold the partition
      if (slot.channel === ch) {
        this.partitionLost(i);
        this.reopenLater(i);
      }
    }
  }

  private reopenLater(i: number): void {
    const slot = this.slots[i] as PartitionSlot;
    if (this.stopped || !this.consuming || slot.reopen) return;
    slot.reopen = setTimeout(() => {
      slot.reopen = undefined;
      void this.openPartition(i);
    }, REOPEN_DELAY_MS);
  }

  /** Partition `i`'s channel is gone: what it delivered and is not acknowledged will be delivered again. */
  private partitionLost(i: number): void {
    const slot = this.slots[i] as PartitionSlot;
    slot.channel = undefined;
    slot.consumerTag = undefined;
    for (const e of slot.fifo) {
      e.orphan = true;
      if (e.remaining === 0) this.forget(e);
    }
    slot.fifo = [];
    this.notifyIdle();
  }

  private receive(i: number, ch: Channel, msg: ConsumeMessage | null): void {
    const slot = this.slots[i] as PartitionSlot;
    if (msg === null) {
      // Cancelled by RabbitMQ (the queue was deleted): a new channel declares it again.
      this.deps.logger.warn({ partition: i }, 'partition consumer cancelled by RabbitMQ; consuming again');
      if (slot.channel === ch) {
        this.partitionLost(i);
        ch.close().catch(() => undefined);
        this.reopenLater(i);
      }
      return;
    }
    if (slot.channel !== ch) {
      // A channel this node gave up: closing it returns what it was handed to the queue.
      ch.close().catch(() => undefined);
      return;
    }
    this.delivered[i] = (this.delivered[i] ?? 0) + 1;
    const { readings, refused } = decode(msg);
    const entry: Entry = { id: ++this.nextId, partition: i, channel: ch, msg, readings, remaining: 0, orphan: false };
    slot.fifo.push(entry);
    if (refused) {
      // Never put back in the queue: it would come back forever. Kept as a dead letter with its reason.
      try {
        this.hooks.unreadable(msg.content.toString('utf8'), refused);
      } catch (err) {
        this.deps.logger.error({ err: (err as Error).message, refused }, 'cannot dead-letter an unreadable replicated log message');
      }
    }
    const points: PendingPoint[] = [];
    for (const r of readings) points.push({ line: toLine(r), family: r.family, device: r.device, seq: entry.id });
    entry.remaining = points.length;
    this.inFlightReadings += points.length;
    this.entries.set(entry.id, entry);
    if (points.length) this.writer.writePoints(points);
    else this.release(i);
  }

  /** Stored or dead-lettered points: their messages may be complete. */
  private pointsDone(points: PendingPoint[]): void {
    const touched = new Set<Entry>();
    for (const p of points) {
      const e = this.entries.get(p.seq as number);
      if (!e) continue;
      e.remaining--;
      this.inFlightReadings--;
      if (e.remaining === 0) touched.add(e);
    }
    const partitions = new Set<number>();
    for (const e of touched) {
      if (e.orphan) this.forget(e);
      else partitions.add(e.partition);
    }
    for (const i of partitions) this.release(i);
  }

  /**
   * Acknowledges the complete messages at the head of partition `i`, in order, and hands their readings on; when
   * the hand-over of one returns a promise (alarms being committed), that message and the ones before it are
   * acknowledged once it settled, and the rest waits for it.
   */
  private release(i: number): void {
    const slot = this.slots[i] as PartitionSlot;
    if (slot.committing) return; // the hand-over that commits goes on with the rest once done
    let last: Entry | undefined;
    while (slot.fifo.length && (slot.fifo[0] as Entry).remaining === 0) {
      const e = slot.fifo.shift() as Entry;
      this.forget(e);
      this.processed += e.readings.length;
      last = e;
      if (!e.readings.length) continue;
      let pending: Promise<void> | undefined;
      try {
        pending = this.hooks.live(e.readings);
      } catch (err) {
        this.deps.logger.error({ err: (err as Error).message }, 'live bus listener failed');
      }
      if (pending !== undefined) {
        slot.committing = true;
        const done = () => {
          slot.committing = false;
          this.ack(slot, e);
          this.release(i);
        };
        pending.then(done, (err: Error) => {
          this.deps.logger.error({ err: err.message }, 'live bus listener failed');
          done();
        });
        return;
      }
    }
    if (last) this.ack(slot, last);
    this.notifyIdle();
  }

  /** One acknowledgement for `e` and every delivery before it on its channel (all released already). */
  private ack(slot: PartitionSlot, e: Entry): void {
    if (slot.channel !== e.channel) return; // the channel closed meanwhile: the messages are delivered again
    try {
      e.channel.ack(e.msg, true);
    } catch {
      /* the channel closed meanwhile: the messages are delivered again */
    }
  }

  private forget(e: Entry): void {
    this.entries.delete(e.id);
  }

  private notifyIdle(): void {
    if (!this.idleWaiters.length || !this.idle()) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const fn of w) fn();
  }
}

/** A batch message's readings; `refused` says why a message (or part of it) cannot be written. */
function decode(msg: ConsumeMessage): { readings: EnrichedReading[]; refused?: string } {
  if (msg.properties.type !== BATCH_TYPE)
    return { readings: [], refused: `unknown message type in the replicated log: ${String(msg.properties.type)}` };
  let body: unknown;
  try {
    body = JSON.parse(msg.content.toString('utf8'));
  } catch (err) {
    return { readings: [], refused: `unreadable message in the replicated log: ${(err as Error).message}` };
  }
  if (!Array.isArray(body)) return { readings: [], refused: 'replicated log message is not an array of readings' };
  const readings: EnrichedReading[] = [];
  let bad = 0;
  for (const r of body as EnrichedReading[]) {
    if (
      r &&
      typeof r.device === 'string' &&
      typeof r.zone === 'string' &&
      (FAMILIES as readonly string[]).includes(r.family) &&
      Number.isFinite(r.time) &&
      r.fields &&
      typeof r.fields === 'object'
    )
      readings.push(r);
    else bad++;
  }
  return bad ? { readings, refused: `${bad} malformed reading(s) in a replicated log message` } : { readings };
}
