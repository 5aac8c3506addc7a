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
 */
import type { AlarmRecord, LiveBus } from '../core/bus.ts';
import { PlatformError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { OperatorStore } from '../registry/index.ts';
import type { CompiledRule, Fields } from './rules.ts';
import type { SqliteAlarmStore } from './store.ts';

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
  /** Feeds one evaluation of a tracker's conditions, then advances its lifecycle. */
  observe(t: Tracker, fields: Fields, at: number): void;
  /** Advances a tracker's lifecycle to `at` (durations passed without an event). */
  step(t: Tracker, at: number): void;
  /**
   * After a restart: open alarms are taken as holding; operator-cleared ones whose condition had not ended wait
   * for its end to be recorded (and raise again like any condition once it shows for forMs).
   */
  reload(rules: ReadonlyMap<string, CompiledRule>): void;
  /** Throws CP_ALARM_NOT_FOUND, or CP_ALARM_WRONG_STATE unless the alarm is active. */
  acknowledge(id: number, by: string, note: string | undefined, at: number): AlarmRecord;
  /** Throws CP_ALARM_NOT_FOUND, or CP_ALARM_WRONG_STATE when the alarm is already cleared. */
  clear(id: number, by: string, note: string | undefined, at: number): AlarmRecord;
}

const SYSTEM = 'system';
const AUDIT_SYSTEM = '(system)';

export function createAlarmLifecycle(
  store: () => SqliteAlarmStore,
  deps: { bus: LiveBus; operators?: Pick<OperatorStore, 'audit'> },
  log: Logger,
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

  function observe(t: Tracker, fields: Fields, at: number): void {
    t.fields = fields;
    const raise = t.rule.raise(fields);
    const clear = t.rule.clear(fields);
    t.raiseSince = raise ? (t.raiseSince ?? at) : null;
    t.clearSince = clear ? (t.clearSince ?? at) : null;
    step(t, at);
  }

  function step(t: Tracker, at: number): void {
    const r = t.rule.rule;
    if (!t.on) {
      if (t.clearedId !== undefined && t.clearSince !== null && at - t.clearSince >= r.clearForMs) conditionEnded(t, at);
      if (t.raiseSince !== null && at - t.raiseSince >= r.forMs) {
        t.on = true;
        t.clearSince = null;
        if (t.alarmId === undefined) raiseAlarm(t, at);
      }
    } else if (t.clearSince !== null && at - t.clearSince >= r.clearForMs) {
      t.on = false;
      t.raiseSince = null;
      const s = store();
      if (t.alarmId !== undefined) {
        const id = t.alarmId;
        t.alarmId = undefined;
        if (s.clear(id, SYSTEM, new Date(at).toISOString(), null, true)) {
          const a = s.get(id) as AlarmRecord;
          emit(a);
          audit('alarm.clear', a);
        }
      }
      if (t.clearedId !== undefined) conditionEnded(t, at);
    }
  }

  /** The condition of an alarm an operator cleared while it held has ended: recorded on that alarm. */
  function conditionEnded(t: Tracker, at: number): void {
    const id = t.clearedId as number;
    t.clearedId = undefined;
    const s = store();
    if (s.conditionCleared(id, new Date(at).toISOString(), SYSTEM)) {
      const a = s.get(id) as AlarmRecord;
      emit(a);
      audit('alarm.condition-cleared', a);
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

  function raiseAlarm(t: Tracker, at: number): void {
    const r = t.rule.rule;
    const fields = t.fields ?? {};
    const message = (r.message ?? r.description ?? r.id).replace(/\{([A-Za-z0-9_.]+)\}/g, (_m, f: string) => {
      const v =
        f in fields
          ? fields[f]
          : f.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Fields)[k] : undefined), fields);
      return v === undefined || v === null ? '?' : String(v);
    });
    const a = store().insert(
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
    t.alarmId = a.id;
    log.info({ alarm: a.id, rule: r.id, subject: t.subject, severity: r.severity }, 'alarm raised');
    emit(a);
    audit('alarm.raise', a);
  }

  return {
    tracker,
    trackers: () => trackers.values(),
    observe,
    step,
    reload(ruleById) {
      const s = store();
      // Open alarms: their conditions are taken as holding until an event shows otherwise.
      for (const a of s.open()) {
        const rule = ruleById.get(a.rule);
        if (!rule) {
          log.warn({ alarm: a.id, rule: a.rule }, 'open alarm of a rule that is no longer configured: left open');
          continue;
        }
        const t = tracker(rule, a.subject, a.scope, a.family, a.zone);
        t.on = true;
        t.alarmId = a.id;
      }
      for (const a of s.clearedWhileHolding()) {
        const rule = ruleById.get(a.rule);
        if (!rule) continue;
        const t = tracker(rule, a.subject, a.scope, a.family, a.zone);
        if (t.alarmId === undefined) t.clearedId = a.id;
      }
    },
    acknowledge(id, by, note, at) {
      const s = store();
      const a = s.get(id);
      if (!a) throw new PlatformError('CP_ALARM_NOT_FOUND', `no alarm ${id}`);
      if (!s.acknowledge(id, by, new Date(at).toISOString(), note ?? null)) {
        throw new PlatformError('CP_ALARM_WRONG_STATE', `alarm ${id} is ${a.state}; only an active alarm can be acknowledged`);
      }
      const out = s.get(id) as AlarmRecord;
      emit(out);
      return out;
    },
    clear(id, by, note, at) {
      const s = store();
      const a = s.get(id);
      if (!a) throw new PlatformError('CP_ALARM_NOT_FOUND', `no alarm ${id}`);
      const t = trackers.get(key(a.rule, a.subject));
      // The condition is known to be over when the engine no longer has it on (e.g. an alarm kept after a rule change).
      const conditionOver = !t?.on;
      if (!s.clear(id, by, new Date(at).toISOString(), note ?? null, conditionOver)) {
        throw new PlatformError('CP_ALARM_WRONG_STATE', `alarm ${id} is already cleared`);
      }
      if (t && t.alarmId === id) {
        t.alarmId = undefined;
        if (t.on) {
          t.clearedId = id;
          rearm(t, at);
        }
      }
      const out = s.get(id) as AlarmRecord;
      emit(out);
      return out;
    },
  };
}
