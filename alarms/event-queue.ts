/**
 * The order in which the alarm engine handles bus events: one after the other, since a device lookup may be
 * needed on the way and a later reading of the device must not overtake it. An event runs inline when nothing
 * waits (the common case: no closure and no queue entry per reading); otherwise, or once a handler turns
 * asynchronous, it waits in a bounded queue behind what waits. A handler turns asynchronous when it writes the
 * alarm store (a raise, a clear): those writes are rare, and events of the device or zone must see them done.
 * Operators' actions and the periodic tick take their turn in the same order (`call`), and `barrier` tells when
 * everything queued so far is done (its store writes committed).
 */
import type { Logger } from '../core/logger.ts';

export interface EventQueue {
  /** Runs `handler(ev)` now, or queued behind what waits. */
  run<T>(handler: (ev: T) => void | Promise<void>, ev: T): void;
  /** Runs `fn` in its turn after what waits; resolves (or rejects) with its outcome. Rejects once stopped. */
  call<T>(fn: () => T | Promise<T>): Promise<T>;
  /** Resolves once every job queued so far has ended; undefined when none waits or runs (the common case). */
  barrier(): Promise<void> | undefined;
  /** Drops what waits and resolves once the running job ended; nothing runs after it. */
  stop(): Promise<void>;
}

const MAX_QUEUE = 100_000;

export function createEventQueue(log: Logger): EventQueue {
  const queue: (() => void | Promise<void>)[] = [];
  let draining: Promise<void> | undefined;
  let droppedEvents = 0;
  let stopped = false;
  /** What a stop must settle: calls and barriers still waiting for their turn. */
  const cancels = new Set<() => void>();

  const push = (job: () => void | Promise<void>) => {
    if (stopped) return;
    if (queue.length >= MAX_QUEUE) {
      if (droppedEvents++ % 10_000 === 0) log.warn({ dropped: droppedEvents }, 'alarm engine behind: events dropped');
      return;
    }
    queue.push(job);
    // drain() may finish synchronously (synchronous jobs): it sets `draining` itself, before its first await.
    if (!draining) void drain();
  };
  function drain(): Promise<void> {
    let done = () => {};
    draining = new Promise<void>((resolve) => (done = resolve));
    return drainLoop().finally(done);
  }
  async function drainLoop(): Promise<void> {
    while (queue.length && !stopped) {
      const job = queue.shift() as () => void | Promise<void>;
      try {
        // Most jobs are synchronous: they run inline, without a promise and a microtask per reading.
        const pending = job();
        if (pending instanceof Promise) await pending;
      } catch (err) {
        log.error({ err }, 'alarm rule evaluation failed');
      }
    }
    draining = undefined;
  }

  return {
    run(handler, ev) {
      if (stopped) return;
      if (draining || queue.length) return push(() => handler(ev));
      let pending: void | Promise<void>;
      try {
        pending = handler(ev);
      } catch (err) {
        log.error({ err }, 'alarm rule evaluation failed');
        return;
      }
      if (pending instanceof Promise) push(() => pending);
    },
    call(fn) {
      if (stopped) return Promise.reject(new Error('alarm engine stopped'));
      return new Promise((resolve, reject) => {
        const cancel = () => reject(new Error('alarm engine stopped'));
        cancels.add(cancel);
        // Not bounded like events: an operator's action or a tick is never dropped (there are few).
        queue.push(async () => {
          cancels.delete(cancel);
          try {
            resolve(await fn());
          } catch (err) {
            reject(err);
          }
        });
        if (!draining) void drain();
      });
    },
    barrier() {
      if (!draining && !queue.length) return undefined;
      return new Promise<void>((resolve) => {
        cancels.add(resolve);
        queue.push(() => {
          cancels.delete(resolve);
          resolve();
        });
        if (!draining) void drain();
      });
    },
    async stop() {
      stopped = true;
      queue.length = 0;
      for (const c of cancels) c();
      cancels.clear();
      await draining;
    },
  };
}
