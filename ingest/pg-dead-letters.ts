/**
 * Dead letters in PostgreSQL (cluster mode): the same DeadLetterStore as SqliteDeadLetterStore, one log for the
 * whole cluster, whichever node rejected the message.
 *
 * The telemetry path never waits for PostgreSQL: `add` queues the letter and one INSERT writes the queue every
 * FLUSH_MS (or at once when FLUSH_ROWS are waiting), as a flood of rejections (a broken firmware) needs anyway.
 * While PostgreSQL is away the queue is kept, bounded by `limit` (the oldest dropped beyond it, counted and
 * logged), and written when it is back. `list` writes the queue first, so it shows every letter added before
 * it. `count` is the cluster's count as of the last write or of the last COUNT_REFRESH_MS, plus the queue.
 * The table is trimmed to `limit` rows every PRUNE_EVERY letters a node writes.
 */
import type { Logger } from '../core/logger.ts';
import { isoOf, type Migration, type StateDb } from '../registry/index.ts';
import { type DeadLetter, type DeadLetterStore, listLimit, storedPayload } from './dead-letters.ts';

export const DEAD_LETTER_COMPONENT = 'ingest';

export const DEAD_LETTER_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'dead letters',
    sql: `
      CREATE TABLE dead_letters (
        id bigserial PRIMARY KEY, at timestamptz NOT NULL, device text NOT NULL, code text NOT NULL,
        reason text NOT NULL, idx integer, payload text NOT NULL);
      CREATE INDEX dead_letters_device ON dead_letters (device, id);`,
  },
];

const FLUSH_MS = 200;
const FLUSH_ROWS = 500;
const PRUNE_EVERY = 100;
const COUNT_REFRESH_MS = 5000;

type Pending = { at: string; device: string; code: string; reason: string; index: number | null; payload: string };

export class PgDeadLetterStore implements DeadLetterStore {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private sincePrune = 0;
  private stored = 0;
  private dropped = 0;
  private failing = false;
  private countTimer: NodeJS.Timeout | undefined;
  private closed = false;

  /** The schema must be migrated (DEAD_LETTER_MIGRATIONS). `start()` reads the count and keeps it up to date. */
  constructor(
    private readonly db: StateDb,
    private readonly limit = 10000,
    private readonly log?: Logger,
  ) {}

  async start(): Promise<void> {
    await this.refreshCount();
    if (this.closed || this.countTimer) return;
    this.countTimer = setInterval(() => this.refreshCount().catch(() => undefined), COUNT_REFRESH_MS);
    this.countTimer.unref();
  }

  add(d: Omit<DeadLetter, 'id' | 'at'> & { at?: string }): void {
    this.queue.push({
      at: d.at ?? new Date().toISOString(),
      device: d.device,
      code: d.code,
      reason: d.reason,
      index: d.index ?? null,
      payload: storedPayload(d.payload),
    });
    if (this.queue.length > this.limit) {
      const over = this.queue.length - this.limit;
      this.queue.splice(0, over);
      this.dropped += over;
    }
    // While PostgreSQL is away, the retry timer alone tries again (not every rejection).
    if (this.queue.length >= FLUSH_ROWS && !this.failing) void this.flush();
    else if (!this.timer && !this.closed) {
      this.timer = setTimeout(() => void this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  /** Writes the queue (one INSERT per FLUSH_ROWS letters); never throws, the letters wait for the next try. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.writing ??= (async () => {
      try {
        while (this.queue.length) {
          const batch = this.queue.slice(0, FLUSH_ROWS);
          const col = <K extends keyof Pending>(k: K) => batch.map((p) => p[k]);
          await this.db.query(
            `INSERT INTO dead_letters (at, device, code, reason, idx, payload)
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[])`,
            [col('at'), col('device'), col('code'), col('reason'), col('index'), col('payload')],
          );
          this.queue.splice(0, batch.length);
          this.stored += batch.length;
          this.sincePrune += batch.length;
          if (this.sincePrune >= PRUNE_EVERY) {
            this.sincePrune = 0;
            await this.db.query('DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - $1', [this.limit]);
          }
        }
        if (this.failing || this.dropped) {
          this.log?.info({ dropped: this.dropped }, 'dead letters written to PostgreSQL again');
          this.failing = false;
          this.dropped = 0;
        }
        await this.refreshCount();
      } catch (err) {
        if (!this.failing) {
          this.failing = true;
          this.log?.warn({ err: (err as Error).message, waiting: this.queue.length }, 'dead letters wait for PostgreSQL');
        }
        if (!this.closed && !this.timer) {
          this.timer = setTimeout(() => void this.flush(), FLUSH_MS * 5);
          this.timer.unref();
        }
      } finally {
        this.writing = undefined;
      }
    })();
    return this.writing;
  }

  private async refreshCount(): Promise<void> {
    const r = await this.db.read<{ n: number }>('SELECT count(*)::int AS n FROM dead_letters');
    this.stored = r.rows[0]?.n ?? this.stored;
  }

  async list(opts: { device?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    await this.flush();
    const r = await this.db.read<{
      id: string;
      at: Date;
      device: string;
      code: string;
      reason: string;
      idx: number | null;
      payload: string;
    }>(
      `SELECT id, at, device, code, reason, idx, payload FROM dead_letters WHERE ($1::text IS NULL OR device = $1)
       ORDER BY id DESC LIMIT $2`,
      [opts.device ?? null, listLimit(opts.limit)],
    );
    return r.rows.map((row) => {
      const d: DeadLetter = {
        id: Number(row.id),
        at: isoOf(row.at) as string,
        device: row.device,
        code: row.code,
        reason: row.reason,
        payload: row.payload,
      };
      if (row.idx !== null) d.index = row.idx;
      return d;
    });
  }

  count(): number {
    return this.stored + this.queue.length;
  }

  /** Writes what waits (bounded by the query timeout); the shared pool is closed by its owner. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.countTimer);
    await this.flush();
    clearTimeout(this.timer);
    if (this.queue.length) this.log?.warn({ lost: this.queue.length }, 'dead letters not written to PostgreSQL before stop');
  }
}
