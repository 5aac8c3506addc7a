/**
 * Operator accounts: people who use the dashboard and the REST API, their sessions and the audit
 * log of what they changed.
 *
 * `OperatorStore` is what the platform uses; `SqliteOperatorStore` keeps the accounts, sessions and audit
 * records in one embedded SQLite file (`dataDir/operators.db`: one node), `PgOperatorStore` (pg-operators.ts)
 * in the PostgreSQL database the nodes of a cluster share. Both check, hash and aggregate with the helpers
 * here, so they answer alike.
 *
 * Passwords are hashed with scrypt (memory-hard): N = 2^15, r = 8, p = 1 (32 MiB a hash), 32-byte key, 16-byte
 * random salt. Measured on this project's machine kind (2 cores, Node 20): about 115 ms a hash (N = 2^14 was
 * 60 ms, 2^16 was 225 ms), run on the libuv thread pool so the event loop keeps serving. The parameters are
 * stored with each hash (`scrypt$15$8$1$salt$hash`), so they can be raised later without breaking old hashes.
 *
 * Session tokens are 256 random bits, shown once to the client; the store keeps SHA-256(token) only (a fast
 * hash suffices for a random secret of that length, and every request checks one).
 */
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import Database from 'better-sqlite3';
import { PlatformError } from '../core/errors.ts';

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** True when `have` is `need` or a higher role (viewer < operator < admin). */
export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

export const USERNAME_PATTERN = '^[a-z0-9][a-z0-9._-]{1,63}$';
export const PASSWORD_MIN_LENGTH = 10;
export const PASSWORD_MAX_LENGTH = 1024;

export interface Operator {
  username: string;
  role: Role;
  disabled: boolean;
  /** ISO 8601 */
  createdAt: string;
  /** ISO 8601 of the last successful login. */
  lastLoginAt?: string;
}

export type PasswordCheck =
  | { result: 'ok'; operator: Operator }
  | { result: 'unknown-user' }
  | { result: 'wrong-password'; operator: Operator }
  | { result: 'disabled'; operator: Operator };

export interface Session {
  /** Hex of SHA-256(token): identifies the session without being a credential. */
  id: string;
  operator: Operator;
  /** ISO 8601 */
  expiresAt: string;
}

export interface AuditEntry {
  /** ISO 8601; of an aggregated record (see `count`), its first attempt. */
  at: string;
  /** Username, `(service token)`, `(cli)` or `(system)`; for a login, the username that was tried. */
  actor: string;
  role: Role | null;
  /** `login`, `logout`, `device.provision`, `device.revoke`, `device.rotate-token`, `operator.create`, … */
  action: string;
  target: string | null;
  /** Source address of the request (null for the command line and the platform itself). */
  address: string | null;
  /** `ok`, or why it failed: an error code, or for a login `unknown-user`, `wrong-password`, `disabled`, `rate-limited`. */
  outcome: string;
  /**
   * Attempts this record stands for. Refused attempts (a login that failed or was rate-limited, a call refused
   * for a too-low role) are aggregated: one record per action, source address, outcome and minute
   * (AUDIT_REFUSAL_WINDOW_MS), and per actor too except for rate-limited logins, whose usernames an anonymous
   * flood chooses: an actor or target that differs within the record reads `(various)`. Other records: 1.
   * Set in what listAudit returns; ignored when recording.
   */
  count?: number;
  /** ISO 8601 of the record's last attempt (= at when count is 1). Set in what listAudit returns. */
  lastAt?: string;
}

/** The SQLite audit filter (times are ISO 8601 text, which sorts as time). */
const AUDIT_WHERE = `(@actor IS NULL OR actor = @actor) AND (@action IS NULL OR action = @action)
  AND (@since IS NULL OR at >= @since) AND (@until IS NULL OR at <= @until)`;

/** Refused attempts are aggregated per this window, ms (see AuditEntry.count). */
export const AUDIT_REFUSAL_WINDOW_MS = 60_000;

/** Actor or target of an aggregated record whose attempts named different ones. */
export const AUDIT_VARIOUS = '(various)';

/** Refused attempts: aggregated and kept apart from the other records (see AuditEntry.count). */
export function isRefusal(e: Pick<AuditEntry, 'action' | 'outcome'>): boolean {
  return (e.action === 'login' && e.outcome !== 'ok') || e.outcome === 'CP_API_FORBIDDEN';
}

/** Which audit records: by actor, by action, and by time (of the first attempt, `at`), both ends included. */
export interface AuditFilter {
  actor?: string;
  action?: string;
  /** ISO 8601 */
  since?: string;
  /** ISO 8601 */
  until?: string;
}

/** A filter's values as both stores bind them (null = not filtered; times in the stored ISO form). */
export function auditParams(f: AuditFilter): { actor: string | null; action: string | null; since: string | null; until: string | null } {
  const iso = (t: string | undefined) => (t ? new Date(t).toISOString() : null);
  return { actor: f.actor ?? null, action: f.action ?? null, since: iso(f.since), until: iso(f.until) };
}

export interface OperatorStore {
  count(): Promise<number>;
  /** Throws CP_REGISTRY_OPERATOR_EXISTS. The password is hashed (scrypt), never stored. */
  create(req: { username: string; password: string; role: Role }): Promise<Operator>;
  get(username: string): Promise<Operator | undefined>;
  list(): Promise<Operator[]>;
  /** Always costs one scrypt hash, also for an unknown username (no timing hint that it exists). */
  checkPassword(username: string, password: string): Promise<PasswordCheck>;
  /** Sets a new password and ends the operator's sessions. Throws CP_REGISTRY_OPERATOR_NOT_FOUND. */
  setPassword(username: string, password: string): Promise<void>;
  /** Disables the account and ends its sessions. Throws CP_REGISTRY_OPERATOR_NOT_FOUND. */
  disable(username: string): Promise<Operator>;
  /** Starts a session (and records the login time); the token is returned once. */
  createSession(username: string, ttlMs: number): Promise<{ token: string; session: Session }>;
  /** The live session of a token: unknown, expired, or of a disabled operator → undefined. */
  findSession(token: string): Promise<Session | undefined>;
  endSession(id: string): Promise<void>;
  /**
   * Records an action. Refused attempts (`isRefusal`) are aggregated into one record per window with a count
   * and kept apart, with a cap of their own: a flood of them never removes the record of an operator's action.
   */
  audit(entry: Omit<AuditEntry, 'at'> & { at?: string }): Promise<void>;
  /** Newest first. */
  listAudit(filter: AuditFilter & { limit: number; offset?: number }): Promise<AuditEntry[]>;
  /** How many records match (the audit page's X-Total-Count). */
  countAudit(filter: AuditFilter): Promise<number>;
  close(): Promise<void>;
}

interface Row {
  username: string;
  role: Role;
  password_hash: string;
  disabled: number;
  created_at: string;
  last_login_at: string | null;
}

const SCRYPT = { log2N: 15, r: 8, p: 1, keyLength: 32 };

function scryptAsync(password: string, salt: Buffer, keyLength: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, keyLength, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

const scryptOptions = (log2N: number, r: number, p: number): ScryptOptions => ({
  N: 2 ** log2N,
  r,
  p,
  // scrypt needs 128 · N · r bytes; Node's default maxmem (32 MiB) is exactly that at 2^15 and refuses it.
  maxmem: 2 * 128 * 2 ** log2N * r,
});

/** `scrypt$log2N$r$p$salt$hash` (base64url). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const { log2N, r, p, keyLength } = SCRYPT;
  const key = await scryptAsync(password, salt, keyLength, scryptOptions(log2N, r, p));
  return ['scrypt', log2N, r, p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [kind, log2N, r, p, salt, hash] = stored.split('$');
  if (kind !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scryptAsync(
    password,
    Buffer.from(salt, 'base64url'),
    expected.length,
    scryptOptions(Number(log2N), Number(r), Number(p)),
  );
  return timingSafeEqual(expected, actual);
}

/** Verified against for unknown usernames, so that they cost the same time as known ones. */
let dummyHash: Promise<string> | undefined;

/** Costs one scrypt verification, as a known username does: no timing hint whether a username exists. */
export async function verifyUnknownUser(password: string): Promise<void> {
  dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
  await verifyPassword(password, await dummyHash);
}

/**
 * The verdict on a login's password as every store gives it: an unknown username costs one scrypt verification
 * too (no timing hint), a wrong password is judged before a disabled account (no hint that the account exists
 * and is disabled without its password).
 */
export async function judgePassword(
  found: { hash: string; disabled: boolean; operator: Operator } | undefined,
  password: string,
): Promise<PasswordCheck> {
  if (!found) {
    await verifyUnknownUser(password);
    return { result: 'unknown-user' };
  }
  const { operator } = found;
  if (!(await verifyPassword(password, found.hash))) return { result: 'wrong-password', operator };
  if (found.disabled) return { result: 'disabled', operator };
  return { result: 'ok', operator };
}

/** A session's id: SHA-256 of its token (the token itself is never stored). */
export const sessionIdOf = (token: string) => createHash('sha256').update(token, 'utf8').digest();

/** A new session token: 256 random bits, base64url. */
export const newSessionToken = () => randomBytes(32).toString('base64url');

/** Checks a new operator's username, role and password as every store does (throws TypeError / CP_API_VALIDATION). */
export function checkNewOperator(req: { username: string; password: string; role: Role }): void {
  if (!new RegExp(USERNAME_PATTERN).test(req.username)) throw new TypeError(`username must match ${USERNAME_PATTERN}`);
  if (!ROLES.includes(req.role)) throw new TypeError(`role must be one of ${ROLES.join(', ')}`);
  checkPasswordRules(req.password);
}

/**
 * The aggregation key of a refused attempt (see AuditEntry.count): action, source address, outcome, window and,
 * except for rate-limited logins, the actor. The usernames of rate-limited logins are the caller's choice: they
 * must not make a record each.
 */
export function refusalKey(e: Pick<AuditEntry, 'action' | 'address' | 'outcome' | 'actor'>, at: string): string {
  const window = Math.floor(Date.parse(at) / AUDIT_REFUSAL_WINDOW_MS);
  const who = e.action === 'login' && e.outcome === 'rate-limited' ? '' : e.actor;
  return JSON.stringify([e.action, e.address, e.outcome, window, who]);
}

/** Refused attempts and operators' actions are each trimmed to the audit limit once every this many records. */
export const AUDIT_TRIM_EVERY = 1000;

export class SqliteOperatorStore implements OperatorStore {
  private readonly db: Database.Database;
  private readonly stmt;
  private readonly auditInserts = { action: 0, refusal: 0 };

  /**
   * `file` may be ':memory:'. Beyond `auditLimit` records of operators' actions, and apart from them beyond
   * `auditLimit` aggregated records of refused attempts, the oldest are removed.
   */
  constructor(
    file: string,
    private readonly auditLimit = 100_000,
  ) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS operators (
        username TEXT PRIMARY KEY, role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        password_hash TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL, last_login_at TEXT);
      CREATE TABLE IF NOT EXISTS sessions (
        id BLOB PRIMARY KEY, username TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS sessions_username ON sessions (username);
      CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, role TEXT, action TEXT NOT NULL,
        target TEXT, address TEXT, outcome TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS audit_actor ON audit (actor, id);`);
    // Refused attempts (kind 'refusal') are aggregated under agg_key and capped apart from actions.
    const columns = new Set(
      this.db
        .prepare<[], { name: string }>('PRAGMA table_info(audit)')
        .all()
        .map((c) => c.name),
    );
    if (!columns.has('kind')) this.db.exec("ALTER TABLE audit ADD COLUMN kind TEXT NOT NULL DEFAULT 'action'");
    if (!columns.has('count')) this.db.exec('ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1');
    if (!columns.has('last_at')) this.db.exec('ALTER TABLE audit ADD COLUMN last_at TEXT');
    if (!columns.has('agg_key')) this.db.exec('ALTER TABLE audit ADD COLUMN agg_key TEXT');
    this.db.exec(`
      CREATE UNIQUE INDEX IF NOT EXISTS audit_agg_key ON audit (agg_key);
      CREATE INDEX IF NOT EXISTS audit_kind ON audit (kind, id);`);
    this.stmt = {
      count: this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM operators'),
      insert: this.db.prepare(
        'INSERT INTO operators (username, role, password_hash, created_at) VALUES (@username, @role, @password_hash, @created_at)',
      ),
      get: this.db.prepare<[string], Row>('SELECT * FROM operators WHERE username = ?'),
      all: this.db.prepare<[], Row>('SELECT * FROM operators ORDER BY username'),
      setHash: this.db.prepare('UPDATE operators SET password_hash = ? WHERE username = ?'),
      disable: this.db.prepare('UPDATE operators SET disabled = 1 WHERE username = ?'),
      loggedIn: this.db.prepare('UPDATE operators SET last_login_at = ? WHERE username = ?'),
      insertSession: this.db.prepare('INSERT INTO sessions (id, username, created_at, expires_at) VALUES (?, ?, ?, ?)'),
      findSession: this.db.prepare<[Buffer, number], Row & { expires_at: number }>(
        `SELECT o.*, s.expires_at FROM sessions s JOIN operators o ON o.username = s.username
         WHERE s.id = ? AND s.expires_at > ? AND o.disabled = 0`,
      ),
      endSession: this.db.prepare('DELETE FROM sessions WHERE id = ?'),
      endSessionsOf: this.db.prepare('DELETE FROM sessions WHERE username = ?'),
      purgeSessions: this.db.prepare('DELETE FROM sessions WHERE expires_at <= ?'),
      insertAudit: this.db.prepare(
        'INSERT INTO audit (at, actor, role, action, target, address, outcome) VALUES (@at, @actor, @role, @action, @target, @address, @outcome)',
      ),
      upsertRefusal: this.db.prepare(
        `INSERT INTO audit (at, actor, role, action, target, address, outcome, kind, count, last_at, agg_key)
         VALUES (@at, @actor, @role, @action, @target, @address, @outcome, 'refusal', 1, @at, @key)
         ON CONFLICT (agg_key) DO UPDATE SET count = count + 1, last_at = excluded.last_at,
           actor = CASE WHEN actor = excluded.actor THEN actor ELSE '${AUDIT_VARIOUS}' END,
           target = CASE WHEN target IS excluded.target THEN target ELSE '${AUDIT_VARIOUS}' END,
           role = CASE WHEN role IS excluded.role THEN role ELSE NULL END`,
      ),
      trimAudit: this.db.prepare<[string, string, number]>(
        'DELETE FROM audit WHERE kind = ? AND id < (SELECT id FROM audit WHERE kind = ? ORDER BY id DESC LIMIT 1 OFFSET ?)',
      ),
      listAudit: this.db.prepare<ReturnType<typeof auditParams> & { limit: number; offset: number }, AuditEntry>(
        `SELECT at, actor, role, action, target, address, outcome, count, coalesce(last_at, at) AS lastAt FROM audit
         WHERE ${AUDIT_WHERE} ORDER BY id DESC LIMIT @limit OFFSET @offset`,
      ),
      countAudit: this.db.prepare<ReturnType<typeof auditParams>, { n: number }>(`SELECT count(*) AS n FROM audit WHERE ${AUDIT_WHERE}`),
    };
  }

  async count(): Promise<number> {
    return this.stmt.count.get()?.n ?? 0;
  }

  async create(req: { username: string; password: string; role: Role }): Promise<Operator> {
    checkNewOperator(req);
    if (this.stmt.get.get(req.username)) throw exists(req.username);
    const hash = await hashPassword(req.password);
    try {
      this.stmt.insert.run({ username: req.username, role: req.role, password_hash: hash, created_at: new Date().toISOString() });
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw exists(req.username, err);
      throw err;
    }
    return (await this.get(req.username)) as Operator;
  }

  async get(username: string): Promise<Operator | undefined> {
    const row = this.stmt.get.get(username);
    return row && toOperator(row);
  }

  async list(): Promise<Operator[]> {
    return this.stmt.all.all().map(toOperator);
  }

  async checkPassword(username: string, password: string): Promise<PasswordCheck> {
    const row = this.stmt.get.get(username);
    return judgePassword(row && { hash: row.password_hash, disabled: row.disabled === 1, operator: toOperator(row) }, password);
  }

  async setPassword(username: string, password: string): Promise<void> {
    checkPasswordRules(password);
    if (!this.stmt.get.get(username)) throw notFound(username);
    const hash = await hashPassword(password);
    this.db.transaction(() => {
      this.stmt.setHash.run(hash, username);
      this.stmt.endSessionsOf.run(username);
    })();
  }

  async disable(username: string): Promise<Operator> {
    this.db.transaction(() => {
      if (this.stmt.disable.run(username).changes === 0) throw notFound(username);
      this.stmt.endSessionsOf.run(username);
    })();
    return (await this.get(username)) as Operator;
  }

  async createSession(username: string, ttlMs: number): Promise<{ token: string; session: Session }> {
    const token = newSessionToken();
    const id = sessionIdOf(token);
    const now = Date.now();
    this.db.transaction(() => {
      this.stmt.purgeSessions.run(now);
      this.stmt.insertSession.run(id, username, now, now + ttlMs);
      this.stmt.loggedIn.run(new Date(now).toISOString(), username);
    })();
    const row = this.stmt.get.get(username);
    if (!row) throw notFound(username);
    return { token, session: { id: id.toString('hex'), operator: toOperator(row), expiresAt: new Date(now + ttlMs).toISOString() } };
  }

  async findSession(token: string): Promise<Session | undefined> {
    const id = sessionIdOf(token);
    const row = this.stmt.findSession.get(id, Date.now());
    return row && { id: id.toString('hex'), operator: toOperator(row), expiresAt: new Date(row.expires_at).toISOString() };
  }

  async endSession(id: string): Promise<void> {
    this.stmt.endSession.run(Buffer.from(id, 'hex'));
  }

  async audit(e: Omit<AuditEntry, 'at'> & { at?: string }): Promise<void> {
    const at = e.at ?? new Date().toISOString();
    const row = { actor: e.actor, role: e.role, action: e.action, target: e.target, address: e.address, outcome: e.outcome, at };
    const kind = isRefusal(e) ? 'refusal' : 'action';
    if (kind === 'refusal') {
      this.stmt.upsertRefusal.run({ ...row, key: refusalKey(e, at) });
    } else {
      this.stmt.insertAudit.run(row);
    }
    // Bounded like the dead letters, each kind apart: refusals never remove actions. Trimmed every 1000 calls.
    if (++this.auditInserts[kind] % AUDIT_TRIM_EVERY === 0) this.stmt.trimAudit.run(kind, kind, this.auditLimit - 1);
  }

  async listAudit(f: AuditFilter & { limit: number; offset?: number }): Promise<AuditEntry[]> {
    return this.stmt.listAudit.all({ ...auditParams(f), limit: f.limit, offset: f.offset ?? 0 });
  }

  async countAudit(f: AuditFilter): Promise<number> {
    return this.stmt.countAudit.get(auditParams(f))?.n ?? 0;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

/**
 * At the first start (no operator at all), creates `admin` with the role admin and `password`, or a random
 * one that is returned to be shown once. Audited as `(system)`.
 */
export async function ensureInitialAdmin(
  store: OperatorStore,
  password: string,
): Promise<{ created: false } | { created: true; username: string; generatedPassword?: string }> {
  if ((await store.count()) > 0) return { created: false };
  const generated = password ? undefined : randomBytes(15).toString('base64url');
  const username = 'admin';
  try {
    await store.create({ username, password: password || (generated as string), role: 'admin' });
  } catch (err) {
    // Nodes of a cluster starting at once on an empty database: one of them creates it.
    if ((err as { code?: string }).code === 'CP_REGISTRY_OPERATOR_EXISTS') return { created: false };
    throw err;
  }
  await store.audit({ actor: '(system)', role: null, action: 'operator.create', target: username, address: null, outcome: 'ok' });
  return generated ? { created: true, username, generatedPassword: generated } : { created: true, username };
}

export function checkPasswordRules(password: string): void {
  if (typeof password !== 'string' || password.length < PASSWORD_MIN_LENGTH || password.length > PASSWORD_MAX_LENGTH) {
    throw new PlatformError('CP_API_VALIDATION', `a password has ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters`);
  }
}

export const exists = (username: string, cause?: unknown) =>
  new PlatformError('CP_REGISTRY_OPERATOR_EXISTS', `operator ${username} already exists`, { cause });
export const notFound = (username: string) => new PlatformError('CP_REGISTRY_OPERATOR_NOT_FOUND', `no operator ${username}`);

function toOperator(r: Row): Operator {
  const o: Operator = { username: r.username, role: r.role, disabled: r.disabled === 1, createdAt: r.created_at };
  if (r.last_login_at) o.lastLoginAt = r.last_login_at;
  return o;
}
