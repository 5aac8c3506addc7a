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
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { TOPICS, type Family } from '../core/contract.ts';
import type { CityProfile, GeoPoint, ProvisionRequest, Zone } from '../registry/index.ts';
import { leafZones } from '../registry/index.ts';
import {
  createModel,
  createRng,
  createStreetLightModel,
  type DeviceModel,
  type Rng,
  type StreetLightCommand,
  type StreetLightModel,
} from './models.ts';

export interface FleetOptions {
  mqttUrl: string;
  profile: CityProfile;
  counts: { airQuality: number; traffic: number; streetLight: number };
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
}

export interface FleetProgress {
  devices: number;
  connected: number;
  published: number;
  readingsPerSecond: number;
  publishErrors: number;
  rejected: number;
  connectErrors: number;
  /** Commands received by street lights (repeats included). */
  commands: number;
}

export interface Fleet {
  start(): Promise<void>;
  stop(): Promise<void>;
  progress(): FleetProgress;
}

/** Where and what one simulated device is; a pure function of the seed and the fleet's shape. */
export interface DevicePlan {
  id: string;
  family: Family;
  index: number;
  zone: string;
  location: GeoPoint;
  laneId?: number;
}

const FAMILY_PREFIX: Record<Family, string> = { airQuality: 'aq', traffic: 'tf', streetLight: 'sl' };
const FAMILY_ORDER: readonly Family[] = ['airQuality', 'traffic', 'streetLight'];
/** Nominal report intervals of field devices, ms (see ../shared/domain.md for the ranges). */
export const REPORT_INTERVAL_MS: Record<Family, number> = { airQuality: 60_000, traffic: 30_000, streetLight: 300_000 };
const MIN_INTERVAL_MS = 20;
const CONNECT_TIMEOUT_MS = 10_000;
const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 5_000;
/** A client's end() can wait forever on a stream that already closed (after a refused CONNACK). */
const END_WAIT_MS = 2_000;
/** Readings one connection may hold unacknowledged/queued while offline before new ones are dropped. */
const MAX_PENDING_PER_DEVICE = 500;
const RATE_WINDOW_MS = 5_000;
const RATE_SLOT_MS = 100;
/** Command ids a light remembers with its answer, so a repeat is answered again without acting twice. */
const REMEMBERED_COMMANDS = 64;
const CONNACK_BAD_CREDENTIALS = 4;
const CONNACK_SERVER_UNAVAILABLE = 3;

/** A 32-bit seed per (fleet seed, purpose, key): independent streams that do not shift when counts change. */
function deriveSeed(seed: number, purpose: string, key: string): number {
  return createHash('sha256').update(`${seed}\u0000${purpose}\u0000${key}`).digest().readUInt32LE(0);
}

function shuffled<T>(items: readonly T[], rng: Rng): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

type Ring = number[][]; // GeoJSON: [lon, lat] pairs

function insideRing(lon: number, lat: number, ring: Ring): boolean {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i] as [number, number];
    const [xj, yj] = ring[j] as [number, number];
    if (yi > lat !== yj > lat && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** GeoJSON polygon semantics: inside the outer ring and outside every hole. */
export function pointInPolygon(p: GeoPoint, rings: Ring[]): boolean {
  const [outer, ...holes] = rings;
  return !!outer && insideRing(p.lon, p.lat, outer) && !holes.some((h) => insideRing(p.lon, p.lat, h));
}

const round6 = (x: number): number => Math.round(x * 1e6) / 1e6; // ~0.1 m: plenty for a map pin

function locate(zone: Zone, profile: CityProfile, rng: Rng): GeoPoint {
  const rings = zone.shape?.coordinates as Ring[] | undefined;
  const outer = rings?.[0];
  if (rings && outer && outer.length >= 3) {
    const lons = outer.map((c) => c[0]!);
    const lats = outer.map((c) => c[1]!);
    const [minLon, maxLon, minLat, maxLat] = [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)];
    // Ward polygons fill a good share of their bbox; the bound only guards against a degenerate shape.
    for (let tries = 0; tries < 10_000; tries++) {
      const p = { lat: round6(minLat + (maxLat - minLat) * rng()), lon: round6(minLon + (maxLon - minLon) * rng()) };
      if (pointInPolygon(p, rings)) return p;
    }
  }
  // No usable shape: scatter within ~300 m of the zone's (or the city's) centre.
  const c = zone.centre ?? profile.centre;
  return { lat: round6(c.lat + (rng() - 0.5) * 0.006), lon: round6(c.lon + (rng() - 0.5) * 0.006) };
}

/** The fleet's devices, in a stable order (families, then index). Same inputs → same plan. */
export function planFleet(profile: CityProfile, counts: FleetOptions['counts'], seed: number, idPrefix = 'sim'): DevicePlan[] {
  const zones = leafZones(profile);
  if (zones.length === 0) throw new Error(`city profile ${profile.id} has no zones of level ${profile.zoneLevels.at(-1)}`);
  const plans: DevicePlan[] = [];
  for (const family of FAMILY_ORDER) {
    const n = counts[family];
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`counts.${family} must be a non-negative integer, got ${n}`);
    // Dealing zones round-robin from a seeded shuffle covers every ward even in a small fleet, and device 1 keeps
    // its zone when the fleet grows.
    const order = shuffled(zones, createRng(deriveSeed(seed, 'zones', family)));
    for (let i = 1; i <= n; i++) {
      const id = `${idPrefix}-${FAMILY_PREFIX[family]}-${String(i).padStart(4, '0')}`;
      const zone = order[(i - 1) % order.length]!;
      const plan: DevicePlan = {
        id,
        family,
        index: i,
        zone: zone.id,
        location: locate(zone, profile, createRng(deriveSeed(seed, 'place', id))),
      };
      if (family === 'traffic') plan.laneId = 1 + ((i - 1) % 3);
      plans.push(plan);
    }
  }
  return plans;
}

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

const errorCode = (err: unknown): unknown => (err as { code?: unknown } | null)?.code;

interface Connection {
  client: MqttClient;
  connected: boolean;
  /** Publishes not yet called back on this connection. */
  pending: number;
}

interface SimDevice {
  plan: DevicePlan;
  model: DeviceModel<object>;
  /** Street lights: the same model, with commands. */
  light?: StreetLightModel;
  /** Answers given, by command id (oldest first, bounded). */
  answers: Map<string, string>;
  intervalMs: number;
  phaseMs: number;
  reconnectMs: number;
  token?: string;
  conn?: Connection;
  /** Set when the device re-provisioned after a refusal; cleared by a successful connect. */
  reprovisioned: boolean;
  gaveUp: boolean;
  timer?: NodeJS.Timeout;
  reporting: boolean;
}

export function createFleet(opts: FleetOptions): Fleet {
  const idPrefix = opts.idPrefix ?? 'sim';
  const concurrency = Math.max(1, opts.connectConcurrency ?? 50);
  if (!(opts.intervalScale > 0)) throw new RangeError(`intervalScale must be > 0, got ${opts.intervalScale}`);
  const timeZone = opts.profile.timezone;

  const devices: SimDevice[] = planFleet(opts.profile, opts.counts, opts.seed, idPrefix).map((plan) => {
    const intervalMs = Math.max(MIN_INTERVAL_MS, Math.round(REPORT_INTERVAL_MS[plan.family] * opts.intervalScale));
    const modelRng = createRng(deriveSeed(opts.seed, 'model', plan.id));
    const light = plan.family === 'streetLight' ? createStreetLightModel(modelRng, { timeZone }) : undefined;
    const model: DeviceModel<object> =
      light ??
      (plan.family === 'traffic'
        ? createModel('traffic', modelRng, {
            timeZone,
            laneId: plan.laneId ?? 1,
            periodSeconds: Math.max(1, Math.round(intervalMs / 1000)),
          })
        : createModel(plan.family, modelRng, { timeZone }));
    const timing = createRng(deriveSeed(opts.seed, 'timing', plan.id));
    return {
      plan,
      model,
      light,
      answers: new Map(),
      intervalMs,
      phaseMs: Math.floor(timing() * intervalMs),
      reconnectMs: Math.round(RECONNECT_MIN_MS + timing() * (RECONNECT_MAX_MS - RECONNECT_MIN_MS)),
      reprovisioned: false,
      gaveUp: false,
      reporting: false,
    };
  });

  const limiter = createLimiter(concurrency);
  const retryTimers = new Set<NodeJS.Timeout>();
  const stats = { published: 0, publishErrors: 0, rejected: 0, connectErrors: 0, commands: 0 };
  let connected = 0;
  let stopped = false;
  let startPromise: Promise<void> | undefined;
  let stopPromise: Promise<void> | undefined;
  let startedAt = 0;

  // Sliding rate: fixed slots in a ring, each remembering which absolute slot it counts.
  const slotCount = RATE_WINDOW_MS / RATE_SLOT_MS;
  const slotIds = new Array<number>(slotCount).fill(-1);
  const slotCounts = new Array<number>(slotCount).fill(0);
  const countPublished = () => {
    stats.published++;
    const slot = Math.floor(Date.now() / RATE_SLOT_MS);
    const i = slot % slotCount;
    if (slotIds[i] !== slot) [slotIds[i], slotCounts[i]] = [slot, 0];
    slotCounts[i]!++;
  };
  const readingsPerSecond = (): number => {
    if (!startedAt) return 0;
    const now = Date.now();
    const current = Math.floor(now / RATE_SLOT_MS);
    let sum = 0;
    for (let i = 0; i < slotCount; i++) if (slotIds[i]! > current - slotCount) sum += slotCounts[i]!;
    // Divide by the time actually covered, or the first seconds of a run would read low.
    const windowMs = Math.min(RATE_WINDOW_MS, Math.max(RATE_SLOT_MS, now - startedAt));
    return (sum * 1000) / windowMs;
  };

  // ------------------------------------------------------------------------------------------------------
  // Credentials

  const credentials = new Map<string, string>();
  let credentialsDirty = false;
  let writeChain: Promise<void> = Promise.resolve();

  async function readCredentials(): Promise<void> {
    if (!opts.credentialsFile) return;
    let text: string;
    try {
      text = await readFile(opts.credentialsFile, 'utf8');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return;
      throw err;
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      // Overwriting it would throw away tokens that cannot be recovered: make the operator look.
      throw new Error(`credentials file ${opts.credentialsFile} is not valid JSON`, { cause: err });
    }
    if (!data || typeof data !== 'object' || Array.isArray(data)) {
      throw new Error(`credentials file ${opts.credentialsFile} must hold an object {deviceId: token}`);
    }
    for (const [id, token] of Object.entries(data)) if (typeof token === 'string' && token) credentials.set(id, token);
  }

  /** Serialised, atomic (temp file + rename) and private: the file holds live device secrets. */
  function saveCredentials(): Promise<void> {
    const file = opts.credentialsFile;
    if (!file) return Promise.resolve();
    // A failed write must not poison the chain: the next save retries with everything known by then.
    writeChain = writeChain
      .catch(() => undefined)
      .then(async () => {
        if (!credentialsDirty) return;
        credentialsDirty = false;
        const body = `${JSON.stringify(Object.fromEntries([...credentials].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))), null, 2)}\n`;
        await mkdir(dirname(file), { recursive: true, mode: 0o700 });
        const tmp = `${file}.${process.pid}.tmp`;
        try {
          await writeFile(tmp, body, { mode: 0o600 });
          await rename(tmp, file);
        } catch (err) {
          credentialsDirty = true;
          await rm(tmp, { force: true });
          throw err;
        }
      });
    return writeChain;
  }

  function setToken(d: SimDevice, token: string): void {
    d.token = token;
    credentials.set(d.plan.id, token);
    credentialsDirty = true;
  }

  /** New token for a device: provision it, or rotate when it already exists (we lost its token). */
  async function obtainToken(d: SimDevice): Promise<string> {
    const { id, family, zone, location, laneId, index } = d.plan;
    const name = `Simulated ${family} ${index}${laneId ? ` (lane ${laneId})` : ''}`;
    try {
      return (await opts.provision({ id, family, zone, location, name })).token;
    } catch (err) {
      if (errorCode(err) !== 'CP_REGISTRY_DEVICE_EXISTS') throw err;
      return opts.rotateToken(id);
    }
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
      if (!d.reporting) startReporting(d);
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
      obtainToken(d)
        .then(async (token) => {
          setToken(d, token);
          await saveCredentials().catch(() => undefined); // the token is in memory; the next save retries
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
    let cmd: { id?: unknown; action?: unknown; expiresAt?: unknown };
    try {
      cmd = JSON.parse(payload.toString('utf8'));
    } catch {
      return; // no id to answer to
    }
    if (!cmd || typeof cmd.id !== 'string') return;
    const id = cmd.id;
    const ackTopic = TOPICS.acks(d.plan.id);
    const repeated = d.answers.get(id);
    if (repeated) {
      conn.client.publish(ackTopic, repeated, { qos: 1 });
      return;
    }
    const answer = (status: 'ok' | 'failed', reason?: string) => {
      const ack = JSON.stringify({ id, status, ...(reason ? { reason } : {}), at: new Date().toISOString() });
      d.answers.set(id, ack);
      if (d.answers.size > REMEMBERED_COMMANDS) d.answers.delete(d.answers.keys().next().value as string);
      conn.client.publish(ackTopic, ack, { qos: 1 });
    };
    if (!d.light) {
      answer('failed', `a ${d.plan.family} device takes no commands`);
      return;
    }
    const expiresAt = typeof cmd.expiresAt === 'string' ? Date.parse(cmd.expiresAt) : Number.NaN;
    if (expiresAt <= Date.now()) {
      answer('failed', 'expired before it arrived');
      return;
    }
    const action = parseAction(cmd.action);
    if (typeof action === 'string') {
      answer('failed', action);
      return;
    }
    d.light.command(action, new Date());
    report(d); // the new state at once, before the answer: whoever sees the ack can already see the reading
    answer('ok');
  }

  // ------------------------------------------------------------------------------------------------------

  async function run(): Promise<void> {
    await readCredentials();
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
            if (!stopped) setToken(d, await obtainToken(d));
          } finally {
            release();
          }
        }),
      );
    } finally {
      // Whatever was provisioned before a failure must be kept: its token cannot be shown again.
      await saveCredentials();
    }
    if (stopped) return;
    startedAt = Date.now();
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
        await writeChain.catch(() => undefined);
      })();
      return stopPromise;
    },

    progress() {
      return {
        devices: devices.length,
        connected,
        published: stats.published,
        readingsPerSecond: readingsPerSecond(),
        publishErrors: stats.publishErrors,
        rejected: stats.rejected,
        connectErrors: stats.connectErrors,
        commands: stats.commands,
      };
    },
  };
}

/** A street-light action as the contract defines it, or why not (what a real controller would answer). */
function parseAction(a: unknown): StreetLightCommand | string {
  if (!a || typeof a !== 'object' || Array.isArray(a)) return 'action is not an object';
  const { powerState, illuminanceLevel, ...rest } = a as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) return `unsupported action: ${unknown.join(', ')}`;
  if (powerState !== undefined && powerState !== 'on' && powerState !== 'off') return `unsupported powerState: ${String(powerState)}`;
  if (illuminanceLevel !== undefined && !(typeof illuminanceLevel === 'number' && illuminanceLevel >= 0 && illuminanceLevel <= 1)) {
    return 'illuminanceLevel must be a number from 0 to 1';
  }
  if (powerState === undefined && illuminanceLevel === undefined) return 'empty action';
  return { powerState, illuminanceLevel } as StreetLightCommand;
}

/** One line for a terminal, e.g. "devices 298/298 online · 12.3 readings/s · 1234 sent · 0 rejected · 0 errors". */
export function formatProgress(p: FleetProgress): string {
  const errors = p.publishErrors + p.connectErrors;
  const detail = errors ? ` (${p.connectErrors} connect, ${p.publishErrors} publish)` : '';
  return (
    `devices ${p.connected}/${p.devices} online · ${p.readingsPerSecond.toFixed(1)} readings/s · ` +
    `${p.published} sent · ${p.rejected} rejected · ${errors} errors${detail}`
  );
}
