/**
 * The store worker: a thread of its own that owns the durable log, the log shipper and the InfluxDB writer
 *. The main thread speaks MQTT, validates and routes; here each accepted point becomes a log record
 * (CRC, group commit, fdatasync), waits for its InfluxDB batch and is confirmed. Measured on the platform's
 * thread: this work, and the garbage collection of points that live a whole batch age, was the largest part of
 * the per-reading cost after validation (docs/benchmarks.md).
 *
 * Everything the worker cannot do itself goes back to the main thread as a message: acknowledgements (`durable`),
 * dead letters (SQLite, `rejected`), late readings for the tiers' catch-up (`late`), creating a missing
 * database (`dbMissing`), metrics and log records. Every batch of messages carries the log's and the writer's
 * state, so the main thread reads it without asking.
 */
import { readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import type { Family } from '../core/contract.ts';
import { DurableLog, type LogPoint } from './durable-log.ts';
import { InfluxWriter, type PendingPoint } from './influx-writer.ts';
import { fromLine } from './line-protocol.ts';
import type { ProcessorFactory, ReadingProcessor } from './processor.ts';
import { LogShipper } from './shipper.ts';
import type { FromWorker, StoreWorkerData, ToWorker, WorkerPost } from './store-protocol.ts';
import type { Metrics } from '../core/metrics.ts';

const port = parentPort;
if (!port) throw new Error('store-worker.ts runs as a worker thread (ingest/store.ts starts it)');
const data = workerData as StoreWorkerData;

// Outgoing messages are gathered and sent once per turn of the event loop, with the state.
let outbox: FromWorker[] = [];
let scheduled = false;
function send(msg: FromWorker): void {
  outbox.push(msg);
  if (!scheduled) {
    scheduled = true;
    queueMicrotask(post);
  }
}
/** Sends the state even with no message: the main thread's `full()` must hear of room a confirmation made. */
function postState(): void {
  if (!scheduled) {
    scheduled = true;
    queueMicrotask(post);
  }
}
function post(): void {
  scheduled = false;
  const msgs = outbox;
  outbox = [];
  const body: WorkerPost = { msgs, state: { writer: writer.state(), log: log.usage(), waiting: shipper.waiting() } };
  port?.postMessage(body);
}

const logger = pino({ level: data.logLevel, base: undefined, timestamp: false }, { write: (line: string) => send({ t: 'log', line }) });

// The writer's metrics, forwarded by name, whichever it uses: a handful of calls per InfluxDB request, never per
// reading.
const forwarded = new Map<string, object>();
const metrics = new Proxy(
  {},
  {
    get(_, name) {
      const key = String(name);
      let m = forwarded.get(key);
      if (!m) {
        m = {
          inc: (...args: unknown[]) => send({ t: 'metric', name: key, op: 'inc', args }),
          observe: (...args: unknown[]) => send({ t: 'metric', name: key, op: 'observe', args }),
          set: (...args: unknown[]) => send({ t: 'metric', name: key, op: 'set', args }),
        };
        forwarded.set(key, m);
      }
      return m;
    },
  },
) as Metrics;

let nextRequest = 0;
const dbWaiters = new Map<number, () => void>();

const log = new DurableLog({ ...data.log, logger });
const writer = new InfluxWriter(
  data.influx,
  // The shipper bounds what the writer holds; the writer's own drop bound is never reached behind it.
  { ...data.writer, maxBufferedPoints: Number.MAX_SAFE_INTEGER },
  {
    metrics,
    logger,
    onDatabaseMissing: () =>
      new Promise<void>((resolve) => {
        const id = ++nextRequest;
        dbWaiters.set(id, resolve);
        send({ t: 'dbMissing', id });
      }),
    onStored(points) {
      if (data.lateAfterMs > 0) {
        // The observation time is the line's last token (line-protocol.ts writes it in ms).
        const lateBefore = Date.now() - data.lateAfterMs;
        const marks: (string | number)[] = [];
        for (const p of points) {
          const t = Number(p.line.slice(p.line.lastIndexOf(' ') + 1));
          if (t < lateBefore) marks.push(p.family, t);
        }
        if (marks.length) send({ t: 'late', marks });
      }
      log.confirm(points.map((p) => p.seq as number));
    },
    onProgress: () => shipper.pump(),
    // Dead letters live in the main thread's SQLite; it confirms the points once they are written there.
    onRejected: (points: PendingPoint[], reason: string) => send({ t: 'rejected', points, reason }),
  },
);
const shipper = new LogShipper(log, writer, { ...data.shipper });
log.onFlushed = () => shipper.pump();

/** Points appended since the worker started, and how many of them were answered (durable or failed). */
let appended = 0;
/** The log's end when it was opened: points below it were left by an earlier worker or run. */
let openedEnd = 0;

/**
 * The processor the platform named (analytics in single-node mode), given every appended reading. Loaded before
 * this thread reads its first message (the port queues them meanwhile).
 */
let processor: ReadingProcessor | undefined;
if (data.processor) {
  const spec = data.processor;
  const mod = (await import(spec.module)) as { createProcessor: ProcessorFactory };
  processor = await mod.createProcessor({
    data: spec.data,
    port: spec.port,
    logger,
    async quiesce(timeoutMs) {
      const until = Date.now() + timeoutMs;
      while (log.unconfirmedBefore(openedEnd) > 0 && Date.now() < until) {
        shipper.pump();
        await writer.flush(Math.max(1, Math.min(200, until - Date.now())));
        await new Promise((r) => setTimeout(r, 5));
      }
      shipper.hold();
      await writer.flush(Math.max(1, until - Date.now()));
    },
    shipped: (seq) => shipper.handedOver(seq),
    resume: () => shipper.release(),
  });
}

function append(text: string, lens: Uint32Array): void {
  const points: LogPoint[] = new Array(lens.length);
  let off = 0;
  for (let i = 0; i < lens.length; i++) {
    const end = off + (lens[i] as number);
    const t1 = text.indexOf('\t', off);
    const t2 = text.indexOf('\t', t1 + 1);
    points[i] = { family: text.slice(off, t1) as Family, device: text.slice(t1 + 1, t2), line: text.slice(t2 + 1, end) };
    off = end;
  }
  appended += points.length;
  const upTo = appended;
  let durable: Promise<void>;
  try {
    const r = shipper.append(points);
    durable = r.durable;
    if (processor) {
      try {
        processor.readings(
          points.map((p) => fromLine(p.line, p.family)),
          r.first,
        );
      } catch (err) {
        // The processor's bug must never take the durable log down with it.
        logger.error({ err: (err as Error).message }, 'processor failed on appended readings');
      }
    }
  } catch (err) {
    durable = Promise.reject(err as Error); // the log is closed: refused, not acknowledged
  }
  // The log answers its waiters in order, so `upTo` only grows.
  durable.then(
    () => send({ t: 'durable', upTo }),
    (err: Error) => send({ t: 'failed', upTo, error: err.message }),
  );
}

/** This thread's id in the operating system (Linux: /proc/thread-self), for per-thread CPU accounting. */
function osThreadId(): number | undefined {
  try {
    return Number(readlinkSync('/proc/thread-self').split('/').pop());
  } catch {
    return undefined;
  }
}

async function flush(timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    shipper.pump();
    if (log.usage().points === 0) return true;
    if (Date.now() > until) return false;
    await writer.flush(Math.max(1, Math.min(200, until - Date.now())));
    await new Promise((r) => setTimeout(r, 5));
  }
}

port.on('message', (m: ToWorker) => {
  switch (m.t) {
    case 'append':
      append(m.text, m.lens);
      break;
    case 'open': {
      const r = log.open();
      openedEnd = r.to;
      send({ t: 'opened', id: m.id, ...r, osThreadId: osThreadId() });
      break;
    }
    case 'replay':
      shipper.replay(m.from, m.to);
      break;
    case 'confirm':
      // Dead-lettered points: confirming the last of a segment can free the budget, which devices wait for.
      log.confirm(m.seqs);
      postState();
      break;
    case 'dbReady':
      dbWaiters.get(m.id)?.();
      dbWaiters.delete(m.id);
      break;
    case 'flush':
      void flush(m.timeoutMs).then((ok) => send({ t: 'flushed', id: m.id, ok }));
      break;
    case 'close':
      void (async () => {
        await processor?.close().catch((err: Error) => logger.error({ err: err.message }, 'processor failed to close'));
        shipper.stop();
        await writer.stop(1000);
        await log.close();
        send({ t: 'closed', id: m.id });
      })();
      break;
  }
});
