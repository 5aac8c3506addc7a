/**
 * One schedule runner in the cluster: a leader elected by a PostgreSQL advisory lock. Each node holds a
 * connection of its own (not a pooled one: a session-level advisory lock belongs to the connection that took
 * it) and asks `pg_try_advisory_lock` on it every `retryMs`; the node that gets it runs the schedules, the others
 * stand by. The leader checks its connection every `retryMs` too: when it breaks (PostgreSQL restarted, the node
 * cut off) it stops leading at once and tries again on a new one. When the leader's process dies its connection
 * closes and PostgreSQL releases the lock, so another node takes it at its next try.
 *
 * Why a lock and not a lease row: the lock ends with the session, with no clock to trust and nothing to clean up.
 * Its limit: a leader cut off without its TCP connection being closed keeps the lock until PostgreSQL's TCP
 * keepalive finds the connection dead (server settings tcp_keepalives_*), while that node stops leading as soon as
 * its own check fails (bounded by `queryTimeoutMs`). Schedule edges are claimed in the store as well
 * (CommandStore.claimScheduleEdge), so even two leaders at once would fire an edge once.
 */
import pg from 'pg';
import type { Logger } from '../core/logger.ts';

/** The lock's key: a fixed 64-bit number, derived from a name for readability. */
export const SCHEDULE_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtextextended('citypulse.commands.schedules', 0)) AS ok";

export interface Leadership {
  isLeader(): boolean;
  /** Gives the lock up (closes its connection) and stops trying. */
  stop(): Promise<void>;
}

export function startLeadership(
  opts: { url: string; retryMs: number; queryTimeoutMs: number },
  deps: { logger: Logger; onChange?: (leader: boolean) => void },
): Leadership {
  const log = deps.logger;
  let client: pg.Client | undefined;
  let leader = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let lastError = '';

  const setLeader = (v: boolean) => {
    if (leader === v) return;
    leader = v;
    log.info({}, v ? 'this node runs the command schedules (leader)' : 'this node no longer runs the command schedules');
    deps.onChange?.(v);
  };
  const drop = (c: pg.Client, err: Error) => {
    if (client !== c) return;
    client = undefined;
    setLeader(false);
    c.end().catch(() => undefined);
    if (err.message !== lastError && !stopped) {
      lastError = err.message;
      log.warn({ err: err.message }, 'schedule leadership: PostgreSQL connection lost; trying again');
    }
  };

  async function attempt(): Promise<void> {
    if (stopped) return;
    try {
      if (!client) {
        const c = new pg.Client({
          connectionString: opts.url,
          connectionTimeoutMillis: opts.queryTimeoutMs,
          query_timeout: opts.queryTimeoutMs,
          keepAlive: true,
          application_name: 'citypulse-schedules',
        });
        c.on('error', (err) => drop(c, err));
        c.on('end', () => drop(c, new Error('connection ended')));
        client = c;
        try {
          await c.connect();
        } catch (err) {
          drop(c, err as Error);
          return;
        }
      }
      const c = client;
      if (!c) return;
      // The leader checks that its session (and so its lock) is still there; the others ask for the lock.
      const r = await c.query<{ ok: boolean }>(leader ? 'SELECT true AS ok' : SCHEDULE_LOCK_SQL).catch((err: Error) => {
        drop(c, err);
        return undefined;
      });
      if (r && !stopped) {
        lastError = '';
        setLeader(r.rows[0]?.ok === true);
      }
    } finally {
      if (!stopped) {
        timer = setTimeout(() => void attempt(), opts.retryMs);
        timer.unref();
      }
    }
  }
  void attempt();

  return {
    isLeader: () => leader && !stopped,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      const c = client;
      client = undefined;
      leader = false;
      // Ending the session releases the lock at once; bounded, since a hung server never answers the goodbye.
      if (c) await Promise.race([c.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
    },
  };
}
