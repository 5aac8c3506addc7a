/**
 * Where alarms are kept: the alarms and each alarm's timeline (raise, acknowledge, clear, with who, when and the
 * operator's note), behind the `AlarmStore` interface. Two stores: one embedded SQLite file per node
 * (`dataDir/alarms.db`, better-sqlite3 like the registry; the default) and the cluster's PostgreSQL
 * (pg-store.ts, `state.postgresUrl`), with the same behaviour (test/alarm-stores.test.ts runs on both).
 *
 * At most one open (active or acknowledged) alarm per (rule, subject), enforced by a partial unique index, and
 * raising is idempotent: `insert` of a (rule, subject) that has an open alarm creates nothing and returns that
 * alarm (`created: false`), so two nodes, or one node processing a reading again after a failover, raise an
 * alarm once. History is bounded: cleared alarms beyond `historyLimit` are removed, oldest first (open ones never).
 */
import Database from 'better-sqlite3';
import type { AlarmRecord, AlarmSeverity, AlarmState } from '../core/bus.ts';
import type { Family } from '../core/contract.ts';
import { foldForSearch } from '../core/search-text.ts';

export interface AlarmNote {
  /** ISO 8601 */
  at: string;
  /** Operator username, or 'system'. */
  actor: string;
  /** raise | acknowledge | clear | condition-cleared */
  action: string;
  note: string | null;
}

/** What a list of alarms can be sorted by; `default` is active first, then by severity, then newest. */
export const ALARM_SORTS = ['default', 'raisedAt', 'severity', 'state', 'rule', 'subject', 'zone', 'clearedAt', 'duration'] as const;
export type AlarmSort = (typeof ALARM_SORTS)[number];

export interface AlarmFilter {
  /** 'open' = active + acknowledged. */
  state?: AlarmState | 'open';
  severity?: AlarmSeverity;
  rule?: string;
  zone?: string;
  family?: Family;
  subject?: string;
  /** ISO 8601: alarms raised at or after. */
  since?: string;
  /** ISO 8601: alarms raised at or before. */
  until?: string;
  /** Words found (any case, with or without diacritics) in the subject, rule, zone, message, who acted, or a note. */
  q?: string;
  sort?: AlarmSort;
  /** asc or desc (default desc); ignored by the default sort. */
  order?: 'asc' | 'desc';
  limit: number;
  /** Matches skipped before the first one returned (default 0). */
  offset?: number;
}

/** A new alarm (its id and state are the store's). */
export type NewAlarm = Omit<AlarmRecord, 'id' | 'state'>;

export interface AlarmStore {
  /**
   * Raises an alarm and records its 'raise' note, in one commit. When (rule, subject) has an open alarm already,
   * nothing is written: that alarm is returned with `created: false`.
   */
  insert(a: NewAlarm, actor: string): Promise<{ alarm: AlarmRecord; created: boolean }>;
  get(id: number): Promise<AlarmRecord | undefined>;
  notes(id: number): Promise<AlarmNote[]>;
  /** Active and acknowledged alarms, oldest first. */
  open(): Promise<AlarmRecord[]>;
  /** The newest alarm of each (rule, subject), when an operator cleared it and its condition has not ended yet. */
  clearedWhileHolding(): Promise<AlarmRecord[]>;
  /** False when the alarm is not active. */
  acknowledge(id: number, by: string, at: string, note: string | null): Promise<boolean>;
  /** False when the alarm is already cleared. `conditionEnded`: the condition is over too (a system clear). */
  clear(id: number, by: string, at: string, note: string | null, conditionEnded: boolean): Promise<boolean>;
  /** Records the end of the condition of an alarm an operator cleared; false when recorded already. */
  conditionCleared(id: number, at: string, actor: string): Promise<boolean>;
  /** One page of the alarms that match, in the order asked for. */
  list(f: AlarmFilter): Promise<AlarmRecord[]>;
  /** How many alarms match (limit and offset aside). */
  count(f: Omit<AlarmFilter, 'limit'>): Promise<number>;
  close(): Promise<void>;
}

export interface Row {
  id: number;
  rule: string;
  subject: string;
  scope: 'device' | 'zone';
  family: Family | null;
  zone: string | null;
  severity: AlarmSeverity;
  state: AlarmState;
  message: string;
  value: string | null;
  raised_at: string;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  cleared_at: string | null;
  cleared_by: string | null;
  condition_cleared_at: string | null;
}

const STATE_RANK = `CASE state WHEN 'active' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END`;
const SEVERITY_RANK = `CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' THEN 2 ELSE 3 END`;
const ORDER = `${STATE_RANK}, ${SEVERITY_RANK}, id DESC`;
/** Sort keys in SQL; ascending severity and state put the most urgent first, as the default order does. */
const SORT_SQL: Record<Exclude<AlarmSort, 'default'>, string> = {
  raisedAt: 'raised_at',
  severity: `(3 - ${SEVERITY_RANK})`,
  state: `(2 - ${STATE_RANK})`,
  rule: 'rule',
  subject: 'subject',
  zone: 'zone',
  clearedAt: 'cleared_at',
  duration: `(julianday(coalesce(cleared_at, @now)) - julianday(raised_at))`,
};

export class SqliteAlarmStore implements AlarmStore {
  private readonly db: Database.Database;
  private readonly stmt;
  private inserts = 0;

  constructor(
    file: string,
    private readonly historyLimit = 100_000,
  ) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.function('fold_search', { deterministic: true }, (v: unknown) => (typeof v === 'string' ? foldForSearch(v) : v));
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS alarms (
        id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, subject TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('device', 'zone')), family TEXT, zone TEXT,
        severity TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ('active', 'acknowledged', 'cleared')),
        message TEXT NOT NULL, value TEXT, raised_at TEXT NOT NULL, acknowledged_at TEXT, acknowledged_by TEXT,
        cleared_at TEXT, cleared_by TEXT, condition_cleared_at TEXT);
      CREATE UNIQUE INDEX IF NOT EXISTS alarms_open ON alarms (rule, subject) WHERE state != 'cleared';
      CREATE INDEX IF NOT EXISTS alarms_raised ON alarms (raised_at);
      CREATE TABLE IF NOT EXISTS alarm_notes (
        id INTEGER PRIMARY KEY AUTOINCREMENT, alarm_id INTEGER NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, note TEXT);
      CREATE INDEX IF NOT EXISTS alarm_notes_alarm ON alarm_notes (alarm_id, id);`);
    this.stmt = {
      // Nothing when (rule, subject) has an open alarm (the partial unique index): raising is idempotent.
      insert: this.db.prepare(
        `INSERT INTO alarms (rule, subject, scope, family, zone, severity, state, message, value, raised_at)
         VALUES (@rule, @subject, @scope, @family, @zone, @severity, 'active', @message, @value, @raised_at)
         ON CONFLICT DO NOTHING`,
      ),
      openOf: this.db.prepare<[string, string], Row>(`SELECT * FROM alarms WHERE rule = ? AND subject = ? AND state != 'cleared'`),
      get: this.db.prepare<[number], Row>('SELECT * FROM alarms WHERE id = ?'),
      open: this.db.prepare<[], Row>(`SELECT * FROM alarms WHERE state != 'cleared' ORDER BY id`),
      // Cleared by an operator while the condition still held: the condition's end is still to be recorded.
      clearedWhileHolding: this.db.prepare<[], Row>(
        `SELECT * FROM alarms a WHERE state = 'cleared' AND cleared_by != 'system' AND condition_cleared_at IS NULL
         AND id = (SELECT max(id) FROM alarms b WHERE b.rule = a.rule AND b.subject = a.subject)`,
      ),
      ack: this.db.prepare(
        `UPDATE alarms SET state = 'acknowledged', acknowledged_at = ?, acknowledged_by = ? WHERE id = ? AND state = 'active'`,
      ),
      clear: this.db.prepare(
        `UPDATE alarms SET state = 'cleared', cleared_at = @at, cleared_by = @by,
         condition_cleared_at = coalesce(condition_cleared_at, @conditionAt) WHERE id = @id AND state != 'cleared'`,
      ),
      conditionCleared: this.db.prepare('UPDATE alarms SET condition_cleared_at = ? WHERE id = ? AND condition_cleared_at IS NULL'),
      note: this.db.prepare('INSERT INTO alarm_notes (alarm_id, at, actor, action, note) VALUES (?, ?, ?, ?, ?)'),
      notes: this.db.prepare<[number], AlarmNote>('SELECT at, actor, action, note FROM alarm_notes WHERE alarm_id = ? ORDER BY id'),
      trim: this.db.prepare(
        `DELETE FROM alarms WHERE state = 'cleared' AND id <= (SELECT id FROM alarms WHERE state = 'cleared' ORDER BY id DESC LIMIT 1 OFFSET ?)`,
      ),
      trimNotes: this.db.prepare('DELETE FROM alarm_notes WHERE alarm_id NOT IN (SELECT id FROM alarms)'),
    };
    this.trim();
  }

  async insert(a: NewAlarm, actor: string): Promise<{ alarm: AlarmRecord; created: boolean }> {
    const id = this.db.transaction((): number | undefined => {
      const r = this.stmt.insert.run({
        rule: a.rule,
        subject: a.subject,
        scope: a.scope,
        family: a.family ?? null,
        zone: a.zone ?? null,
        severity: a.severity,
        message: a.message,
        value: a.value === undefined ? null : JSON.stringify(a.value),
        raised_at: a.raisedAt,
      });
      if (r.changes === 0) return undefined;
      this.stmt.note.run(r.lastInsertRowid, a.raisedAt, actor, 'raise', null);
      return Number(r.lastInsertRowid);
    })();
    if (id === undefined) {
      const open = this.stmt.openOf.get(a.rule, a.subject);
      if (open) return { alarm: toRecord(open), created: false };
      throw new Error(`alarm ${a.rule}/${a.subject} neither raised nor open`);
    }
    if (++this.inserts % 100 === 0) this.trim();
    return { alarm: (await this.get(id)) as AlarmRecord, created: true };
  }

  async get(id: number): Promise<AlarmRecord | undefined> {
    const r = this.stmt.get.get(id);
    return r && toRecord(r);
  }

  async notes(id: number): Promise<AlarmNote[]> {
    return this.stmt.notes.all(id);
  }

  async open(): Promise<AlarmRecord[]> {
    return this.stmt.open.all().map(toRecord);
  }

  async clearedWhileHolding(): Promise<AlarmRecord[]> {
    return this.stmt.clearedWhileHolding.all().map(toRecord);
  }

  async acknowledge(id: number, by: string, at: string, note: string | null): Promise<boolean> {
    return this.db.transaction(() => {
      if (this.stmt.ack.run(at, by, id).changes === 0) return false;
      this.stmt.note.run(id, at, by, 'acknowledge', note);
      return true;
    })();
  }

  async clear(id: number, by: string, at: string, note: string | null, conditionEnded: boolean): Promise<boolean> {
    return this.db.transaction(() => {
      if (this.stmt.clear.run({ id, at, by, conditionAt: conditionEnded ? at : null }).changes === 0) return false;
      this.stmt.note.run(id, at, by, 'clear', note);
      return true;
    })();
  }

  async conditionCleared(id: number, at: string, actor: string): Promise<boolean> {
    return this.db.transaction(() => {
      if (this.stmt.conditionCleared.run(at, id).changes === 0) return false;
      this.stmt.note.run(id, at, actor, 'condition-cleared', null);
      return true;
    })();
  }

  async list(f: AlarmFilter): Promise<AlarmRecord[]> {
    const { where, params } = this.where(f);
    let order = ORDER;
    if (f.sort && f.sort !== 'default') {
      const dir = f.order === 'asc' ? 'ASC' : 'DESC';
      order = `${SORT_SQL[f.sort]} ${dir} NULLS LAST, id ${dir}`;
      if (f.sort === 'duration') params.now = new Date().toISOString();
    }
    params.limit = f.limit;
    params.offset = f.offset ?? 0;
    const sql = `SELECT * FROM alarms ${where} ORDER BY ${order} LIMIT @limit OFFSET @offset`;
    return this.db.prepare<Record<string, unknown>, Row>(sql).all(params).map(toRecord);
  }

  async count(f: Omit<AlarmFilter, 'limit'>): Promise<number> {
    const { where, params } = this.where(f);
    return (
      this.db.prepare<Record<string, unknown>, { n: number }>(`SELECT count(*) AS n FROM alarms ${where}`).get(params) as { n: number }
    ).n;
  }

  private where(f: Omit<AlarmFilter, 'limit'>): { where: string; params: Record<string, unknown> } {
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    const add = (clause: string, name: string, value: unknown) => {
      where.push(clause);
      params[name] = value;
    };
    if (f.state === 'open') where.push(`state != 'cleared'`);
    else if (f.state) add('state = @state', 'state', f.state);
    for (const k of ['severity', 'rule', 'zone', 'family', 'subject'] as const) {
      if (f[k] !== undefined) add(`${k} = @${k}`, k, f[k]);
    }
    if (f.since) add('raised_at >= @since', 'since', new Date(f.since).toISOString());
    if (f.until) add('raised_at <= @until', 'until', new Date(f.until).toISOString());
    const q = f.q?.trim();
    if (q) {
      // LIKE with its wildcards escaped, on both sides folded (any case, with or without diacritics: "den" finds
      // "Đèn"). The columns are folded as they are read: the alarm history is bounded (historyLimit), so a scan
      // costs little, and the table keeps its columns.
      const folded = foldForSearch(q);
      const like = `%${folded.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const cols = ['subject', 'rule', 'zone', 'message', 'acknowledged_by', 'cleared_by'];
      add(
        `(${cols.map((c) => `fold_search(${c}) LIKE @q ESCAPE '\\'`).join(' OR ')}
          OR id IN (SELECT alarm_id FROM alarm_notes WHERE fold_search(note) LIKE @q ESCAPE '\\'))`,
        'q',
        like,
      );
    }
    return { where: where.length ? `WHERE ${where.join(' AND ')}` : '', params };
  }

  trim(): void {
    this.db.transaction(() => {
      this.stmt.trim.run(this.historyLimit);
      this.stmt.trimNotes.run();
    })();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

/** A stored row as an alarm (both stores: PostgreSQL's times and ids converted to SQLite's forms first). */
export function toRecord(r: Row): AlarmRecord {
  const a: AlarmRecord = {
    id: r.id,
    rule: r.rule,
    subject: r.subject,
    scope: r.scope,
    severity: r.severity,
    state: r.state,
    message: r.message,
    value: r.value === null ? null : (JSON.parse(r.value) as AlarmRecord['value']),
    raisedAt: r.raised_at,
    acknowledgedAt: r.acknowledged_at,
    acknowledgedBy: r.acknowledged_by,
    clearedAt: r.cleared_at,
    clearedBy: r.cleared_by,
    conditionClearedAt: r.condition_cleared_at,
  };
  if (r.family) a.family = r.family;
  if (r.zone) a.zone = r.zone;
  return a;
}
