/**
 * The device side of the benchmark: MQTT devices (bench/lean-client.ts, or MQTT.js with --client=mqttjs), a
 * socket.io dashboard client and an InfluxDB poller.
 *
 * Runs as a child process forked by bench/e2e.ts, not inside the platform's process: real devices are other
 * machines, and MQTT.js encoding/ack handling on the platform's event loop would be charged to the platform
 * (on 2 cores it roughly halves what the broker can do). Commands arrive over IPC; each connects its own
 * clients and closes them before it answers, so runs do not share connections.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connectAsync } from 'mqtt';
import { io as ioClient } from 'socket.io-client';
import type { WebSocket } from 'ws';
// The frame codec straight from its file, as the dashboard takes it: it imports nothing, where
// dashboard-api/index.ts would load the whole server (Express, socket.io, SQLite) into every device process.
import { type LiveBatchFrame, unpackBatch } from '../dashboard-api/batch-frame.ts';
import type { Family } from '../core/contract.ts';
import { LeanClient } from './lean-client.ts';

export interface BenchDevice {
  id: string;
  token: string;
  /** What it reports (bench/families.ts: the city's mix or one family alone). */
  family: Family;
}

/** The devices' MQTT client: lean (bench/lean-client.ts, the default) or MQTT.js. */
export type LoadClient = 'lean' | 'mqttjs';

export interface ThroughputArgs {
  mqttUrl: string;
  client: LoadClient;
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
  /** Acknowledged readings per family of the devices. */
  readingsByFamily: Partial<Record<Family, number>>;
  /** process.hrtime.bigint() (CLOCK_MONOTONIC, comparable across processes on Linux) of the first publish. */
  startNs: bigint;
  lastAckNs: bigint;
}

export interface LatencyArgs {
  mqttUrl: string;
  client: LoadClient;
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
  /** The measuring socket asks for batched events (`batch`: readings and indicators arrays; see dashboard-api/live.ts). */
  batch?: boolean;
}

export interface LatencyResult {
  published: number;
  acked: number;
  socketLatenciesMs: number[];
  /** Published readings that never reached the socket within the grace period. */
  socketMissing: number;
  queryableMs: number[];
}

export interface SinkArgs {
  mqttUrl: string;
  client: LoadClient;
  /** Subscribed at QoS 1 (the bare-broker baseline: one subscriber relayed every publish). */
  topic: string;
}

export interface SinkResult {
  messages: number;
}

export interface IdleArgs {
  mqttUrl: string;
  client: LoadClient;
  devices: BenchDevice[];
  /** Connections being opened at once (a pool): more would overflow the listen backlog into SYN retries. */
  concurrency: number;
  /** MQTT keepalive of the idle devices, s. */
  keepaliveSeconds: number;
}

export interface IdleResult {
  connected: number;
  seconds: number;
}

export interface StormArgs {
  mqttUrl: string;
  client: LoadClient;
  /** Readings each device flushes after reconnecting. */
  backlog: number;
  readingsPerMessage: number;
  /** Unacknowledged QoS 1 publishes per device at most. */
  window: number;
  base: number;
  /** Give up after this long, s. */
  timeoutSeconds: number;
}

export interface StormResult {
  devices: number;
  readings: number;
  messages: number;
  /** All held connections cut (their sockets destroyed at once). */
  cutNs: bigint;
  /** The last device's CONNACK after the cut. */
  reconnectedNs: bigint;
  lastAckNs: bigint;
  /** Connect attempts that failed and were retried (a device keeps trying, like a real one). */
  connectRetries: number;
}

export interface SocketsArgs {
  apiUrl: string;
  apiToken: string;
  count: number;
  /** Ask the server for batched events (`batch`: readings and indicators arrays) instead of one event per reading. */
  batch: boolean;
}

export interface SocketsResult {
  frames: number;
  bytes: number;
  /** Sockets that closed before the end (e.g. disconnected by the server as slow consumers). */
  closed: number;
}

export type LoadRequest =
  | { id: number; cmd: 'throughput'; args: ThroughputArgs }
  | { id: number; cmd: 'latency'; args: LatencyArgs }
  | { id: number; cmd: 'sink'; args: SinkArgs }
  | { id: number; cmd: 'sinkStop'; args: Record<string, never> }
  | { id: number; cmd: 'idle'; args: IdleArgs }
  | { id: number; cmd: 'release'; args: Record<string, never> }
  | { id: number; cmd: 'storm'; args: StormArgs }
  | { id: number; cmd: 'sockets'; args: SocketsArgs }
  | { id: number; cmd: 'socketsStop'; args: Record<string, never> };
export type LoadResponse = { id: number; ok: true; result: unknown; cpuMs: number } | { id: number; ok: false; error: string };

const nowNs = () => process.hrtime.bigint();
const msSince = (t0: bigint) => Number(nowNs() - t0) / 1e6;

/**
 * A reading of a device of `family` observed at `time`, with the fields the simulated fleet's devices send
 * (simulators/models.ts; times as epoch ms), values varying with `seq`: an air station's ten measurements
 * (~200 bytes of JSON), a traffic counter's period, lane, counts per vehicle type and speed (~270 bytes), a
 * lamp's state, power and energy counter (~170 bytes).
 */
function reading(family: Family, time: number, seq: number) {
  const s = seq % 100;
  if (family === 'airQuality')
    return {
      dateObserved: time,
      pm1: 12 + s / 10,
      pm25: 20 + (seq % 400) / 10,
      pm10: 35 + (seq % 300) / 10,
      no2: 30 + s / 4,
      o3: 60 + (seq % 160) / 2,
      so2: 8 + s / 20,
      co: 900 + (seq % 500),
      temperature: 24 + s / 20,
      relativeHumidity: 0.6 + s / 400,
      noise: 58 + s / 10,
    };
  if (family === 'streetLight')
    return {
      dateObserved: time,
      powerState: 'on',
      illuminanceLevel: 1,
      powerConsumption: 60 + s / 10,
      energyConsumed: 1000 + seq / 1000,
      voltage: 228 + s / 20,
      current: 0.26 + s / 10_000,
      status: 'ok',
    };
  const intensity = seq % 120;
  return {
    dateObserved: time,
    dateObservedFrom: time - 30_000,
    dateObservedTo: time,
    laneId: 1 + (seq % 2),
    intensity,
    occupancy: s / 100,
    congested: s >= 50,
    intensityByVehicleType: {
      motorcycle: Math.round(intensity * 0.8),
      car: Math.round(intensity * 0.12),
      bus: seq % 3,
      lorry: seq % 4,
      bicycle: seq % 5,
    },
    averageVehicleSpeed: 20 + (seq % 400) / 10,
  };
}

/** A stored field every reading of `family` carries (bench/load.ts' readings): counts its points in InfluxDB. */
export const COUNTED_FIELD: Readonly<Record<Family, string>> = {
  airQuality: 'pm25',
  traffic: 'intensity',
  streetLight: 'powerConsumption',
};

/** What the loads need of a device's client, whichever it is. */
interface Publisher {
  id: string;
  publish(topic: string, payload: string, cb: (err?: Error) => void): void;
  onClose(handler: () => void): void;
  end(): Promise<void>;
  /** Cuts the connection without DISCONNECT. */
  destroy(): void;
}

/** One device connected with `client` (MQTT 3.1.1, clean session, no reconnect). */
async function connectDevice(url: string, d: BenchDevice, client: LoadClient, keepalive: number, timeoutMs: number): Promise<Publisher> {
  if (client === 'mqttjs') {
    const c = await connectAsync(url, deviceOptions(d, keepalive, timeoutMs));
    return {
      id: d.id,
      publish: (topic, payload, cb) => c.publish(topic, payload, { qos: 1 }, (err) => cb(err ?? undefined)),
      onClose: (handler) => c.once('close', handler),
      end: () => c.endAsync(true).catch(() => undefined),
      destroy: () => c.stream?.destroy(),
    };
  }
  const c = await LeanClient.connect(url, {
    clientId: d.id,
    username: d.id,
    password: d.token,
    keepaliveSeconds: keepalive,
    connectTimeoutMs: timeoutMs,
  });
  return {
    id: d.id,
    publish: (topic, payload, cb) => c.publish(topic, payload, cb),
    onClose: (handler) => c.onClose(handler),
    end: () => c.end(),
    destroy: () => c.destroy(),
  };
}

/** Rejects when any connection closes while `running()`: its unacknowledged publishes would never be answered. */
function failOnClose(clients: Publisher[], running: () => boolean): Promise<never> {
  let lost: (err: Error) => void = () => {};
  const failure = new Promise<never>((_, reject) => (lost = reject));
  failure.catch(() => undefined); // observed by Promise.race; never an unhandled rejection
  for (const c of clients) c.onClose(() => running() && lost(new Error(`MQTT connection of ${c.id} closed during the run`)));
  return failure;
}

async function connectPublishers(url: string, devices: BenchDevice[], client: LoadClient): Promise<Publisher[]> {
  const settled = await Promise.allSettled(devices.map((d) => connectDevice(url, d, client, 300, 10_000)));
  const clients = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(clients.map((c) => c.end()));
    throw new Error(`MQTT connect failed: ${(failed.reason as Error).message}`);
  }
  return clients;
}

/**
 * Every client publishes at QoS 1 as fast as the broker acknowledges, keeping `window` publishes unacknowledged,
 * until `seconds` have passed (or its `readingsPerDevice` are sent); then waits for the outstanding acks.
 */
async function throughput(a: ThroughputArgs): Promise<ThroughputResult> {
  const clients = await connectPublishers(a.mqttUrl, a.devices, a.client);
  let running = true;
  const failure = failOnClose(clients, () => running);
  let stopping = false;
  let messages = 0;
  let readings = 0;
  const readingsByFamily: Partial<Record<Family, number>> = {};
  let lastAckNs = 0n;
  const startNs = nowNs();
  const timer = setTimeout(() => (stopping = true), a.seconds * 1000);
  try {
    const drive = (client: Publisher, device: BenchDevice) =>
      new Promise<void>((resolve, reject) => {
        const topic = `devices/${device.id}/telemetry`;
        const quota = a.readingsPerDevice ?? Number.POSITIVE_INFINITY;
        let seq = 0;
        let inFlight = 0;
        const more = () => !stopping && seq < quota;
        const send = () => {
          const batch = [];
          for (let k = 0; k < a.readingsPerMessage && seq < quota; k++, seq++) batch.push(reading(device.family, a.base + seq, seq));
          const payload = JSON.stringify(a.readingsPerMessage === 1 ? batch[0] : batch);
          inFlight++;
          client.publish(topic, payload, (err) => {
            inFlight--;
            if (err) return reject(err);
            messages++;
            readings += batch.length;
            readingsByFamily[device.family] = (readingsByFamily[device.family] ?? 0) + batch.length;
            lastAckNs = nowNs();
            if (more()) send();
            else if (inFlight === 0) resolve();
          });
        };
        for (let k = 0; k < a.window && more(); k++) send();
        if (inFlight === 0) resolve();
      });
    const done = Promise.all(clients.map((c, i) => drive(c, a.devices[i] as BenchDevice)));
    await withTimeout(Promise.race([done, failure]), (a.seconds + 60) * 1000, 'acks did not arrive within 60 s of the end');
    return { messages, readings, readingsByFamily, startNs, lastAckNs };
  } finally {
    clearTimeout(timer);
    running = false;
    await Promise.all(clients.map((c) => c.end()));
  }
}

/**
 * Steady load of `rate` readings/s (round robin over the devices, one reading a message, QoS 1) while a
 * socket.io client subscribed to everything times publish → receive for every reading, and a poller times
 * publish → queryable in InfluxDB for `samples` readings spread over the run.
 */
async function latency(a: LatencyArgs): Promise<LatencyResult> {
  const clients = await connectPublishers(a.mqttUrl, a.devices, a.client);
  let running = true;
  const failure = failOnClose(clients, () => running);
  const socket = ioClient(a.apiUrl, {
    transports: ['websocket'],
    reconnection: false,
    auth: a.batch ? { token: a.apiToken, batch: true } : { token: a.apiToken },
  });
  let tick: NodeJS.Timeout | undefined;
  try {
    // Readings are identified by device and observation time, which ingest passes through unchanged.
    const sentAt = new Map<string, bigint>();
    const socketLatenciesMs: number[] = [];
    const received = (r: { device: string; time: number }) => {
      const key = `${r.device}:${r.time}`;
      const t0 = sentAt.get(key);
      if (t0 === undefined) return;
      socketLatenciesMs.push(msSince(t0));
      sentAt.delete(key);
    };
    socket.on('reading', received);
    socket.on(
      'batch' as 'reading',
      ((frame: LiveBatchFrame) => {
        for (const r of unpackBatch(frame).readings) received(r);
      }) as unknown as (r: { device: string; time: number }) => void,
    );
    const ack = (await socket.timeout(5000).emitWithAck('subscribe', {})) as { ok: boolean; error?: string };
    if (!ack.ok) throw new Error(`socket.io subscribe refused: ${ack.error}`);

    const seqs = a.devices.map(() => 0);
    let published = 0;
    let acked = 0;
    let pubError: Error | undefined;
    const publish = (i: number): { device: BenchDevice; time: number; t0: bigint } => {
      const d = a.devices[i] as BenchDevice;
      const seq = seqs[i] as number;
      seqs[i] = seq + 1;
      const time = a.base + seq;
      const t0 = nowNs();
      sentAt.set(`${d.id}:${time}`, t0);
      (clients[i] as Publisher).publish(`devices/${d.id}/telemetry`, JSON.stringify(reading(d.family, time, seq)), (err) => {
        if (err) pubError ??= err;
        else acked++;
      });
      published++;
      return { device: d, time, t0 };
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
        const { device, time, t0 } = publish(s % a.devices.length);
        const id = device.id;
        const q = `SELECT count("${COUNTED_FIELD[device.family]}") FROM "${device.family}" WHERE "device" = '${id}' AND time = ${time}ms`;
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
      Promise.race([Promise.all([paced, sampled]), failure]),
      (a.seconds + 60) * 1000,
      'latency run did not finish within 60 s of its end',
    );
    // Let outstanding acks and socket pushes arrive (bounded), then report what did not.
    for (const until = Date.now() + 10_000; (acked < published || sentAt.size) && Date.now() < until; ) await sleep(20);
    if (pubError) throw pubError;
    return { published, acked, socketLatenciesMs, socketMissing: sentAt.size, queryableMs };
  } finally {
    clearInterval(tick);
    running = false;
    socket.close();
    await Promise.all(clients.map((c) => c.end()));
  }
}

/** Counts QoS 1 publishes relayed by a broker to one subscriber (the bare Aedes baseline). */
let sink: { count(): number; end(): Promise<void> } | undefined;

async function startSink(a: SinkArgs): Promise<SinkResult> {
  const clientId = `bench-sink-${process.pid}`;
  if (a.client === 'mqttjs') {
    const client = await connectAsync(a.mqttUrl, { clientId, protocolVersion: 4, reconnectPeriod: 0 });
    const state = { messages: 0, end: () => client.endAsync(true).then(() => undefined) };
    client.on('message', () => state.messages++);
    await client.subscribeAsync(a.topic, { qos: 1 });
    sink = { count: () => state.messages, end: state.end };
  } else {
    const client = await LeanClient.connect(a.mqttUrl, { clientId });
    await client.subscribe(a.topic);
    sink = { count: () => client.received, end: () => client.end() };
  }
  return { messages: 0 };
}

async function stopSink(): Promise<SinkResult> {
  const s = sink;
  sink = undefined;
  if (!s) return { messages: 0 };
  await s.end().catch(() => undefined);
  return { messages: s.count() };
}

/** Idle devices held open between commands (connections, storm). */
let held: { clients: Publisher[]; devices: BenchDevice[]; keepalive: number; client: LoadClient } | undefined;

/** Runs `fn` over `items` with at most `concurrency` at once. */
async function pool<T, R>(items: T[], concurrency: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

const deviceOptions = (d: BenchDevice, keepalive: number, connectTimeout = 30_000) => ({
  clientId: d.id,
  username: d.id,
  password: d.token,
  protocolVersion: 4 as const,
  reconnectPeriod: 0,
  connectTimeout,
  keepalive,
});

async function idle(a: IdleArgs): Promise<IdleResult> {
  if (held) throw new Error('devices are already held');
  const t0 = nowNs();
  const clients: Publisher[] = [];
  try {
    await pool(a.devices, a.concurrency, async (d) => {
      clients.push(await connectDevice(a.mqttUrl, d, a.client, a.keepaliveSeconds, 30_000));
    });
  } catch (err) {
    await Promise.all(clients.map((c) => c.end()));
    throw new Error(`MQTT connect failed after ${clients.length} of ${a.devices.length}: ${(err as Error).message}`);
  }
  held = { clients, devices: a.devices, keepalive: a.keepaliveSeconds, client: a.client };
  return { connected: clients.length, seconds: msSince(t0) / 1000 };
}

async function release(): Promise<IdleResult> {
  const h = held;
  held = undefined;
  if (!h) return { connected: 0, seconds: 0 };
  const t0 = nowNs();
  await Promise.all(h.clients.map((c) => c.end()));
  return { connected: h.clients.length, seconds: msSince(t0) / 1000 };
}

/**
 * Reconnect storm: every held connection is cut at once (its socket destroyed, as a cellular outage would),
 * then every device reconnects at once and flushes `backlog` readings at QoS 1. A device whose connect fails
 * tries again after 100-600 ms (a real device backs off), until `timeoutSeconds`.
 */
async function storm(a: StormArgs): Promise<StormResult> {
  const h = held;
  if (!h) throw new Error('no devices held: run idle first');
  held = undefined;
  const cutNs = nowNs();
  for (const c of h.clients) c.destroy();
  await Promise.all(h.clients.map((c) => c.end()));
  const deadline = Date.now() + a.timeoutSeconds * 1000;
  let reconnectedNs = 0n;
  let lastAckNs = 0n;
  let readings = 0;
  let messages = 0;
  let connectRetries = 0;
  const clients: Publisher[] = [];
  try {
    await Promise.all(
      h.devices.map(async (d) => {
        let client: Publisher | undefined;
        for (;;) {
          try {
            client = await connectDevice(a.mqttUrl, d, a.client, h.keepalive, Math.max(1000, deadline - Date.now()));
            break;
          } catch (err) {
            if (Date.now() > deadline) throw err;
            connectRetries++;
            await sleep(100 + Math.random() * 500);
          }
        }
        clients.push(client);
        reconnectedNs = nowNs();
        const c = client;
        const topic = `devices/${d.id}/telemetry`;
        await new Promise<void>((resolve, reject) => {
          let seq = 0;
          let inFlight = 0;
          const send = () => {
            const batch = [];
            for (let k = 0; k < a.readingsPerMessage && seq < a.backlog; k++, seq++)
              batch.push(reading(d.family, a.base + seq * 1000, seq));
            inFlight++;
            c.publish(topic, JSON.stringify(a.readingsPerMessage === 1 ? batch[0] : batch), (err) => {
              inFlight--;
              if (err) return reject(err);
              messages++;
              readings += batch.length;
              lastAckNs = nowNs();
              if (seq < a.backlog) send();
              else if (inFlight === 0) resolve();
            });
          };
          for (let k = 0; k < a.window && seq < a.backlog; k++) send();
          if (inFlight === 0) resolve();
        });
      }),
    );
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  return { devices: h.devices.length, readings, messages, cutNs, reconnectedNs, lastAckNs, connectRetries };
}

/**
 * Dashboard sockets that only load the server: raw WebSocket clients speaking the engine.io / socket.io
 * protocol by hand (open, CONNECT with the token, `subscribe` to everything, pong), counting frames without
 * decoding them, so 200 of them cost this process little and the server's fan-out is what is measured.
 */
let loadSockets: { sockets: WebSocket[]; frames: number; bytes: number; closed: number } | undefined;

async function openSockets(a: SocketsArgs): Promise<SocketsResult> {
  const { WebSocket } = await import('ws');
  const state = { sockets: [] as WebSocket[], frames: 0, bytes: 0, closed: 0 };
  loadSockets = state;
  const url = `${a.apiUrl.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
  const auth = JSON.stringify(a.batch ? { token: a.apiToken, batch: true } : { token: a.apiToken });
  await pool(Array.from({ length: a.count }), 50, async () => {
    const ws = new WebSocket(url, { skipUTF8Validation: true, perMessageDeflate: false });
    state.sockets.push(ws);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('socket.io subscribe timed out')), 10_000);
      let subscribed = false;
      ws.on('message', (data: Buffer) => {
        state.frames++;
        state.bytes += data.length;
        const c0 = data[0];
        if (c0 === 0x32 && data.length === 1) return void ws.send('3'); // engine.io ping → pong
        if (subscribed) return;
        const text = data.toString('utf8');
        if (text.startsWith('0{')) ws.send(`40${auth}`);
        else if (text.startsWith('40')) ws.send('420["subscribe",{}]');
        else if (text.startsWith('44')) reject(new Error(`socket.io connect refused: ${text}`));
        else if (text.startsWith('430')) {
          subscribed = true;
          clearTimeout(timer);
          if (!text.includes('"ok":true')) reject(new Error(`subscribe refused: ${text.slice(0, 200)}`));
          else resolve();
        }
      });
      ws.on('error', reject);
      ws.on('close', () => {
        state.closed++;
        reject(new Error('socket closed before it subscribed'));
      });
    });
  });
  return { frames: state.frames, bytes: state.bytes, closed: state.closed };
}

async function closeSockets(): Promise<SocketsResult> {
  const s = loadSockets;
  loadSockets = undefined;
  if (!s) return { frames: 0, bytes: 0, closed: 0 };
  const result = { frames: s.frames, bytes: s.bytes, closed: s.closed };
  for (const ws of s.sockets) ws.terminate();
  return result;
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

function dispatch(req: LoadRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'throughput':
      return throughput(req.args);
    case 'latency':
      return latency(req.args);
    case 'sink':
      return startSink(req.args);
    case 'sinkStop':
      return stopSink();
    case 'idle':
      return idle(req.args);
    case 'release':
      return release();
    case 'storm':
      return storm(req.args);
    case 'sockets':
      return openSockets(req.args);
    case 'socketsStop':
      return closeSockets();
  }
}

// Only when forked (an IPC channel exists); importing this file for its types does nothing.
if (process.send) {
  const reply = (r: LoadResponse) => process.send?.(r);
  process.on('message', (req: LoadRequest) => {
    // CPU time of this process for the command, so the report shows what the devices cost on the same cores.
    const cpu0 = process.cpuUsage();
    const run = dispatch(req);
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
