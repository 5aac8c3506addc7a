/**
 * Where commands and schedules are kept: the CommandStore interface, and its single-node implementation in one
 * embedded SQLite file (`dataDir/commands.db`, better-sqlite3: synchronous, microseconds a query), so that
 * pending commands and schedules survive a restart. The cluster's implementation (PostgreSQL, shared by every
 * node) is pg-store.ts; both answer alike (test/state-stores.test.ts runs one suite on both), so the interface
 * is asynchronous. State changes are conditional updates (`WHERE state IN (...)`): a change that lost a race (a
 * late ack after expiry, a PUBACK after the ack, another node expiring the same command) changes nothing and
 * reports so.
 */
import Database from 'better-sqlite3';
import type { CommandRecord, CommandState } from '../core/bus.ts';
import type { Family } from '../core/contract.ts';

/** A group of devices a command or schedule is for: a list of device ids, or every street light of a zone. */
export type CommandTarget = { devices: string[] } | { zone: string };

export interface Schedule {
  id: string;
  name: string;
  target: CommandTarget;
  /** Local time (city time zone) of the start edge, HH:MM or HH:MM:SS. */
  from: string;
  /** Local time of the end edge. */
  to: string;
  /** Sent at `from`. */
  action: Record<string, unknown>;
  /** Sent at `to`, when given. */
  endAction?: Record<string, unknown> | null;
  /** TTL of the commands it creates, ms; null = commands.defaultTtlMs. */
  ttlMs?: number | null;
  enabled: boolean;
  /** IANA zone the times are in (the city's). */
  timeZone: string;
  createdAt: string;
  createdBy: string;
  /** The last edge that created commands. */
  lastEdge?: { edge: 'from' | 'to'; at: string } | null;
}

interface CommandRow {
  id: string;
  device: string;
  zone: string | null;
  family: string | null;
  action: string;
  state: CommandState;
  reason: string | null;
  created_at: number;
  created_by: string;
  expires_at: number;
  delivered_at: number | null;
  acknowledged_at: number | null;
  batch: string | null;
}

interface ScheduleRow {
  id: string;
  name: string;
  target: string;
  from_time: string;
  to_time: string;
  action: string;
  end_action: string | null;
  ttl_ms: number | null;
  enabled: number;
  time_zone: string;
  created_at: number;
  created_by: string;
  last_edge: string | null;
  last_edge_at: number | null;
}

export interface CommandFilter {
  device?: string;
  state?: CommandState;
  batch?: string;
  limit: number;
}

/** What a batch asked for, by its action: switch off, set a light level (dim), or switch on. */
export const BATCH_ACTIONS = ['on', 'off', 'dim'] as const;
/** Where a batch stands: some commands still open, every one carried out, or some failed or expired. */
export const BATCH_OUTCOMES = ['open', 'done', 'failed'] as const;

export interface BatchFilter {
  /** Who created it (operator, `(service token)`, `schedule:<id>`). */
  by?: string;
  /** A batch with a command for a device of this zone. */
  zone?: string;
  /** A batch with a command for this device. */
  device?: string;
  action?: (typeof BATCH_ACTIONS)[number];
  outcome?: (typeof BATCH_OUTCOMES)[number];
  /** ISO 8601: created at or after / at or before. */
  since?: string;
  until?: string;
  limit: number;
  offset?: number;
}

/** One request (or one schedule edge) and the state of its commands, as the command history shows it. */
export interface BatchSummary {
  batch: string;
  createdAt: string;
  createdBy: string;
  action: Record<string, unknown>;
  /** As asked (a zone or a list of devices); null for batches stored before targets were kept. */
  target: CommandTarget | null;
  /** The zones of its devices. */
  zones: string[];
  /** How many commands (devices). */
  size: number;
  /** Commands per state now. */
  states: Record<CommandState, number>;
  /** Commands that reached their device (its PUBACK, or an answer). */
  reached: number;
  /** When the last command finished (answered or expired), once none is open. */
  finishedAt: string | null;
}

/** A batch as both stores' queries return it (times in ms). */
export interface BatchRow {
  batch: string;
  created_at: number;
  created_by: string;
  action: string;
  target: string | null;
  zones: string | null;
  size: number;
  pending: number;
  delivered: number;
  acknowledged: number;
  failed: number;
  expired: number;
  reached: number;
  last_at: number | null;
}

/** The reason an expired command carries. */
export const EXPIRED_REASON = 'not acknowledged before expiresAt';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const OPEN: CommandState[] = ['pending', 'delivered'];

/** A new command, before the store gives it its state. */
export type NewCommand = Omit<CommandRecord, 'state' | 'reason' | 'deliveredAt' | 'acknowledgedAt'>;

export interface CommandStore {
  /**
   * Inserts commands (state pending) in one transaction; `target`, what the batch was asked for, is kept for the
   * command history (commands of one batch share their batch id and creation time).
   */
  insert(commands: NewCommand[], target?: CommandTarget): Promise<CommandRecord[]>;
  get(id: string): Promise<CommandRecord | undefined>;
  /** Newest first. */
  list(f: CommandFilter): Promise<CommandRecord[]>;
  /** Batches (one per request or schedule edge), newest first, with their commands' states. */
  batches(f: BatchFilter): Promise<BatchSummary[]>;
  /** Pending, unexpired commands of a device, oldest first (the order to send them in). */
  pendingOf(device: string, now: number): Promise<CommandRecord[]>;
  /** Devices with pending, unexpired commands; of one batch when given. */
  devicesWithPending(now: number, batch?: string): Promise<string[]>;
  /** pending → delivered; undefined when the command was not pending (or expired meanwhile). */
  markDelivered(id: string, device: string, at: number): Promise<CommandRecord | undefined>;
  /** pending | delivered → acknowledged | failed; undefined when it was already finished. */
  markAnswered(
    id: string,
    device: string,
    state: 'acknowledged' | 'failed',
    reason: string | null,
    at: number,
  ): Promise<CommandRecord | undefined>;
  /** Every open command whose expiresAt passed becomes expired; returns those this call changed, oldest first. */
  expireDue(now: number): Promise<CommandRecord[]>;
  insertSchedule(s: Schedule): Promise<Schedule>;
  getSchedule(id: string): Promise<Schedule | undefined>;
  /** By creation time, then id. */
  listSchedules(): Promise<Schedule[]>;
  deleteSchedule(id: string): Promise<boolean>;
  /**
   * Records that the schedule's edge at `at` fires; false when that edge (or a later one) was recorded already,
   * or the schedule is gone: then the caller does not fire it. So an edge fires once, whoever asks.
   */
  claimScheduleEdge(id: string, edge: 'from' | 'to', at: number): Promise<boolean>;
  close(): Promise<void>;
}

export class SqliteCommandStore implements CommandStore {
  private readonly db: Database.Database;
  private readonly stmt;
  private finishedSinceTrim = 0;

  /** `file` may be ':memory:'. Finished commands beyond `historyLimit` are removed, oldest first. */
  constructor(
    file: string,
    private readonly historyLimit = 100_000,
  ) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS commands (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, device TEXT NOT NULL, zone TEXT, family TEXT,
        action TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'acknowledged', 'failed', 'expired')),
        reason TEXT, created_at INTEGER NOT NULL, created_by TEXT NOT NULL, expires_at INTEGER NOT NULL,
        delivered_at INTEGER, acknowledged_at INTEGER, batch TEXT);
      CREATE INDEX IF NOT EXISTS commands_device ON commands (device, seq);
      CREATE INDEX IF NOT EXISTS commands_batch ON commands (batch, seq);
      CREATE INDEX IF NOT EXISTS commands_open ON commands (state, expires_at);
      CREATE INDEX IF NOT EXISTS commands_created ON commands (created_at);
      CREATE TABLE IF NOT EXISTS batches (
        batch TEXT NOT NULL, created_at INTEGER NOT NULL, target TEXT NOT NULL, PRIMARY KEY (batch, created_at));
      CREATE TABLE IF NOT EXISTS schedules (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, target TEXT NOT NULL, from_time TEXT NOT NULL, to_time TEXT NOT NULL,
        action TEXT NOT NULL, end_action TEXT, ttl_ms INTEGER, enabled INTEGER NOT NULL, time_zone TEXT NOT NULL,
        created_at INTEGER NOT NULL, created_by TEXT NOT NULL, last_edge TEXT, last_edge_at INTEGER);`);
    this.stmt = {
      insert: this.db.prepare(
        `INSERT INTO commands (id, device, zone, family, action, state, created_at, created_by, expires_at, batch)
         VALUES (@id, @device, @zone, @family, @action, 'pending', @created_at, @created_by, @expires_at, @batch)`,
      ),
      get: this.db.prepare<[string], CommandRow>('SELECT * FROM commands WHERE id = ?'),
      list: this.db.prepare<{ device: string | null; state: string | null; batch: string | null; limit: number }, CommandRow>(
        `SELECT * FROM commands WHERE (@device IS NULL OR device = @device) AND (@state IS NULL OR state = @state)
         AND (@batch IS NULL OR batch = @batch) ORDER BY seq DESC LIMIT @limit`,
      ),
      pendingOf: this.db.prepare<[string, number], CommandRow>(
        `SELECT * FROM commands WHERE device = ? AND state = 'pending' AND expires_at > ? ORDER BY seq`,
      ),
      pendingDevices: this.db.prepare<[number], { device: string }>(
        `SELECT DISTINCT device FROM commands WHERE state = 'pending' AND expires_at > ?`,
      ),
      pendingDevicesOfBatch: this.db.prepare<[string, number], { device: string }>(
        `SELECT DISTINCT device FROM commands WHERE batch = ? AND state = 'pending' AND expires_at > ?`,
      ),
      delivered: this.db.prepare(
        `UPDATE commands SET state = 'delivered', delivered_at = ? WHERE id = ? AND device = ? AND state = 'pending' AND expires_at > ?`,
      ),
      answered: this.db.prepare(
        `UPDATE commands SET state = @state, reason = @reason, acknowledged_at = @at, delivered_at = coalesce(delivered_at, @at)
         WHERE id = @id AND device = @device AND state IN ('pending', 'delivered')`,
      ),
      dueToExpire: this.db.prepare<[number], { id: string }>(
        `SELECT id FROM commands WHERE state IN ('pending', 'delivered') AND expires_at <= ? ORDER BY seq`,
      ),
      expire: this.db.prepare(`UPDATE commands SET state = 'expired', reason = ? WHERE id = ? AND state IN ('pending', 'delivered')`),
      trim: this.db.prepare(
        `DELETE FROM commands WHERE state IN ('acknowledged', 'failed', 'expired') AND seq <= (
           SELECT seq FROM commands WHERE state IN ('acknowledged', 'failed', 'expired') ORDER BY seq DESC LIMIT 1 OFFSET ?)`,
      ),
      insertSchedule: this.db.prepare(
        `INSERT INTO schedules (id, name, target, from_time, to_time, action, end_action, ttl_ms, enabled, time_zone, created_at, created_by)
         VALUES (@id, @name, @target, @from_time, @to_time, @action, @end_action, @ttl_ms, @enabled, @time_zone, @created_at, @created_by)`,
      ),
      getSchedule: this.db.prepare<[string], ScheduleRow>('SELECT * FROM schedules WHERE id = ?'),
      allSchedules: this.db.prepare<[], ScheduleRow>('SELECT * FROM schedules ORDER BY created_at, id'),
      deleteSchedule: this.db.prepare('DELETE FROM schedules WHERE id = ?'),
      edgeFired: this.db.prepare(
        'UPDATE schedules SET last_edge = ?, last_edge_at = ? WHERE id = ? AND (last_edge_at IS NULL OR last_edge_at < ?)',
      ),
      insertBatch: this.db.prepare('INSERT OR IGNORE INTO batches (batch, created_at, target) VALUES (?, ?, ?)'),
      trimBatches: this.db.prepare(
        'DELETE FROM batches WHERE NOT EXISTS (SELECT 1 FROM commands c WHERE c.batch = batches.batch AND c.created_at = batches.created_at)',
      ),
    };
  }

  async insert(commands: NewCommand[], target?: CommandTarget): Promise<CommandRecord[]> {
    this.db.transaction(() => {
      const first = commands[0];
      if (target && first?.batch) this.stmt.insertBatch.run(first.batch, Date.parse(first.createdAt), JSON.stringify(target));
      for (const c of commands) {
        this.stmt.insert.run({
          id: c.id,
          device: c.device,
          zone: c.zone ?? null,
          family: c.family ?? null,
          action: JSON.stringify(c.action),
          created_at: Date.parse(c.createdAt),
          created_by: c.createdBy,
          expires_at: Date.parse(c.expiresAt),
          batch: c.batch ?? null,
        });
      }
    })();
    return commands.map((c) => this.getNow(c.id) as CommandRecord);
  }

  async get(id: string): Promise<CommandRecord | undefined> {
    return this.getNow(id);
  }

  private getNow(id: string): CommandRecord | undefined {
    const row = this.stmt.get.get(id);
    return row && toRecord(row);
  }

  async list(f: CommandFilter): Promise<CommandRecord[]> {
    return this.stmt.list.all({ device: f.device ?? null, state: f.state ?? null, batch: f.batch ?? null, limit: f.limit }).map(toRecord);
  }

  async batches(f: BatchFilter): Promise<BatchSummary[]> {
    const where = ['c.batch IS NOT NULL'];
    const having: string[] = [];
    const params: Record<string, unknown> = { limit: f.limit, offset: f.offset ?? 0 };
    if (f.by !== undefined) {
      where.push('c.created_by = @by');
      params.by = f.by;
    }
    if (f.since) {
      where.push('c.created_at >= @since');
      params.since = Date.parse(f.since);
    }
    if (f.until) {
      where.push('c.created_at <= @until');
      params.until = Date.parse(f.until);
    }
    if (f.zone !== undefined) {
      having.push('sum(c.zone = @zone) > 0');
      params.zone = f.zone;
    }
    if (f.device !== undefined) {
      having.push('sum(c.device = @device) > 0');
      params.device = f.device;
    }
    const power = `json_extract(min(c.action), '$.powerState')`;
    const level = `json_extract(min(c.action), '$.illuminanceLevel')`;
    if (f.action === 'off') having.push(`${power} = 'off'`);
    else if (f.action === 'dim') having.push(`${level} IS NOT NULL AND coalesce(${power}, '') != 'off'`);
    else if (f.action === 'on') having.push(`${level} IS NULL AND coalesce(${power}, '') != 'off'`);
    if (f.outcome === 'open') having.push(`sum(c.state IN ('pending', 'delivered')) > 0`);
    else if (f.outcome === 'done') having.push(`sum(c.state = 'acknowledged') = count(*)`);
    else if (f.outcome === 'failed') having.push(`sum(c.state IN ('failed', 'expired')) > 0`);
    const sql = `SELECT c.batch, c.created_at, min(c.created_by) AS created_by, min(c.action) AS action, b.target,
        group_concat(DISTINCT c.zone) AS zones, count(*) AS size,
        sum(c.state = 'pending') AS pending, sum(c.state = 'delivered') AS delivered,
        sum(c.state = 'acknowledged') AS acknowledged, sum(c.state = 'failed') AS failed, sum(c.state = 'expired') AS expired,
        sum(c.delivered_at IS NOT NULL) AS reached, max(coalesce(c.acknowledged_at, c.expires_at)) AS last_at
      FROM commands c LEFT JOIN batches b ON b.batch = c.batch AND b.created_at = c.created_at
      WHERE ${where.join(' AND ')} GROUP BY c.batch, c.created_at ${having.length ? `HAVING ${having.join(' AND ')}` : ''}
      ORDER BY c.created_at DESC, c.batch LIMIT @limit OFFSET @offset`;
    return this.db.prepare<Record<string, unknown>, BatchRow>(sql).all(params).map(toBatch);
  }

  async pendingOf(device: string, now: number): Promise<CommandRecord[]> {
    return this.stmt.pendingOf.all(device, now).map(toRecord);
  }

  async devicesWithPending(now: number, batch?: string): Promise<string[]> {
    if (batch !== undefined) return this.stmt.pendingDevicesOfBatch.all(batch, now).map((r) => r.device);
    return this.stmt.pendingDevices.all(now).map((r) => r.device);
  }

  async markDelivered(id: string, device: string, at: number): Promise<CommandRecord | undefined> {
    return this.stmt.delivered.run(at, id, device, at).changes ? this.getNow(id) : undefined;
  }

  async markAnswered(
    id: string,
    device: string,
    state: 'acknowledged' | 'failed',
    reason: string | null,
    at: number,
  ): Promise<CommandRecord | undefined> {
    const changed = this.stmt.answered.run({ id, device, state, reason, at }).changes;
    if (!changed) return undefined;
    this.finished(1);
    return this.getNow(id);
  }

  async expireDue(now: number): Promise<CommandRecord[]> {
    const out: CommandRecord[] = [];
    this.db.transaction(() => {
      for (const { id } of this.stmt.dueToExpire.all(now)) {
        if (this.stmt.expire.run(EXPIRED_REASON, id).changes) out.push(this.getNow(id) as CommandRecord);
      }
    })();
    this.finished(out.length);
    return out;
  }

  async insertSchedule(s: Schedule): Promise<Schedule> {
    this.stmt.insertSchedule.run({
      id: s.id,
      name: s.name,
      target: JSON.stringify(s.target),
      from_time: s.from,
      to_time: s.to,
      action: JSON.stringify(s.action),
      end_action: s.endAction ? JSON.stringify(s.endAction) : null,
      ttl_ms: s.ttlMs ?? null,
      enabled: s.enabled ? 1 : 0,
      time_zone: s.timeZone,
      created_at: Date.parse(s.createdAt),
      created_by: s.createdBy,
    });
    return (await this.getSchedule(s.id)) as Schedule;
  }

  async getSchedule(id: string): Promise<Schedule | undefined> {
    const row = this.stmt.getSchedule.get(id);
    return row && toSchedule(row);
  }

  async listSchedules(): Promise<Schedule[]> {
    return this.stmt.allSchedules.all().map(toSchedule);
  }

  async deleteSchedule(id: string): Promise<boolean> {
    return this.stmt.deleteSchedule.run(id).changes > 0;
  }

  async claimScheduleEdge(id: string, edge: 'from' | 'to', at: number): Promise<boolean> {
    return this.stmt.edgeFired.run(edge, at, id, at).changes > 0;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private finished(n: number): void {
    // Bounded like the audit log: trimmed every 1000 finished commands.
    this.finishedSinceTrim += n;
    if (this.finishedSinceTrim >= 1000) {
      this.finishedSinceTrim = 0;
      this.stmt.trim.run(this.historyLimit);
      this.stmt.trimBatches.run();
    }
  }
}

export const isOpen = (state: CommandState) => OPEN.includes(state);

function toRecord(r: CommandRow): CommandRecord {
  return {
    id: r.id,
    device: r.device,
    ...(r.zone ? { zone: r.zone } : {}),
    ...(r.family ? { family: r.family as Family } : {}),
    action: JSON.parse(r.action) as Record<string, unknown>,
    state: r.state,
    reason: r.reason,
    createdAt: iso(r.created_at) as string,
    createdBy: r.created_by,
    expiresAt: iso(r.expires_at) as string,
    deliveredAt: iso(r.delivered_at),
    acknowledgedAt: iso(r.acknowledged_at),
    batch: r.batch,
  };
}

export function toBatch(r: BatchRow): BatchSummary {
  const open = r.pending + r.delivered;
  return {
    batch: r.batch,
    createdAt: iso(r.created_at) as string,
    createdBy: r.created_by,
    action: JSON.parse(r.action) as Record<string, unknown>,
    target: r.target ? (JSON.parse(r.target) as CommandTarget) : null,
    zones: r.zones ? r.zones.split(',').sort() : [],
    size: r.size,
    states: { pending: r.pending, delivered: r.delivered, acknowledged: r.acknowledged, failed: r.failed, expired: r.expired },
    reached: r.reached,
    finishedAt: open === 0 ? iso(r.last_at) : null,
  };
}

function toSchedule(r: ScheduleRow): Schedule {
  return {
    id: r.id,
    name: r.name,
    target: JSON.parse(r.target) as CommandTarget,
    from: r.from_time,
    to: r.to_time,
    action: JSON.parse(r.action) as Record<string, unknown>,
    endAction: r.end_action ? (JSON.parse(r.end_action) as Record<string, unknown>) : null,
    ttlMs: r.ttl_ms,
    enabled: r.enabled === 1,
    timeZone: r.time_zone,
    createdAt: iso(r.created_at) as string,
    createdBy: r.created_by,
    lastEdge: r.last_edge ? { edge: r.last_edge as 'from' | 'to', at: iso(r.last_edge_at) as string } : null,
  };
}
