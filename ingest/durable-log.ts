/**
 * The durable log: an append-only, segmented file log of accepted points, so that no acknowledged reading is
 * lost. A QoS 1 reading is acknowledged only after its record is on disk.
 *
 * - Records (durable-log-records.ts): [u32 payload length][u32 CRC-32 of payload][payload], payload =
 *   `family \t device \t line`. Every point has a global sequence number (seq); a segment file is named by the
 *   seq of its first point.
 * - Group commit: appends gather in memory while the previous write + fdatasync is in flight, then go to disk
 *   together in one writev + one fdatasync, so many readings share one fsync.
 * - A segment is deleted only once every point in it is confirmed (stored by InfluxDB or dead-lettered).
 *   Confirmations are not persisted: after a crash every point of the remaining segments is replayed, and
 *   since a point's identity is its series and time, a replay overwrites instead of duplicating.
 * - A torn last record (power cut mid-write) fails its length or CRC check: the file is cut there with a
 *   warning, never a crash.
 * - The disk budget (`maxBytes`) makes `full()` true; callers wait on `whenSpace()` (backpressure). While it is
 *   used up, an active segment whose every point is confirmed is closed and deleted at once instead of waiting
 *   to reach `segmentBytes`: a budget at or below one segment's size never stays full with nothing to ship.
 */
import fs from 'node:fs';
import path from 'node:path';
import { silentLogger, type Logger } from '../core/logger.ts';
import { decodeRecords, encodeRecord, fdatasync, type LogPoint, scanSegmentFile, type SeqPoint, writev } from './durable-log-records.ts';

export type { LogPoint, SeqPoint } from './durable-log-records.ts';

export interface DurableLogOptions {
  dir: string;
  /** A segment is closed and a new one begun past this size, bytes. */
  segmentBytes: number;
  /** Disk budget for all segments, bytes: past it `full()` is true. */
  maxBytes: number;
  /** false = no fdatasync (faster, loses the last writes on a power cut; a process crash loses nothing). */
  fsync: boolean;
  logger?: Logger;
}

interface Segment {
  base: number;
  file: string;
  /** Points in the segment (written to disk). */
  count: number;
  bytes: number;
  /** Byte offset of each point's record, for reading a range back. */
  offsets: number[];
  /** confirmed[i] = 1 once point base+i is stored or dead-lettered. */
  confirmed: Uint8Array;
  confirmedCount: number;
  /** When the segment was begun (ms): the age of the backlog. */
  createdAt: number;
}

export class DurableLog {
  private readonly segments: Segment[] = [];
  private active: Segment | undefined;
  private fd = -1;
  /** Next seq to assign (appended, maybe not yet written). */
  private nextSeq = 0;
  /** Points below this seq are written (and synced when fsync is on). */
  private flushedSeq = 0;
  private pending: Buffer[] = [];
  private pendingPoints = 0;
  private pendingBytes = 0;
  private waiters: { seq: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private flushing = false;
  private spaceWaiters: (() => void)[] = [];
  private closed = false;
  private readonly log: Logger;
  private totalBytes = 0;

  /** Called after each group reaches the disk (the shipper sends what became durable). */
  onFlushed: () => void = () => undefined;

  constructor(private readonly opts: DurableLogOptions) {
    this.log = opts.logger ?? silentLogger;
  }

  /**
   * Opens the log folder: checks every record, cuts a torn tail, and returns the seq range still to be
   * delivered ([from, to): every point left on disk, confirmed or not).
   */
  open(): { from: number; to: number; torn: number } {
    fs.mkdirSync(this.opts.dir, { recursive: true });
    const files = fs
      .readdirSync(this.opts.dir)
      .filter((f) => /^\d{16}\.log$/.test(f))
      .sort();
    let torn = 0;
    for (const name of files) {
      const file = path.join(this.opts.dir, name);
      const seg = this.scan(file, Number(name.slice(0, 16)));
      torn += seg.torn;
      if (seg.segment.count === 0) {
        fs.rmSync(file, { force: true });
        continue;
      }
      this.segments.push(seg.segment);
      this.totalBytes += seg.segment.bytes;
    }
    const first = this.segments[0];
    const last = this.segments[this.segments.length - 1];
    this.nextSeq = last ? last.base + last.count : 0;
    this.flushedSeq = this.nextSeq;
    this.startSegment();
    return { from: first ? first.base : this.nextSeq, to: this.nextSeq, torn };
  }

  private scan(file: string, base: number): { segment: Segment; torn: number } {
    const { offsets, bytes, torn } = scanSegmentFile(file, this.log);
    const segment: Segment = {
      base,
      file,
      count: offsets.length,
      bytes,
      offsets,
      confirmed: new Uint8Array(offsets.length),
      confirmedCount: 0,
      createdAt: fs.statSync(file).mtimeMs,
    };
    return { segment, torn };
  }

  private startSegment(): void {
    const base = this.flushedSeq;
    const file = path.join(this.opts.dir, `${String(base).padStart(16, '0')}.log`);
    this.fd = fs.openSync(file, 'a');
    this.active = {
      base,
      file,
      count: 0,
      bytes: 0,
      offsets: [],
      confirmed: new Uint8Array(1024),
      confirmedCount: 0,
      createdAt: Date.now(),
    };
    this.segments.push(this.active);
    if (this.opts.fsync) this.syncDir();
  }

  private syncDir(): void {
    // A new file's directory entry must be durable too, or a power cut can lose the whole segment.
    const dfd = fs.openSync(this.opts.dir, 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  }

  /**
   * Appends points; returns their seqs. `durable` resolves once they are on disk (fdatasync'd when fsync is on).
   */
  append(points: LogPoint[]): { seqs: number[]; durable: Promise<void> } {
    if (this.closed) throw new Error('durable log is closed');
    const seqs: number[] = [];
    for (const p of points) {
      const record = encodeRecord(p);
      this.pending.push(record);
      this.pendingBytes += record.length;
      this.pendingPoints++;
      seqs.push(this.nextSeq++);
    }
    const last = this.nextSeq;
    const durable = new Promise<void>((resolve, reject) => this.waiters.push({ seq: last, resolve, reject }));
    if (!this.flushing) void this.flush();
    return { seqs, durable };
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length && !this.closed) {
        const bufs = this.pending;
        const points = this.pendingPoints;
        const bytes = this.pendingBytes;
        this.pending = [];
        this.pendingPoints = 0;
        this.pendingBytes = 0;
        const seg = this.active as Segment;
        await writev(this.fd, bufs);
        if (this.opts.fsync) await fdatasync(this.fd);
        // Record offsets of what just reached the file.
        let off = seg.bytes;
        for (const record of bufs) {
          seg.offsets.push(off);
          off += record.length;
        }
        seg.count += points;
        seg.bytes += bytes;
        this.totalBytes += bytes;
        if (seg.confirmed.length < seg.count) {
          const grown = new Uint8Array(Math.max(seg.count, seg.confirmed.length * 2));
          grown.set(seg.confirmed);
          seg.confirmed = grown;
        }
        this.flushedSeq += points;
        const done = this.waiters.filter((w) => w.seq <= this.flushedSeq);
        this.waiters = this.waiters.filter((w) => w.seq > this.flushedSeq);
        for (const w of done) w.resolve();
        this.onFlushed();
        if (seg.bytes >= this.opts.segmentBytes) {
          fs.closeSync(this.fd);
          this.startSegment();
          this.trim();
        }
      }
    } catch (err) {
      // A failing disk: refuse the waiting acknowledgements rather than pretend they are durable.
      this.log.error({ err: (err as Error).message }, 'durable log: write failed');
      for (const w of this.waiters) w.reject(err as Error);
      this.waiters = [];
    } finally {
      this.flushing = false;
    }
    this.rotateConfirmed();
  }

  /** While the budget is used up: a fully confirmed active segment is closed, a new one begun, the old deleted. */
  private rotateConfirmed(): void {
    const seg = this.active;
    if (!seg || this.flushing || this.closed || this.pending.length || seg.count === 0) return;
    if (seg.confirmedCount !== seg.count || !this.full()) return;
    fs.closeSync(this.fd);
    this.startSegment();
    this.trim();
  }

  /** Marks points stored (or dead-lettered); whole confirmed segments are deleted. */
  confirm(seqs: Iterable<number>): void {
    let trimmable = false;
    for (const seq of seqs) {
      const seg = this.segmentOf(seq);
      if (!seg) continue;
      const i = seq - seg.base;
      if (i >= seg.count || seg.confirmed[i]) continue;
      seg.confirmed[i] = 1;
      seg.confirmedCount++;
      if (seg.confirmedCount === seg.count && seg !== this.active) trimmable = true;
    }
    if (trimmable) this.trim();
    this.rotateConfirmed();
  }

  private trim(): void {
    let removed = false;
    for (let i = 0; i < this.segments.length; ) {
      const seg = this.segments[i] as Segment;
      if (seg !== this.active && seg.confirmedCount === seg.count) {
        fs.rmSync(seg.file, { force: true });
        this.totalBytes -= seg.bytes;
        this.segments.splice(i, 1);
        removed = true;
      } else i++;
    }
    if (removed && !this.full()) {
      const w = this.spaceWaiters;
      this.spaceWaiters = [];
      for (const fn of w) fn();
    }
  }

  private segmentOf(seq: number): Segment | undefined {
    // Segments are few (budget / segment size); scanning from the end finds recent seqs first.
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const s = this.segments[i] as Segment;
      if (seq >= s.base) return seq < s.base + s.count ? s : undefined;
    }
    return undefined;
  }

  /** Points below this seq are on disk (and synced when fsync is on): only those may be shipped. */
  get durableEnd(): number {
    return this.flushedSeq;
  }

  /** Reads up to `max` written points with seqs in [from, to) back from disk, in order (deleted segments skipped). */
  read(from: number, to: number, max: number): SeqPoint[] {
    const out: SeqPoint[] = [];
    const end = Math.min(to, this.flushedSeq);
    for (const seg of this.segments) {
      if (out.length >= max || seg.base >= end) break;
      if (seg.base + seg.count <= from) continue;
      const i0 = Math.max(from, seg.base) - seg.base;
      const i1 = Math.min(seg.count, end - seg.base, i0 + (max - out.length));
      if (i1 <= i0) continue;
      const start = seg.offsets[i0] as number;
      const stop = i1 < seg.count ? (seg.offsets[i1] as number) : seg.bytes;
      const buf = Buffer.allocUnsafe(stop - start);
      const fd = fs.openSync(seg.file, 'r');
      try {
        fs.readSync(fd, buf, 0, buf.length, start);
      } finally {
        fs.closeSync(fd);
      }
      decodeRecords(buf, seg.base + i0, i1 - i0, out);
      from = seg.base + i1;
    }
    return out;
  }

  /** True when the segments use the whole disk budget: callers should wait on whenSpace(). */
  full(): boolean {
    return this.totalBytes + this.pendingBytes >= this.opts.maxBytes;
  }

  whenSpace(): Promise<void> {
    if (!this.full()) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push(resolve));
  }

  /** Backlog: points appended and not yet confirmed, bytes on disk, age of the oldest segment. */
  usage(): { points: number; bytes: number; oldestMs: number; segments: number; full: boolean } {
    let confirmed = 0;
    let count = 0;
    for (const s of this.segments) {
      confirmed += s.confirmedCount;
      count += s.count;
    }
    const oldest = this.segments.find((s) => s.count > s.confirmedCount);
    return {
      points: count - confirmed + this.pendingPoints,
      bytes: this.totalBytes + this.pendingBytes,
      oldestMs: oldest ? Date.now() - oldest.createdAt : 0,
      segments: this.segments.length,
      full: this.full(),
    };
  }

  /** Points with a seq below `seq` not yet confirmed (stored or dead-lettered). */
  unconfirmedBefore(seq: number): number {
    let n = 0;
    for (const s of this.segments) {
      if (s.base >= seq) break;
      const upTo = Math.min(s.count, seq - s.base);
      for (let i = 0; i < upTo; i++) if (!s.confirmed[i]) n++;
    }
    return n;
  }

  /** The seq the next appended point gets. */
  get end(): number {
    return this.nextSeq;
  }

  /** Waits for pending writes, then closes. What is not confirmed stays on disk for the next open(). */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing || this.pending.length) {
      if (!this.flushing) await this.flush();
      else await new Promise((r) => setTimeout(r, 5));
    }
    this.closed = true;
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    // Fully confirmed segments, the active one included, need no replay at the next start.
    for (const seg of this.segments) if (seg.confirmedCount === seg.count) fs.rmSync(seg.file, { force: true });
    for (const fn of this.spaceWaiters) fn();
    this.spaceWaiters = [];
  }
}
