/**
 * Guards in front of aedes for every listener (issue 4, limits):
 * - admission: a bound on connections in total and on connection attempts per source address per window;
 * - packet size: MQTT fixed headers are read as bytes arrive and a packet announcing more than `maxPacketBytes`
 *   closes the connection before its body is buffered. aedes 1.2 has no packet size limit of its own, and
 *   MQTT 3.1.1 allows 256 MiB: without this, one client could make the broker hold that much per connection.
 *
 * The size check is hand-written (a small state machine over the fixed header) because it must run on the
 * raw stream before mqtt-packet's parser, which buffers the whole packet before handing it over.
 */
import type { Duplex } from 'node:stream';

/** Defaults of the broker's limits (platform/config.ts uses them as its schema defaults). */
export const LIMIT_DEFAULTS = {
  /** Below the 20,000 file descriptors a process may hold here, with room for InfluxDB, sockets and files. */
  maxConnections: 18000,
  /** Generous: devices behind a carrier's NAT share one address, and a reconnect storm follows an outage. */
  maxConnectionAttemptsPerAddress: 1000,
  connectionAttemptWindowMs: 10000,
  /** 1,000 readings of ~300 bytes in one message fit; MQTT itself would allow 256 MiB. */
  maxPacketBytes: 512 * 1024,
  /** NB-IoT devices sleep long: 30 minutes at most; 0 (no keepalive, half-open sockets forever) is refused. */
  maxKeepaliveSeconds: 1800,
} as const;

export interface GuardOptions {
  maxConnections: number;
  /** Attempts allowed per source address per `attemptWindowMs`; 0 = no limit. */
  maxAttemptsPerAddress: number;
  attemptWindowMs: number;
  maxPacketBytes: number;
}

export type Refusal = 'max-connections' | 'too-many-attempts';

export class ConnectionGuard {
  private open = 0;
  private readonly attempts = new Map<string, { windowStart: number; count: number }>();
  private sweep: NodeJS.Timeout;

  constructor(private readonly opts: GuardOptions) {
    // Forget idle addresses so the map stays bounded under a scan from many sources.
    this.sweep = setInterval(() => {
      const now = Date.now();
      for (const [addr, a] of this.attempts) if (now - a.windowStart > opts.attemptWindowMs) this.attempts.delete(addr);
    }, opts.attemptWindowMs);
    this.sweep.unref();
  }

  /** Counts the attempt; returns why it is refused, or undefined when admitted (call `closed()` at its end). */
  admit(address: string | undefined): Refusal | undefined {
    if (this.opts.maxAttemptsPerAddress > 0 && address) {
      const now = Date.now();
      let a = this.attempts.get(address);
      if (!a || now - a.windowStart > this.opts.attemptWindowMs) {
        a = { windowStart: now, count: 0 };
        this.attempts.set(address, a);
      }
      if (++a.count > this.opts.maxAttemptsPerAddress) return 'too-many-attempts';
    }
    if (this.open >= this.opts.maxConnections) return 'max-connections';
    this.open++;
    return undefined;
  }

  closed(): void {
    this.open = Math.max(0, this.open - 1);
  }

  get connections(): number {
    return this.open;
  }

  stop(): void {
    clearInterval(this.sweep);
  }
}

/**
 * Guards a connection so that a packet longer than `maxPacketBytes` (or a malformed length) destroys it before
 * its body is buffered; `onViolation` says why. Returns the same stream.
 *
 * The check sits in the stream's own `push` (where net, tls and ws streams hand over received bytes) rather
 * than in a wrapping Duplex: a wrapper doubled the stream machinery of every write (one per PUBACK) and cost
 * memory per idle connection, both measured in the bench (issue 7). Writes are untouched.
 */
export function limitPacketSize<S extends Duplex>(inner: S, maxPacketBytes: number, onViolation: (reason: string) => void): S {
  let state: 'type' | 'length' | 'body' = 'type';
  let length = 0;
  let multiplier = 1;
  let lengthBytes = 0;
  let remaining = 0;

  const check = (chunk: Buffer): string | undefined => {
    let i = 0;
    while (i < chunk.length) {
      if (state === 'type') {
        i++;
        state = 'length';
        length = 0;
        multiplier = 1;
        lengthBytes = 0;
      } else if (state === 'length') {
        const b = chunk[i++] as number;
        length += (b & 0x7f) * multiplier;
        multiplier *= 128;
        if (++lengthBytes > 4) return 'malformed remaining length';
        if (b & 0x80) continue;
        if (length > maxPacketBytes) return `packet of ${length} bytes exceeds the limit of ${maxPacketBytes}`;
        remaining = length;
        state = remaining > 0 ? 'body' : 'type';
      } else {
        const take = Math.min(remaining, chunk.length - i);
        i += take;
        remaining -= take;
        if (remaining === 0) state = 'type';
      }
    }
    return undefined;
  };

  const push = inner.push;
  let violated = false;
  inner.push = function guardedPush(this: S, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (violated) return false;
    if (chunk !== null && chunk !== undefined) {
      const violation = check(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string, encoding));
      if (violation) {
        violated = true;
        onViolation(violation);
        inner.destroy();
        return false;
      }
    }
    return push.call(this, chunk, encoding);
  };
  return inner;
}
