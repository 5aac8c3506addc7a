/**
 * The Redis client of socket.io across nodes (api.redisUrl), shaped so that Redis being unreachable never stalls
 * this node's own sockets, ends the process or holds its stop open. @socket.io/redis-streams-adapter 0.3.1 with
 * node-redis 5, read in their sources:
 * - the adapter delivers a broadcast to this node's sockets only after its XADD to Redis answered
 *   (socket.io-adapter's ClusterAdapter.broadcast awaits the publish). With node-redis' offline queue a command
 *   waits for the connection to come back, so while Redis is down no local socket would get anything and every
 *   event would pile up in memory. The client given to the adapter therefore has no offline queue: a command
 *   while disconnected fails at once, the adapter logs it (debug) and delivers locally.
 * - the adapter's own duplicates (the stream reader, the pub/sub subscriber) must keep the offline queue: the
 *   reader loops on XREAD without a pause, and a command failing at once would spin it.
 * - it fires some commands without handling their promise (PUBLISH of server-side events, SUBSCRIBE, CONNECT of
 *   a duplicate) and disconnects its duplicates in a way that throws once they are closed; node-redis rejects
 *   every pending command when a client closes, and an unhandled rejection ends a Node process. The same pattern
 *   is reported for the sibling emitter: https://github.com/socketio/socket.io-redis-emitter/issues/139. So
 *   those promises get a handler here (callers that await them still see the rejection) and `disconnect` of a
 *   closed duplicate does nothing.
 * `close()` ends the duplicates too: while Redis is down the reader's XREAD never returns, so the adapter's own
 * close would leave it (and the process) running.
 */
import { createClient } from 'redis';

type Client = ReturnType<typeof createClient>;
const FIRED_AND_FORGOTTEN = ['publish', 'sPublish', 'subscribe', 'sSubscribe', 'connect'] as const;

export interface AdapterRedis {
  /** Hand this to createAdapter(). */
  readonly client: Client;
  /** Resolves true once connected, false if it never was before close(). */
  readonly ready: Promise<boolean>;
  /** Ends the client and every duplicate the adapter made. Call after socket.io is closed. Idempotent. */
  close(): void;
}

export function createAdapterRedis(url: string, onError: (err: Error) => void): AdapterRedis {
  const client = createClient({ url, disableOfflineQueue: true });
  client.on('error', onError);
  const duplicates = new Set<Client>();
  const guard = (c: Client) => {
    const o = c as unknown as Record<string, unknown>;
    for (const name of FIRED_AND_FORGOTTEN) {
      const f = o[name];
      if (typeof f !== 'function') continue;
      o[name] = (...args: unknown[]) => {
        const p = (f as (...a: unknown[]) => unknown).apply(c, args);
        if (p instanceof Promise) p.catch(() => undefined);
        return p;
      };
    }
  };
  guard(client);
  const duplicate = client.duplicate.bind(client);
  (client as { duplicate: unknown }).duplicate = (overrides?: Parameters<Client['duplicate']>[0]) => {
    const d = duplicate({ ...overrides, disableOfflineQueue: false }) as Client;
    guard(d);
    const disconnect = d.disconnect.bind(d);
    (d as { disconnect: unknown }).disconnect = () => (d.isOpen ? disconnect() : Promise.resolve());
    duplicates.add(d);
    return d;
  };
  const ready = client.connect().then(
    () => true,
    () => false,
  );
  let closed = false;
  return {
    client,
    ready,
    close() {
      if (closed) return;
      closed = true;
      for (const c of [...duplicates, client]) if (c.isOpen) c.destroy();
    },
  };
}
