/**
 * Commands to devices: an operator dims or switches street lights (a list of devices or a zone);
 * the platform publishes each command to `devices/{id}/commands` (QoS 1) and the device answers on
 * `devices/{id}/acks` [C-TOPIC]. A command's state:
 *
 *   pending ──PUBACK──▶ delivered ──ack ok──▶ acknowledged
 *      │                   │────ack failed──▶ failed (reason)
 *      └───────────────────┴──expiresAt passed──▶ expired
 *
 * (an ack may also come straight from pending, e.g. from a device that subscribed with QoS 0 and sends no PUBACK).
 *
 * Delivery is at least once: a command is published when it is created if the device's subscription to its
 * commands topic is in place, else it waits (pending, kept in SQLite across restarts) and every pending
 * command of a device is (re)sent, oldest first, each time that subscription comes into place (a connect). A
 * device answers a repeated id again without acting twice. Every creation and state change is emitted on the
 * bus (`command`); commands created by schedules are audited as `(system)` (the API audits its own requests).
 *
 * Schedules are commands too: at the local time `from` (city time zone) a schedule creates one command per
 * target device with `action`, at `to` one with `endAction` (when given), all with the schedule's id as batch.
 * A tick (`scheduleTickMs`, default 1 s) looks for the latest edge passed since the schedule's last one (or its
 * creation), so `HH:MM:SS` edges fire within a tick, and after a restart the edge missed while the platform was
 * down fires once (the latest one only: it is the state the lights should be in). A schedule created inside its
 * window does not act until its next edge.
 */
import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { COMMAND_SCHEMAS, commandAckSchema, TOPICS, type CommandAck, type DeviceError, type Family } from '../core/contract.ts';
import type { DeviceMeta } from '../ingest/validate.ts';
import type { CommandRecord, CommandState, LiveBus } from '../core/bus.ts';
import { PlatformError, type ErrorCode } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { AuditEntry, CityProfile, Device, DeviceStore } from '../registry/index.ts';
import { type CommandFilter, type CommandTarget, type Schedule, SqliteCommandStore } from './store.ts';
import { latestEdge, parseTimeOfDay } from './time-of-day.ts';

export interface CommandsOptions {
  /** SQLite file (dataDir/commands.db); ':memory:' for tests of the component alone. */
  file: string;
  /** Default 1 h. */
  defaultTtlMs?: number;
  /** Default 7 days. */
  maxTtlMs?: number;
  /** Default 1000. */
  expiryCheckMs?: number;
  /** Default 1000. */
  scheduleTickMs?: number;
  /** Finished commands kept, default 100 000. */
  historyLimit?: number;
}

/** What commands need from the broker (broker/broker.ts implements it). */
export interface CommandTransport {
  publish(topic: string, payload: string | Buffer, opts?: { qos?: 0 | 1; retain?: boolean }): Promise<void>;
  isSubscribed(deviceId: string, topic: string): boolean;
  readonly events: EventEmitter<{
    subscribed: [deviceId: string, topic: string];
    delivered: [deviceId: string, topic: string, payload: Buffer];
  }>;
}

export interface CommandsDeps {
  devices: Pick<DeviceStore, 'get' | 'list'>;
  /** Zones (a zone target takes its sub-zones too) and the time zone of schedules. */
  profile: Pick<CityProfile, 'zones' | 'timezone'>;
  transport: CommandTransport;
  bus?: LiveBus;
  /** The operator audit log (commands created by schedules are recorded as `(system)`). */
  audit?: (entry: Omit<AuditEntry, 'at'>) => Promise<void>;
  logger?: Logger;
}

export interface CommandRequest {
  target: CommandTarget;
  action: Record<string, unknown>;
  /** Default commands.defaultTtlMs. */
  ttlMs?: number;
}

export interface ScheduleRequest {
  name: string;
  target: CommandTarget;
  from: string;
  to: string;
  action: Record<string, unknown>;
  endAction?: Record<string, unknown>;
  ttlMs?: number;
  /** Default true. */
  enabled?: boolean;
}

export interface Commands {
  /** Starts the expiry and schedule timers and sends what waits for devices already listening. */
  start(): void;
  stop(): Promise<void>;
  /** Validates the target and action, stores one command per device (one batch) and sends those whose device listens. */
  create(req: CommandRequest, actor: string): Promise<{ batch: string; commands: CommandRecord[] }>;
  get(id: string): CommandRecord | undefined;
  /** Newest first. */
  list(filter: CommandFilter): CommandRecord[];
  /** A message of a device on its acks topic (broker → platform dispatch). */
  handleAck(device: DeviceMeta, payload: Buffer): void;
  createSchedule(req: ScheduleRequest, actor: string): Promise<Schedule>;
  getSchedule(id: string): Schedule | undefined;
  listSchedules(): Schedule[];
  /** Throws CP_COMMAND_SCHEDULE_NOT_FOUND. */
  deleteSchedule(id: string): Schedule;
  /** Runs one schedule check now (the timer calls it every scheduleTickMs). */
  tick(now?: number): Promise<void>;
  readonly maxTtlMs: number;
}

const COMMANDABLE = Object.keys(COMMAND_SCHEMAS) as Family[];

export function createCommands(opts: CommandsOptions, deps: CommandsDeps): Commands {
  const log = deps.logger ?? silentLogger;
  const defaultTtlMs = opts.defaultTtlMs ?? 3_600_000;
  const maxTtlMs = opts.maxTtlMs ?? 7 * 86_400_000;
  const store = new SqliteCommandStore(opts.file, opts.historyLimit);
  const { transport } = deps;
  const timeZone = deps.profile.timezone;

  const ajv = new Ajv({ allErrors: true, strict: true });
  addFormats.default(ajv, ['date-time']);
  const actionValidators = new Map<Family, ValidateFunction>(
    COMMANDABLE.map((f) => [f, ajv.compile(COMMAND_SCHEMAS[f] as object)] as const),
  );
  const validateAck = ajv.compile<CommandAck>(commandAckSchema);

  const emit = (c: CommandRecord) => {
    try {
      deps.bus?.emit('command', c);
    } catch (err) {
      log.error({ err, command: c.id }, 'command listener failed');
    }
  };

  // ------------------------------------------------------------------------------------------------------
  // Validation

  function checkAction(family: Family, action: unknown, what = 'action'): Record<string, unknown> {
    const validate = actionValidators.get(family);
    if (!validate) throw new PlatformError('CP_COMMAND_WRONG_FAMILY', `${family} devices take no commands`);
    if (!validate(action)) {
      const errors = (validate.errors ?? []).map((e) => `${what}${e.instancePath.replaceAll('/', '.')} ${e.message}`);
      throw new PlatformError('CP_COMMAND_BAD_ACTION', `the ${what} is not one a ${family} device takes: ${errors.join('; ')}`, {
        details: errors,
      });
    }
    const a = action as { powerState?: string; illuminanceLevel?: number };
    if (a.powerState === 'off' && a.illuminanceLevel !== undefined && a.illuminanceLevel > 0) {
      throw new PlatformError('CP_COMMAND_BAD_ACTION', `the ${what} switches off with an illuminanceLevel above 0`);
    }
    return action as Record<string, unknown>;
  }

  function checkTtl(ttlMs: number | undefined | null): number {
    const ttl = ttlMs ?? defaultTtlMs;
    if (!Number.isInteger(ttl) || ttl < 1000 || ttl > maxTtlMs) {
      throw new PlatformError('CP_API_VALIDATION', `ttlMs must be an integer from 1000 to ${maxTtlMs} (commands.maxTtlMs)`);
    }
    return ttl;
  }

  /** The zone and every zone below it in the profile's hierarchy. */
  function zoneAndBelow(zone: string): Set<string> {
    const out = new Set([zone]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const z of deps.profile.zones) {
        if (z.parent && out.has(z.parent) && !out.has(z.id)) {
          out.add(z.id);
          grew = true;
        }
      }
    }
    return out;
  }

  /**
   * The devices of a target. Strict (API): an unknown, revoked or non-commandable device is an error. Lenient
   * (schedules, at an edge): those are skipped, the rest get their command.
   */
  async function resolveTarget(target: CommandTarget, strict: boolean): Promise<Device[]> {
    if ('zone' in target) {
      if (!deps.profile.zones.some((z) => z.id === target.zone)) {
        throw new PlatformError('CP_REGISTRY_UNKNOWN_ZONE', `zone ${target.zone} is not in the city profile`);
      }
      const zones = zoneAndBelow(target.zone);
      const out: Device[] = [];
      for (const family of COMMANDABLE) out.push(...(await deps.devices.list({ family })).filter((d) => zones.has(d.zone)));
      if (out.length === 0 && strict) {
        throw new PlatformError(
          'CP_COMMAND_EMPTY_TARGET',
          `zone ${target.zone} has no device that takes commands (${COMMANDABLE.join(', ')})`,
        );
      }
      return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }
    const ids = [...new Set(target.devices)];
    if (ids.length === 0) {
      if (strict) throw new PlatformError('CP_COMMAND_EMPTY_TARGET', 'the target lists no device');
      return [];
    }
    const found = await Promise.all(ids.map((id) => deps.devices.get(id)));
    const problems: { code: ErrorCode; ids: string[]; text: string }[] = [
      { code: 'CP_REGISTRY_DEVICE_NOT_FOUND', ids: ids.filter((_, i) => !found[i]), text: 'no such device' },
      {
        code: 'CP_COMMAND_WRONG_FAMILY',
        ids: found.filter((d): d is Device => !!d && !COMMANDABLE.includes(d.family)).map((d) => `${d.id} (${d.family})`),
        text: `takes no commands (only ${COMMANDABLE.join(', ')})`,
      },
      { code: 'CP_COMMAND_DEVICE_REVOKED', ids: found.filter((d) => d?.revokedAt).map((d) => (d as Device).id), text: 'revoked' },
    ];
    const problem = problems.find((p) => p.ids.length > 0);
    if (problem && strict) {
      throw new PlatformError(problem.code, `${problem.text}: ${problem.ids.join(', ')}`, { details: problem.ids });
    }
    return found.filter((d): d is Device => !!d && COMMANDABLE.includes(d.family) && !d.revokedAt);
  }

  // ------------------------------------------------------------------------------------------------------
  // Sending

  function send(c: CommandRecord): void {
    const payload = JSON.stringify({ id: c.id, action: c.action, issuedAt: c.createdAt, expiresAt: c.expiresAt });
    transport.publish(TOPICS.commands(c.device), payload, { qos: 1 }).catch((err: Error) => {
      // Stays pending: sent again when the device subscribes next.
      log.warn({ err: err.message, command: c.id, device: c.device }, 'command not published');
    });
  }

  /** Sends every pending command of a device whose subscription is in place, oldest first. */
  function dispatch(device: string): void {
    if (!transport.isSubscribed(device, TOPICS.commands(device))) return;
    for (const c of store.pendingOf(device, Date.now())) send(c);
  }

  function insertAndSend(devices: Device[], action: Record<string, unknown>, ttl: number, actor: string, batch: string) {
    const now = Date.now();
    const created = store.insert(
      devices.map((d) => ({
        id: randomUUID(),
        device: d.id,
        zone: d.zone,
        family: d.family,
        action,
        createdAt: new Date(now).toISOString(),
        createdBy: actor,
        expiresAt: new Date(now + ttl).toISOString(),
        batch,
      })),
    );
    for (const c of created) emit(c);
    // Synchronously after the insert: a subscription coming in later finds them in the store.
    for (const c of created) if (transport.isSubscribed(c.device, TOPICS.commands(c.device))) send(c);
    return created;
  }

  const onSubscribed = (device: string, topic: string) => {
    if (topic === TOPICS.commands(device)) dispatch(device);
  };
  const onDelivered = (device: string, topic: string, payload: Buffer) => {
    if (topic !== TOPICS.commands(device)) return;
    let id: unknown;
    try {
      id = (JSON.parse(payload.toString('utf8')) as { id?: unknown }).id;
    } catch {
      return;
    }
    if (typeof id !== 'string') return;
    const c = store.markDelivered(id, device, Date.now());
    if (c) emit(c);
  };

  // ------------------------------------------------------------------------------------------------------
  // Acks

  function tellDevice(device: string, code: ErrorCode, reason: string): void {
    const err: DeviceError = { code, reason, at: new Date().toISOString() };
    transport.publish(TOPICS.errors(device), JSON.stringify(err), { qos: 1 }).catch(() => undefined);
  }

  function handleAck(device: DeviceMeta, payload: Buffer): void {
    let ack: unknown;
    try {
      ack = JSON.parse(payload.toString('utf8'));
    } catch (err) {
      log.info({ device: device.id }, 'ack is not JSON');
      tellDevice(device.id, 'CP_COMMAND_BAD_ACK', `ack is not JSON: ${(err as Error).message}`);
      return;
    }
    if (!validateAck(ack)) {
      const why = (validateAck.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message}`).join('; ');
      log.info({ device: device.id, why }, 'ack refused');
      tellDevice(device.id, 'CP_COMMAND_BAD_ACK', `ack breaks its schema: ${why}`);
      return;
    }
    const known = store.get(ack.id);
    if (!known || known.device !== device.id) {
      log.info({ device: device.id, command: ack.id }, 'ack for an unknown command');
      tellDevice(device.id, 'CP_COMMAND_NOT_FOUND', `no command ${ack.id} for ${device.id}`);
      return;
    }
    const ok = ack.status === 'ok';
    const reason = ok ? (ack.reason ?? null) : (ack.reason ?? 'the device gave no reason');
    const c = store.markAnswered(ack.id, device.id, ok ? 'acknowledged' : 'failed', reason, Date.now());
    if (c) emit(c);
    // else: already finished (a repeated ack, or one after expiry): the first answer stands.
    else log.debug({ device: device.id, command: ack.id, state: known.state }, 'ack for a finished command ignored');
  }

  // ------------------------------------------------------------------------------------------------------
  // Schedules

  async function fire(s: Schedule, edge: 'from' | 'to', at: number): Promise<void> {
    store.scheduleEdgeFired(s.id, edge, at); // first: an edge fires once, even if sending fails below
    const action = edge === 'from' ? s.action : s.endAction;
    if (!action) return;
    const devices = await resolveTarget(s.target, false).catch((err: Error) => {
      log.warn({ err: err.message, schedule: s.id }, 'schedule target cannot be resolved');
      return [] as Device[];
    });
    if (devices.length === 0) return;
    const ttl = s.ttlMs ?? defaultTtlMs;
    const created = insertAndSend(devices, action, ttl, `schedule:${s.id}`, s.id);
    log.info({ schedule: s.id, edge, commands: created.length }, 'schedule edge');
    deps
      .audit?.({ actor: '(system)', role: null, action: 'command.create', target: s.id, address: null, outcome: 'ok' })
      .catch((err: Error) => log.error({ err: err.message }, 'audit record failed'));
  }

  let ticking = false;
  async function tick(now = Date.now()): Promise<void> {
    if (ticking) return; // a slow tick (many devices) is not overlapped by the next one
    ticking = true;
    try {
      for (const s of store.listSchedules()) {
        if (!s.enabled) continue;
        const since = Math.max(Date.parse(s.createdAt), s.lastEdge ? Date.parse(s.lastEdge.at) : 0);
        const edges = { from: parseTimeOfDay(s.from), to: parseTimeOfDay(s.to) };
        const e = latestEdge(edges, since, now, s.timeZone);
        if (e) await fire(s, e.edge, e.at);
      }
    } catch (err) {
      log.error({ err }, 'schedule tick failed');
    } finally {
      ticking = false;
    }
  }

  // ------------------------------------------------------------------------------------------------------

  let expiryTimer: NodeJS.Timeout | undefined;
  let scheduleTimer: NodeJS.Timeout | undefined;
  let started = false;
  let closed = false;

  const expire = () => {
    try {
      for (const c of store.expireDue(Date.now())) emit(c);
    } catch (err) {
      log.error({ err }, 'command expiry failed');
    }
  };

  return {
    maxTtlMs,
    start() {
      if (started) return;
      started = true;
      transport.events.on('subscribed', onSubscribed);
      transport.events.on('delivered', onDelivered);
      expire();
      expiryTimer = setInterval(expire, opts.expiryCheckMs ?? 1000);
      scheduleTimer = setInterval(() => void tick(), opts.scheduleTickMs ?? 1000);
      for (const device of store.devicesWithPending(Date.now())) dispatch(device);
    },
    async stop() {
      if (closed) return;
      closed = true;
      clearInterval(expiryTimer);
      clearInterval(scheduleTimer);
      transport.events.off('subscribed', onSubscribed);
      transport.events.off('delivered', onDelivered);
      store.close();
    },
    async create(req, actor) {
      const ttl = checkTtl(req.ttlMs);
      const devices = await resolveTarget(req.target, true);
      for (const f of new Set(devices.map((d) => d.family))) checkAction(f, req.action);
      const batch = randomUUID();
      const commands = insertAndSend(devices, req.action, ttl, actor, batch);
      log.info({ batch, actor, commands: commands.length }, 'commands created');
      return { batch, commands };
    },
    get: (id) => store.get(id),
    list: (filter) => store.list(filter),
    handleAck(device, payload) {
      if (closed) return;
      try {
        handleAck(device, payload);
      } catch (err) {
        log.error({ err, device: device.id }, 'ack handling failed');
      }
    },
    async createSchedule(req, actor) {
      if (parseTimeOfDay(req.from) === parseTimeOfDay(req.to)) {
        throw new PlatformError('CP_COMMAND_BAD_SCHEDULE', 'from and to must be different times');
      }
      const ttlMs = req.ttlMs === undefined ? null : checkTtl(req.ttlMs);
      const devices = await resolveTarget(req.target, true);
      for (const f of new Set(devices.map((d) => d.family))) {
        checkAction(f, req.action);
        if (req.endAction) checkAction(f, req.endAction, 'endAction');
      }
      return store.insertSchedule({
        id: randomUUID(),
        name: req.name,
        target: 'zone' in req.target ? { zone: req.target.zone } : { devices: [...new Set(req.target.devices)] },
        from: req.from,
        to: req.to,
        action: req.action,
        endAction: req.endAction ?? null,
        ttlMs,
        enabled: req.enabled ?? true,
        timeZone,
        createdAt: new Date().toISOString(),
        createdBy: actor,
      });
    },
    getSchedule: (id) => store.getSchedule(id),
    listSchedules: () => store.listSchedules(),
    deleteSchedule(id) {
      const s = store.getSchedule(id);
      if (!s || !store.deleteSchedule(id)) throw new PlatformError('CP_COMMAND_SCHEDULE_NOT_FOUND', `no schedule ${id}`);
      return s;
    },
    tick,
  };
}

export type { CommandFilter, CommandTarget, Schedule };
export type { CommandState };
