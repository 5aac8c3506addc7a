/**
 * The main thread's side of analytics on the store worker (processor.ts): what the platform and the API see as
 * analytics. It gives ingest the processor for each (re)start of the worker (a module and a new MessagePort),
 * re-emits the worker's `aqi` and `indicator` events on the live bus (the API's sockets and the alarms listen
 * there), answers the worker's device lookups from the registry, and asks the worker for the current indices and
 * indicators when the API reads them. After a restart of the worker the new one restores the state from InfluxDB
 * as at start; reads asked meanwhile are asked again of the new one.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { ProcessorSpec } from '../ingest/index.ts';
import type { InfluxDB } from 'influx';
import { silentLogger } from '../core/logger.ts';
import { createCityClock } from './city-time.ts';
import { createReports } from './reports.ts';
import { createRestoreSource } from './restore-query.ts';
import type { Analytics, CurrentAqiList, IndicatorFilter } from './analytics.ts';
import type { AnalyticsDeps, AnalyticsOptions } from './types.ts';
import type { FromProcessor, ProcessorData, ProcessorPost, ToProcessor } from './worker-protocol.ts';
import type { IndicatorEvent } from '../core/bus.ts';
import type { InfluxTarget } from '../ingest/index.ts';

export interface WorkerAnalytics extends Analytics {
  /** For ingest (IngestDeps.processor): called at each start of the store worker. */
  processor(): ProcessorSpec;
}

type Request = Extract<ToProcessor, { id: number }>;

/** A start or a stop waits at most this long for the worker (a restore reads hours of readings). */
const START_TIMEOUT_MS = 120_000;
const READ_TIMEOUT_MS = 15_000;

export function createWorkerAnalytics(
  opts: AnalyticsOptions,
  deps: Pick<AnalyticsDeps, 'bus' | 'profile' | 'devices' | 'logger'> & {
    target: InfluxTarget;
    /** The InfluxDB client the reports query, known once ingest is created (after this). */
    influx: () => InfluxDB;
  },
): WorkerAnalytics {
  const log = deps.logger ?? silentLogger;
  // The module beside this one: processor.js when compiled (dist/), processor.ts under tsx.
  const module = new URL(import.meta.url.endsWith('.js') ? './processor.js' : './processor.ts', import.meta.url).href;
  const data: ProcessorData = { opts, target: deps.target, profile: deps.profile };
  let port: MessagePort | undefined;
  let computations = 0;
  let started = false;
  let stopped = false;
  let nextId = 0;
  const requests = new Map<number, { msg: Request; resolve: (m: Extract<FromProcessor, { t: 'done' }>) => void }>();

  function receive(post: ProcessorPost): void {
    computations = post.computations;
    for (const m of post.msgs) {
      switch (m.t) {
        case 'aqi':
          deps.bus.emit('aqi', m.e);
          break;
        case 'indicator':
          deps.bus.emit('indicator', m.e);
          break;
        case 'done': {
          const r = requests.get(m.id);
          requests.delete(m.id);
          r?.resolve(m);
          break;
        }
        case 'device': {
          const from = port;
          deps.devices.get(m.id).then(
            (d) => from?.postMessage({ t: 'location', rid: m.rid, location: d?.location ?? null } satisfies ToProcessor),
            () => from?.postMessage({ t: 'location', rid: m.rid, location: null } satisfies ToProcessor),
          );
          break;
        }
      }
    }
  }

  function request(msg: Request): Promise<Extract<FromProcessor, { t: 'done' }>> {
    return new Promise((resolve) => {
      requests.set(msg.id, { msg, resolve });
      port?.postMessage(msg);
    });
  }

  /** A read: refused after READ_TIMEOUT_MS (a store worker that died and was not restarted answers nothing). */
  async function read(msg: Request): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const m = await Promise.race([
        request(msg),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            requests.delete(msg.id);
            reject(new Error('analytics on the store worker did not answer'));
          }, READ_TIMEOUT_MS);
        }),
      ]);
      return m.value;
    } finally {
      clearTimeout(timer);
    }
  }

  const id = () => ++nextId;

  return {
    processor() {
      const channel = new MessageChannel();
      const restarted = port !== undefined;
      port?.close();
      port = channel.port1;
      port.on('message', receive);
      if (restarted && started && !stopped) {
        // A new store worker: it restores the state from InfluxDB, then the reads asked of the old one are asked again.
        log.warn('store worker restarted: analytics restore their state from InfluxDB on it');
        const pending = [...requests.values()].map((r) => r.msg);
        void request({ t: 'start', id: id() }).then(() => log.info('analytics restored on the restarted store worker'));
        for (const msg of pending) port.postMessage(msg);
      }
      return { module, data, port: channel.port2 };
    },
    async start() {
      if (started) return;
      if (!port) throw new Error('analytics on the store worker: ingest must start first');
      started = true;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        request({ t: 'start', id: id() }),
        new Promise<void>((_, reject) => {
          timer = setTimeout(() => reject(new Error('analytics did not start on the store worker')), START_TIMEOUT_MS);
        }),
      ]).finally(() => clearTimeout(timer));
    },
    async stop() {
      if (!started || stopped) return;
      stopped = true;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([request({ t: 'stop', id: id() }), new Promise((r) => (timer = setTimeout(r, START_TIMEOUT_MS)))]).finally(() =>
        clearTimeout(timer),
      );
      port?.close();
    },
    async currentAqi() {
      if (!started || stopped) return { stations: [], zones: [] };
      return (await read({ t: 'currentAqi', id: id() })) as CurrentAqiList;
    },
    async indicators(filter: IndicatorFilter = {}) {
      if (!started || stopped) return [];
      return (await read({ t: 'indicators', id: id(), filter })) as IndicatorEvent[];
    },
    airComputations: () => computations,
    // Reports are read from InfluxDB on request, on this thread: nothing of them lives in the worker.
    reports: createReports(opts, {
      source: {
        query: (sql) => createRestoreSource(deps.influx(), deps.target).query(sql),
        from: (m) => createRestoreSource(deps.influx(), deps.target).from(m),
      },
      profile: deps.profile,
      clock: createCityClock(opts.timezone),
    }),
  };
}
