/**
 * Per-device token buckets for readings: a device may send `perSecond` readings a second
 * on average with bursts of `burst` (a device flushing its backlog after an outage). Readings over the limit
 * are rejected with a reason, never silently dropped. The map forgets devices whose bucket is full again.
 */
export class ReadingRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep = 0;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}

  /** How many of `n` readings the device may send now (0..n); 0 = unlimited when perSecond is 0. */
  take(device: string, n: number, now: number): number {
    if (this.perSecond <= 0) return n;
    let b = this.buckets.get(device);
    if (!b) {
      b = { tokens: this.burst, at: now };
      this.buckets.set(device, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
      b.at = now;
    }
    const allowed = Math.min(n, Math.floor(b.tokens));
    b.tokens -= allowed;
    if (now - this.lastSweep > 60_000) this.sweep(now);
    return allowed;
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [id, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(id);
  }
}

/** InfluxDB duration ('90d', '52w', '12h', 'INF') in ms; INF → Infinity. */
export function durationMs(d: string): number {
  const m = /^(\d+)([smhdw])$/.exec(d);
  if (!m) return Number.POSITIVE_INFINITY;
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
}
