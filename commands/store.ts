/**
 * Commands and schedules kept in one embedded SQLite file (`dataDir/commands.db`, better-sqlite3: synchronous,
 * microseconds a query), so that pending commands and schedules survive a restart. State changes are
 * conditional updates (`WHERE state IN (...)`): a change that lost a race (a late ack after expiry, a PUBACK
 * after the ack) changes nothing and reports so.
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

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
const OPEN: CommandState[] = ['pending', 'delivered'];

export class SqliteCommandStore {
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
      edgeFired: this.db.prepare('UPDATE schedules SET last_edge = ?, last_edge_at = ? WHERE id = ?'),
    };
  }

  /** Inserts commands (state pending) in one transaction. */
  insert(commands: Omit<CommandRecord, 'state' | 'reason' | 'deliveredAt' | 'acknowledgedAt'>[]): CommandRecord[] {
    this.db.transaction(() => {
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
    return commands.map((c) => this.get(c.id) as CommandRecord);
  }

  get(id: string): CommandRecord | undefined {
    const row = this.stmt.get.get(id);
    return row && toRecord(row);
  }

  /** Newest first. */
  list(f: CommandFilter): CommandRecord[] {
    return this.stmt.list.all({ device: f.device ?? null, state: f.state ?? null, batch: f.batch ?? null, limit: f.limit }).map(toRecord);
  }

  /** Pending, unexpired commands of a device, oldest first (the order to send them in). */
  pendingOf(device: string, now: number): CommandRecord[] {
    return this.stmt.pendingOf.all(device, now).map(toRecord);
  }

  /** Devices with pending, unexpired commands. */
  devicesWithPending(now: number): string[] {
    return this.stmt.pendingDevices.all(now).map((r) => r.device);
  }

  /** pending → delivered; undefined when the command was not pending (or expired meanwhile). */
  markDelivered(id: string, device: string, at: number): CommandRecord | undefined {
    return this.stmt.delivered.run(at, id, device, at).changes ? this.get(id) : undefined;
  }

  /** pending | delivered → acknowledged | failed; undefined when it was already finished. */
  markAnswered(id: string, device: string, state: 'acknowledged' | 'failed', reason: string | null, at: number): CommandRecord | undefined {
    const changed = this.stmt.answered.run({ id, device, state, reason, at }).changes;
    if (!changed) return undefined;
    this.finished(1);
    return this.get(id);
  }

  /** Every open command whose expiresAt passed becomes expired; returns them. */
  expireDue(now: number): CommandRecord[] {
    const out: CommandRecord[] = [];
    this.db.transaction(() => {
      for (const { id } of this.stmt.dueToExpire.all(now)) {
        if (this.stmt.expire.run('not acknowledged before expiresAt', id).changes) out.push(this.get(id) as CommandRecord);
      }
    })();
    this.finished(out.length);
    return out;
  }

  insertSchedule(s: Schedule): Schedule {
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
    return this.getSchedule(s.id) as Schedule;
  }

  getSchedule(id: string): Schedule | undefined {
    const row = this.stmt.getSchedule.get(id);
    return row && toSchedule(row);
  }

  listSchedules(): Schedule[] {
    return this.stmt.allSchedules.all().map(toSchedule);
  }

  deleteSchedule(id: string): boolean {
    return this.stmt.deleteSchedule.run(id).changes > 0;
  }

  scheduleEdgeFired(id: string, edge: 'from' | 'to', at: number): void {
    this.stmt.edgeFired.run(edge, at, id);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private finished(n: number): void {
    // Bounded like the audit log: trimmed every 1000 finished commands.
    this.finishedSinceTrim += n;
    if (this.finishedSinceTrim >= 1000) {
      this.finishedSinceTrim = 0;
      this.stmt.trim.run(this.historyLimit);
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
