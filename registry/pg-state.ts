/**
 * The PostgreSQL database that the nodes of a cluster share their state in (`state.postgresUrl`): one
 * connection pool per node, a bounded wait for every query, outages answered as CP_STATE_UNAVAILABLE, and
 * versioned migrations that several nodes starting at once apply once.
 *
 * Bounded waits. A query has `queryTimeoutMs` on the client (pg's query_timeout: it also covers what the
 * server's statement_timeout does not, such as a commit waiting for a synchronous standby) and the same as
 * statement_timeout on the server (work the client gave up on is cancelled there too); getting a connection
 * has `queryTimeoutMs` too. So a caller waits at most about twice `queryTimeoutMs`: a stopped server answers
 * at once (connection refused), a hung one after the timeouts. A connection that failed or timed out is
 * discarded, and the next query opens a new one: after a restart of PostgreSQL the pool recovers by itself.
 *
 * Migrations. Each component lists its migrations (version, name, SQL), applied in version order in one
 * transaction that first takes a transaction-level advisory lock: a node that starts while another migrates
 * waits for it, then finds the versions applied (table `schema_migrations`, per component).
 */
import pg from 'pg';
import { PlatformError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';

/** One step of a component's schema. Versions are never reused or edited once released: add a new one. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export interface StateDbOptions {
  /** `postgres://user:password@host:port/database` */
  url: string;
  /** Bound on a query and on getting a connection, ms (see the module comment). */
  queryTimeoutMs: number;
  /** Connections this node keeps at most (default 10). */
  poolSize?: number;
  logger?: Logger;
}

/** What a query runs on: the pool, or one connection inside a transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** Waiting for another node's migrations (and running ours) is bounded by this, ms. */
const MIGRATION_TIMEOUT_MS = 120_000;

/** The advisory lock every node's migrations take (a fixed 64-bit key, derived from a name for readability). */
const MIGRATION_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended('citypulse.schema_migrations', 0))";

/**
 * SQLSTATEs that mean the server is not there for us (rather than that the query was wrong): connection
 * exceptions (class 08), shutting down or starting up (57P01-57P03), too many connections (53300), a
 * statement_timeout (57014), out of resources (class 53).
 */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[123]$|57014$)/;
/** What pg and Node report for a connection that failed, broke, or did not answer in time. */
const UNAVAILABLE_MESSAGE =
  /Query read timeout|timeout exceeded when trying to connect|Connection terminated|connection timeout|not queryable|Client was closed/i;
const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** True when `err` says PostgreSQL could not be reached or did not answer (not that the query was refused). */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof PlatformError) return err.code === 'CP_STATE_UNAVAILABLE';
  const e = err as { code?: unknown; message?: unknown } | null;
  if (!e) return false;
  if (
    typeof e.code === 'string' &&
    (UNAVAILABLE_ERRNO.has(e.code) || (/^[0-9A-Z]{5}$/.test(e.code) && UNAVAILABLE_SQLSTATE.test(e.code)))
  ) {
    return true;
  }
  return typeof e.message === 'string' && UNAVAILABLE_MESSAGE.test(e.message);
}

/** A broken connection (not a timeout): a read that met one is safe to send once more, on a new connection. */
function isBrokenConnection(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  return (
    (typeof e.code === 'string' && ['ECONNRESET', 'EPIPE', '57P01', '57P02'].includes(e.code)) ||
    (typeof e.message === 'string' && /Connection terminated unexpectedly|not queryable/.test(e.message))
  );
}

/** `err` as CP_STATE_UNAVAILABLE when it is an outage; otherwise unchanged. */
export function asStateError(err: unknown): unknown {
  if (err instanceof PlatformError || !isUnavailable(err)) return err;
  const what = (err as Error).message || (err as { code?: string }).code || 'unknown error';
  return new PlatformError('CP_STATE_UNAVAILABLE', `the shared state database (PostgreSQL) is unavailable: ${what}`, { cause: err });
}

export class StateDb implements Queryable {
  readonly pool: pg.Pool;
  private readonly log: Logger | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;
  /** Connections of listen(), and their pending reconnections. */
  private readonly listeners = new Set<pg.Client>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();

  constructor(readonly opts: StateDbOptions) {
    this.log = opts.logger;
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.queryTimeoutMs,
      query_timeout: opts.queryTimeoutMs,
      statement_timeout: opts.queryTimeoutMs,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: 'citypulse',
    });
    // An idle connection the server ended (a restart, a failover) is dropped from the pool; without a listener the
    // error would end the process.
    this.pool.on('error', (err) =>
      this.log?.warn({ err: err.message }, 'PostgreSQL connection lost; the pool opens a new one when needed'),
    );
  }

  /** One statement on a pooled connection; an outage throws CP_STATE_UNAVAILABLE. */
  async query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values);
    } catch (err) {
      throw asStateError(err);
    }
  }

  /**
   * A statement that changes nothing (or changes it the same way twice): sent once more when its connection
   * turned out to be broken, as the first use of a pooled connection after a server restart can find it.
   * `name` makes it a prepared statement on each connection (parsed and planned once: the hot checks).
   */
  async read<R extends pg.QueryResultRow = any>(text: string, values?: unknown[], name?: string): Promise<pg.QueryResult<R>> {
    const q: pg.QueryConfig = name ? { name, text, values } : { text, values };
    try {
      return await this.pool.query<R>(q);
    } catch (err) {
      if (!isBrokenConnection(err)) throw asStateError(err);
      try {
        return await this.pool.query<R>(q);
      } catch (again) {
        throw asStateError(again);
      }
    }
  }

  /** Runs `fn` in a transaction on one connection: committed when it resolves, rolled back when it throws. */
  async transaction<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw asStateError(err);
    }
    let failure: unknown;
    try {
      await client.query('BEGIN');
      const out = await fn(client);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      failure = err;
      // A connection that failed mid-transaction is discarded (release with the error), never reused half-done.
      if (!isUnavailable(err)) await client.query('ROLLBACK').catch(() => undefined);
      throw asStateError(err);
    } finally {
      client.release(failure !== undefined && isUnavailable(failure) ? (failure as Error) : undefined);
    }
  }

  /**
   * Applies `migrations` of `component` not applied yet, in version order, all in one transaction under the
   * cluster-wide migration lock. Returns the versions this call applied (none when another node did).
   */
  async migrate(component: string, migrations: readonly Migration[]): Promise<number[]> {
    const sorted = [...migrations].sort((a, b) => a.version - b.version);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]?.version === sorted[i - 1]?.version) throw new Error(`${component}: migration version ${sorted[i]?.version} twice`);
    }
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw asStateError(err);
    }
    // Waiting for another node's migrations is not an outage: a longer bound than a query's, on both sides.
    const q = (text: string, values?: unknown[]) => client.query({ text, values, query_timeout: MIGRATION_TIMEOUT_MS } as pg.QueryConfig);
    let failure: unknown;
    try {
      await q('BEGIN');
      await q(`SET LOCAL statement_timeout = ${MIGRATION_TIMEOUT_MS}`);
      await q(MIGRATION_LOCK_SQL);
      await q(`CREATE TABLE IF NOT EXISTS schema_migrations (
        component text NOT NULL, version integer NOT NULL, name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))`);
      const done = await q('SELECT version FROM schema_migrations WHERE component = $1', [component]);
      const have = new Set(done.rows.map((r: { version: number }) => r.version));
      const applied: number[] = [];
      for (const m of sorted) {
        if (have.has(m.version)) continue;
        await q(m.sql);
        await q('INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)', [component, m.version, m.name]);
        applied.push(m.version);
      }
      await q('COMMIT');
      if (applied.length) this.log?.info({ component, versions: applied }, 'PostgreSQL schema migrated');
      return applied;
    } catch (err) {
      failure = err;
      await client.query('ROLLBACK').catch(() => undefined);
      throw asStateError(err);
    } finally {
      client.release(failure !== undefined ? (failure as Error) : undefined);
    }
  }

  /**
   * Calls `handler` with the payload of each notification on `channel`, on a connection of its own that is
   * opened again (back-off 0.5 s to 5 s) whenever it is lost, until close(); `resumed` is called once it listens
   * again (what was notified meanwhile is lost: the caller checks what it must). Resolves after the first
   * attempt, whether or not it connected.
   */
  async listen(channel: string, handler: (payload: string) => void, resumed?: () => void): Promise<void> {
    if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new TypeError(`channel ${channel} must be a plain lower-case name`);
    let delay = 500;
    let down = false;
    const connect = async (): Promise<void> => {
      if (this.closed) return;
      const c = new pg.Client({
        connectionString: this.opts.url,
        connectionTimeoutMillis: this.opts.queryTimeoutMs,
        query_timeout: this.opts.queryTimeoutMs,
        keepAlive: true,
        application_name: 'citypulse-listen',
      });
      this.listeners.add(c);
      let lost = false;
      const retry = (err: Error) => {
        if (lost) return;
        lost = true;
        this.listeners.delete(c);
        c.end().catch(() => undefined);
        if (this.closed) return;
        if (!down) this.log?.warn({ err: err.message, channel }, 'PostgreSQL notifications lost; listening again when it answers');
        down = true;
        const timer = setTimeout(() => void connect(), delay);
        timer.unref();
        this.retryTimers.add(timer);
        delay = Math.min(delay * 2, 5000);
      };
      c.on('error', retry);
      c.on('end', () => retry(new Error('connection ended')));
      c.on('notification', (n) => {
        if (n.channel === channel && n.payload !== undefined) handler(n.payload);
      });
      try {
        await c.connect();
        await c.query(`LISTEN ${channel}`);
        delay = 500;
        if (down) {
          this.log?.info({ channel }, 'PostgreSQL notifications followed again');
          down = false;
          resumed?.();
        }
      } catch (err) {
        retry(err as Error);
      }
    };
    await connect();
  }

  /** Ends the pool's connections and the listening ones; bounded, since a hung server never answers the goodbye. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= (async () => {
      for (const t of this.retryTimers) clearTimeout(t);
      const listeners = [...this.listeners];
      this.listeners.clear();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([this.pool.end().catch(() => undefined), ...listeners.map((c) => c.end().catch(() => undefined))]),
        new Promise<void>((r) => {
          timer = setTimeout(r, Math.min(this.opts.queryTimeoutMs, 5000));
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
    })();
    return this.closing;
  }
}

/** An ISO 8601 string of a timestamptz column (pg reads them as Date), or undefined for NULL. */
export function isoOf(v: Date | string | null | undefined): string | undefined {
  if (v === null || v === undefined) return undefined;
  return v instanceof Date ? v.toISOString() : new Date(v).toISOString();
}
