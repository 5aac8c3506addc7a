/**
 * Ships points from the durable log to InfluxDB.
 *
 * New points wait in an in-memory tail until they are durable, then go to the writer. When InfluxDB is slow
 * or down the writer's buffer stays full, the tail grows, and past `memoryPoints` its oldest points are
 * evicted from memory: they stay on disk as a backlog range. Backlog ranges (and, after a restart, the whole
 * log) are read back from disk oldest first, alternating batch by batch with the live tail, so a long drain
 * never starves live readings. A point is confirmed in the log once InfluxDB stored or refused it.
 */
import type { DurableLog, LogPoint, SeqPoint } from './durable-log.ts';
import type { InfluxWriter, PendingPoint } from './influx-writer.ts';

export interface ShipperOptions {
  /** Points held in memory (tail) before the oldest are left on disk for later. */
  memoryPoints: number;
  /** Points handed to the writer at a time; the writer holds at most twice this. */
  chunk: number;
}

export class LogShipper {
  private tail: SeqPoint[] = [];
  private tailHead = 0;
  /** Seq ranges [from, to) on disk still to ship, oldest first. */
  private backlog: { from: number; to: number }[] = [];
  private preferBacklog = true;
  private pumping = false;
  private stopped = false;
  /** Set while shipping is held (what InfluxDB holds must not change: analytics reads it back). */
  private held = false;

  constructor(
    private readonly log: DurableLog,
    private readonly writer: Pick<InfluxWriter, 'writePoints' | 'state'>,
    private readonly opts: ShipperOptions,
  ) {}

  /** Ships a range left on disk by an earlier run (replay after a crash or a stop). */
  replay(from: number, to: number): void {
    if (to > from) this.backlog.push({ from, to });
    this.pump();
  }

  /** Appends to the log; `durable` resolves once the points are durable; `first` is the first point's seq. */
  append(points: LogPoint[]): { first: number; durable: Promise<void> } {
    const { seqs, durable } = this.log.append(points);
    for (let i = 0; i < points.length; i++) {
      const p = points[i] as LogPoint;
      this.tail.push({ line: p.line, family: p.family, device: p.device, seq: seqs[i] as number });
    }
    this.evict();
    return { first: seqs[0] ?? this.log.end, durable };
  }

  /** Holds shipping (points keep being appended and made durable) until `release`. */
  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.pump();
  }

  /** True once the point of `seq` was handed to the writer (it is not waiting in the tail or the disk backlog). */
  handedOver(seq: number): boolean {
    for (const r of this.backlog) if (seq >= r.from && seq < r.to) return false;
    const next = this.tail[this.tailHead];
    return !next || seq < next.seq;
  }

  /** Readings appended and not yet handed to the writer (memory tail + disk backlog). */
  waiting(): { memory: number; disk: number } {
    return { memory: this.tail.length - this.tailHead, disk: this.backlog.reduce((n, r) => n + r.to - r.from, 0) };
  }

  private evict(): void {
    const excess = this.tail.length - this.tailHead - this.opts.memoryPoints;
    if (excess <= 0) return;
    const first = (this.tail[this.tailHead] as SeqPoint).seq;
    const last = (this.tail[this.tailHead + excess - 1] as SeqPoint).seq + 1;
    const prev = this.backlog[this.backlog.length - 1];
    if (prev && prev.to === first) prev.to = last;
    else this.backlog.push({ from: first, to: last });
    this.tailHead += excess;
    this.compact();
  }

  private compact(): void {
    if (this.tailHead > 4096 && this.tailHead * 2 > this.tail.length) {
      this.tail = this.tail.slice(this.tailHead);
      this.tailHead = 0;
    }
  }

  /** Hands batches to the writer while it has room: backlog and live alternate. */
  pump(): void {
    if (this.pumping || this.stopped || this.held) return;
    this.pumping = true;
    try {
      const high = this.opts.chunk * 2;
      while (this.writer.state().buffered < high) {
        const live = this.liveAvailable();
        const disk = this.backlog.length > 0;
        if (!live && !disk) break;
        const fromDisk = disk && (!live || this.preferBacklog);
        this.preferBacklog = !fromDisk;
        const batch = fromDisk ? this.takeBacklog() : this.takeLive();
        if (!batch.length) break;
        this.writer.writePoints(batch);
      }
    } finally {
      this.pumping = false;
    }
  }

  private liveAvailable(): boolean {
    const next = this.tail[this.tailHead];
    return !!next && next.seq < this.log.durableEnd;
  }

  private takeLive(): PendingPoint[] {
    const end = this.log.durableEnd;
    const out: PendingPoint[] = [];
    while (out.length < this.opts.chunk && this.tailHead < this.tail.length) {
      const p = this.tail[this.tailHead] as SeqPoint;
      if (p.seq >= end) break;
      out.push(p);
      this.tailHead++;
    }
    this.compact();
    return out;
  }

  private takeBacklog(): PendingPoint[] {
    const r = this.backlog[0] as { from: number; to: number };
    const durable = this.log.durableEnd;
    if (r.from >= durable) return []; // evicted before its group reached the disk: wait for the flush
    const points = this.log.read(r.from, r.to, this.opts.chunk);
    // Nothing left on disk in [from, durable) means those points were confirmed and their segments deleted.
    r.from = points.length ? (points[points.length - 1] as SeqPoint).seq + 1 : Math.min(r.to, durable);
    if (r.from >= r.to) this.backlog.shift();
    return points;
  }

  stop(): void {
    this.stopped = true;
  }
}
