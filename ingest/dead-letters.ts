/**
 * Dead letters: every rejected message or reading, with its reason and the raw payload, kept bounded (oldest
 * removed beyond `limit`; payloads cut at 64 KiB): in SQLite on one node (`SqliteDeadLetterStore`), in the
 * PostgreSQL database a cluster shares (`PgDeadLetterStore`, pg-dead-letters.ts).
 *
 * `add` and `count` are synchronous: a rejection is recorded on the telemetry path, which never waits for a
 * database, and the health report reads the count. `list` is for the API and may wait.
 */
import Database from 'better-sqlite3';

export interface DeadLetter {
  id: number;
  /** ISO 8601 */
  at: string;
  device: string;
  code: string;
  reason: string;
  /** Index of the reading in an array payload, when the rejection is per reading. */
  index?: number;
  /** Raw payload (the whole message, or the one reading as JSON). */
  payload: string;
}

export interface DeadLetterStore {
  /** Records a rejection; never throws (a store that writes later keeps it until it can). */
  add(d: Omit<DeadLetter, 'id' | 'at'> & { at?: string }): void;
  /** Newest first, at most 1000; sees every letter added before the call. */
  list(opts?: { device?: string; limit?: number }): Promise<DeadLetter[]>;
  count(): number;
  close(): Promise<void>;
}

/** Payloads are cut beyond this many characters. */
const MAX_PAYLOAD = 64 * 1024;

/** A payload as stored: cut at 64 Ki characters, with a mark that it was. */
export const storedPayload = (payload: string) => (payload.length > MAX_PAYLOAD ? `${payload.slice(0, MAX_PAYLOAD)}…[cut]` : payload);

/** Letters to show: 100 unless asked, never more than 1000. */
export const listLimit = (limit: number | undefined) => Math.min(limit ?? 100, 1000);

export class SqliteDeadLetterStore implements DeadLetterStore {
  private readonly db: Database.Database;
  private readonly stmt;
  private sincePrune = 0;

  constructor(
    file: string,
    private readonly limit = 10000,
  ) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // Rejections can come in floods (a broken firmware); fsync per row would make them expensive.
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS dead_letters (
      id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, device TEXT NOT NULL, code TEXT NOT NULL,
      reason TEXT NOT NULL, idx INTEGER, payload TEXT NOT NULL)`);
    this.db.exec('CREATE INDEX IF NOT EXISTS dead_letters_device ON dead_letters (device, id)');
    this.stmt = {
      insert: this.db.prepare('INSERT INTO dead_letters (at, device, code, reason, idx, payload) VALUES (?, ?, ?, ?, ?, ?)'),
      prune: this.db.prepare('DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?'),
      list: this.db.prepare<[number], Row>('SELECT * FROM dead_letters ORDER BY id DESC LIMIT ?'),
      listDevice: this.db.prepare<[string, number], Row>('SELECT * FROM dead_letters WHERE device = ? ORDER BY id DESC LIMIT ?'),
      count: this.db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM dead_letters'),
    };
  }

  add(d: Omit<DeadLetter, 'id' | 'at'> & { at?: string }): void {
    const payload = storedPayload(d.payload);
    this.stmt.insert.run(d.at ?? new Date().toISOString(), d.device, d.code, d.reason, d.index ?? null, payload);
    if (++this.sincePrune >= 100) {
      this.sincePrune = 0;
      this.stmt.prune.run(this.limit);
    }
  }

  async list(opts: { device?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    const limit = listLimit(opts.limit);
    const rows = opts.device ? this.stmt.listDevice.all(opts.device, limit) : this.stmt.list.all(limit);
    return rows.map((r) => {
      const d: DeadLetter = { id: r.id, at: r.at, device: r.device, code: r.code, reason: r.reason, payload: r.payload };
      if (r.idx !== null) d.index = r.idx;
      return d;
    });
  }

  count(): number {
    return this.stmt.count.get()?.n ?? 0;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

interface Row {
  id: number;
  at: string;
  device: string;
  code: string;
  reason: string;
  idx: number | null;
  payload: string;
}
