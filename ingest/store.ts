/**
 * The main thread's side of the store worker (`store-worker.ts`): accepted points go to the worker's durable
 * log and InfluxDB writer; their acknowledgement resolves once the worker reports them on disk.
 *
 * Points travel in few messages: those of one turn of the event loop (every socket's MQTT packets read in it), or
 * every 256; their records joined into one string with a typed array of lengths, which the structured clone
 * copies flat. The worker answers in batches too, each with the log's and the writer's state, which `state()`,
 * `full()` and the health report read here without asking.
 */
import { Worker } from 'node:worker_threads';
import type { LogPoint } from './durable-log.ts';
import type { PendingPoint } from './influx-writer.ts';
import type { ProcessorSpec } from './processor.ts';
import type { FromWorker, StoreState, StoreWorkerData, ToWorker, WorkerPost } from './store-protocol.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';

export interface StoreHooks {
  /** InfluxDB answered "database not found": create it (the worker retries the batch afterwards). */
  prepareDatabase(): Promise<void>;
  /** Points InfluxDB refused for good: dead-letter them (synchronously and durably); the store then confirms them. */
  deadLetter(points: PendingPoint[], reason: string): void;
  /** A stored reading older than the continuous queries look back. */
  late(family: string, time: number): void;
  /** Right before appended points leave for the worker's disk: what must be durable before them is written. */
  beforeSend?(): void;
  /** A processor for each (re)start of the worker, given every appended reading there (processor.ts). */
  processor?(): ProcessorSpec;
}

const LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

/** Points gathered before they are sent to the worker without waiting for the end of the turn. */
const SEND_AT = 256;

/** A message's connection ended while the message waited for room in the disk budget. */
export class ConnectionClosedError extends Error {
  constructor() {
    super('connection closed while the message waited for room in the disk budget');
    this.name = 'ConnectionClosedError';
  }
}

const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;

const EMPTY_STATE: StoreState = {
  writer: { buffered: 0, inFlight: 0, healthy: true, stored: 0, dropped: 0, rejected: 0 },
  log: { points: 0, bytes: 0, oldestMs: 0, segments: 0, full: false },
  waiting: { memory: 0, disk: 0 },
};

export class ReadingStore {
  private worker: Worker | undefined;
  private current: StoreState = EMPTY_STATE;
  /** When `current` arrived: `log.oldestMs` is aged by the time since. */
  private currentAt = Date.now();
  private parts: string[] = [];
  private lens: number[] = [];
  private scheduled = false;
  /** Points handed to the worker (or about to be) since it started. */
  private appended = 0;
  /** Acknowledgement waiters in append order: resolved once the worker's answered count reaches `upTo`. */
  private waiters: { upTo: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private waitHead = 0;
  private spaceWaiters: (() => void)[] = [];
  private requests = new Map<number, { resolve: (m: FromWorker) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  /** Set while no worker takes appends (it died; a new one may be starting). */
  private broken: Error | undefined;
  private closing = false;
  /** When the worker was restarted, within the last RESTART_WINDOW_MS. */
  private restarts: number[] = [];
  private readonly log: Logger;
  /** The worker's thread id in the operating system (Linux), once open: the bench reads its CPU time. */
  osThreadId: number | undefined;

  constructor(
    private readonly data: Omit<StoreWorkerData, 'entry' | 'logLevel'>,
    private readonly hooks: StoreHooks,
    private readonly deps: { metrics?: Metrics; logger?: Logger },
  ) {
    this.log = deps.logger ?? silentLogger;
  }

  /** Starts the worker and opens the log; returns the range of points left by an earlier run. */
  async open(): Promise<{ from: number; to: number; torn: number }> {
    // The worker module beside this one: store-worker.js when compiled (dist/, plain node, loaded directly),
    // store-worker.ts under tsx, loaded through the boot file that registers tsx in the thread.
    const compiled = import.meta.url.endsWith('.js');
    const entry = new URL(compiled ? './store-worker.js' : './store-worker.ts', import.meta.url);
    const processor = this.hooks.processor?.();
    const workerData: StoreWorkerData = { ...this.data, entry: entry.href, logLevel: this.log.level, ...(processor ? { processor } : {}) };
    const main = compiled ? entry : new URL('./store-worker-boot.mjs', import.meta.url);
    const worker = new Worker(main, { workerData, name: 'citypulse-store', transferList: processor ? [processor.port] : [] });
    this.worker = worker;
    worker.on('message', (post: WorkerPost) => this.receive(post));
    const died = (err: Error) => {
      if (this.worker !== worker) return; // an earlier worker, already replaced
      this.worker = undefined;
      this.rejectRequests(err);
      this.fail(err);
    };
    worker.on('error', died);
    worker.on('exit', (code) => died(new Error(`store worker exited (code ${code})`)));
    const opened = (await this.request({ t: 'open', id: 0 })) as Extract<FromWorker, { t: 'opened' }>;
    this.osThreadId = opened.osThreadId;
    return { from: opened.from, to: opened.to, torn: opened.torn };
  }

  /** Ships the points an earlier run left in the log. */
  replay(from: number, to: number): void {
    this.send({ t: 'replay', from, to });
  }

  /** Appends points in order; resolves once they are on disk. */
  append(points: LogPoint[]): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    for (const p of points) {
      // Pieces, joined once per message to the worker: no string per record.
      this.parts.push(p.family, '\t', p.device, '\t', p.line);
      this.lens.push(p.family.length + p.device.length + p.line.length + 2);
    }
    this.appended += points.length;
    const upTo = this.appended;
    if (this.lens.length >= SEND_AT) {
      // A long turn (hundreds of sockets' packets) is sent in parts, so the worker writes and syncs the first
      // devices' readings while this thread still validates the others: its acknowledgements return sooner.
      this.sendAppends();
    } else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        // Sent even while an earlier message is not yet durable: the worker's log gathers them into its next group
        // commit, which starts the moment the current one ends. Holding them here until the answer came back
        // (one message a group commit) left the disk idle for that round trip: 5–18 % fewer readings/s at 10
        // readings/message in back-to-back runs.
        this.sendAppends();
      });
    }
    return new Promise<void>((resolve, reject) => this.waiters.push({ upTo, resolve, reject }));
  }

  private sendAppends(): void {
    if (!this.lens.length) return;
    this.hooks.beforeSend?.();
    const text = this.parts.join('');
    const lens = Uint32Array.from(this.lens);
    this.parts = [];
    this.lens = [];
    this.worker?.postMessage({ t: 'append', text, lens } satisfies ToWorker, [lens.buffer]);
  }

  /** True while the log uses its whole disk budget (as of the worker's last report). */
  full(): boolean {
    return this.current.log.full;
  }

  /**
   * Resolves once the log has room. `closed` (the message's connection ended) rejects it at once with a
   * ConnectionClosedError and lets go of the message, so connections that come and go during a long outage do not
   * pile their messages up in memory.
   */
  whenSpace(closed?: AbortSignal): Promise<void> {
    if (!this.full()) return Promise.resolve();
    if (closed?.aborted) return Promise.reject(new ConnectionClosedError());
    return new Promise((resolve, reject) => {
      if (!closed) {
        this.spaceWaiters.push(resolve);
        return;
      }
      const onClose = () => {
        const i = this.spaceWaiters.indexOf(waiter);
        if (i >= 0) this.spaceWaiters.splice(i, 1);
        reject(new ConnectionClosedError());
      };
      const waiter = () => {
        closed.removeEventListener('abort', onClose);
        resolve();
      };
      closed.addEventListener('abort', onClose, { once: true });
      this.spaceWaiters.push(waiter);
    });
  }

  state(): StoreState {
    const s = this.current;
    return s.log.oldestMs ? { ...s, log: { ...s.log, oldestMs: s.log.oldestMs + Date.now() - this.currentAt } } : s;
  }

  /** Resolves true once everything appended so far is confirmed by InfluxDB (or dead-lettered), false on timeout. */
  async flush(timeoutMs: number): Promise<boolean> {
    if (!this.worker || this.broken) return this.current.log.points === 0;
    this.sendAppends();
    try {
      const m = await this.request({ t: 'flush', id: 0, timeoutMs });
      return (m as { ok: boolean }).ok;
    } catch {
      return false;
    }
  }

  /** Stops shipping, closes the log (what is not confirmed stays for the next start) and ends the worker. */
  async close(): Promise<void> {
    this.closing = true;
    const worker = this.worker;
    if (!worker) return;
    if (!this.broken) {
      this.sendAppends();
      await this.request({ t: 'close', id: 0 }).catch(() => undefined);
    }
    this.worker = undefined;
    this.rejectRequests(new Error('store closed'));
    await worker.terminate();
  }

  private send(m: ToWorker): void {
    this.worker?.postMessage(m);
  }

  /** Sends a request (its id replaced by a fresh one) and resolves with the worker's answer of the same id. */
  private request(m: Extract<ToWorker, { id: number }>): Promise<FromWorker> {
    const id = ++this.nextId;
    return new Promise<FromWorker>((resolve, reject) => {
      if (!this.worker) return reject(this.broken ?? new Error('store worker not running'));
      this.requests.set(id, { resolve, reject });
      this.send({ ...m, id });
    });
  }

  private answer(id: number, m: FromWorker): void {
    const r = this.requests.get(id);
    this.requests.delete(id);
    r?.resolve(m);
  }

  private receive(post: WorkerPost): void {
    const wasFull = this.current.log.full;
    this.current = post.state;
    this.currentAt = Date.now();
    for (const m of post.msgs) {
      switch (m.t) {
        case 'durable':
          this.settle(m.upTo);
          break;
        case 'failed':
          this.settle(m.upTo, new Error(m.error));
          break;
        case 'opened':
        case 'flushed':
        case 'closed':
          this.answer(m.id, m);
          break;
        case 'late':
          for (let i = 0; i < m.marks.length; i += 2) this.hooks.late(m.marks[i] as string, m.marks[i + 1] as number);
          break;
        case 'rejected':
          try {
            this.hooks.deadLetter(m.points, m.reason);
            this.send({ t: 'confirm', seqs: m.points.map((p) => p.seq as number) });
          } catch (err) {
            // Not dead-lettered: the points stay unconfirmed in the log and are shipped again at the next start.
            this.log.error({ err: (err as Error).message, points: m.points.length }, 'cannot dead-letter points InfluxDB refused');
          }
          break;
        case 'dbMissing':
          this.hooks
            .prepareDatabase()
            .catch((err: Error) => this.log.warn({ err: err.message }, 'cannot create database'))
            .finally(() => this.send({ t: 'dbReady', id: m.id }));
          break;
        case 'metric': {
          const metric = this.deps.metrics?.[m.name as keyof Metrics] as unknown as Record<string, (...a: unknown[]) => void> | undefined;
          metric?.[m.op]?.(...m.args);
          break;
        }
        case 'log':
          this.relay(m.line);
          break;
      }
    }
    if (wasFull && !this.current.log.full) {
      const w = this.spaceWaiters;
      this.spaceWaiters = [];
      for (const fn of w) fn();
    }
  }

  private settle(upTo: number, err?: Error): void {
    while (this.waitHead < this.waiters.length) {
      const w = this.waiters[this.waitHead] as (typeof this.waiters)[number];
      if (w.upTo > upTo) break;
      this.waitHead++;
      if (err) w.reject(err);
      else w.resolve();
    }
    if (this.waitHead > 1024 && this.waitHead * 2 > this.waiters.length) {
      this.waiters = this.waiters.slice(this.waitHead);
      this.waitHead = 0;
    }
  }

  private relay(line: string): void {
    try {
      const { level, msg, ...rest } = JSON.parse(line) as { level: number; msg?: string };
      this.log[LEVELS[level] ?? 'info']({ ...rest, thread: 'store' }, msg ?? '');
    } catch {
      this.log.info({ thread: 'store' }, line);
    }
  }

  private rejectRequests(err: Error): void {
    for (const r of this.requests.values()) r.reject(err);
    this.requests.clear();
  }

  /**
   * The worker died (a bug: an uncaught error or an exit): no acknowledgement may be given for what it held, so
   * every waiting one is refused (the devices send those readings again), and so are appends until a new worker
   * has opened the log, which replays what the old one had made durable. At most MAX_RESTARTS within
   * RESTART_WINDOW_MS: a worker that keeps dying (a record it cannot handle, say) is left down, loudly.
   */
  private fail(err: Error): void {
    if (this.broken) return;
    this.broken = err;
    this.settle(Number.POSITIVE_INFINITY, err);
    for (const fn of this.spaceWaiters) fn();
    this.spaceWaiters = [];
    if (this.closing) return;
    const now = Date.now();
    this.restarts = this.restarts.filter((t) => t > now - RESTART_WINDOW_MS);
    if (this.restarts.length >= MAX_RESTARTS) {
      this.log.error(
        { err: err.message, restarts: this.restarts.length, windowMs: RESTART_WINDOW_MS },
        'store worker failed again: not restarted; readings are no longer acknowledged until the platform restarts',
      );
      return;
    }
    this.restarts.push(now);
    this.log.error({ err: err.message }, 'store worker failed: unacknowledged readings refused (devices send them again); restarting it');
    void this.restart();
  }

  private async restart(): Promise<void> {
    // The old worker's appends were all answered (refused) above: the new one counts from zero.
    this.appended = 0;
    this.parts = [];
    this.lens = [];
    this.waiters = [];
    this.waitHead = 0;
    try {
      const r = await this.open();
      if (this.closing) return;
      this.broken = undefined;
      this.send({ t: 'replay', from: r.from, to: r.to });
      this.log.warn({ replay: r.to - r.from, tornRecords: r.torn }, 'store worker restarted: the durable log is replayed');
    } catch (err) {
      if (this.closing) return;
      this.log.error({ err: (err as Error).message }, 'store worker could not be restarted; readings are no longer acknowledged');
    }
  }
}
