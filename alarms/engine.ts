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
 * open alarm is cleared by 'system'. An operator may acknowledge an active alarm and clear an open one; after
 * an operator clear the rule does not raise again for that subject until its condition has ended (clear
 * condition held clearForMs) and then held again for forMs. The alarm then records conditionClearedAt.
 *
 * Restarts: open alarms are reloaded and their conditions taken as holding, so a condition that still holds
 * raises nothing new, and one that ended while the platform was down is cleared as soon as an event shows it.
 * Operator-cleared alarms whose condition had not ended keep the rule quiet after a restart too.
 * Device status across a restart: every device the registry has seen (lastSeenAt set, not revoked) and that is
 * not online when the broker starts accepting devices (`devicesReachable`) is taken as offline from then: if it
 * does not connect within the offline rule's forMs, it is raised as offline. Not from the engine's own start:
 * ingest, analytics (restoring its windows from InfluxDB) and the broker start after it, and a slow start must
 * not count against devices that could not connect yet.
 */
import { isDaylight } from '../analytics/sun.ts';
import type { EnrichedReading } from '../core/contract.ts';
import type { AlarmRecord, AqiEvent, LiveBus, StatusEvent } from '../core/bus.ts';
import { PlatformError } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { CityProfile, Device, DeviceStore, OperatorStore } from '../registry/index.ts';
import { resolveRules, type AlarmsRuleConfig, type CompiledRule, type EffectiveRule, type Fields } from './rules.ts';
import { SqliteAlarmStore, type AlarmFilter, type AlarmNote } from './store.ts';

export interface AlarmsOptions extends AlarmsRuleConfig {
  /** SQLite file (dataDir/alarms.db) or ':memory:'. */
  file: string;
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
  list(filter: AlarmFilter): AlarmRecord[];
  get(id: number): (AlarmRecord & { notes: AlarmNote[] }) | undefined;
  /** Throws CP_ALARM_NOT_FOUND, or CP_ALARM_WRONG_STATE unless the alarm is active. */
  acknowledge(id: number, by: string, note?: string): AlarmRecord;
  /** Throws CP_ALARM_NOT_FOUND, or CP_ALARM_WRONG_STATE when the alarm is already cleared. */
  clear(id: number, by: string, note?: string): AlarmRecord;
  /** The effective rules (defaults tuned by config, then own rules). */
  rules(): EffectiveRule[];
}

/** Per (rule, subject): where the condition stands. */
interface Tracker {
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
  /** An operator cleared this alarm while the condition held: no new alarm until it ends. */
  suppressedId?: number;
  /** noData: last time a reading arrived. */
  lastDataAt?: number;
  /** rateOfChange: previous value and its observation time. */
  prev?: { v: number; t: number };
}

const SYSTEM = 'system';
const AUDIT_SYSTEM = '(system)';
/** What a no-data rule sees when a reading arrives (shared: not one object per reading). */
const NOT_SILENT: Fields = Object.freeze({ silentMs: 0, silentS: 0 });

export function createAlarms(opts: AlarmsOptions, deps: AlarmsDeps): Alarms {
  const rules = resolveRules(opts);
  const log = deps.logger ?? silentLogger;
  const now = deps.now ?? Date.now;
  const tickMs = opts.tickMs ?? 1000;
  let store: SqliteAlarmStore | undefined;
  const trackers = new Map<string, Tracker>();
  /** Latest fields and observation time per device (merged partial readings). */
  const deviceState = new Map<string, { time: number; fields: Fields }>();
  const deviceMeta = new Map<string, Pick<Device, 'location' | 'zone' | 'family'>>();
  const zoneCentre = new Map(deps.profile.zones.filter((z) => z.centre).map((z) => [z.id, z.centre as { lat: number; lon: number }]));
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  // Events are handled one after the other (a device lookup may be needed on the way), bounded.
  const MAX_QUEUE = 100_000;
  const queue: (() => void | Promise<void>)[] = [];
  let draining: Promise<void> | undefined;
  let droppedEvents = 0;
  const push = (job: () => void | Promise<void>) => {
    if (stopped) return;
    if (queue.length >= MAX_QUEUE) {
      if (droppedEvents++ % 10_000 === 0) log.warn({ dropped: droppedEvents }, 'alarm engine behind: events dropped');
      return;
    }
    queue.push(job);
    // drain() may finish synchronously (synchronous jobs): it sets `draining` itself, before its first await.
    if (!draining) void drain();
  };
  /**
   * One event: inline when nothing waits (the common case, no closure and no queue entry per reading), else
   * queued behind what waits. A job that turns asynchronous (a device lookup) holds the later ones back.
   */
  const run = <T>(handler: (ev: T) => void | Promise<void>, ev: T) => {
    if (stopped) return;
    if (draining || queue.length) return push(() => handler(ev));
    let pending: void | Promise<void>;
    try {
      pending = handler(ev);
    } catch (err) {
      log.error({ err }, 'alarm rule evaluation failed');
      return;
    }
    if (pending instanceof Promise) push(() => pending);
  };
  function drain(): Promise<void> {
    let done = () => {};
    draining = new Promise<void>((resolve) => (done = resolve));
    return drainLoop().finally(done);
  }
  async function drainLoop(): Promise<void> {
    while (queue.length && !stopped) {
      const job = queue.shift() as () => void | Promise<void>;
      try {
        // Most jobs are synchronous: they run inline, without a promise and a microtask per reading.
        const pending = job();
        if (pending instanceof Promise) await pending;
      } catch (err) {
        log.error({ err }, 'alarm rule evaluation failed');
      }
    }
    draining = undefined;
  }

  const must = () => {
    if (!store) throw new Error('alarms not started');
    return store;
  };
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

  function locationOf(device: string, zone: string): { lat: number; lon: number } {
    return deviceMeta.get(device)?.location ?? zoneCentre.get(zone) ?? deps.profile.centre;
  }
  function daylightAt(time: number, loc: { lat: number; lon: number }): boolean {
    return isDaylight(time, loc.lat, loc.lon); // cached per place and hour in analytics/sun.ts
  }

  /** Feeds one evaluation of a tracker's conditions, then advances its lifecycle. */
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
      if (t.raiseSince !== null && at - t.raiseSince >= r.forMs) {
        t.on = true;
        t.clearSince = null;
        if (t.alarmId === undefined && t.suppressedId === undefined) raiseAlarm(t, at);
      }
    } else if (t.clearSince !== null && at - t.clearSince >= r.clearForMs) {
      t.on = false;
      t.raiseSince = null;
      const iso = new Date(at).toISOString();
      const s = must();
      if (t.alarmId !== undefined) {
        const id = t.alarmId;
        t.alarmId = undefined;
        if (s.clear(id, SYSTEM, iso, null, true)) {
          const a = s.get(id) as AlarmRecord;
          emit(a);
          audit('alarm.clear', a);
        }
      }
      if (t.suppressedId !== undefined) {
        const id = t.suppressedId;
        t.suppressedId = undefined;
        if (s.conditionCleared(id, iso, SYSTEM)) {
          const a = s.get(id) as AlarmRecord;
          emit(a);
          audit('alarm.condition-cleared', a);
        }
      }
    }
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
    const a = must().insert(
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

  async function ensureMeta(device: string): Promise<void> {
    if (deviceMeta.has(device)) return;
    const d = await deps.devices.get(device);
    if (d) deviceMeta.set(device, { location: d.location, zone: d.zone, family: d.family });
  }

  const readingRules = rules.filter((r) => r.rule.source === 'reading');
  const needsLocation = readingRules.some((r) => r.usesDaylight);

  /** Reading rules per family, computed once (not filtered per reading). */
  const rulesByFamily = new Map<string, CompiledRule[]>();
  const relevantRules = (family: string) => {
    let list = rulesByFamily.get(family);
    if (!list) {
      list = readingRules.filter((r) => !r.rule.family || r.rule.family === family);
      rulesByFamily.set(family, list);
    }
    return list;
  };

  /** Synchronous unless the device's location must be looked up first (then a promise). */
  function onReading(ev: EnrichedReading): void | Promise<void> {
    if (!relevantRules(ev.family).length) return;
    if (needsLocation && !deviceMeta.has(ev.device)) return ensureMeta(ev.device).then(() => evaluateReading(ev));
    evaluateReading(ev);
  }

  function evaluateReading(ev: EnrichedReading): void {
    const at = now();
    const relevant = relevantRules(ev.family);
    const prevState = deviceState.get(ev.device);
    let fields: Fields | undefined;
    if (!prevState) {
      fields = { ...ev.fields };
      deviceState.set(ev.device, { time: ev.time, fields });
    } else if (ev.time >= prevState.time) {
      // Merged in place (one object per device, not one per reading); what a rule keeps of it (the message) is
      // taken when the alarm is raised.
      prevState.time = ev.time;
      fields = Object.assign(prevState.fields, ev.fields);
    }
    for (const c of relevant) {
      const kind = c.rule.kind;
      const t = tracker(c, ev.device, 'device', ev.family, ev.zone);
      if (kind === 'noData') {
        t.lastDataAt = at;
        observe(t, NOT_SILENT, at);
        continue;
      }
      if (!fields) continue;
      let f: Fields = fields;
      if (c.usesDaylight) {
        t.location = locationOf(ev.device, ev.zone);
        f = { ...fields, daylight: daylightAt(ev.time, t.location) };
      }
      if (kind === 'rateOfChange') {
        // Only a reading that carries the field gives a new rate.
        const v = ev.fields[c.rule.field as string];
        if (typeof v !== 'number') continue;
        const prev = t.prev;
        t.prev = { v, t: ev.time };
        if (!prev || ev.time <= prev.t) continue;
        f = { ...f, ratePerMinute: ((v - prev.v) / (ev.time - prev.t)) * 60_000 };
      }
      if (c.where && !c.where(f)) continue;
      observe(t, f, at);
    }
  }

  function onStatus(ev: Pick<StatusEvent, 'device' | 'family' | 'zone' | 'state' | 'at'>): void {
    const at = now();
    const f: Fields = { state: ev.state, online: ev.state === 'online', at: ev.at, device: ev.device, zone: ev.zone };
    for (const c of rules) {
      if (c.rule.source !== 'status' || (c.rule.family && c.rule.family !== ev.family)) continue;
      if (c.where && !c.where(f)) continue;
      observe(tracker(c, ev.device, 'device', ev.family as AlarmRecord['family'], ev.zone), f, at);
    }
  }

  function onAqi(ev: AqiEvent): void {
    const at = now();
    const f = ev as unknown as Fields;
    for (const c of rules) {
      if (c.rule.source !== 'aqi' || (c.rule.scope ?? 'station') !== ev.scope) continue;
      if (c.where && !c.where(f)) continue;
      const scope = ev.scope === 'station' ? ('device' as const) : ('zone' as const);
      observe(tracker(c, ev.id, scope, scope === 'device' ? 'airQuality' : undefined, ev.zone), f, at);
    }
  }

  function tick(): void {
    const at = now();
    for (const t of trackers.values()) {
      const r = t.rule;
      if (r.rule.kind === 'noData') {
        if (t.lastDataAt === undefined) continue;
        const silentMs = at - t.lastDataAt;
        observe(t, { silentMs, silentS: Math.round(silentMs / 1000) }, at);
      } else if (r.usesDaylight && t.fields && t.location) {
        // The sun moves without readings: re-evaluate at the current time.
        observe(t, { ...t.fields, daylight: daylightAt(at, t.location) }, at);
      } else if (t.raiseSince !== null || t.clearSince !== null) step(t, at);
    }
  }

  const listeners = {
    reading: (r: EnrichedReading) => {
      if (relevantRules(r.family).length) run(onReading, r);
    },
    status: (s: StatusEvent) => run(onStatus, s),
    aqi: (a: AqiEvent) => run(onAqi, a),
  };

  const ruleById = new Map(rules.map((r) => [r.rule.id, r]));

  return {
    async start() {
      store = new SqliteAlarmStore(opts.file, opts.historyLimit);
      const s = store;
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
      for (const a of s.suppressed()) {
        const rule = ruleById.get(a.rule);
        if (!rule) continue;
        const t = tracker(rule, a.subject, a.scope, a.family, a.zone);
        if (t.alarmId !== undefined) continue;
        t.on = true;
        t.suppressedId = a.id;
      }
      const devices = await deps.devices.list();
      for (const d of devices) deviceMeta.set(d.id, { location: d.location, zone: d.zone, family: d.family });
      deps.bus.on('reading', listeners.reading);
      deps.bus.on('status', listeners.status);
      deps.bus.on('aqi', listeners.aqi);
      timer = setInterval(() => {
        try {
          tick();
        } catch (err) {
          log.error({ err }, 'alarm tick failed');
        }
      }, tickMs);
      timer.unref();
      log.info({ rules: rules.map((r) => r.rule.id), open: s.open().length }, 'alarm engine started');
    },
    async devicesReachable() {
      const at = now();
      const iso = new Date(at).toISOString();
      for (const d of await deps.devices.list()) {
        if (!d.lastSeenAt || deps.isOnline?.(d.id)) continue;
        onStatus({ device: d.id, family: d.family, zone: d.zone, state: 'offline', at: iso });
        for (const c of readingRules) {
          if (c.rule.kind !== 'noData' || (c.rule.family && c.rule.family !== d.family)) continue;
          const t = tracker(c, d.id, 'device', d.family, d.zone);
          t.lastDataAt ??= at;
        }
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearInterval(timer);
      deps.bus.off('reading', listeners.reading);
      deps.bus.off('status', listeners.status);
      deps.bus.off('aqi', listeners.aqi);
      queue.length = 0;
      await draining;
      store?.close();
    },
    list: (f) => must().list(f),
    get(id) {
      const a = must().get(id);
      return a && { ...a, notes: must().notes(id) };
    },
    acknowledge(id, by, note) {
      const s = must();
      const a = s.get(id);
      if (!a) throw new PlatformError('CP_ALARM_NOT_FOUND', `no alarm ${id}`);
      if (!s.acknowledge(id, by, new Date(now()).toISOString(), note ?? null)) {
        throw new PlatformError('CP_ALARM_WRONG_STATE', `alarm ${id} is ${a.state}; only an active alarm can be acknowledged`);
      }
      const out = s.get(id) as AlarmRecord;
      emit(out);
      return out;
    },
    clear(id, by, note) {
      const s = must();
      const a = s.get(id);
      if (!a) throw new PlatformError('CP_ALARM_NOT_FOUND', `no alarm ${id}`);
      const t = trackers.get(key(a.rule, a.subject));
      // The condition is known to be over when the engine no longer has it on (e.g. an alarm kept after a rule change).
      const conditionOver = !t?.on;
      if (!s.clear(id, by, new Date(now()).toISOString(), note ?? null, conditionOver)) {
        throw new PlatformError('CP_ALARM_WRONG_STATE', `alarm ${id} is already cleared`);
      }
      if (t && t.alarmId === id) {
        t.alarmId = undefined;
        if (t.on) t.suppressedId = id;
      }
      const out = s.get(id) as AlarmRecord;
      emit(out);
      return out;
    },
    rules: () => rules.map((r) => r.rule),
  };
}
