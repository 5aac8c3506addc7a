/**
 * From a device's publish to its acknowledgement: the message goes to ingest (onMessage) and its PUBACK waits
 * for onMessage's promise (the reading durable); a connection's PUBACKs leave in the order its publishes came
 * [MQTT-4.6.0-2], and after a refusal none of the rest does (the connection closes, the device sends it all
 * again). While messages wait for room, their connections stop being read (back-pressure through TCP) and are
 * resumed a few per turn; PUBACKs released together leave in one write per connection.
 */
import type { Writable } from 'node:stream';
import type { Client, PublishPacket } from 'aedes';
import type { Delivery, DeviceMeta } from '../ingest/index.ts';
import type { Logger } from '../core/logger.ts';
import { setMaxListeners } from 'node:events';
import type { BrokerDeps } from './types.ts';

export interface AckOrder {
  /**
   * A device's publish on one of its own topics (`kind`): handed to onMessage, and `cb` (which lets aedes send
   * the PUBACK) called once it and every earlier publish of the connection settled.
   */
  take(client: Client, device: DeviceMeta, kind: string, packet: PublishPacket, cb: (err: Error | null) => void): void;
  /** The connection ended: messages waiting for room let go of it. */
  abortWaiting(client: Client): void;
  /** Tells onConnectionClosed that a device's connection ended, with the connection's number. */
  connectionClosed(client: Client, device: DeviceMeta | undefined): void;
}

/**
 * A connection's publishes wait here in arrival order, and one is answered only once every earlier one was.
 * aedes handles all the packets of one socket read at once (and reads again as data arrives), and a publish's
 * PUBACK waits for onMessage's promise, while one refused at once (invalid, over the rate) would be answered at
 * once: ahead of its connection's earlier publishes. test/broker-ack-order.test.ts.
 */
interface Awaiting {
  settled: boolean;
  err: Error | undefined;
  cb: (err: Error | null) => void;
  device: DeviceMeta;
  /** QoS 1 packet id and connection, reported to onAcknowledged once its PUBACK is handed over. */
  delivery: Delivery | undefined;
}

const RESUME_PER_TURN = 64;

export function createAckOrder(
  deps: Pick<BrokerDeps, 'onMessage' | 'onAcknowledged' | 'onConnectionClosed' | 'slowDown'>,
  log: Logger,
): AckOrder {
  const awaiting = new WeakMap<Client, Awaiting[]>();
  /** A connection's first refusal: what settles after it is refused too (the connection is closing). */
  const refusals = new WeakMap<Client, Error>();
  /** Aborted when the connection ends: messages waiting for room let go of it (see onMessage). */
  const closers = new WeakMap<Client, AbortController>();
  const closedSignal = (client: Client) => {
    let c = closers.get(client);
    if (!c) {
      c = new AbortController();
      // One listener per waiting message of the connection (a paused socket bounds how many).
      setMaxListeners(0, c.signal);
      closers.set(client, c);
    }
    return c.signal;
  };
  /** Each connection's number in this run (a resend comes on another connection than its first delivery). */
  const connectionIds = new WeakMap<Client, number>();
  let lastConnectionId = 0;
  const connectionId = (client: Client) => {
    let id = connectionIds.get(client);
    if (id === undefined) {
      id = ++lastConnectionId;
      connectionIds.set(client, id);
    }
    return id;
  };
  const acknowledged = (device: DeviceMeta, delivery: Delivery | undefined) => {
    if (!delivery || !deps.onAcknowledged) return;
    try {
      deps.onAcknowledged(device, delivery);
    } catch (err) {
      log.error({ err, device: device.id }, 'acknowledgement listener failed');
    }
  };
  /**
   * Connections not read while their messages wait for room. aedes 1.2 reads a socket again on every
   * 'readable' even while a publish of it is still waiting (lib/client.js nextBatch), so without this a full
   * disk budget held every device's whole stream in memory. Client.pause() makes aedes skip those reads; the
   * socket's buffer then fills and TCP pushes back on the device. They are resumed a few per turn, so a
   * budget that frees up does not release every held device in one turn of the event loop. aedes counts the
   * packets of a read still being handled (`_parsingBatch`) and skips that count while paused, so it is set to
   * one before resume() (whose own call takes it to zero and reads): every message of the connection has been
   * answered by then.
   */
  const pausedClients = new WeakSet<Client>();
  const toResume: Client[] = [];
  const resumeSome = () => {
    for (const c of toResume.splice(0, RESUME_PER_TURN)) {
      const paused = c as Client & { resume(): void; _parsingBatch: number };
      paused._parsingBatch = 1;
      paused.resume();
    }
    if (toResume.length) setImmediate(resumeSome);
  };
  const resumeReading = (client: Client) => {
    if (!pausedClients.delete(client)) return;
    toResume.push(client);
    if (toResume.length === 1) setImmediate(resumeSome);
  };

  // A group commit of the durable log releases the PUBACKs of many publishes at once, often several of one
  // connection: cork each connection until the next turn of the event loop so they leave in one write
  // (writev) instead of one system call each (the bench profile showed socket writes as the top cost).
  const corked = new Set<Writable>();
  const uncorkAll = () => {
    for (const conn of corked) conn.uncork();
    corked.clear();
  };
  const corkBriefly = (conn: Writable | undefined) => {
    if (!conn || corked.has(conn) || conn.destroyed) return;
    conn.cork();
    if (corked.size === 0) setImmediate(uncorkAll);
    corked.add(conn);
  };

  const settle = (client: Client, entry: Awaiting, err: Error | undefined) => {
    entry.settled = true;
    entry.err = err;
    const waiting = awaiting.get(client) as Awaiting[];
    if (waiting[0] !== entry) return;
    let n = 0;
    while (n < waiting.length && (waiting[n] as Awaiting).settled) n++;
    const ready = waiting.splice(0, n);
    if (waiting.length === 0) {
      awaiting.delete(client);
      resumeReading(client);
    }
    corkBriefly(client.conn);
    // After a refusal the connection closes, and nothing behind it is acknowledged, in this call or a later one:
    // the device sends it all again.
    let refused = refusals.get(client);
    for (const e of ready) {
      if (e.err && !refused) {
        refused = e.err;
        refusals.set(client, refused);
        // A connection that ended while its messages waited for room is no fault: they were let go on purpose.
        if (e.err.name === 'ConnectionClosedError') log.debug({ device: e.device.id }, e.err.message);
        else log.error({ err: e.err.message, device: e.device.id }, 'message not made durable: connection closed unacknowledged');
      }
      e.cb(refused ?? null);
      if (!refused) acknowledged(e.device, e.delivery);
    }
  };

  return {
    take(client, device, kind, packet, cb) {
      const delivery =
        packet.qos > 0 && packet.messageId !== undefined ? { packetId: packet.messageId, connection: connectionId(client) } : undefined;
      // While messages wait for room, each carries its connection's end, so a closed one lets them go.
      const closed = deps.slowDown?.() ? closedSignal(client) : undefined;
      let result: unknown;
      try {
        result = deps.onMessage(device, kind, packet.payload as Buffer, packet.qos, delivery, closed);
      } catch (err) {
        // A bug in a handler must never take the broker down or lose the connection's other messages.
        log.error({ err, device: device.id }, 'message handler failed');
      }
      const waiting = awaiting.get(client);
      const pending = result instanceof Promise;
      // Settled now and nothing earlier waiting: answered at once.
      if (!pending && !waiting) {
        cb(null);
        acknowledged(device, delivery);
        return;
      }
      const entry: Awaiting = { settled: !pending, err: undefined, cb, device, delivery };
      if (waiting) waiting.push(entry);
      else awaiting.set(client, [entry]);
      if (pending && !pausedClients.has(client) && deps.slowDown?.()) {
        pausedClients.add(client);
        (client as Client & { pause(): void }).pause();
      }
      if (pending) {
        (result as Promise<unknown>).then(
          () => settle(client, entry, undefined),
          (err: Error) => settle(client, entry, err),
        );
      }
    },
    abortWaiting(client) {
      closers.get(client)?.abort();
    },
    connectionClosed(client, device) {
      const connection = connectionIds.get(client);
      if (device && connection !== undefined && deps.onConnectionClosed) {
        // aedes sets _disconnected only when the client sent a DISCONNECT packet.
        const clean = (client as Client & { _disconnected?: boolean })._disconnected === true;
        try {
          deps.onConnectionClosed(device, connection, clean);
        } catch (err) {
          log.error({ err, device: device.id }, 'connection-closed listener failed');
        }
      }
    },
  };
}
