/**
 * Resends of time-less readings keep their time, so a resend overwrites instead of duplicating.
 *
 * A reading without `dateObserved` is stamped with its receive time. A QoS 1 device whose PUBACK never came sends
 * the message again after it reconnects, with the same packet id and the same bytes, and a new receive time would
 * make it a second point. The PUBACK can be lost in two ways: never sent (the platform was killed after the reading
 * was stored) or sent and lost with the connection (a kill, a broken cellular link: the kernel drops what was
 * still queued). So for every QoS 1 message with time-less readings, the time given to its first time-less reading
 * is kept under (device, packet id, hash of the payload), and the same message arriving again on another
 * connection gets the same times: InfluxDB then overwrites the point with itself.
 *
 * - An entry stays while its message is unacknowledged, and for `uncertainMs` after its PUBACK was handed to the
 *   connection, since that PUBACK may still be lost.
 * - A connection that ends with a DISCONNECT packet received every PUBACK before it (a client disconnects cleanly
 *   once its messages are acknowledged): its entries go at once. So a tool that sends the same bytes with the same
 *   packet id on every run (mosquitto_pub starts at id 1) gets a new point each run.
 * - The same packet id on the same connection is always a new message (MQTT 3.1.1 resends after a reconnect).
 * - Entries live in SQLite (WAL) beside the dead letters, saved in one transaction right before the readings they
 *   stamp leave for the durable log (`commit()`, called by the store), so a resend after a crash of the platform
 *   finds them; acknowledgement times are saved once a second.
 * - At most MAX_PER_DEVICE entries per device, oldest first out: only the messages in flight when a link breaks
 *   can be sent again.
 *
 * What it cannot tell: within `uncertainMs` of an acknowledgement, on a new connection after one that broke, a new
 * message with the same packet id and the same bytes looks exactly like a resend and overwrites the first. Devices
 * that need every case exact send `dateObserved`, the reading's identity in InfluxDB.
 */
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';

export interface ResendGuardOptions {
  /** SQLite file (':memory:' in tests). */
  file: string;
  /** How long after its PUBACK was handed over a message's resend is still recognised, ms. */
  uncertainMs: number;
  /** Entries of messages never acknowledged are forgotten after this, ms. */
  maxAgeMs: number;
}

/** Where a message came from: the device's packet id on one connection (a number the broker gives each). */
export interface Delivery {
  packetId: number;
  connection: number;
}

interface Entry {
  hash: string;
  time: number;
  at: number;
  /** The connection it came on (-1: before a restart). */
  connection: number;
  ackedAt: number | undefined;
}

/** Connections are numbered from 1 in each run; entries read back at start belong to none of them. */
const EARLIER_RUN = -1;
const SAVE_EVERY_MS = 1000;
/** Entries kept per device: far above any device's window of unacknowledged QoS 1 messages. */
const MAX_PER_DEVICE = 256;

export class ResendGuard {
  private readonly db: Database.Database;
  /** Per device, per packet id. */
  private readonly entries = new Map<string, Map<number, Entry>>();
  private readonly stmt;
  private readonly timer: NodeJS.Timeout;
  /** Acknowledgements not yet saved: [device, packet id, acked at]. */
  private acks: [string, number, number][] = [];
  /** New entries not yet saved: [device, packet id, hash, time, at]. */
  private puts: [string, number, string, number, number][] = [];
  /** Entries pushed out by MAX_PER_DEVICE, not yet removed from SQLite. */
  private evicted: [string, number][] = [];
  private lastPrune = 0;

  constructor(private readonly opts: ResendGuardOptions) {
    this.db = new Database(opts.file);
    this.db.pragma('journal_mode = WAL');
    // A process crash loses no committed row in WAL mode with NORMAL; only a power cut can lose the last ones.
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS resend_times (
      device TEXT NOT NULL, packet INTEGER NOT NULL, hash TEXT NOT NULL, time INTEGER NOT NULL, at INTEGER NOT NULL,
      acked_at INTEGER, PRIMARY KEY (device, packet)) WITHOUT ROWID`);
    this.stmt = {
      put: this.db.prepare('INSERT OR REPLACE INTO resend_times (device, packet, hash, time, at, acked_at) VALUES (?, ?, ?, ?, ?, NULL)'),
      ack: this.db.prepare('UPDATE resend_times SET acked_at = ? WHERE device = ? AND packet = ?'),
      remove: this.db.prepare('DELETE FROM resend_times WHERE device = ? AND packet = ?'),
      prune: this.db.prepare('DELETE FROM resend_times WHERE at < ? OR acked_at < ?'),
    };
    this.prune(Date.now());
    const rows = this.db.prepare('SELECT device, packet, hash, time, at, acked_at FROM resend_times').all() as {
      device: string;
      packet: number;
      hash: string;
      time: number;
      at: number;
      acked_at: number | null;
    }[];
    for (const r of rows) {
      this.of(r.device).set(r.packet, {
        hash: r.hash,
        time: r.time,
        at: r.at,
        connection: EARLIER_RUN,
        ackedAt: r.acked_at ?? undefined,
      });
    }
    this.timer = setInterval(() => this.save(), SAVE_EVERY_MS);
    this.timer.unref();
  }

  /**
   * The time of the first time-less reading of a QoS 1 message: `time` (just given) for a new message, or the
   * time its first delivery got when this is a resend of it.
   */
  stamp(device: string, d: Delivery, payload: Buffer, time: number, now = Date.now()): number {
    const mine = this.of(device);
    const hash = createHash('sha1').update(payload).digest('base64');
    const known = mine.get(d.packetId);
    if (
      known &&
      known.hash === hash &&
      known.connection !== d.connection &&
      (known.ackedAt === undefined || now - known.ackedAt <= this.opts.uncertainMs)
    ) {
      // The window stays counted from the first PUBACK: a device that reconnects without DISCONNECT and sends
      // the same bytes again and again is taken for a resender for at most `uncertainMs`.
      known.connection = d.connection;
      return known.time;
    }
    mine.delete(d.packetId); // set again below: the newest last, for the per-device bound
    mine.set(d.packetId, { hash, time, at: now, connection: d.connection, ackedAt: undefined });
    this.puts.push([device, d.packetId, hash, time, now]);
    if (mine.size > MAX_PER_DEVICE) {
      const oldest = mine.keys().next().value as number;
      mine.delete(oldest);
      this.evicted.push([device, oldest]);
    }
    return time;
  }

  /** The PUBACK of this message was handed to its connection (it may still be lost with the connection). */
  acknowledged(device: string, d: Delivery, now = Date.now()): void {
    const e = this.entries.get(device)?.get(d.packetId);
    if (!e || e.connection !== d.connection || e.ackedAt !== undefined) return;
    e.ackedAt = now;
    this.acks.push([device, d.packetId, now]);
  }

  /** A connection ended; `clean`: with a DISCONNECT packet, so every PUBACK written to it arrived. */
  connectionClosed(device: string, connection: number, clean: boolean): void {
    if (!clean) return;
    const mine = this.entries.get(device);
    if (!mine) return;
    const gone: number[] = [];
    for (const [packet, e] of mine) {
      if (e.connection === connection && e.ackedAt !== undefined) {
        mine.delete(packet);
        gone.push(packet);
      }
    }
    if (mine.size === 0) this.entries.delete(device);
    if (gone.length)
      this.db.transaction(() => {
        for (const p of gone) this.stmt.remove.run(device, p);
      })();
  }

  /** Messages whose resend is still recognised. */
  size(): number {
    let n = 0;
    for (const m of this.entries.values()) n += m.size;
    return n;
  }

  private of(device: string): Map<number, Entry> {
    let m = this.entries.get(device);
    if (!m) {
      m = new Map();
      this.entries.set(device, m);
    }
    return m;
  }

  /** Saves the new entries in one transaction (before the readings they stamp are sent to the durable log). */
  commit(): void {
    if (!this.puts.length && !this.evicted.length) return;
    const puts = this.puts;
    const evicted = this.evicted;
    this.puts = [];
    this.evicted = [];
    this.db.transaction(() => {
      for (const [device, packet, hash, time, at] of puts) this.stmt.put.run(device, packet, hash, time, at);
      for (const [device, packet] of evicted) this.stmt.remove.run(device, packet);
    })();
  }

  /** Saves the acknowledgement times of the last second, and forgets what is past its time. */
  private save(): void {
    const now = Date.now();
    this.commit();
    const acks = this.acks;
    this.acks = [];
    if (acks.length)
      this.db.transaction(() => {
        for (const [device, packet, at] of acks) this.stmt.ack.run(at, device, packet);
      })();
    if (now - this.lastPrune >= Math.min(this.opts.uncertainMs, 60_000)) this.prune(now);
  }

  private prune(now: number): void {
    this.lastPrune = now;
    const ackedBefore = now - this.opts.uncertainMs;
    const before = now - this.opts.maxAgeMs;
    this.stmt.prune.run(before, ackedBefore);
    for (const [device, mine] of this.entries) {
      for (const [packet, e] of mine) {
        if (e.at < before || (e.ackedAt !== undefined && e.ackedAt < ackedBefore)) mine.delete(packet);
      }
      if (mine.size === 0) this.entries.delete(device);
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.save();
    this.db.close();
  }
}
