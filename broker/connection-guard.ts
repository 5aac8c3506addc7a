/**
 * Guards in front of aedes for every listener:
 * - admission: a bound on connections in total, and on failed connection attempts per source address per window
 *   (ConnectionGuard);
 * - packet size: MQTT fixed headers are read as bytes arrive and a packet announcing more than `maxPacketBytes`
 *   closes the connection before its body is buffered. aedes 1.2 has no packet size limit of its own, and
 *   MQTT 3.1.1 allows 256 MiB: without this, one client could make the broker hold that much per connection.
 * - packet identifier: SUBSCRIBE, UNSUBSCRIBE and QoS 1/2 PUBLISH need a non-zero one [MQTT-2.3.1-1]; aedes 1.2
 *   answers packet id 0 (PUBACK 0, SUBACK 0) and keeps the connection, so a 0 read here closes it first.
 *
 * The checks are hand-written (a small state machine over the fixed header and the packet id's bytes) because
 * they must run on the raw stream before mqtt-packet's parser, which buffers the whole packet before handing it over.
 */
import type { Duplex } from 'node:stream';

/** Defaults of the broker's limits (options.ts declares them as the defaults of the broker.* options). */
export const LIMIT_DEFAULTS = {
  /** Below the 20,000 file descriptors a process may hold here, with room for InfluxDB, sockets and files. */
  maxConnections: 18000,
  /** Failed attempts only. Generous: devices behind a carrier's NAT share one address and may have stale tokens. */
  maxConnectionAttemptsPerAddress: 1000,
  connectionAttemptWindowMs: 10000,
  /** 1,000 readings of ~300 bytes in one message fit; MQTT itself would allow 256 MiB. */
  maxPacketBytes: 512 * 1024,
  /** NB-IoT devices sleep long: 30 minutes at most. A larger keepalive is refused. */
  maxKeepaliveSeconds: 1800,
  /**
   * A connection with keepalive 0 (keep-alive off, MQTT-3.1.2-10) is closed after this long without a packet, s,
   * so half-open sockets are still reclaimed: 1.5 × maxKeepaliveSeconds, the longest silence a keepalive allows.
   */
  idleTimeoutSeconds: 2700,
} as const;

export interface GuardOptions {
  maxConnections: number;
  /** Failed attempts allowed per source address per `attemptWindowMs` before it is held back; 0 = no limit. */
  maxAttemptsPerAddress: number;
  attemptWindowMs: number;
  maxPacketBytes: number;
}

export type Refusal = 'max-connections' | 'too-many-attempts';

/** Why limitPacketSize closed a connection: a packet over the limit (or a malformed length), or packet id 0. */
export type Violation = 'packet-too-large' | 'packet-id-zero';
const PUBLISH = 3;
const SUBSCRIBE = 8;
const UNSUBSCRIBE = 10;
const NO_ID = -1;
const AFTER_TOPIC = -2;

/**
 * Connections an address past its failure limit may hold at once before they authenticate: a flood from it is
 * held to a few sockets, while a device behind the same NAT with a correct token still gets in.
 */
export const HELD_BACK_PENDING = 4;

/**
 * Admission. Only failed attempts count against an address: a connection that ends without authenticating
 * (CONNECT refused, or closed or cut before one). Successful logins never do, so devices behind one NAT that
 * reconnect together are not refused for it. An address past `maxAttemptsPerAddress` failures in its window is
 * held back until the window ends: it may hold only HELD_BACK_PENDING connections that have not authenticated
 * yet, and further ones are refused at once (`too-many-attempts`). A device with a correct token still logs in.
 */
export class ConnectionGuard {
  private open = 0;
  /** Failed attempts per source address in its current window. */
  private readonly failures = new Map<string, { windowStart: number; count: number }>();
  /** Connections per source address that have not authenticated yet. */
  private readonly pending = new Map<string, number>();
  private sweep: NodeJS.Timeout;

  constructor(private readonly opts: GuardOptions) {
    // Forget idle addresses so the map stays bounded under a scan from many sources.
    this.sweep = setInterval(() => {
      const now = Date.now();
      for (const [addr, a] of this.failures) if (now - a.windowStart > opts.attemptWindowMs) this.failures.delete(addr);
    }, opts.attemptWindowMs);
    this.sweep.unref();
  }

  /** Whether `address` is past its failure limit in the current window. */
  heldBack(address: string, now = Date.now()): boolean {
    const f = this.failures.get(address);
    return !!f && now - f.windowStart <= this.opts.attemptWindowMs && f.count >= this.opts.maxAttemptsPerAddress;
  }

  /**
   * Returns why a new connection is refused, or undefined when admitted: then call `authenticated()` when it
   * authenticates and `closed()` at its end.
   */
  admit(address: string | undefined): Refusal | undefined {
    const pending = address ? (this.pending.get(address) ?? 0) : 0;
    if (this.opts.maxAttemptsPerAddress > 0 && address && pending >= HELD_BACK_PENDING && this.heldBack(address)) {
      return 'too-many-attempts';
    }
    if (this.open >= this.opts.maxConnections) return 'max-connections';
    this.open++;
    if (address) this.pending.set(address, pending + 1);
    return undefined;
  }

  /** The connection from `address` authenticated: it no longer counts as pending, nor as a failure at its end. */
  authenticated(address: string | undefined): void {
    this.release(address);
  }

  /** A connection ended; one that never authenticated counts as a failed attempt of its address. */
  closed(address?: string, authenticated = true): void {
    this.open = Math.max(0, this.open - 1);
    if (authenticated || !address) return;
    this.release(address);
    if (this.opts.maxAttemptsPerAddress <= 0) return;
    const now = Date.now();
    let f = this.failures.get(address);
    if (!f || now - f.windowStart > this.opts.attemptWindowMs) {
      f = { windowStart: now, count: 0 };
      this.failures.set(address, f);
    }
    f.count++;
  }

  private release(address: string | undefined): void {
    if (!address) return;
    const n = (this.pending.get(address) ?? 0) - 1;
    if (n > 0) this.pending.set(address, n);
    else this.pending.delete(address);
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
 * its body is buffered; `onViolation` says why. `head`: bytes of the connection read before it was handed over,
 * which come first. Returns the same stream.
 *
 * The check sits in the stream's own `push` (where net, tls and ws streams hand over received bytes) rather
 * than in a wrapping Duplex: a wrapper doubled the stream machinery of every write (one per PUBACK) and cost
 * memory per idle connection, both measured in the bench. Writes are untouched.
 */
export function limitPacketSize<S extends Duplex>(
  inner: S,
  maxPacketBytes: number,
  onViolation: (reason: string, kind: Violation) => void,
  head?: Buffer,
): S {
  let state: 'type' | 'length' | 'body' = 'type';
  let length = 0;
  let multiplier = 1;
  let lengthBytes = 0;
  let remaining = 0;
  let type = 0;
  // Where the packet id starts in the body: SUBSCRIBE and UNSUBSCRIBE at 0, a QoS 1/2 PUBLISH after its topic
  // (AFTER_TOPIC until the topic's 2-byte length is read); NO_ID when there is none to check or it was checked.
  let idAt = NO_ID;
  let offset = 0;
  let word = 0;
  let kind: Violation = 'packet-too-large';

  const check = (chunk: Buffer): string | undefined => {
    let i = 0;
    while (i < chunk.length) {
      if (state === 'type') {
        type = chunk[i++] as number;
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
        const packetType = type >> 4;
        const qos = (type >> 1) & 3;
        idAt = packetType === SUBSCRIBE || packetType === UNSUBSCRIBE ? 0 : packetType === PUBLISH && qos > 0 ? AFTER_TOPIC : NO_ID;
        offset = 0;
      } else {
        let take = Math.min(remaining, chunk.length - i);
        if (idAt !== NO_ID && offset < idAt) {
          take = Math.min(take, idAt - offset); // the topic, skipped
        } else if (idAt !== NO_ID) {
          // One byte of a 2-byte big-endian field: the topic's length (AFTER_TOPIC) or the packet id.
          const b = chunk[i] as number;
          take = 1;
          const second = offset === (idAt === AFTER_TOPIC ? 1 : idAt + 1);
          if (!second) word = b;
          else if (idAt === AFTER_TOPIC) idAt = 2 + ((word << 8) | b);
          else if (((word << 8) | b) !== 0) idAt = NO_ID;
          else {
            kind = 'packet-id-zero';
            return 'packet identifier 0 [MQTT-2.3.1-1]';
          }
        }
        i += take;
        offset += take;
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
        onViolation(violation, kind);
        inner.destroy();
        return false;
      }
    }
    return push.call(this, chunk, encoding);
  };
  // Bytes already read from the connection by whoever handed it over (those after a PROXY header): checked
  // like any others, then put back in front for aedes.
  if (head?.length) {
    const violation = check(head);
    if (violation) {
      violated = true;
      onViolation(violation, kind);
      inner.destroy();
    } else inner.unshift(head);
  }
  return inner;
}
