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
 *
 * This file wires the component and holds its public operations; the parts: targets and action checks
 * (targets.ts), sending and delivery (delivery.ts), device answers (acks.ts), schedule edges (schedules.ts).
 */
import { randomUUID } from 'node:crypto';
import type { DeviceMeta } from '../ingest/validate.ts';
import type { CommandRecord, CommandState } from '../core/bus.ts';
import { PlatformError } from '../core/errors.ts';
import { silentLogger } from '../core/logger.ts';
import { createAckHandler } from './acks.ts';
import { createCommandDelivery } from './delivery.ts';
import { createScheduleTicker } from './schedules.ts';
import { type BatchFilter, type BatchSummary, type CommandFilter, type CommandTarget, type Schedule, SqliteCommandStore } from './store.ts';
import { createCommandChecks } from './targets.ts';
import { parseTimeOfDay } from './time-of-day.ts';
import type { CommandRequest, CommandsDeps, CommandsOptions, ScheduleRequest } from './types.ts';

export type { CommandRequest, CommandsDeps, CommandsOptions, CommandTransport, ScheduleRequest } from './types.ts';

export interface Commands {
  /** Starts the expiry and schedule timers and sends what waits for devices already listening. */
  start(): void;
  stop(): Promise<void>;
  /** Validates the target and action, stores one command per device (one batch) and sends those whose device listens. */
  create(req: CommandRequest, actor: string): Promise<{ batch: string; commands: CommandRecord[] }>;
  get(id: string): CommandRecord | undefined;
  /** Newest first. */
  list(filter: CommandFilter): CommandRecord[];
  /** Batches (one per request or schedule edge), newest first, with their commands' states: the command history. */
  batches(filter: BatchFilter): BatchSummary[];
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

export function createCommands(opts: CommandsOptions, deps: CommandsDeps): Commands {
  const log = deps.logger ?? silentLogger;
  const defaultTtlMs = opts.defaultTtlMs ?? 3_600_000;
  const maxTtlMs = opts.maxTtlMs ?? 7 * 86_400_000;
  const store = new SqliteCommandStore(opts.file, opts.historyLimit);
  const { transport } = deps;
  const timeZone = deps.profile.timezone;

  const emit = (c: CommandRecord) => {
    try {
      deps.bus?.emit('command', c);
    } catch (err) {
      log.error({ err, command: c.id }, 'command listener failed');
    }
  };

  const { checkAction, checkTtl, resolveTarget } = createCommandChecks(deps, { defaultTtlMs, maxTtlMs });
  const { insertAndSend, dispatch, onSubscribed, onDelivered } = createCommandDelivery(store, transport, emit, log);
  const handleAck = createAckHandler(store, transport, emit, log);
  const tick = createScheduleTicker(store, { resolveTarget, insertAndSend }, deps, defaultTtlMs, log);

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
      const target = 'zone' in req.target ? { zone: req.target.zone } : { devices: [...new Set(req.target.devices)] };
      const commands = insertAndSend(devices, req.action, ttl, actor, batch, target);
      log.info({ batch, actor, commands: commands.length }, 'commands created');
      return { batch, commands };
    },
    get: (id) => store.get(id),
    list: (filter) => store.list(filter),
    batches: (filter) => store.batches(filter),
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

export type { BatchFilter, BatchSummary, CommandFilter, CommandTarget, Schedule };
export type { CommandState };
