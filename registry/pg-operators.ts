/**
 * Operators, sessions and the audit log in PostgreSQL (cluster mode): the same OperatorStore as
 * SqliteOperatorStore, shared by every node. A session started through one node is valid on all of them, and
 * ending it (logout, a new password, a disabled account) refuses it on all of them at its next request.
 *
 * Password hashing, session tokens, the rules for usernames and passwords and the aggregation key of refused
 * attempts come from operators.ts, so both stores answer alike. Refused attempts from every node aggregate into
 * the same record (an upsert on its key); each node trims the audit log every AUDIT_TRIM_EVERY records it
 * writes of a kind. Ended sessions are announced to every node (pg-changes.ts), which closes their sockets.
 * A PostgreSQL outage throws CP_STATE_UNAVAILABLE (HTTP 503).
 */
import {
  AUDIT_TRIM_EVERY,
  AUDIT_VARIOUS,
  type AuditEntry,
  type AuditFilter,
  auditParams,
  checkNewOperator,
  checkPasswordRules,
  exists,
  hashPassword,
  isRefusal,
  newSessionToken,
  notFound,
  type Operator,
  type OperatorStore,
  type PasswordCheck,
  refusalKey,
  type Role,
  type Session,
  sessionIdOf,
  judgePassword,
} from './operators.ts';
import { changePayload, STATE_CHANNEL } from './pg-changes.ts';
import { isoOf, type Queryable, type StateDb } from './pg-state.ts';

interface Row {
  username: string;
  role: Role;
  password_hash: string;
  disabled: boolean;
  created_at: Date;
  last_login_at: Date | null;
}

interface AuditRow {
  at: Date;
  actor: string;
  role: Role | null;
  action: string;
  target: string | null;
  address: string | null;
  outcome: string;
  count: number;
  last_at: Date;
}

export class PgOperatorStore implements OperatorStore {
  private readonly auditInserts = { action: 0, refusal: 0 };

  /**
   * The schema must be migrated (REGISTRY_MIGRATIONS). Beyond `auditLimit` records of operators' actions, and
   * apart from them beyond `auditLimit` aggregated records of refused attempts, the oldest are removed.
   */
  constructor(
    private readonly db: StateDb,
    private readonly auditLimit = 100_000,
  ) {}

  async count(): Promise<number> {
    return (await this.db.read<{ n: number }>('SELECT count(*)::int AS n FROM operators')).rows[0]?.n ?? 0;
  }

  private async row(username: string): Promise<Row | undefined> {
    return (await this.db.read<Row>('SELECT * FROM operators WHERE username = $1', [username])).rows[0];
  }

  async create(req: { username: string; password: string; role: Role }): Promise<Operator> {
    checkNewOperator(req);
    if (await this.row(req.username)) throw exists(req.username);
    const hash = await hashPassword(req.password);
    try {
      const r = await this.db.query<Row>(
        'INSERT INTO operators (username, role, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING *',
        [req.username, req.role, hash, new Date().toISOString()],
      );
      return toOperator(r.rows[0] as Row);
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw exists(req.username, err);
      throw err;
    }
  }

  async get(username: string): Promise<Operator | undefined> {
    const row = await this.row(username);
    return row && toOperator(row);
  }

  async list(): Promise<Operator[]> {
    return (await this.db.read<Row>('SELECT * FROM operators ORDER BY username')).rows.map(toOperator);
  }

  async checkPassword(username: string, password: string): Promise<PasswordCheck> {
    const row = await this.row(username);
    return judgePassword(row && { hash: row.password_hash, disabled: row.disabled, operator: toOperator(row) }, password);
  }

  async setPassword(username: string, password: string): Promise<void> {
    checkPasswordRules(password);
    if (!(await this.row(username))) throw notFound(username);
    const hash = await hashPassword(password);
    await this.db.transaction(async (q) => {
      await q.query('UPDATE operators SET password_hash = $1 WHERE username = $2', [hash, username]);
      await q.query('DELETE FROM sessions WHERE username = $1', [username]);
      await notifyEnded(q, { username });
    });
  }

  async disable(username: string): Promise<Operator> {
    return this.db.transaction(async (q) => {
      const r = await q.query<Row>('UPDATE operators SET disabled = true WHERE username = $1 RETURNING *', [username]);
      const row = r.rows[0];
      if (!row) throw notFound(username);
      await q.query('DELETE FROM sessions WHERE username = $1', [username]);
      await notifyEnded(q, { username });
      return toOperator(row);
    });
  }

  async createSession(username: string, ttlMs: number): Promise<{ token: string; session: Session }> {
    const token = newSessionToken();
    const id = sessionIdOf(token);
    const now = Date.now();
    const row = await this.db.transaction(async (q) => {
      await q.query('DELETE FROM sessions WHERE expires_at <= $1', [new Date(now)]);
      const r = await q.query<Row>('UPDATE operators SET last_login_at = $1 WHERE username = $2 RETURNING *', [new Date(now), username]);
      const op = r.rows[0];
      if (!op) throw notFound(username);
      await q.query('INSERT INTO sessions (id, username, created_at, expires_at) VALUES ($1, $2, $3, $4)', [
        id,
        username,
        new Date(now),
        new Date(now + ttlMs),
      ]);
      return op;
    });
    return { token, session: { id: id.toString('hex'), operator: toOperator(row), expiresAt: new Date(now + ttlMs).toISOString() } };
  }

  async findSession(token: string): Promise<Session | undefined> {
    const id = sessionIdOf(token);
    const r = await this.db.read<Row & { expires_at: Date }>(
      // Named columns, not o.*: a prepared statement stays valid when a later migration adds a column.
      `SELECT o.username, o.role, o.password_hash, o.disabled, o.created_at, o.last_login_at, s.expires_at
       FROM sessions s JOIN operators o ON o.username = s.username
       WHERE s.id = $1 AND s.expires_at > $2 AND NOT o.disabled`,
      [id, new Date()],
      'find-session',
    );
    const row = r.rows[0];
    return row && { id: id.toString('hex'), operator: toOperator(row), expiresAt: isoOf(row.expires_at) as string };
  }

  async endSession(id: string): Promise<void> {
    await this.db.query(`WITH d AS (DELETE FROM sessions WHERE id = $1 RETURNING id) SELECT pg_notify('${STATE_CHANNEL}', $2) FROM d`, [
      Buffer.from(id, 'hex'),
      changePayload({ kind: 'sessions-ended', sessionId: id }),
    ]);
  }

  async audit(e: Omit<AuditEntry, 'at'> & { at?: string }): Promise<void> {
    const at = e.at ?? new Date().toISOString();
    const values = [at, e.actor, e.role, e.action, e.target, e.address, e.outcome];
    const kind = isRefusal(e) ? 'refusal' : 'action';
    if (kind === 'refusal') {
      // Attempts from any node land in one record per key; concurrent ones wait for each other on its row.
      await this.db.query(
        `INSERT INTO audit AS a (at, actor, role, action, target, address, outcome, kind, count, last_at, agg_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'refusal', 1, $1, $8)
         ON CONFLICT (agg_key) DO UPDATE SET count = a.count + 1, last_at = excluded.last_at,
           actor = CASE WHEN a.actor = excluded.actor THEN a.actor ELSE '${AUDIT_VARIOUS}' END,
           target = CASE WHEN a.target IS NOT DISTINCT FROM excluded.target THEN a.target ELSE '${AUDIT_VARIOUS}' END,
           role = CASE WHEN a.role IS NOT DISTINCT FROM excluded.role THEN a.role ELSE NULL END`,
        [...values, refusalKey(e, at)],
      );
    } else {
      await this.db.query(
        'INSERT INTO audit (at, actor, role, action, target, address, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7)',
        values,
      );
    }
    // Bounded, each kind apart: refusals never remove actions.
    if (++this.auditInserts[kind] % AUDIT_TRIM_EVERY === 0) {
      await this.db.query(
        'DELETE FROM audit WHERE kind = $1 AND id < (SELECT id FROM audit WHERE kind = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)',
        [kind, this.auditLimit - 1],
      );
    }
  }

  async listAudit(f: AuditFilter & { limit: number; offset?: number }): Promise<AuditEntry[]> {
    const a = auditParams(f);
    const r = await this.db.read<AuditRow>(
      `SELECT at, actor, role, action, target, address, outcome, count, coalesce(last_at, at) AS last_at FROM audit
       WHERE ${PG_AUDIT_WHERE} ORDER BY id DESC LIMIT $5 OFFSET $6`,
      [a.actor, a.action, a.since, a.until, f.limit, f.offset ?? 0],
    );
    return r.rows.map((a) => ({
      at: isoOf(a.at) as string,
      actor: a.actor,
      role: a.role,
      action: a.action,
      target: a.target,
      address: a.address,
      outcome: a.outcome,
      count: a.count,
      lastAt: isoOf(a.last_at) as string,
    }));
  }

  async countAudit(f: AuditFilter): Promise<number> {
    const a = auditParams(f);
    const r = await this.db.read<{ n: number }>(`SELECT count(*)::int AS n FROM audit WHERE ${PG_AUDIT_WHERE}`, [
      a.actor,
      a.action,
      a.since,
      a.until,
    ]);
    return r.rows[0]?.n ?? 0;
  }

  /** Nothing of its own to close: the shared pool is closed by its owner. */
  async close(): Promise<void> {}
}

const PG_AUDIT_WHERE = `($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR action = $2)
  AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at <= $4)`;

/** Tells every node (when the transaction commits) that the sessions of `who` ended: their sockets close. */
async function notifyEnded(q: Queryable, who: { username: string }): Promise<void> {
  await q.query('SELECT pg_notify($1, $2)', [STATE_CHANNEL, changePayload({ kind: 'sessions-ended', ...who })]);
}

function toOperator(r: Row): Operator {
  const o: Operator = { username: r.username, role: r.role, disabled: r.disabled, createdAt: isoOf(r.created_at) as string };
  const last = isoOf(r.last_login_at);
  if (last) o.lastLoginAt = last;
  return o;
}
