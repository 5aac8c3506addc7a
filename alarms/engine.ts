/**
 * The alarm engine: watches the live bus (readings, statuses, AQI indices), evaluates the rules per
 * (rule, subject) and keeps alarms through their lifecycle active → acknowledged → cleared.
 *
 * Timing: a condition's duration (forMs, clearForMs, noData periods) is measured on the platform's clock from
 * the moment the engine first saw it hold; a timer (`tickMs`) raises and clears between events. A reading
 * older than the newest one already seen from its device (a backlog flushed after an outage) still counts as
 * "data" for noData rules but does not change the device's field state. A device's field state is the latest
 * value of each field it reported (partial readings merge).
 *
 * Lifecycle: at most one open alarm per (rule, subject). When the clear condition has held `clearForMs`, the
 * open alarm is cleared by 'system'. An operator may acknowledge an active alarm and clear an open one. An
 * operator's clear closes the alarm, not the condition: a condition that still holds counts anew from the clear
 * and raises a new alarm once it has held forMs again, so a ward that stays at a bad index is never left
 * without an open alarm. The cleared alarm records conditionClearedAt when the condition ends.
 *
 * Restarts: open alarms are reloaded and their conditions taken as holding, so a condition that still holds
 * raises nothing new, and one that ended while the platform was down is cleared as soon as an event shows it.
 * Operator-cleared alarms whose condition had not ended still get conditionClearedAt when it does.
 * Device status across a restart: every device the registry has seen (lastSeenAt set, not revoked) and that is
 * not online when the broker starts accepting devices (`devicesReachable`) is taken as offline from then: if it
 * does not connect within the offline rule's forMs, it is raised as offline. Not from the engine's own start:
 * ingest, analytics (restoring its windows from InfluxDB) and the broker start after it, and a slow start must
 * not count against devices that could not connect yet.
 *
 * Store: SQLite in dataDir on one node, or a given shared store (PostgreSQL, alarms/pg-store.ts) in a cluster,
 * where a node's engine follows the rules of the devices and zones whose readings it processes, every node shows
 * every alarm, raising is idempotent across nodes, and an operator's clear through another node is followed here
 * too. `settled()` resolves once the store committed what the events handed so far raise or clear: cluster mode
 * waits for it before it acknowledges a replicated log message, so a failover that delivers the message again
 * to another node finds the alarm raised (and raises nothing twice).
 *
 * This file wires the engine and owns its lifecycle; the parts: the order of events (event-queue.ts), what an
 * event means for the rules (evaluation.ts), the per-(rule, subject) state machine and alarm states (lifecycle.ts).
 */
import type { AlarmRecord, AqiEvent, LiveBus, StatusEvent } from '../core/bus.ts';
import type { EnrichedReading } from '../core/contract.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { CityProfile, DeviceStore, OperatorStore } from '../registry/index.ts';
import { createRuleEvaluation } from './evaluation.ts';
import { createEventQueue } from './event-queue.ts';
import { createAlarmLifecycle } from './lifecycle.ts';
import { resolveRules, type AlarmsRuleConfig, type EffectiveRule } from './rules.ts';
import { SqliteAlarmStore, type AlarmFilter, type AlarmNote, type AlarmStore } from './store.ts';

export interface AlarmsOptions extends AlarmsRuleConfig {
  /** SQLite file (dataDir/alarms.db) or ':memory:'; not used when `store` is given. */
  file: string;
  /**
   * A store shared by the nodes of a cluster (PostgreSQL), opened and migrated by the caller, closed by the engine;
   * `follow` hears the operator clears other nodes make.
   */
  store?: AlarmStore & { follow?(onOperatorClear: (id: number) => void): Promise<void> };
  /** How often durations are checked between events, ms (default 1000). */
  tickMs?: number;
  /** Cleared alarms kept (default 100,000). */
  historyLimit?: number;
}

export interface AlarmsDeps {
  bus: LiveBus;
  devices: Pick<DeviceStore, 'get' | 'list'>;
  profile: CityProfile;
  /** The audit log (engine raises and clears are recorded as actor '(system)'). */
  operators?: Pick<OperatorStore, 'audit'>;
  /** Whether a device is connected now (the broker); absent = none is, at start. */
  isOnline?: (id: string) => boolean;
  logger?: Logger;
  now?: () => number;
}

export interface Alarms {
  start(): Promise<void>;
  /**
   * The broker accepts devices from now (after start): devices seen before and not connected now are offline
   * from now on (status rules), and silent from now on (noData rules).
   */
  devicesReachable(): Promise<void>;
  stop(): Promise<void>;
  list(filter: AlarmFilter): Promise<AlarmRecord[]>;
  /** How many alarms match (limit and offset aside). */
  count(filter: Omit<AlarmFilter, 'limit'>): Promise<number>;
  get(id: number): Promise<(AlarmRecord & { notes: AlarmNote[] }) | undefined>;
  /** Throws CP_ALARM_NOT_FOUND, or CP_ALARM_WRONG_STATE unless the alarm is active. */
  acknowledge(id: number, by: string, note?: string): Promise<AlarmRecord>;
  /** Throws CP_ALARM_NOT_FOUND, or CP_ALARM_WRONG_STATE when the alarm is already cleared. */
  clear(id: number, by: string, note?: string): Promise<AlarmRecord>;
  /**
   * Resolves once the raises and clears of every event handed to the engine so far are committed to the store;
   * undefined when nothing waits (the common case).
   */
  settled(): Promise<void> | undefined;
  /** The effective rules (defaults tuned by config, then own rules). */
  rules(): EffectiveRule[];
}

export function createAlarms(opts: AlarmsOptions, deps: AlarmsDeps): Alarms {
  const rules = resolveRules(opts);
  const log = deps.logger ?? silentLogger;
  const now = deps.now ?? Date.now;
  const tickMs = opts.tickMs ?? 1000;
  let store: AlarmStore | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const must = () => {
    if (!store) throw new Error('alarms not started');
    return store;
  };
  const events = createEventQueue(log);
  const lifecycle = createAlarmLifecycle(must, deps, log, opts.store !== undefined);
  const evaluation = createRuleEvaluation(rules, lifecycle, deps, now);

  const listeners = {
    reading: (r: EnrichedReading) => {
      if (evaluation.watches(r.family)) events.run(evaluation.onReading, r);
    },
    status: (s: StatusEvent) => events.run(evaluation.onStatus, s),
    aqi: (a: AqiEvent) => events.run(evaluation.onAqi, a),
  };

  const ruleById = new Map(rules.map((r) => [r.rule.id, r]));

  return {
    async start() {
      store = opts.store ?? new SqliteAlarmStore(opts.file, opts.historyLimit);
      const s = store;
      await lifecycle.reload(ruleById);
      evaluation.knowDevices(await deps.devices.list());
      deps.bus.on('reading', listeners.reading);
      deps.bus.on('status', listeners.status);
      deps.bus.on('aqi', listeners.aqi);
      // Operator clears through other nodes: the condition this node follows counts anew (in the events' order).
      await opts.store?.follow?.((id) => {
        const at = now();
        events.call(() => lifecycle.clearedElsewhere(id, at)).catch(() => undefined);
      });
      let ticking = false;
      timer = setInterval(() => {
        // In the events' order; a tick waiting for the store (a raise) is not queued twice.
        if (ticking) return;
        ticking = true;
        events
          .call(() => evaluation.tick())
          .catch((err) => {
            if (!stopped) log.error({ err }, 'alarm tick failed');
          })
          .finally(() => (ticking = false));
      }, tickMs);
      timer.unref();
      log.info({ rules: rules.map((r) => r.rule.id), open: (await s.open()).length }, 'alarm engine started');
    },
    async devicesReachable() {
      const at = now();
      for (const d of await deps.devices.list()) {
        if (!d.lastSeenAt || deps.isOnline?.(d.id)) continue;
        events.run(() => evaluation.unreachableSince(d, at), undefined);
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearInterval(timer);
      deps.bus.off('reading', listeners.reading);
      deps.bus.off('status', listeners.status);
      deps.bus.off('aqi', listeners.aqi);
      await events.stop();
      await store?.close();
    },
    list: (f) => must().list(f),
    count: (f) => must().count(f),
    async get(id) {
      const a = await must().get(id);
      return a && { ...a, notes: await must().notes(id) };
    },
    // In the events' order: an operator's clear and the engine's own steps never interleave on one alarm.
    acknowledge: (id, by, note) => events.call(() => lifecycle.acknowledge(id, by, note, now())),
    clear: (id, by, note) => events.call(() => lifecycle.clear(id, by, note, now())),
    settled: () => events.barrier(),
    rules: () => rules.map((r) => r.rule),
  };
}
