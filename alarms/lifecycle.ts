/**
 * The alarm lifecycle per (rule, subject): where its condition stands (a tracker), when it has held long enough
 * to raise (forMs) or to clear (clearForMs), and the alarm's states active → acknowledged → cleared, by the
 * engine or an operator. At most one open alarm per (rule, subject).
 *
 * An operator's clear closes the alarm, not the condition: when the condition still holds, its time counts
 * anew from the clear, so the rule raises a new alarm once it has held forMs again (a noData rule's silence and
 * a rate of change are measured anew too: silence from the clear, a rate from the next reading). The cleared
 * alarm records conditionClearedAt when the condition ends. Raises and clears go on the bus and, the engine's
 * own, into the audit log.
 *
 * The store is asynchronous (SQLite on one node, PostgreSQL in a cluster): a step that writes it returns a
 * promise, and the engine's event queue runs the next event only once it is done. A raise that finds the
 * (rule, subject) open already (raised by another node, or by this one before a failover delivered the reading
 * again) adopts that alarm without announcing it again. A write that fails leaves the tracker as it was before
 * the step, so the next tick tries it again while the condition holds.
 */
import type { AlarmRecord, LiveBus } from '../core/bus.ts';
import { PlatformError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { OperatorStore } from '../registry/index.ts';
import type { CompiledRule, Fields } from './rules.ts';
import type { AlarmStore } from './store.ts';

/** Per (rule, subject): where the condition stands. */
export interface Tracker {
  rule: CompiledRule;
  subject: string;
  scope: 'device' | 'zone';
  family?: AlarmRecord['family'];
  zone?: string;
  /** Latest fields the rule saw (for re-evaluation on ticks and for the message). */
  fields?: Fields;
  /** Location for the virtual `daylight` field. */
  location?: { lat: number; lon: number };
  raiseSince: number | null;
  clearSince: number | null;
  /** The condition is on (it held forMs and has not ended since). */
  on: boolean;
  /** The open alarm's id. */
  alarmId?: number;
  /** An operator cleared this alarm while its condition held: its conditionClearedAt is recorded when it ends. */
  clearedId?: number;
  /** noData: last time a reading arrived. */
  lastDataAt?: number;
  /** rateOfChange: previous value and its observation time. */
  prev?: { v: number; t: number };
}

export interface AlarmLifecycle {
  /** The tracker of (rule, subject), created on first use; zone and family updated when given. */
  tracker(rule: CompiledRule, subject: string, scope: Tracker['scope'], family: Tracker['family'], zone: Tracker['zone']): Tracker;
  trackers(): Iterable<Tracker>;
  /** Feeds one evaluation of a tracker's conditions, then advances its lifecycle (a promise when it writes the store). */
  observe(t: Tracker, fields: Fields, at: number): void | Promise<void>;
  /** Advances a tracker's lifecycle to `at` (durations passed without an event); a promise when it writes the store. */
  step(t: Tracker, at: number): void | Promise<void>;
  /**
   * After a restart: open alarms are taken as holding; operator-cleared ones whose condition had not ended wait
   * for its end to be recorded (and raise again like any condition once it shows for forMs).
   */
  reload(rules: ReadonlyMap<string, CompiledRule>): Promise<void>;
  /** Throws CP_ALARM_NOT_FOUND, or CP_ALARM_WRONG_STATE unless the alarm is active. */
  acknowledge(id: number, by: string, note: string | undefined, at: number): Promise<AlarmRecord>;
  /** Throws CP_ALARM_NOT_FOUND, or CP_ALARM_WRONG_STATE when the alarm is already cleared. */
  clear(id: number, by: string, note: string | undefined, at: number): Promise<AlarmRecord>;
  /**
   * An operator cleared alarm `id` through another node (a shared store): when this node follows its condition
   * and the condition still holds, it counts anew from `at`, as after a clear here.
   */
  clearedElsewhere(id: number, at: number): void;
}

/** The promises of several steps as one (undefined when none wrote). */
export function allOf(pending: (void | Promise<void>)[]): void | Promise<void> {
  const ps = pending.filter((p): p is Promise<void> => p instanceof Promise);
  if (!ps.length) return undefined;
  return Promise.all(ps).then(() => undefined);
}

const SYSTEM = 'system';
const AUDIT_SYSTEM = '(system)';

export function createAlarmLifecycle(
  store: () => AlarmStore,
  deps: { bus: LiveBus; operators?: Pick<OperatorStore, 'audit'> },
  log: Logger,
  /** The store is shared with other nodes: a clear here cannot tell whether another node's condition is over. */
  shared = false,
): AlarmLifecycle {
  const trackers = new Map<string, Tracker>();
  const key = (ruleId: string, subject: string) => `${ruleId}\u0000${subject}`;
  /** Per rule, its trackers by subject: the per-reading lookup builds no key string. */
  const bySubject = new Map<CompiledRule, Map<string, Tracker>>();
  const tracker = (
    rule: CompiledRule,
    subject: string,
    scope: Tracker['scope'],
    family: Tracker['family'],
    zone: Tracker['zone'],
  ): Tracker => {
    let subjects = bySubject.get(rule);
    if (!subjects) {
      subjects = new Map();
      bySubject.set(rule, subjects);
    }
    let t = subjects.get(subject);
    if (!t) {
      t = { rule, subject, raiseSince: null, clearSince: null, on: false, scope, family, zone };
      subjects.set(subject, t);
      trackers.set(key(rule.rule.id, subject), t);
    }
    if (zone) t.zone = zone;
    if (family) t.family = family;
    return t;
  };

  const emit = (a: AlarmRecord) => deps.bus.emit('alarm', a);
  const audit = (action: string, a: AlarmRecord) => {
    deps.operators
      ?.audit({ actor: AUDIT_SYSTEM, role: null, action, target: `alarm:${a.id}`, address: null, outcome: 'ok' })
      .catch((err) => log.error({ err, action, alarm: a.id }, 'audit record failed'));
  };

  function observe(t: Tracker, fields: Fields, at: number): void | Promise<void> {
    t.fields = fields;
    const raise = t.rule.raise(fields);
    const clear = t.rule.clear(fields);
    t.raiseSince = raise ? (t.raiseSince ?? at) : null;
    t.clearSince = clear ? (t.clearSince ?? at) : null;
    return step(t, at);
  }

  function step(t: Tracker, at: number): void | Promise<void> {
    const r = t.rule.rule;
    if (!t.on) {
      let ended: Promise<void> | undefined;
      if (t.clearedId !== undefined && t.clearSince !== null && at - t.clearSince >= r.clearForMs) ended = conditionEnded(t, at);
      if (t.raiseSince !== null && at - t.raiseSince >= r.forMs) {
        t.on = true;
        t.clearSince = null;
        if (t.alarmId === undefined) return allOf([ended, raiseAlarm(t, at)]);
      }
      return ended;
    }
    if (t.clearSince !== null && at - t.clearSince >= r.clearForMs) {
      t.on = false;
      t.raiseSince = null;
      const pending: (void | Promise<void>)[] = [];
      if (t.alarmId !== undefined) {
        const id = t.alarmId;
        t.alarmId = undefined;
        pending.push(systemClear(t, id, at));
      }
      if (t.clearedId !== undefined) pending.push(conditionEnded(t, at));
      return allOf(pending);
    }
  }

  async function systemClear(t: Tracker, id: number, at: number): Promise<void> {
    const s = store();
    try {
      if (await s.clear(id, SYSTEM, new Date(at).toISOString(), null, true)) {
        const a = await s.get(id);
        if (a) {
          emit(a);
          audit('alarm.clear', a);
        }
      }
    } catch (err) {
      // Still open in the store: the condition is taken as holding, and the next tick clears it again.
      log.error({ err, alarm: id }, 'alarm not cleared (store unavailable); trying again');
      t.alarmId = id;
      t.on = true;
    }
  }

  /** The condition of an alarm an operator cleared while it held has ended: recorded on that alarm. */
  async function conditionEnded(t: Tracker, at: number): Promise<void> {
    const id = t.clearedId as number;
    t.clearedId = undefined;
    const s = store();
    try {
      if (await s.conditionCleared(id, new Date(at).toISOString(), SYSTEM)) {
        const a = await s.get(id);
        if (a) {
          emit(a);
          audit('alarm.condition-cleared', a);
        }
      }
    } catch (err) {
      log.error({ err, alarm: id }, "alarm's condition end not recorded (store unavailable); trying again");
      t.clearedId ??= id;
    }
  }

  /**
   * An operator cleared the open alarm while its condition held: the condition counts anew from `at`. A
   * condition that holds now raises again after forMs; a noData rule's silence is measured from the clear; a
   * rate of change needs a new reading.
   */
  function rearm(t: Tracker, at: number): void {
    t.on = false;
    t.clearSince = null;
    const kind = t.rule.rule.kind;
    if (kind === 'noData') {
      t.lastDataAt = at;
      t.raiseSince = null;
    } else if (kind === 'rateOfChange') t.raiseSince = null;
    else t.raiseSince = t.raiseSince !== null ? at : null;
  }

  /** After an operator's clear of `id`: the tracker that held it counts its condition anew. */
  function afterClear(t: Tracker | undefined, id: number, at: number): void {
    if (!t || t.alarmId !== id) return;
    t.alarmId = undefined;
    if (t.on) {
      t.clearedId = id;
      rearm(t, at);
    }
  }

  async function raiseAlarm(t: Tracker, at: number): Promise<void> {
    const r = t.rule.rule;
    const fields = t.fields ?? {};
    const message = (r.message ?? r.description ?? r.id).replace(/\{([A-Za-z0-9_.]+)\}/g, (_m, f: string) => {
      const v =
        f in fields
          ? fields[f]
          : f.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Fields)[k] : undefined), fields);
      return v === undefined || v === null ? '?' : String(v);
    });
    let raised: { alarm: AlarmRecord; created: boolean };
    try {
      raised = await store().insert(
        {
          rule: r.id,
          subject: t.subject,
          scope: t.scope,
          ...(t.family ? { family: t.family } : {}),
          ...(t.zone ? { zone: t.zone } : {}),
          severity: r.severity,
          message: message.slice(0, 500),
          value: t.rule.valueOf(fields),
          raisedAt: new Date(at).toISOString(),
        },
        SYSTEM,
      );
    } catch (err) {
      // Not raised: while the condition holds, the next tick raises it again.
      log.error({ err, rule: r.id, subject: t.subject }, 'alarm not raised (store unavailable); trying again');
      t.on = false;
      return;
    }
    const a = raised.alarm;
    t.alarmId = a.id;
    if (!raised.created) {
      // Raised before (by another node, or by this one before the reading was delivered again): announced then.
      log.info({ alarm: a.id, rule: r.id, subject: t.subject }, 'alarm open already: not raised again');
      return;
    }
    log.info({ alarm: a.id, rule: r.id, subject: t.subject, severity: r.severity }, 'alarm raised');
    emit(a);
    audit('alarm.raise', a);
  }

  return {
    tracker,
    trackers: () => trackers.values(),
    observe,
    step,
    async reload(ruleById) {
      const s = store();
      // Open alarms: their conditions are taken as holding until an event shows otherwise.
      for (const a of await s.open()) {
        const rule = ruleById.get(a.rule);
        if (!rule) {
          log.warn({ alarm: a.id, rule: a.rule }, 'open alarm of a rule that is no longer configured: left open');
          continue;
        }
        const t = tracker(rule, a.subject, a.scope, a.family, a.zone);
        t.on = true;
        t.alarmId = a.id;
      }
      for (const a of await s.clearedWhileHolding()) {
        const rule = ruleById.get(a.rule);
        if (!rule) continue;
        const t = tracker(rule, a.subject, a.scope, a.family, a.zone);
        if (t.alarmId === undefined) t.clearedId = a.id;
      }
    },
    async acknowledge(id, by, note, at) {
      const s = store();
      const a = await s.get(id);
      if (!a) throw new PlatformError('CP_ALARM_NOT_FOUND', `no alarm ${id}`);
      if (!(await s.acknowledge(id, by, new Date(at).toISOString(), note ?? null))) {
        const now = (await s.get(id)) ?? a;
        throw new PlatformError('CP_ALARM_WRONG_STATE', `alarm ${id} is ${now.state}; only an active alarm can be acknowledged`);
      }
      const out = (await s.get(id)) as AlarmRecord;
      emit(out);
      return out;
    },
    async clear(id, by, note, at) {
      const s = store();
      const a = await s.get(id);
      if (!a) throw new PlatformError('CP_ALARM_NOT_FOUND', `no alarm ${id}`);
      const t = trackers.get(key(a.rule, a.subject));
      // The condition is known to be over when the engine no longer has it on (e.g. an alarm kept after a rule
      // change). With a shared store another node may follow the condition: over only when this one follows it.
      const conditionOver = shared ? t !== undefined && t.alarmId === id && !t.on : !t?.on;
      if (!(await s.clear(id, by, new Date(at).toISOString(), note ?? null, conditionOver))) {
        throw new PlatformError('CP_ALARM_WRONG_STATE', `alarm ${id} is already cleared`);
      }
      afterClear(t, id, at);
      const out = (await s.get(id)) as AlarmRecord;
      emit(out);
      return out;
    },
    clearedElsewhere(id, at) {
      for (const t of trackers.values()) {
        if (t.alarmId === id) {
          afterClear(t, id, at);
          return;
        }
      }
    },
  };
}
