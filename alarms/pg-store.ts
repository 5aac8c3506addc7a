/**
 * Alarms in PostgreSQL (cluster mode, `state.postgresUrl`): the same `AlarmStore` as SqliteAlarmStore, one table
 * of alarms for the whole cluster, so the alarm console and API of every node show every alarm, and an operator
 * acknowledges or clears an alarm on any node.
 *
 * - Raising is idempotent across nodes: a partial unique index allows one open alarm per (rule, subject), and
 *   the insert is `ON CONFLICT DO NOTHING`; the alarm and its 'raise' note are written by one statement (data-
 *   modifying CTEs are one atomic statement), so there is no half-raised alarm. A node that raises an alarm
 *   another node (or itself, before a failover) raised gets the open one back with `created: false`.
 * - Every state change is one statement too (the change and its note), guarded by the state it expects
 *   (`WHERE state = 'active'` …), so two nodes acting at once change an alarm once.
 * - An operator's clear sends a NOTIFY (ALARM_CHANNEL, the alarm's id) in the same statement: the node whose
 *   engine follows that (rule, subject) counts its condition anew, as after a clear on that node.
 * - Times are timestamptz and come back as the ISO strings the SQLite store keeps; ids are bigint, returned as
 *   numbers.
 */
import type { AlarmRecord } from '../core/bus.ts';
import type { Logger } from '../core/logger.ts';
import type { Migration, StateDb } from '../registry/index.ts';
import { isoOf } from '../registry/index.ts';
import { type AlarmFilter, type AlarmNote, type AlarmSort, type AlarmStore, type NewAlarm, type Row, toRecord } from './store.ts';

export const ALARM_COMPONENT = 'alarms';

/** NOTIFY channel of operator clears (payload: the alarm's id). */
export const ALARM_CHANNEL = 'citypulse_alarms';

export const ALARM_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'alarms and their notes',
    sql: `
      CREATE TABLE alarms (
        id bigserial PRIMARY KEY, rule text NOT NULL, subject text COLLATE "C" NOT NULL,
        scope text NOT NULL CHECK (scope IN ('device', 'zone')), family text, zone text,
        severity text NOT NULL, state text NOT NULL CHECK (state IN ('active', 'acknowledged', 'cleared')),
        message text NOT NULL, value text, raised_at timestamptz NOT NULL, acknowledged_at timestamptz,
        acknowledged_by text, cleared_at timestamptz, cleared_by text, condition_cleared_at timestamptz);
      CREATE UNIQUE INDEX alarms_open ON alarms (rule, subject) WHERE state <> 'cleared';
      CREATE INDEX alarms_raised ON alarms (raised_at);
      CREATE INDEX alarms_state ON alarms (state, id);
      CREATE TABLE alarm_notes (
        id bigserial PRIMARY KEY, alarm_id bigint NOT NULL REFERENCES alarms (id) ON DELETE CASCADE,
        at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL, note text);
      CREATE INDEX alarm_notes_alarm ON alarm_notes (alarm_id, id);`,
  },
];

/** The columns as SQLite's store returns them: times as ISO strings (toRecord takes them as they are). */
const COLUMNS = `id, rule, subject, scope, family, zone, severity, state, message, value, raised_at, acknowledged_at,
  acknowledged_by, cleared_at, cleared_by, condition_cleared_at`;

const STATE_RANK = `CASE state WHEN 'active' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END`;
const SEVERITY_RANK = `CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' THEN 2 ELSE 3 END`;
const ORDER = `${STATE_RANK}, ${SEVERITY_RANK}, id DESC`;
/** The same sort keys as the SQLite store's. Text sorts as bytes (COLLATE "C"), as SQLite sorts it. */
const SORT_SQL: Record<Exclude<AlarmSort, 'default'>, string> = {
  raisedAt: 'raised_at',
  severity: `(3 - ${SEVERITY_RANK})`,
  state: `(2 - ${STATE_RANK})`,
  rule: 'rule COLLATE "C"',
  subject: 'subject',
  zone: 'zone COLLATE "C"',
  clearedAt: 'cleared_at',
  duration: '(coalesce(cleared_at, now()) - raised_at)',
};

/** Trimming the cleared history: every this many raises of a node. */
const TRIM_EVERY = 100;

type PgRow = Omit<Row, 'id' | 'raised_at' | 'acknowledged_at' | 'cleared_at' | 'condition_cleared_at'> & {
  id: string | number;
  raised_at: Date;
  acknowledged_at: Date | null;
  cleared_at: Date | null;
  condition_cleared_at: Date | null;
};

function fromPg(r: PgRow): AlarmRecord {
  return toRecord({
    ...r,
    id: Number(r.id),
    raised_at: isoOf(r.raised_at) as string,
    acknowledged_at: isoOf(r.acknowledged_at) ?? null,
    cleared_at: isoOf(r.cleared_at) ?? null,
    condition_cleared_at: isoOf(r.condition_cleared_at) ?? null,
  });
}

export class PgAlarmStore implements AlarmStore {
  private inserts = 0;

  /** The schema must be migrated (ALARM_MIGRATIONS). */
  constructor(
    private readonly db: StateDb,
    private readonly historyLimit = 100_000,
    private readonly log?: Logger,
  ) {}

  async insert(a: NewAlarm, actor: string): Promise<{ alarm: AlarmRecord; created: boolean }> {
    const values = [
      a.rule,
      a.subject,
      a.scope,
      a.family ?? null,
      a.zone ?? null,
      a.severity,
      a.message,
      a.value === undefined ? null : JSON.stringify(a.value),
      a.raisedAt,
      actor,
    ];
    // The alarm and its note in one statement; nothing when (rule, subject) has an open alarm.
    const sql = `
      WITH ins AS (
        INSERT INTO alarms (rule, subject, scope, family, zone, severity, state, message, value, raised_at)
        VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9)
        ON CONFLICT (rule, subject) WHERE state <> 'cleared' DO NOTHING
        RETURNING ${COLUMNS}),
      note AS (INSERT INTO alarm_notes (alarm_id, at, actor, action) SELECT id, raised_at, $10::text, 'raise' FROM ins)
      SELECT * FROM ins`;
    // The open alarm it met may be cleared before it is read: then raising again creates one (twice at most).
    for (let attempt = 0; attempt < 2; attempt++) {
      const r = await this.db.query<PgRow>(sql, values);
      if (r.rows[0]) {
        if (++this.inserts % TRIM_EVERY === 0)
          this.trim().catch((err) => this.log?.warn({ err: err.message }, 'alarm history not trimmed'));
        return { alarm: fromPg(r.rows[0]), created: true };
      }
      const open = await this.db.read<PgRow>(`SELECT ${COLUMNS} FROM alarms WHERE rule = $1 AND subject = $2 AND state <> 'cleared'`, [
        a.rule,
        a.subject,
      ]);
      if (open.rows[0]) return { alarm: fromPg(open.rows[0]), created: false };
    }
    throw new Error(`alarm ${a.rule}/${a.subject} neither raised nor open`);
  }

  async get(id: number): Promise<AlarmRecord | undefined> {
    if (!Number.isSafeInteger(id)) return undefined;
    const r = await this.db.read<PgRow>(`SELECT ${COLUMNS} FROM alarms WHERE id = $1`, [id], 'alarms_get');
    return r.rows[0] && fromPg(r.rows[0]);
  }

  async notes(id: number): Promise<AlarmNote[]> {
    const r = await this.db.read<{ at: Date; actor: string; action: string; note: string | null }>(
      'SELECT at, actor, action, note FROM alarm_notes WHERE alarm_id = $1 ORDER BY id',
      [id],
    );
    return r.rows.map((n) => ({ at: isoOf(n.at) as string, actor: n.actor, action: n.action, note: n.note }));
  }

  async open(): Promise<AlarmRecord[]> {
    const r = await this.db.read<PgRow>(`SELECT ${COLUMNS} FROM alarms WHERE state <> 'cleared' ORDER BY id`);
    return r.rows.map(fromPg);
  }

  async clearedWhileHolding(): Promise<AlarmRecord[]> {
    const r = await this.db.read<PgRow>(
      `SELECT ${COLUMNS} FROM alarms a WHERE state = 'cleared' AND cleared_by <> 'system' AND condition_cleared_at IS NULL
       AND id = (SELECT max(id) FROM alarms b WHERE b.rule = a.rule AND b.subject = a.subject)`,
    );
    return r.rows.map(fromPg);
  }

  async acknowledge(id: number, by: string, at: string, note: string | null): Promise<boolean> {
    const r = await this.db.query(
      `WITH u AS (UPDATE alarms SET state = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3
                  WHERE id = $1 AND state = 'active' RETURNING id)
       INSERT INTO alarm_notes (alarm_id, at, actor, action, note) SELECT id, $2::timestamptz, $3::text, 'acknowledge', $4::text FROM u`,
      [id, at, by, note],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async clear(id: number, by: string, at: string, note: string | null, conditionEnded: boolean): Promise<boolean> {
    // An operator's clear is announced to the other nodes (their engine may follow the condition).
    const r = await this.db.query(
      `WITH u AS (UPDATE alarms SET state = 'cleared', cleared_at = $2, cleared_by = $3,
                  condition_cleared_at = coalesce(condition_cleared_at, $5::timestamptz)
                  WHERE id = $1 AND state <> 'cleared' RETURNING id),
       n AS (INSERT INTO alarm_notes (alarm_id, at, actor, action, note) SELECT id, $2::timestamptz, $3::text, 'clear', $4::text FROM u)
       SELECT id, CASE WHEN $3::text <> 'system' THEN pg_notify('${ALARM_CHANNEL}', id::text) END FROM u`,
      [id, at, by, note, conditionEnded ? at : null],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async conditionCleared(id: number, at: string, actor: string): Promise<boolean> {
    const r = await this.db.query(
      `WITH u AS (UPDATE alarms SET condition_cleared_at = $2 WHERE id = $1 AND condition_cleared_at IS NULL RETURNING id)
       INSERT INTO alarm_notes (alarm_id, at, actor, action) SELECT id, $2::timestamptz, $3::text, 'condition-cleared' FROM u`,
      [id, at, actor],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async list(f: AlarmFilter): Promise<AlarmRecord[]> {
    const { where, values } = whereOf(f);
    let order = ORDER;
    if (f.sort && f.sort !== 'default') {
      const dir = f.order === 'asc' ? 'ASC' : 'DESC';
      order = `${SORT_SQL[f.sort]} ${dir} NULLS LAST, id ${dir}`;
    }
    values.push(f.limit, f.offset ?? 0);
    const r = await this.db.read<PgRow>(
      `SELECT ${COLUMNS} FROM alarms ${where} ORDER BY ${order} LIMIT $${values.length - 1} OFFSET $${values.length}`,
      values,
    );
    return r.rows.map(fromPg);
  }

  async count(f: Omit<AlarmFilter, 'limit'>): Promise<number> {
    const { where, values } = whereOf(f);
    const r = await this.db.read<{ n: string }>(`SELECT count(*) AS n FROM alarms ${where}`, values);
    return Number(r.rows[0]?.n ?? 0);
  }

  /** Removes the cleared alarms beyond `historyLimit`, oldest first (their notes go with them). */
  async trim(): Promise<void> {
    await this.db.query(
      `DELETE FROM alarms WHERE state = 'cleared'
       AND id <= (SELECT id FROM alarms WHERE state = 'cleared' ORDER BY id DESC LIMIT 1 OFFSET $1)`,
      [this.historyLimit],
    );
  }

  /** Hears the operator clears made through every node (this one's too), by alarm id. */
  follow(onOperatorClear: (id: number) => void): Promise<void> {
    return this.db.listen(ALARM_CHANNEL, (payload) => {
      const id = Number(payload);
      if (Number.isSafeInteger(id)) onOperatorClear(id);
    });
  }

  /** The pool belongs to the platform's state stores: nothing to close here. */
  async close(): Promise<void> {}
}

/** A filter as a WHERE clause with numbered parameters, matching what the SQLite store matches. */
function whereOf(f: Omit<AlarmFilter, 'limit'>): { where: string; values: unknown[] } {
  const where: string[] = [];
  const values: unknown[] = [];
  const add = (clause: (p: string) => string, value: unknown) => {
    values.push(value);
    where.push(clause(`$${values.length}`));
  };
  if (f.state === 'open') where.push(`state <> 'cleared'`);
  else if (f.state) add((p) => `state = ${p}`, f.state);
  for (const k of ['severity', 'rule', 'zone', 'family', 'subject'] as const) {
    if (f[k] !== undefined) add((p) => `${k} = ${p}`, f[k]);
  }
  if (f.since) add((p) => `raised_at >= ${p}`, new Date(f.since).toISOString());
  if (f.until) add((p) => `raised_at <= ${p}`, new Date(f.until).toISOString());
  const q = f.q?.trim();
  if (q) {
    // ILIKE with its wildcards escaped: the words are matched as typed, whatever their case.
    const like = `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    const cols = ['subject', 'rule', 'zone', 'message', 'acknowledged_by', 'cleared_by'];
    add(
      (p) =>
        `(${cols.map((c) => `${c} ILIKE ${p}`).join(' OR ')}
          OR id IN (SELECT alarm_id FROM alarm_notes WHERE note ILIKE ${p}))`,
      like,
    );
  }
  return { where: where.length ? `WHERE ${where.join(' AND ')}` : '', values };
}
