/**
 * One AMQP connection to a RabbitMQ cluster, kept up across node failures: connects to one of the cluster's URLs
 * (a random one first, so a fleet of platform nodes spreads over the cluster), and when that node goes away
 * (stopped, killed, its connection cut) connects to the next one in turn, with a short back-off once every URL
 * failed in a row. Heartbeats (5 s) notice a node that hangs without closing the socket.
 *
 * The replicated log's publisher and its partition consumers each hold one link: a node's memory or disk alarm
 * blocks publishing connections, which must not hold back the consumers that drain the queues.
 */
import { EventEmitter } from 'node:events';
import { connect, type ChannelModel } from 'amqplib';
import type { Logger } from '../core/logger.ts';

export interface AmqpLinkEvents {
  /** Connected (again) to `url`. */
  up: [model: ChannelModel, url: string];
  /** The connection ended; the link is connecting again (unless stopped). */
  down: [err: Error];
}

/** Heartbeat interval negotiated with RabbitMQ, s: a node that stops answering is given up after two missed beats. */
const HEARTBEAT_S = 5;
const CONNECT_TIMEOUT_MS = 5000;
const MAX_BACKOFF_MS = 2000;
const CLOSE_TIMEOUT_MS = 3000;

/** Drops a connection's socket without the closing handshake (amqplib keeps it as `connection.stream`). */
function destroySocket(model: ChannelModel): void {
  (model as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

export class AmqpLink extends EventEmitter<AmqpLinkEvents> {
  private model: ChannelModel | undefined;
  private currentUrl: string | undefined;
  private next: number;
  private stopped = false;
  private connecting: Promise<void> | undefined;
  /** Ends the back-off pause early (stop). */
  private wake: (() => void) | undefined;

  constructor(
    private readonly urls: readonly string[],
    /** Shown in RabbitMQ's connection list (`connection_name`). */
    private readonly name: string,
    private readonly log: Logger,
  ) {
    super();
    if (!urls.length) throw new Error('AmqpLink needs at least one URL');
    this.next = Math.floor(Math.random() * urls.length);
  }

  /** Starts connecting; resolves once connected or after `waitMs`, whichever comes first. */
  async start(waitMs: number): Promise<boolean> {
    this.connectSoon();
    if (this.model) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.off('up', onUp);
        resolve(false);
      }, waitMs);
      const onUp = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.once('up', onUp);
    });
  }

  /** The open connection, if any. */
  get current(): ChannelModel | undefined {
    return this.model;
  }

  /** The URL of the node connected to now (host and port only: never the credentials). */
  get node(): string | undefined {
    return this.currentUrl ? hostOf(this.currentUrl) : undefined;
  }

  /** Drops the current connection (a channel failed in a way only a new connection mends); the link connects again. */
  reset(reason: string): void {
    const m = this.model;
    if (!m) return;
    this.log.warn({ node: this.node, reason }, 'AMQP connection reset');
    m.close().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.connecting?.catch(() => undefined);
    const m = this.model;
    this.model = undefined;
    if (!m) return;
    // A node that no longer answers never completes the closing handshake: its socket is dropped after a while.
    await within(m.close(), CLOSE_TIMEOUT_MS, 'closing the connection').catch(() => destroySocket(m));
  }

  private connectSoon(): void {
    if (this.stopped || this.model || this.connecting) return;
    this.connecting = this.connectLoop().finally(() => (this.connecting = undefined));
  }

  /** Tries the URLs in turn until one answers (or the link stops). */
  private async connectLoop(): Promise<void> {
    let failures = 0;
    while (!this.stopped && !this.model) {
      const url = this.urls[this.next % this.urls.length] as string;
      this.next = (this.next + 1) % this.urls.length;
      let model: ChannelModel;
      try {
        const u = new URL(url);
        if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(HEARTBEAT_S));
        // `timeout` is the socket's idle timeout until the connection is open: it covers a node that accepts the
        // TCP connection but never finishes the AMQP handshake (one shutting down).
        model = await connect(u.toString(), {
          timeout: CONNECT_TIMEOUT_MS,
          // amqplib leaves Nagle's algorithm on: a publish (method, header and body frames) then waited for the
          // server's delayed ACK, about 40 ms a confirm here; measured 48 ms p50 with it, see docs/cluster.md.
          noDelay: true,
          clientProperties: { connection_name: this.name },
        });
      } catch (err) {
        failures++;
        if (failures === this.urls.length)
          this.log.warn({ err: (err as Error).message, urls: this.urls.map(hostOf) }, 'no RabbitMQ node answers; retrying');
        // Every URL tried in a row: wait a little before the next round (a whole cluster restarting).
        if (failures % this.urls.length === 0) await this.pause(Math.min(100 * 2 ** (failures / this.urls.length), MAX_BACKOFF_MS));
        continue;
      }
      if (this.stopped) {
        await model.close().catch(() => undefined);
        return;
      }
      this.adopt(model, url);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private adopt(model: ChannelModel, url: string): void {
    this.model = model;
    this.currentUrl = url;
    // Errors are followed by 'close'; logged there once.
    model.on('error', () => undefined);
    model.on('blocked', (reason: string) => this.log.warn({ node: hostOf(url), reason }, 'RabbitMQ blocks publishing (resource alarm)'));
    model.on('unblocked', () => this.log.info({ node: hostOf(url) }, 'RabbitMQ unblocked publishing'));
    model.once('close', (err?: Error) => {
      if (this.model !== model) return;
      this.model = undefined;
      this.currentUrl = undefined;
      if (this.stopped) return;
      this.log.warn({ node: hostOf(url), err: err?.message }, 'AMQP connection lost: connecting to another node');
      this.emit('down', err ?? new Error('connection closed'));
      this.connectSoon();
    });
    this.log.info({ node: hostOf(url), name: this.name }, 'AMQP connected');
    this.emit('up', model, url);
  }
}

/**
 * `work` bounded by `ms`: a channel operation on a quorum queue waits while the queue has no leader (an election
 * after its node went away, or no quorum at all), and an answer that never comes must not hold a channel forever.
 */
export async function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer from RabbitMQ within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** host:port of an AMQP URL (no credentials). */
export function hostOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5672}`;
  } catch {
    return '(invalid url)';
  }
}
