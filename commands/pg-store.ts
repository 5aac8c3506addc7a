/**
 * Commands, batches and schedules in PostgreSQL (cluster mode, `state.postgresUrl`): the same CommandStore as
 * SqliteCommandStore, shared by every node, so a command issued through one node is delivered by the node its
 * device is connected to, and its state (delivered, acknowledged) is what every node's API answers.
 *
 * The columns follow the SQLite store's, with PostgreSQL's types (timestamptz times); actions and targets are
 * kept as the JSON text they were given in (json, not jsonb: jsonb would reorder their keys). State changes are
 * the same conditional updates, with RETURNING: of two nodes expiring the same command, or a PUBACK racing an
 * ack, exactly one changes it and only that one reports (and emits) the change.
 *
 * Inserting commands also sends a NOTIFY (`COMMANDS_CHANNEL`) in the same transaction: every node hears it once
 * the commands are committed, and the one holding a device of the batch sends them (cluster.ts). A node that
 * reads a device's pending commands because it just subscribed (a connect) and one that hears the NOTIFY cannot
 * both miss a command: the notification comes after the commit, and the read after the subscription.
 */
import type { CommandRecord, CommandState } from '../core/bus.ts';
import type { Family } from '../core/contract.ts';
import type { Migration, Queryable, StateDb } from '../registry/index.ts';
import {
  type BatchFilter,
  type BatchRow,
  type BatchSummary,
  type CommandFilter,
  type CommandStore,
  type CommandTarget,
  EXPIRED_REASON,
  type NewCommand,
  type Schedule,
  toBatch,
} from './store.ts';

export const COMMANDS_COMPONENT = 'commands';

/** The NOTIFY channel of new pending commands: payload `{ node, batch }` (cluster.ts). */
export const COMMANDS_CHANNEL = 'citypulse_commands';

export const COMMANDS_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'commands, batches and schedules',
    sql: `
      CREATE TABLE commands (
        seq bigserial PRIMARY KEY, id text COLLATE "C" NOT NULL UNIQUE, device text COLLATE "C" NOT NULL,
        zone text, family text, action json NOT NULL,
        state text NOT NULL CHECK (state IN ('pending', 'delivered', 'acknowledged', 'failed', 'expired')),
        reason text, created_at timestamptz NOT NULL, created_by text NOT NULL, expires_at timestamptz NOT NULL,
        delivered_at timestamptz, acknowledged_at timestamptz, batch text COLLATE "C");
      CREATE INDEX commands_device ON commands (device, seq);
      CREATE INDEX commands_batch ON commands (batch, seq);
      CREATE INDEX commands_open ON commands (state, expires_at);
      CREATE INDEX commands_created ON commands (created_at);
      CREATE TABLE command_batches (
        batch text COLLATE "C" NOT NULL, created_at timestamptz NOT NULL, target json NOT NULL, PRIMARY KEY (batch, created_at));
      CREATE TABLE command_schedules (
        id text COLLATE "C" PRIMARY KEY, name text NOT NULL, target json NOT NULL, from_time text NOT NULL,
        to_time text NOT NULL, action json NOT NULL, end_action json, ttl_ms bigint, enabled boolean NOT NULL,
        time_zone text NOT NULL, created_at timestamptz NOT NULL, created_by text NOT NULL, last_edge text,
        last_edge_at timestamptz);`,
  },
];

interface Row {
  id: string;
  device: string;
  zone: string | null;
  family: string | null;
  action: Record<string, unknown>;
  state: CommandState;
  reason: string | null;
  created_at: Date;
  created_by: string;
  expires_at: Date;
  delivered_at: Date | null;
  acknowledged_at: Date | null;
  batch: string | null;
}

interface ScheduleRow {
  id: string;
  name: string;
  target: CommandTarget;
  from_time: string;
  to_time: string;
  action: Record<string, unknown>;
  end_action: Record<string, unknown> | null;
  ttl_ms: string | null;
  enabled: boolean;
  time_zone: string;
  created_at: Date;
  created_by: string;
  last_edge: 'from' | 'to' | null;
  last_edge_at: Date | null;
}

const COLUMNS = 'id, device, zone, family, action, state, reason, created_at, created_by, expires_at, delivered_at, acknowledged_at, batch';
const OPEN = `state IN ('pending', 'delivered')`;
const FINISHED = `state IN ('acknowledged', 'failed', 'expired')`;

/**
 * Writes that come one per device (PUBACKs, answers) gathered into one statement: the first goes at once, and
 * those arriving while it runs go together in the next. Each is a commit (an fsync) otherwise: a ward of 500
 * lights answering at once would queue 500 commits; gathered, it is a few. Nothing waits on a timer, so a lone
 * write is as fast as before. Hand-written: a dozen lines, where a batching library would add its own timer.
 */
class Gathered<I, R> {
  private queue: { item: I; resolve: (r: R | undefined) => void; reject: (e: unknown) => void }[] = [];
  private running = false;
  constructor(
    private readonly run: (items: I[]) => Promise<(R | undefined)[]>,
    private readonly max = 1000,
  ) {}

  /** The last write pushed: written in order, so once it settles every earlier one has. */
  private last: Promise<unknown> = Promise.resolve();

  push(item: I): Promise<R | undefined> {
    const p = new Promise<R | undefined>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) void this.drain();
    });
    this.last = p.catch(() => undefined);
    return p;
  }

  /** Resolves once every write pushed so far is done (later ones are not waited for). */
  settled(): Promise<unknown> {
    return this.last;
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.max);
      try {
        const out = await this.run(batch.map((b) => b.item));
        for (const [i, b] of batch.entries()) b.resolve(out[i]);
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
    }
    this.running = false;
  }
}

/** Each id's record to the first of `items` that asked for it (a repeated PUBACK or answer changes nothing). */
function firstAsker<T extends { id: string }>(items: T[], rows: Row[]): (CommandRecord | undefined)[] {
  const byId = new Map(rows.map((r) => [r.id, toRecord(r)]));
  return items.map((x) => {
    const c = byId.get(x.id);
    byId.delete(x.id);
    return c;
  });
}

/** The first item per id (the first answer stands, as in SQLite where they run one after the other). */
function firstPerId<T extends { id: string }>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((x) => !seen.has(x.id) && seen.add(x.id));
}

export class PgCommandStore implements CommandStore {
  private finishedSinceTrim = 0;

  private readonly deliveries = new Gathered<{ id: string; device: string; at: number }, CommandRecord>(async (items) => {
    const first = firstPerId(items);
    const r = await this.db.query<Row>(
      `UPDATE commands c SET state = 'delivered', delivered_at = u.at
       FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u (id, device, at)
       WHERE c.id = u.id AND c.device = u.device AND c.state = 'pending' AND c.expires_at > u.at
       RETURNING ${COLUMNS.split(', ')
         .map((x) => `c.${x}`)
         .join(', ')}`,
      [first.map((x) => x.id), first.map((x) => x.device), first.map((x) => new Date(x.at))],
    );
    return firstAsker(items, r.rows);
  });

  private readonly answers = new Gathered<
    { id: string; device: string; state: 'acknowledged' | 'failed'; reason: string | null; at: number },
    CommandRecord
  >(async (items) => {
    // A device's PUBACK comes before its answer: recorded first, so the command is seen delivered, then answered.
    await this.deliveries.settled();
    const first = firstPerId(items);
    const r = await this.db.query<Row>(
      `UPDATE commands c SET state = u.state, reason = u.reason, acknowledged_at = u.at, delivered_at = coalesce(c.delivered_at, u.at)
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS u (id, device, state, reason, at)
       WHERE c.id = u.id AND c.device = u.device AND c.${OPEN}
       RETURNING ${COLUMNS.split(', ')
         .map((x) => `c.${x}`)
         .join(', ')}`,
      [
        first.map((x) => x.id),
        first.map((x) => x.device),
        first.map((x) => x.state),
        first.map((x) => x.reason),
        first.map((x) => new Date(x.at)),
      ],
    );
    await this.finished(r.rows.length);
    return firstAsker(items, r.rows);
  });

  /**
   * The schema must be migrated (COMMANDS_MIGRATIONS). `node` names this node in the notifications it sends,
   * so that it can skip its own. Finished commands beyond `historyLimit` are removed, oldest first.
   */
  constructor(
    private readonly db: StateDb,
    private readonly node: string,
    private readonly historyLimit = 100_000,
  ) {}

  async insert(commands: NewCommand[], target?: CommandTarget): Promise<CommandRecord[]> {
    if (commands.length === 0) return [];
    const rows = await this.db.transaction(async (q) => {
      const first = commands[0] as NewCommand;
      if (target && first.batch) {
        await q.query('INSERT INTO command_batches (batch, created_at, target) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
          first.batch,
          new Date(first.createdAt),
          JSON.stringify(target),
        ]);
      }
      // One statement for the whole batch (a ward is hundreds of lights): arrays unnested into rows.
      const col = <T>(f: (c: NewCommand) => T) => commands.map(f);
      const r = await q.query<Row>(
        `INSERT INTO commands (id, device, zone, family, action, state, created_at, created_by, expires_at, batch)
         SELECT id, device, zone, family, action::json, 'pending', created_at, created_by, expires_at, batch
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::timestamptz[], $9::text[])
           WITH ORDINALITY AS c (id, device, zone, family, action, created_at, created_by, expires_at, batch, n)
         ORDER BY n RETURNING ${COLUMNS}`,
        [
          col((c) => c.id),
          col((c) => c.device),
          col((c) => c.zone ?? null),
          col((c) => c.family ?? null),
          col((c) => JSON.stringify(c.action)),
          col((c) => new Date(c.createdAt)),
          col((c) => c.createdBy),
          col((c) => new Date(c.expiresAt)),
          col((c) => c.batch ?? null),
        ],
      );
      await notifyPending(q, this.node, first.batch ?? null, commands);
      return r.rows;
    });
    const byId = new Map(rows.map((r) => [r.id, toRecord(r)]));
    return commands.map((c) => byId.get(c.id) as CommandRecord);
  }

  async get(id: string): Promise<CommandRecord | undefined> {
    const r = await this.db.read<Row>(`SELECT ${COLUMNS} FROM commands WHERE id = $1`, [id], 'commands-get');
    return r.rows[0] && toRecord(r.rows[0]);
  }

  async list(f: CommandFilter): Promise<CommandRecord[]> {
    const r = await this.db.read<Row>(
      `SELECT ${COLUMNS} FROM commands WHERE ($1::text IS NULL OR device = $1) AND ($2::text IS NULL OR state = $2)
       AND ($3::text IS NULL OR batch = $3) ORDER BY seq DESC LIMIT $4`,
      [f.device ?? null, f.state ?? null, f.batch ?? null, f.limit],
    );
    return r.rows.map(toRecord);
  }

  async batches(f: BatchFilter): Promise<BatchSummary[]> {
    const where = ['c.batch IS NOT NULL'];
    const having: string[] = [];
    const values: unknown[] = [];
    const p = (v: unknown) => {
      values.push(v);
      return `$${values.length}`;
    };
    if (f.by !== undefined) where.push(`c.created_by = ${p(f.by)}`);
    if (f.since) where.push(`c.created_at >= ${p(new Date(f.since))}`);
    if (f.until) where.push(`c.created_at <= ${p(new Date(f.until))}`);
    if (f.zone !== undefined) having.push(`count(*) FILTER (WHERE c.zone = ${p(f.zone)}) > 0`);
    if (f.device !== undefined) having.push(`count(*) FILTER (WHERE c.device = ${p(f.device)}) > 0`);
    // Every command of a batch has the same action: the batch's is any one of them.
    const power = `(min(c.action::text)::json ->> 'powerState')`;
    const level = `(min(c.action::text)::json ->> 'illuminanceLevel')`;
    if (f.action === 'off') having.push(`${power} = 'off'`);
    else if (f.action === 'dim') having.push(`${level} IS NOT NULL AND coalesce(${power}, '') != 'off'`);
    else if (f.action === 'on') having.push(`${level} IS NULL AND coalesce(${power}, '') != 'off'`);
    if (f.outcome === 'open') having.push(`count(*) FILTER (WHERE c.${OPEN}) > 0`);
    else if (f.outcome === 'done') having.push(`count(*) FILTER (WHERE c.state = 'acknowledged') = count(*)`);
    else if (f.outcome === 'failed') having.push(`count(*) FILTER (WHERE c.state IN ('failed', 'expired')) > 0`);
    const limit = p(f.limit);
    const offset = p(f.offset ?? 0);
    const r = await this.db.read<Omit<BatchRow, 'created_at' | 'last_at'> & { created_at: Date; last_at: Date | null }>(
      `SELECT c.batch, c.created_at, min(c.created_by) AS created_by, min(c.action::text) AS action, min(b.target::text) AS target,
         string_agg(DISTINCT c.zone, ',') AS zones, count(*)::int AS size,
         count(*) FILTER (WHERE c.state = 'pending')::int AS pending, count(*) FILTER (WHERE c.state = 'delivered')::int AS delivered,
         count(*) FILTER (WHERE c.state = 'acknowledged')::int AS acknowledged, count(*) FILTER (WHERE c.state = 'failed')::int AS failed,
         count(*) FILTER (WHERE c.state = 'expired')::int AS expired, count(c.delivered_at)::int AS reached,
         max(coalesce(c.acknowledged_at, c.expires_at)) AS last_at
       FROM commands c LEFT JOIN command_batches b ON b.batch = c.batch AND b.created_at = c.created_at
       WHERE ${where.join(' AND ')} GROUP BY c.batch, c.created_at ${having.length ? `HAVING ${having.join(' AND ')}` : ''}
       ORDER BY c.created_at DESC, c.batch LIMIT ${limit} OFFSET ${offset}`,
      values,
    );
    return r.rows.map((row) =>
      toBatch({ ...row, created_at: row.created_at.getTime(), last_at: row.last_at ? row.last_at.getTime() : null }),
    );
  }

  async pendingOf(device: string, now: number): Promise<CommandRecord[]> {
    const r = await this.db.read<Row>(
      `SELECT ${COLUMNS} FROM commands WHERE device = $1 AND state = 'pending' AND expires_at > $2 ORDER BY seq`,
      [device, new Date(now)],
      'commands-pending-of',
    );
    return r.rows.map(toRecord);
  }

  async devicesWithPending(now: number, batch?: string): Promise<string[]> {
    const r = await this.db.read<{ device: string }>(
      `SELECT DISTINCT device FROM commands WHERE ($2::text IS NULL OR batch = $2) AND state = 'pending' AND expires_at > $1`,
      [new Date(now), batch ?? null],
    );
    return r.rows.map((x) => x.device);
  }

  markDelivered(id: string, device: string, at: number): Promise<CommandRecord | undefined> {
    return this.deliveries.push({ id, device, at });
  }

  markAnswered(
    id: string,
    device: string,
    state: 'acknowledged' | 'failed',
    reason: string | null,
    at: number,
  ): Promise<CommandRecord | undefined> {
    return this.answers.push({ id, device, state, reason, at });
  }

  async expireDue(now: number): Promise<CommandRecord[]> {
    const r = await this.db.query<Row & { seq: string }>(
      `UPDATE commands SET state = 'expired', reason = $2 WHERE ${OPEN} AND expires_at <= $1 RETURNING seq, ${COLUMNS}`,
      [new Date(now), EXPIRED_REASON],
    );
    await this.finished(r.rows.length);
    return r.rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map(toRecord);
  }

  async insertSchedule(s: Schedule): Promise<Schedule> {
    const r = await this.db.query<ScheduleRow>(
      `INSERT INTO command_schedules (id, name, target, from_time, to_time, action, end_action, ttl_ms, enabled, time_zone, created_at, created_by)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *`,
      [
        s.id,
        s.name,
        JSON.stringify(s.target),
        s.from,
        s.to,
        JSON.stringify(s.action),
        s.endAction ? JSON.stringify(s.endAction) : null,
        s.ttlMs ?? null,
        s.enabled,
        s.timeZone,
        new Date(s.createdAt),
        s.createdBy,
      ],
    );
    return toSchedule(r.rows[0] as ScheduleRow);
  }

  async getSchedule(id: string): Promise<Schedule | undefined> {
    const r = await this.db.read<ScheduleRow>('SELECT * FROM command_schedules WHERE id = $1', [id]);
    return r.rows[0] && toSchedule(r.rows[0]);
  }

  async listSchedules(): Promise<Schedule[]> {
    const r = await this.db.read<ScheduleRow>('SELECT * FROM command_schedules ORDER BY created_at, id');
    return r.rows.map(toSchedule);
  }

  async deleteSchedule(id: string): Promise<boolean> {
    const r = await this.db.query('DELETE FROM command_schedules WHERE id = $1', [id]);
    return (r.rowCount ?? 0) > 0;
  }

  async claimScheduleEdge(id: string, edge: 'from' | 'to', at: number): Promise<boolean> {
    const r = await this.db.query(
      `UPDATE command_schedules SET last_edge = $1, last_edge_at = $2 WHERE id = $3 AND (last_edge_at IS NULL OR last_edge_at < $2)`,
      [edge, new Date(at), id],
    );
    return (r.rowCount ?? 0) > 0;
  }

  /** The pool belongs to the platform's state (platform/state.ts closes it). */
  async close(): Promise<void> {}

  private async finished(n: number): Promise<void> {
    // Bounded like SQLite's: trimmed every 1000 finished commands this node saw (so at most a few thousand over
    // the limit across nodes).
    this.finishedSinceTrim += n;
    if (this.finishedSinceTrim < 1000) return;
    this.finishedSinceTrim = 0;
    await this.db.transaction(async (q) => {
      await q.query(
        `DELETE FROM commands WHERE ${FINISHED} AND seq <= (
           SELECT seq FROM commands WHERE ${FINISHED} ORDER BY seq DESC LIMIT 1 OFFSET $1)`,
        [this.historyLimit],
      );
      await q.query(
        'DELETE FROM command_batches b WHERE NOT EXISTS (SELECT 1 FROM commands c WHERE c.batch = b.batch AND c.created_at = b.created_at)',
      );
    });
  }
}

/** What a node hears when commands are created: which node created them and their batch (or devices, without one). */
export interface PendingNotice {
  node: string;
  batch: string | null;
  devices?: string[];
}

async function notifyPending(q: Queryable, node: string, batch: string | null, commands: NewCommand[]): Promise<void> {
  // PostgreSQL caps a payload at 8000 bytes: a batch is named by its id, and the nodes read its devices.
  const notice: PendingNotice = batch ? { node, batch } : { node, batch: null, devices: [...new Set(commands.map((c) => c.device))] };
  await q.query('SELECT pg_notify($1, $2)', [COMMANDS_CHANNEL, JSON.stringify(notice)]);
}

/** A notification's payload back; undefined for anything else. */
export function parsePendingNotice(payload: string): PendingNotice | undefined {
  try {
    const n = JSON.parse(payload) as Record<string, unknown>;
    if (typeof n.node !== 'string') return undefined;
    if (typeof n.batch === 'string') return { node: n.node, batch: n.batch };
    if (Array.isArray(n.devices) && n.devices.every((d) => typeof d === 'string')) {
      return { node: n.node, batch: null, devices: n.devices as string[] };
    }
  } catch {
    /* not ours */
  }
  return undefined;
}

function toRecord(r: Row): CommandRecord {
  return {
    id: r.id,
    device: r.device,
    ...(r.zone ? { zone: r.zone } : {}),
    ...(r.family ? { family: r.family as Family } : {}),
    action: r.action,
    state: r.state,
    reason: r.reason,
    createdAt: r.created_at.toISOString(),
    createdBy: r.created_by,
    expiresAt: r.expires_at.toISOString(),
    deliveredAt: r.delivered_at ? r.delivered_at.toISOString() : null,
    acknowledgedAt: r.acknowledged_at ? r.acknowledged_at.toISOString() : null,
    batch: r.batch,
  };
}

function toSchedule(r: ScheduleRow): Schedule {
  return {
    id: r.id,
    name: r.name,
    target: r.target,
    from: r.from_time,
    to: r.to_time,
    action: r.action,
    endAction: r.end_action,
    ttlMs: r.ttl_ms === null ? null : Number(r.ttl_ms),
    enabled: r.enabled,
    timeZone: r.time_zone,
    createdAt: r.created_at.toISOString(),
    createdBy: r.created_by,
    lastEdge: r.last_edge ? { edge: r.last_edge, at: (r.last_edge_at as Date).toISOString() } : null,
  };
}
