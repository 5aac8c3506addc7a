/**
 * The device side of the benchmark: MQTT.js devices, a socket.io dashboard client and an InfluxDB poller.
 *
 * Runs as a child process forked by bench/e2e.ts, not inside the platform's process: real devices are other
 * machines, and MQTT.js encoding/ack handling on the platform's event loop would be charged to the platform
 * (on 2 cores it roughly halves what the broker can do). Commands arrive over IPC; each connects its own
 * clients and closes them before it answers, so runs do not share connections.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connectAsync, type MqttClient } from 'mqtt';
import { io as ioClient } from 'socket.io-client';

export interface BenchDevice {
  id: string;
  token: string;
}

export interface ThroughputArgs {
  mqttUrl: string;
  devices: BenchDevice[];
  seconds: number;
  /** Unacknowledged QoS 1 publishes per client at most. */
  window: number;
  readingsPerMessage: number;
  /**
   * A fixed load: each device publishes exactly this many readings (the last message may carry fewer), then
   * the run ends; `seconds` is only the time limit. Unset: publish until `seconds` have passed.
   */
  readingsPerDevice?: number;
  /** Observation time of each device's first reading (epoch ms); reading k of a device is at base + k. */
  base: number;
}

export interface ThroughputResult {
  messages: number;
  readings: number;
  /** process.hrtime.bigint() (CLOCK_MONOTONIC, comparable across processes on Linux) of the first publish. */
  startNs: bigint;
  lastAckNs: bigint;
}

export interface LatencyArgs {
  mqttUrl: string;
  apiUrl: string;
  /** socket.io needs a token (session or service token). */
  apiToken: string;
  influxUrl: string;
  database: string;
  devices: BenchDevice[];
  seconds: number;
  /** Readings per second over all devices, one reading per message. */
  rate: number;
  /** Readings whose publish → queryable-in-InfluxDB time is measured (published in addition to `rate`). */
  samples: number;
  base: number;
}

export interface LatencyResult {
  published: number;
  acked: number;
  socketLatenciesMs: number[];
  /** Published readings that never reached the socket within the grace period. */
  socketMissing: number;
  queryableMs: number[];
}

export type LoadRequest = { id: number; cmd: 'throughput'; args: ThroughputArgs } | { id: number; cmd: 'latency'; args: LatencyArgs };
export type LoadResponse = { id: number; ok: true; result: unknown; cpuMs: number } | { id: number; ok: false; error: string };

const nowNs = () => process.hrtime.bigint();
const msSince = (t0: bigint) => Number(nowNs() - t0) / 1e6;

/** A traffic counter reading (~90 bytes of JSON) with the given observation time. */
function reading(time: number, seq: number) {
  return { dateObserved: time, intensity: seq % 120, averageVehicleSpeed: 20 + (seq % 400) / 10, occupancy: (seq % 100) / 100 };
}

/** Connects every device (MQTT 3.1.1, no reconnect: a dropped connection must fail the run, not hide in it). */
async function connectAll(url: string, devices: BenchDevice[]): Promise<MqttClient[]> {
  const settled = await Promise.allSettled(
    devices.map((d) =>
      connectAsync(url, {
        clientId: d.id,
        username: d.id,
        password: d.token,
        protocolVersion: 4,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
      }),
    ),
  );
  const clients = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await closeAll(clients);
    throw new Error(`MQTT connect failed: ${(failed.reason as Error).message}`);
  }
  return clients;
}

async function closeAll(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
}

/** Rejects when any client loses its connection: its unacknowledged QoS 1 callbacks would never fire. */
function watchConnections(clients: MqttClient[]): { failure: Promise<never>; dispose(): void } {
  let dispose = () => {};
  const failure = new Promise<never>((_, reject) => {
    const handlers = clients.map((c) => {
      const onClose = () => reject(new Error(`MQTT connection of ${c.options.clientId} closed during the run`));
      c.once('close', onClose);
      return () => c.off('close', onClose);
    });
    dispose = () => {
      for (const h of handlers) h();
    };
  });
  failure.catch(() => undefined); // observed by Promise.race; never an unhandled rejection
  return { failure, dispose: () => dispose() };
}

/**
 * Every client publishes at QoS 1 as fast as the broker acknowledges, keeping `window` publishes unacknowledged,
 * until `seconds` have passed (or its `readingsPerDevice` are sent); then waits for the outstanding acks.
 */
async function throughput(a: ThroughputArgs): Promise<ThroughputResult> {
  const clients = await connectAll(a.mqttUrl, a.devices);
  const watch = watchConnections(clients);
  let stopping = false;
  let messages = 0;
  let readings = 0;
  let lastAckNs = 0n;
  const startNs = nowNs();
  const timer = setTimeout(() => (stopping = true), a.seconds * 1000);
  try {
    const drive = (client: MqttClient, device: BenchDevice) =>
      new Promise<void>((resolve, reject) => {
        const topic = `devices/${device.id}/telemetry`;
        const quota = a.readingsPerDevice ?? Number.POSITIVE_INFINITY;
        let seq = 0;
        let inFlight = 0;
        const more = () => !stopping && seq < quota;
        const send = () => {
          const batch = [];
          for (let k = 0; k < a.readingsPerMessage && seq < quota; k++, seq++) batch.push(reading(a.base + seq, seq));
          const payload = JSON.stringify(a.readingsPerMessage === 1 ? batch[0] : batch);
          inFlight++;
          client.publish(topic, payload, { qos: 1 }, (err) => {
            inFlight--;
            if (err) return reject(err);
            messages++;
            readings += batch.length;
            lastAckNs = nowNs();
            if (more()) send();
            else if (inFlight === 0) resolve();
          });
        };
        for (let k = 0; k < a.window && more(); k++) send();
        if (inFlight === 0) resolve();
      });
    const done = Promise.all(clients.map((c, i) => drive(c, a.devices[i] as BenchDevice)));
    await withTimeout(Promise.race([done, watch.failure]), (a.seconds + 60) * 1000, 'acks did not arrive within 60 s of the end');
    return { messages, readings, startNs, lastAckNs };
  } finally {
    clearTimeout(timer);
    watch.dispose();
    await closeAll(clients);
  }
}

/**
 * Steady load of `rate` readings/s (round robin over the devices, one reading a message, QoS 1) while a
 * socket.io client subscribed to everything times publish → receive for every reading, and a poller times
 * publish → queryable in InfluxDB for `samples` readings spread over the run.
 */
async function latency(a: LatencyArgs): Promise<LatencyResult> {
  const clients = await connectAll(a.mqttUrl, a.devices);
  const watch = watchConnections(clients);
  const socket = ioClient(a.apiUrl, { transports: ['websocket'], reconnection: false, auth: { token: a.apiToken } });
  let tick: NodeJS.Timeout | undefined;
  try {
    // Readings are identified by device and observation time, which ingest passes through unchanged.
    const sentAt = new Map<string, bigint>();
    const socketLatenciesMs: number[] = [];
    socket.on('reading', (r: { device: string; time: number }) => {
      const key = `${r.device}:${r.time}`;
      const t0 = sentAt.get(key);
      if (t0 === undefined) return;
      socketLatenciesMs.push(msSince(t0));
      sentAt.delete(key);
    });
    const ack = (await socket.timeout(5000).emitWithAck('subscribe', {})) as { ok: boolean; error?: string };
    if (!ack.ok) throw new Error(`socket.io subscribe refused: ${ack.error}`);

    const seqs = a.devices.map(() => 0);
    let published = 0;
    let acked = 0;
    let pubError: Error | undefined;
    const publish = (i: number): { id: string; time: number; t0: bigint } => {
      const d = a.devices[i] as BenchDevice;
      const seq = seqs[i] as number;
      seqs[i] = seq + 1;
      const time = a.base + seq;
      const t0 = nowNs();
      sentAt.set(`${d.id}:${time}`, t0);
      (clients[i] as MqttClient).publish(`devices/${d.id}/telemetry`, JSON.stringify(reading(time, seq)), { qos: 1 }, (err) => {
        if (err) pubError ??= err;
        else acked++;
      });
      published++;
      return { id: d.id, time, t0 };
    };

    const start = nowNs();
    // Pace by elapsed time, not by counting ticks: a late timer catches up instead of lowering the rate.
    const paced = new Promise<void>((resolve) => {
      let scheduled = 0;
      let next = 0;
      tick = setInterval(() => {
        const elapsed = Number(nowNs() - start) / 1e9;
        const due = Math.floor(Math.min(elapsed, a.seconds) * a.rate);
        for (; scheduled < due; scheduled++, next = (next + 1) % a.devices.length) publish(next);
        if (elapsed >= a.seconds) {
          clearInterval(tick);
          resolve();
        }
      }, 5);
    });

    const sampled = (async () => {
      const out: number[] = [];
      const everyMs = (a.seconds * 1000) / a.samples;
      for (let s = 0; s < a.samples; s++) {
        const dueMs = (s + 0.5) * everyMs - msSince(start);
        if (dueMs > 0) await sleep(dueMs);
        const { id, time, t0 } = publish(s % a.devices.length);
        const q = `SELECT count("intensity") FROM "traffic" WHERE "device" = '${id}' AND time = ${time}ms`;
        // Poll every 10 ms: the figure has that resolution (plus one query, ~1-2 ms).
        for (;;) {
          if ((await countOf(a.influxUrl, a.database, q)) > 0) break;
          if (msSince(t0) > 10_000) throw new Error(`reading ${id}@${time} not queryable after 10 s`);
          await sleep(10);
        }
        out.push(msSince(t0));
      }
      return out;
    })();

    const [, queryableMs] = await withTimeout(
      Promise.race([Promise.all([paced, sampled]), watch.failure]),
      (a.seconds + 60) * 1000,
      'latency run did not finish within 60 s of its end',
    );
    // Let outstanding acks and socket pushes arrive (bounded), then report what did not.
    for (const until = Date.now() + 10_000; (acked < published || sentAt.size) && Date.now() < until; ) await sleep(20);
    if (pubError) throw pubError;
    return { published, acked, socketLatenciesMs, socketMissing: sentAt.size, queryableMs };
  } finally {
    clearInterval(tick);
    watch.dispose();
    socket.close();
    await closeAll(clients);
  }
}

/** Rejects with `message` when `p` has not settled after `ms`; the timer never outlives the race. */
async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function countOf(influxUrl: string, database: string, q: string): Promise<number> {
  const res = await fetch(`${influxUrl}/query?${new URLSearchParams({ db: database, q, epoch: 'ms' })}`);
  const body = (await res.json()) as { results?: { series?: { values: [unknown, number][] }[]; error?: string }[] };
  if (!res.ok || body.results?.[0]?.error) throw new Error(`InfluxDB query failed (${res.status}): ${JSON.stringify(body)}`);
  return body.results?.[0]?.series?.[0]?.values[0]?.[1] ?? 0;
}

// Only when forked (an IPC channel exists); importing this file for its types does nothing.
if (process.send) {
  const reply = (r: LoadResponse) => process.send?.(r);
  process.on('message', (req: LoadRequest) => {
    // CPU time of this process for the command, so the report shows what the devices cost on the same cores.
    const cpu0 = process.cpuUsage();
    const run = req.cmd === 'throughput' ? throughput(req.args) : latency(req.args);
    run.then(
      (result) => {
        const cpu = process.cpuUsage(cpu0);
        reply({ id: req.id, ok: true, result, cpuMs: (cpu.user + cpu.system) / 1000 });
      },
      (err: Error) => reply({ id: req.id, ok: false, error: err.stack ?? err.message }),
    );
  });
  // The parent went away (crash, Ctrl-C): don't linger with open connections.
  process.on('disconnect', () => process.exit(0));
}
