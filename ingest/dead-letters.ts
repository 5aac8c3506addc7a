/**
 * Dead letters: every rejected message or reading, with its reason and the raw payload, kept in SQLite and
 * bounded (oldest removed beyond `limit`; payloads cut at 64 KiB).
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
  add(d: Omit<DeadLetter, 'id' | 'at'> & { at?: string }): void;
  list(opts?: { device?: string; limit?: number }): DeadLetter[];
  count(): number;
  close(): void;
}

const MAX_PAYLOAD = 64 * 1024;

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
    const payload = d.payload.length > MAX_PAYLOAD ? `${d.payload.slice(0, MAX_PAYLOAD)}…[cut]` : d.payload;
    this.stmt.insert.run(d.at ?? new Date().toISOString(), d.device, d.code, d.reason, d.index ?? null, payload);
    if (++this.sincePrune >= 100) {
      this.sincePrune = 0;
      this.stmt.prune.run(this.limit);
    }
  }

  list(opts: { device?: string; limit?: number } = {}): DeadLetter[] {
    const limit = Math.min(opts.limit ?? 100, 1000);
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

  close(): void {
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
