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
 * Cluster mode (`deps.state`, the nodes' shared PostgreSQL): commands, batches and schedules live there
 * (pg-store.ts); a command created on any node is sent by the node its device is connected to, which hears of it
 * by a NOTIFY sent when it is committed (cluster.ts); every state change is emitted on the bus of the node that
 * made it (socket.io's Redis adapter takes it to every node's screens); schedules run on one node at a time, the
 * leader of an advisory lock (leader.ts), and each edge is claimed in the store so it fires once.
 *
 * This file wires the component and holds its public operations; the parts: targets and action checks
 * (targets.ts), sending and delivery (delivery.ts), device answers (acks.ts), schedule edges (schedules.ts),
 * the cluster (pg-store.ts, cluster.ts, leader.ts).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { DeviceMeta } from '../ingest/validate.ts';
import type { CommandRecord, CommandState } from '../core/bus.ts';
import { PlatformError } from '../core/errors.ts';
import { silentLogger } from '../core/logger.ts';
import { createAckHandler } from './acks.ts';
import { followPendingCommands } from './cluster.ts';
import { startLeadership, type Leadership } from './leader.ts';
import { COMMANDS_COMPONENT, COMMANDS_MIGRATIONS, PgCommandStore } from './pg-store.ts';
import { createCommandDelivery } from './delivery.ts';
import { createScheduleTicker } from './schedules.ts';
import {
  type BatchFilter,
  type BatchSummary,
  type CommandFilter,
  type CommandStore,
  type CommandTarget,
  type Schedule,
  SqliteCommandStore,
} from './store.ts';
import { createCommandChecks } from './targets.ts';
import { parseTimeOfDay } from './time-of-day.ts';
import type { CommandRequest, CommandsDeps, CommandsOptions, ScheduleRequest } from './types.ts';

export type { CommandRequest, CommandsDeps, CommandsOptions, CommandTransport, ScheduleRequest } from './types.ts';

export interface Commands {
  /**
   * Migrates the shared schema (cluster mode), starts the expiry and schedule timers (and the bid for the
   * schedules' lock) and sends what waits for devices already listening.
   */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Validates the target and action, stores one command per device (one batch) and sends those whose device listens. */
  create(req: CommandRequest, actor: string): Promise<{ batch: string; commands: CommandRecord[] }>;
  get(id: string): Promise<CommandRecord | undefined>;
  /** Newest first. */
  list(filter: CommandFilter): Promise<CommandRecord[]>;
  /** Batches (one per request or schedule edge), newest first, with their commands' states: the command history. */
  batches(filter: BatchFilter): Promise<BatchSummary[]>;
  /** A message of a device on its acks topic (broker → platform dispatch). */
  handleAck(device: DeviceMeta, payload: Buffer): void;
  createSchedule(req: ScheduleRequest, actor: string): Promise<Schedule>;
  getSchedule(id: string): Promise<Schedule | undefined>;
  listSchedules(): Promise<Schedule[]>;
  /** Throws CP_COMMAND_SCHEDULE_NOT_FOUND. */
  deleteSchedule(id: string): Promise<Schedule>;
  /** Runs one schedule check now (the timer calls it every scheduleTickMs, on the leader only in a cluster). */
  tick(now?: number): Promise<void>;
  /** Whether this node runs the schedules (always on one node; the lock's holder in a cluster). */
  isScheduleLeader(): boolean;
  readonly maxTtlMs: number;
}

export function createCommands(opts: CommandsOptions, deps: CommandsDeps): Commands {
  const log = deps.logger ?? silentLogger;
  const defaultTtlMs = opts.defaultTtlMs ?? 3_600_000;
  const maxTtlMs = opts.maxTtlMs ?? 7 * 86_400_000;
  /** This node in the cluster's notifications (to skip its own). */
  const node = randomBytes(6).toString('hex');
  const db = deps.state;
  const store: CommandStore = db ? new PgCommandStore(db, node, opts.historyLimit) : new SqliteCommandStore(opts.file, opts.historyLimit);
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
  let leadership: Leadership | undefined;
  let started = false;
  let closed = false;

  let expiring = false;
  /** The last expiry failure logged: while the shared database is away, one line, not one a second. */
  let expiryFailure = '';
  const expire = async () => {
    if (expiring) return;
    expiring = true;
    try {
      // Every node expires (conditional updates: each command once, reported by the node that changed it).
      for (const c of await store.expireDue(Date.now())) emit(c);
      if (expiryFailure) log.info('command expiry works again');
      expiryFailure = '';
    } catch (err) {
      const what = (err as Error).message;
      if (what !== expiryFailure) log.error({ err }, 'command expiry failed; tried again every expiryCheckMs');
      expiryFailure = what;
    } finally {
      expiring = false;
    }
  };
  /** Sends what waits for the devices listening here (at start, and after a gap in the cluster's notices). */
  const dispatchWaiting = async () => {
    try {
      for (const device of await store.devicesWithPending(Date.now())) await dispatch(device);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'pending commands not read');
    }
  };

  return {
    maxTtlMs,
    async start() {
      if (started) return;
      started = true;
      if (db) await db.migrate(COMMANDS_COMPONENT, COMMANDS_MIGRATIONS);
      transport.events.on('subscribed', onSubscribed);
      transport.events.on('delivered', onDelivered);
      if (db) {
        await followPendingCommands(db, { node, store, dispatch, resumed: dispatchWaiting, logger: log });
        leadership = startLeadership(
          { url: db.opts.url, retryMs: opts.leaderRetryMs ?? 2000, queryTimeoutMs: db.opts.queryTimeoutMs },
          { logger: log, onChange: (leader) => leader && void tick() },
        );
      }
      await expire();
      expiryTimer = setInterval(() => void expire(), opts.expiryCheckMs ?? 1000);
      scheduleTimer = setInterval(() => {
        if (!leadership || leadership.isLeader()) void tick();
      }, opts.scheduleTickMs ?? 1000);
      await dispatchWaiting();
    },
    async stop() {
      if (closed) return;
      closed = true;
      clearInterval(expiryTimer);
      clearInterval(scheduleTimer);
      await leadership?.stop();
      transport.events.off('subscribed', onSubscribed);
      transport.events.off('delivered', onDelivered);
      await store.close();
    },
    isScheduleLeader: () => !closed && (!leadership || leadership.isLeader()),
    async create(req, actor) {
      const ttl = checkTtl(req.ttlMs);
      const devices = await resolveTarget(req.target, true);
      for (const f of new Set(devices.map((d) => d.family))) checkAction(f, req.action);
      const batch = randomUUID();
      const target = 'zone' in req.target ? { zone: req.target.zone } : { devices: [...new Set(req.target.devices)] };
      const commands = await insertAndSend(devices, req.action, ttl, actor, batch, target);
      log.info({ batch, actor, commands: commands.length }, 'commands created');
      return { batch, commands };
    },
    get: (id) => store.get(id),
    list: (filter) => store.list(filter),
    batches: (filter) => store.batches(filter),
    handleAck(device, payload) {
      if (closed) return;
      handleAck(device, payload).catch((err: Error) => log.error({ err, device: device.id }, 'ack handling failed'));
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
    async deleteSchedule(id) {
      const s = await store.getSchedule(id);
      if (!s || !(await store.deleteSchedule(id))) throw new PlatformError('CP_COMMAND_SCHEDULE_NOT_FOUND', `no schedule ${id}`);
      return s;
    },
    tick,
  };
}

export type { BatchFilter, BatchSummary, CommandFilter, CommandTarget, Schedule };
export type { CommandState };
