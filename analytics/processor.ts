/**
 * Analytics on the store worker thread (single-node mode): the worker hands it every reading it appends to the
 * durable log (ingest/processor.ts), so the main thread, which speaks MQTT and validates, no longer computes
 * indices and indicators. The same analytics (analytics.ts) runs here on a bus of its own; its `aqi` and
 * `indicator` events go back to the main thread's live bus in one message per turn, with the answers to the
 * API's reads; a street light's location is asked of the main thread's registry.
 *
 * Its state is rebuilt from InfluxDB at every start of the worker, the first and after a restart: what InfluxDB
 * holds is made to stand still (ingest ships what the log held, then holds shipping), the state is restored from
 * it, and the readings appended meanwhile that InfluxDB did not have yet are applied on top, so none is missed
 * and none counted twice.
 */
import { createBus } from '../core/bus.ts';
import type { EnrichedReading } from '../core/contract.ts';
import { createInfluxClient, type ProcessorFactory } from '../ingest/index.ts';
import { createAnalytics } from './analytics.ts';
import type { AnalyticsDeps } from './types.ts';
import type { FromProcessor, ProcessorData, ProcessorPost, ToProcessor } from './worker-protocol.ts';

/** How long the restore waits for the log to reach InfluxDB first (as the platform's start waits for ingest). */
const QUIESCE_MS = 10_000;

export const createProcessor: ProcessorFactory = (ctx) => {
  const data = ctx.data as ProcessorData;
  const port = ctx.port;
  const log = ctx.logger.child({ component: 'analytics' });
  const bus = createBus();
  let outbox: FromProcessor[] = [];
  let scheduled = false;
  const send = (m: FromProcessor) => {
    outbox.push(m);
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(() => {
        scheduled = false;
        const body: ProcessorPost = { msgs: outbox, computations: analytics.airComputations() };
        outbox = [];
        port.postMessage(body);
      });
    }
  };
  bus.on('aqi', (e) => send({ t: 'aqi', e }));
  bus.on('indicator', (e) => send({ t: 'indicator', e }));

  let nextLookup = 0;
  const lookups = new Map<number, (loc: { lat: number; lon: number } | undefined) => void>();
  const devices = {
    get: (id: string) =>
      new Promise<{ location?: { lat: number; lon: number } } | undefined>((resolve) => {
        const rid = ++nextLookup;
        lookups.set(rid, (location) => resolve(location ? { location } : undefined));
        send({ t: 'device', rid, id });
      }),
  };

  /** Readings appended before analytics listens: `inInflux` once the restore's query sees them. */
  let waiting: { r: EnrichedReading; seq: number; inInflux: boolean }[] | undefined = [];
  const analytics = createAnalytics(data.opts, {
    bus,
    influx: createInfluxClient(data.target),
    target: data.target,
    profile: data.profile,
    // Only a device's location is read (street-light daylight).
    devices: devices as unknown as AnalyticsDeps['devices'],
    logger: log,
    async beforeRestore() {
      await ctx.quiesce(QUIESCE_MS);
      for (const w of waiting ?? []) w.inInflux = ctx.shipped(w.seq);
    },
  });

  let starting: Promise<void> | undefined;
  const start = () =>
    (starting ??= (async () => {
      try {
        await analytics.start();
      } finally {
        // Listening now: what the restore did not see is applied on top of it, in append order.
        const held = waiting ?? [];
        waiting = undefined;
        for (const w of held) if (!w.inInflux) bus.emit('reading', w.r);
        ctx.resume();
      }
    })());

  port.on('message', (m: ToProcessor) => {
    switch (m.t) {
      case 'start':
        start().then(
          () => send({ t: 'done', id: m.id }),
          (err: Error) => {
            log.error({ err: err.message }, 'analytics failed to start');
            send({ t: 'done', id: m.id });
          },
        );
        break;
      case 'stop':
        drain();
        void analytics.stop().finally(() => send({ t: 'done', id: m.id }));
        break;
      case 'currentAqi':
        drain();
        send({ t: 'done', id: m.id, value: analytics.currentAqi() });
        break;
      case 'indicators':
        drain();
        send({ t: 'done', id: m.id, value: analytics.indicators(m.filter) });
        break;
      case 'location':
        lookups.get(m.rid)?.(m.location ?? undefined);
        lookups.delete(m.rid);
        break;
    }
  });

  /**
   * Readings wait for the check phase of the worker's event loop: the log's group commits that completed meanwhile
   * (the devices' acknowledgements) are answered first, analytics after them. A read from the API computes what
   * waits before it answers.
   */
  let queued: EnrichedReading[][] = [];
  let drainScheduled = false;
  function drain(): void {
    drainScheduled = false;
    const batches = queued;
    queued = [];
    try {
      for (const batch of batches) for (const r of batch) bus.emit('reading', r);
    } catch (err) {
      // Off the store worker's append path now: a failure here must not end the thread (and its log).
      log.error({ err: (err as Error).message }, 'analytics failed on readings');
    }
  }

  return {
    readings(readings, firstSeq) {
      if (waiting) {
        for (let i = 0; i < readings.length; i++) waiting.push({ r: readings[i] as EnrichedReading, seq: firstSeq + i, inInflux: false });
        return;
      }
      queued.push(readings);
      if (!drainScheduled) {
        drainScheduled = true;
        setImmediate(drain);
      }
    },
    async close() {
      drain();
      await analytics.stop();
      port.close();
    },
  };
};
