/**
 * A simulated device fleet: one real MQTT connection per device, speaking the device contract
 * (ingest/contract.ts) with the credentials of the registry, so a load test exercises the same paths as the
 * field devices (auth per connection, per-device topics, reconnects) rather than one fat publisher.
 *
 * Simulated street lights obey commands (devices/{id}/commands): they apply the action to their model (see
 * StreetLightModel.command for how long it overrides the lamp's own programme), publish a reading at once
 * showing the new state, then answer on devices/{id}/acks. A repeated command id is answered again, not redone.
 *
 * Everything a device is (id, zone, location, lane, value model, report phase, reconnect jitter) derives from
 * the seed, so two runs with the same seed replay the same city. Tokens are shown only once at provisioning:
 * the credentials file keeps them so a second run reuses the devices instead of piling up new ones.
 *
 * This file runs the fleet: connections, refusals, reporting and the lifecycle. The plan is in fleet-plan.ts,
 * a device's model and command answers in fleet-device.ts, tokens in provisioning.ts, counters in fleet-progress.ts.
 */
import { connect } from 'mqtt';
import { TOPICS } from '../core/contract.ts';
import type { CityProfile, ProvisionRequest } from '../registry/index.ts';
import { answerCommand, createSimDevice, type Connection, type SimDevice } from './fleet-device.ts';
import { type FleetCounts, planFleet } from './fleet-plan.ts';
import { createRateMeter, type FleetProgress } from './fleet-progress.ts';
import { createCredentialStore, errorCode, obtainToken } from './provisioning.ts';

export { type DevicePlan, planFleet, pointInPolygon, REPORT_INTERVAL_MS } from './fleet-plan.ts';
export { type FleetProgress, formatProgress } from './fleet-progress.ts';

export interface FleetOptions {
  mqttUrl: string;
  profile: CityProfile;
  counts: FleetCounts;
  /** Same seed → same device ids, zones, locations, values. */
  seed: number;
  /** Multiplies each family's report interval (0.01 = 100x faster). */
  intervalScale: number;
  qos: 0 | 1;
  /** JSON file {deviceId: token}: reuse devices across runs (tokens are shown only once at provisioning). Created/updated by the fleet. */
  credentialsFile?: string;
  /** Provision a device (in-process registry or REST). Throws an error whose `code` is 'CP_REGISTRY_DEVICE_EXISTS' when the id exists. */
  provision: (req: ProvisionRequest) => Promise<{ token: string }>;
  /** Issue a new token for an existing device whose token we do not know (lost credentials file). */
  rotateToken: (id: string) => Promise<string>;
  /** Connects in flight, default 50; also bounds concurrent provisioning calls (a REST registry is one server). */
  connectConcurrency?: number;
  /** Default 'sim'. */
  idPrefix?: string;
  /** History each device sends at its first connect, ms, ending now (0 or absent: none). */
  backfillMs?: number;
}

export interface Fleet {
  start(): Promise<void>;
  stop(): Promise<void>;
  progress(): FleetProgress;
}

const CONNECT_TIMEOUT_MS = 10_000;
/** A client's end() can wait forever on a stream that already closed (after a refused CONNACK). */
const END_WAIT_MS = 2_000;
/** Readings one connection may hold unacknowledged/queued while offline before new ones are dropped. */
const MAX_PENDING_PER_DEVICE = 500;
const CONNACK_BAD_CREDENTIALS = 4;
const CONNACK_SERVER_UNAVAILABLE = 3;
/** History is sampled no finer than this: a day of it stays a few hundred readings a device. */
const BACKFILL_STEP_MS = 300_000;
/** Readings per telemetry message of history (the contract allows arrays; ingest caps their length). */
const BACKFILL_BATCH = 100;

/** Simple FIFO semaphore: bounds connects (and provisioning calls) in flight. */
function createLimiter(max: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  return {
    async acquire(): Promise<() => void> {
      if (active >= max) await new Promise<void>((resolve) => waiting.push(resolve));
      else active++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const next = waiting.shift();
        if (next)
          next(); // hand the slot over without decrementing
        else active--;
      };
    },
  };
}

export function createFleet(opts: FleetOptions): Fleet {
  const idPrefix = opts.idPrefix ?? 'sim';
  const concurrency = Math.max(1, opts.connectConcurrency ?? 50);
  if (!(opts.intervalScale > 0)) throw new RangeError(`intervalScale must be > 0, got ${opts.intervalScale}`);
  const timeZone = opts.profile.timezone;
  const backfillMs = Math.max(0, opts.backfillMs ?? 0);

  const devices: SimDevice[] = planFleet(opts.profile, opts.counts, opts.seed, idPrefix).map((plan) =>
    createSimDevice(plan, { seed: opts.seed, intervalScale: opts.intervalScale, timeZone }),
  );

  const limiter = createLimiter(concurrency);
  const retryTimers = new Set<NodeJS.Timeout>();
  const stats = { published: 0, publishErrors: 0, rejected: 0, connectErrors: 0, commands: 0 };
  let connected = 0;
  let stopped = false;
  let startPromise: Promise<void> | undefined;
  let stopPromise: Promise<void> | undefined;

  const rate = createRateMeter();
  const countPublished = () => {
    stats.published++;
    rate.count();
  };

  // ------------------------------------------------------------------------------------------------------
  // Credentials

  const credentials = createCredentialStore(opts.credentialsFile);

  function setToken(d: SimDevice, token: string): void {
    d.token = token;
    credentials.set(d.plan.id, token);
  }

  // ------------------------------------------------------------------------------------------------------
  // Connections

  /** Resolves once this connection's first attempt settled (connected, refused or failed). */
  async function connectDevice(d: SimDevice): Promise<void> {
    const release = await limiter.acquire();
    if (stopped || d.gaveUp || !d.token) return release();
    const { id } = d.plan;
    const errorsTopic = TOPICS.errors(id);
    const commandsTopic = TOPICS.commands(id);
    const client = connect(opts.mqttUrl, {
      protocolVersion: 4,
      clientId: id,
      username: id,
      password: d.token,
      clean: true,
      reconnectPeriod: d.reconnectMs,
      connectTimeout: CONNECT_TIMEOUT_MS,
    });
    const conn: Connection = { client, connected: false, pending: 0 };
    d.conn = conn;
    let firstAttempt = true;
    let subscribed = false;
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => (settle = resolve));
    const attemptOver = () => {
      if (!firstAttempt) return;
      firstAttempt = false;
      release();
      settle();
    };

    client.on('connect', () => {
      if (!conn.connected) connected++;
      conn.connected = true;
      d.reprovisioned = false;
      if (!subscribed) {
        subscribed = true;
        client.subscribe(errorsTopic, { qos: 0 }); // mqtt.js resubscribes after each reconnect
        if (d.light) client.subscribe(commandsTopic, { qos: 1 });
      }
      attemptOver();
      if (!d.reporting) {
        // A device tells its state as soon as it is online: first its history (once), else its reading now.
        if (!d.backfilled && backfillMs > 0) sendHistory(d, conn);
        else report(d);
        d.backfilled = true;
        startReporting(d);
      } else report(d); // back after a cut: its state now, without waiting for its next period
    });
    client.on('message', (topic, payload) => {
      if (topic === errorsTopic) stats.rejected++;
      else if (topic === commandsTopic) onCommand(d, conn, payload);
    });
    client.on('close', () => {
      if (conn.connected) connected--;
      conn.connected = false;
      attemptOver();
    });
    client.on('error', (err) => {
      const code = errorCode(err);
      if (typeof code === 'number') {
        // A CONNACK refusal: mqtt.js does not retry those by itself.
        stats.connectErrors++;
        attemptOver();
        onRefused(d, conn, code);
      } else if (!conn.connected) {
        stats.connectErrors++; // refused socket, timeout, reset during CONNECT: mqtt.js retries on its own
        attemptOver();
      }
    });
    await settled;
  }

  function endClient(conn: Connection): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, END_WAIT_MS);
      conn.client.end(true, {}, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  function later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      retryTimers.delete(t);
      if (!stopped) fn();
    }, ms);
    retryTimers.add(t);
  }

  function onRefused(d: SimDevice, conn: Connection, code: number): void {
    if (stopped || d.conn !== conn) return;
    if (code === CONNACK_SERVER_UNAVAILABLE) {
      // The broker could not reach its registry: transient, try again like a device would.
      later(d.reconnectMs, () => {
        if (d.conn === conn) conn.client.reconnect();
      });
      return;
    }
    if (code === CONNACK_BAD_CREDENTIALS && !d.reprovisioned) {
      // The platform no longer knows this token (registry wiped or restored, token rotated elsewhere).
      d.reprovisioned = true;
      d.conn = undefined;
      void endClient(conn);
      obtainToken(d.plan, opts)
        .then(async (token) => {
          setToken(d, token);
          await credentials.save().catch(() => undefined); // the token is in memory; the next save retries
          if (!stopped) await connectDevice(d);
        })
        .catch(() => {
          stats.connectErrors++;
          giveUp(d);
        });
      return;
    }
    // Revoked, refused id, or still refused after re-provisioning: retrying would only hammer the broker.
    giveUp(d);
  }

  function giveUp(d: SimDevice): void {
    d.gaveUp = true;
    stopReporting(d);
    if (d.conn) void endClient(d.conn);
    d.conn = undefined;
  }

  // ------------------------------------------------------------------------------------------------------
  // Reporting

  function startReporting(d: SimDevice): void {
    d.reporting = true;
    // A random phase, so a fleet that connected together does not publish in lockstep.
    d.timer = setTimeout(() => {
      report(d);
      d.timer = setInterval(() => report(d), d.intervalMs);
    }, d.phaseMs);
  }

  /**
   * The device's last `backfillMs` as its model tells it, oldest first, ending with a reading of now, in arrays
   * of observation-timed readings: the normal telemetry path, well within ingest's per-device burst.
   */
  function sendHistory(d: SimDevice, conn: Connection): void {
    const now = Date.now();
    const step = Math.max(d.intervalMs, BACKFILL_STEP_MS);
    const readings: object[] = [];
    for (let t = now - Math.floor(backfillMs / step) * step; t <= now; t += step) readings.push(d.model.next(new Date(t)));
    for (let i = 0; i < readings.length; i += BACKFILL_BATCH) {
      const batch = readings.slice(i, i + BACKFILL_BATCH);
      conn.pending++;
      conn.client.publish(TOPICS.telemetry(d.plan.id), JSON.stringify(batch), { qos: opts.qos }, (err) => {
        conn.pending--;
        if (err) stats.publishErrors++;
        else for (let k = 0; k < batch.length; k++) countPublished();
      });
    }
  }

  function stopReporting(d: SimDevice): void {
    if (d.timer) clearTimeout(d.timer); // clears intervals too
    d.timer = undefined;
    d.reporting = false;
  }

  function report(d: SimDevice): void {
    const conn = d.conn;
    if (stopped || !conn) return;
    const reading = d.model.next(new Date());
    // While offline mqtt.js queues publishes like a device's backlog; bounded, so a long outage cannot eat memory.
    if (conn.pending >= MAX_PENDING_PER_DEVICE) {
      stats.publishErrors++;
      return;
    }
    conn.pending++;
    conn.client.publish(TOPICS.telemetry(d.plan.id), JSON.stringify(reading), { qos: opts.qos }, (err) => {
      conn.pending--;
      if (err) stats.publishErrors++;
      else countPublished();
    });
  }

  // ------------------------------------------------------------------------------------------------------
  // Commands

  function onCommand(d: SimDevice, conn: Connection, payload: Buffer): void {
    stats.commands++;
    const ackTopic = TOPICS.acks(d.plan.id);
    answerCommand(
      d,
      payload,
      (ack) => conn.client.publish(ackTopic, ack, { qos: 1 }),
      () => report(d),
    );
  }

  // ------------------------------------------------------------------------------------------------------

  async function run(): Promise<void> {
    await credentials.load();
    const missing: SimDevice[] = [];
    for (const d of devices) {
      const token = credentials.get(d.plan.id);
      if (token) d.token = token;
      else missing.push(d);
    }
    try {
      await Promise.all(
        missing.map(async (d) => {
          const release = await limiter.acquire();
          try {
            if (!stopped) setToken(d, await obtainToken(d.plan, opts));
          } finally {
            release();
          }
        }),
      );
    } finally {
      // Whatever was provisioned before a failure must be kept: its token cannot be shown again.
      await credentials.save();
    }
    if (stopped) return;
    rate.start();
    await Promise.all(devices.map((d) => connectDevice(d)));
  }

  return {
    start() {
      if (stopPromise !== undefined) return Promise.reject(new Error('fleet was stopped'));
      startPromise ??= run();
      return startPromise;
    },

    stop() {
      stopPromise ??= (async () => {
        stopped = true;
        for (const t of retryTimers) clearTimeout(t);
        retryTimers.clear();
        for (const d of devices) stopReporting(d);
        await Promise.all(devices.map((d) => (d.conn ? endClient(d.conn) : undefined)));
        await startPromise?.catch(() => undefined);
        await credentials.settled();
      })();
      return stopPromise;
    },

    progress() {
      return {
        devices: devices.length,
        connected,
        published: stats.published,
        readingsPerSecond: rate.perSecond(),
        publishErrors: stats.publishErrors,
        rejected: stats.rejected,
        connectErrors: stats.connectErrors,
        commands: stats.commands,
      };
    },
  };
}
