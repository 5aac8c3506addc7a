/**
 * Which node holds each device's MQTT connection, across the nodes of a cluster (broker.redisUrl): what
 * `online` in /api/v1/devices and the overview's counts read, whatever node answers.
 *
 * In Redis, beside the takeover's login counter (cluster-takeover.ts), whose numbers order the entries:
 * - `citypulse:presence`: a hash, device id → `{ node, seq, family, zone }` of the connection it holds now. A
 *   login sets it once its number is known, unless a newer login's entry is there already (a late write never
 *   hides a newer connection); a disconnect removes it only if it is still that connection's.
 * - `citypulse:presence:node:<node>`: each node's heartbeat, a key with a time to live of `ttlMs`, renewed every
 *   `ttlMs / 3`. An entry whose node's heartbeat is gone is not online: a node that dies without a word (killed,
 *   cut off) has its devices shown offline within about `ttlMs` by every reader.
 * - Every node, at each heartbeat, removes the entries of nodes whose heartbeat is gone (each removal is a
 *   conditional delete: one node wins each entry) and emits their devices' `offline` status (`onGone`), so
 *   screens and alarms hear of it once, from one node.
 * A node that finds its own heartbeat gone (Redis restarted, or the node's event loop stalled beyond `ttlMs`)
 * writes its entries again. Each small script runs atomically in Redis (EVAL).
 *
 * Why Redis and not a PostgreSQL table: presence changes at every connect and disconnect (a reconnect storm is
 * thousands a second) and is worth nothing after a restart; Redis takes that in memory, with the expiring
 * heartbeat keys as node leases, and the nodes already share it for takeover. When Redis is unreachable a node
 * answers from its own connections (and logs it once).
 */
import type { createClient } from 'redis';
import type { Logger } from '../core/logger.ts';

export const PRESENCE_KEY = 'citypulse:presence';
export const PRESENCE_NODE_PREFIX = 'citypulse:presence:node:';

/** An entry's value. */
export interface PresenceEntry {
  node: string;
  seq: number;
  family: string;
  zone: string;
}

/** Sets the entry unless a newer login's entry is there. KEYS: hash; ARGV: device, value, seq. */
const SET_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, e = pcall(cjson.decode, cur)
  if ok and type(e) == 'table' and tonumber(e.seq) and tonumber(e.seq) > tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`;
/** Removes the entry if it is still `value`. KEYS: hash; ARGV: device, value. */
const DELETE_SCRIPT = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`;

type Redis = ReturnType<typeof createClient>;

export interface ClusterPresence {
  /** A connection of this node got its login number: it holds the device now (unless a newer one elsewhere does). */
  set(device: { id: string; family: string; zone: string }, seq: number): void;
  /** That connection ended. */
  clear(deviceId: string, seq: number): void;
  /** The devices online anywhere in the cluster (entries of nodes with a heartbeat); throws when Redis is unreachable. */
  onlineIds(): Promise<string[]>;
  /** Stops the heartbeat and removes this node's entries and heartbeat (a clean stop). */
  stop(): Promise<void>;
}

export function startClusterPresence(
  opts: { node: string; ttlMs: number },
  deps: {
    redis: Redis;
    logger: Logger;
    /** Devices of nodes found dead, taken by this node to report them offline (once in the cluster). */
    onGone?: (entries: { device: string; family: string; zone: string }[]) => void;
  },
): ClusterPresence {
  const { node, ttlMs } = opts;
  const { redis, logger: log } = deps;
  const nodeKey = PRESENCE_NODE_PREFIX + node;
  /** This node's entries: device id → the value written. */
  const mine = new Map<string, { value: string; seq: number }>();
  let stopped = false;
  let lastError = '';
  const failed = (err: Error) => {
    if (stopped || err.message === lastError) return;
    lastError = err.message;
    log.warn(
      { err: err.message },
      'broker cluster: presence not written to Redis; other nodes may show devices of this node offline until it is back',
    );
  };

  const write = (id: string, value: string, seq: number) =>
    redis.eval(SET_SCRIPT, { keys: [PRESENCE_KEY], arguments: [id, value, String(seq)] }).catch((err: Error) => failed(err));

  async function heartbeat(): Promise<void> {
    try {
      // GET: the previous value; none means this node's heartbeat had lapsed and others may have removed its entries.
      const before = await redis.set(nodeKey, '1', { expiration: { type: 'PX', value: ttlMs }, GET: true });
      if (before === null && mine.size > 0) {
        log.info({ devices: mine.size }, 'broker cluster: heartbeat had lapsed; presence of this node written again');
        await Promise.all([...mine].map(([id, e]) => write(id, e.value, e.seq)));
      }
      lastError = '';
      await reap();
    } catch (err) {
      failed(err as Error);
    }
  }

  /** Removes the entries of nodes without a heartbeat and reports their devices offline. */
  async function reap(): Promise<void> {
    const all = await redis.hGetAll(PRESENCE_KEY);
    const nodes = new Map<string, [string, string, PresenceEntry][]>();
    for (const [device, value] of Object.entries(all)) {
      const e = parseEntry(value);
      if (!e || e.node === node) continue;
      const list = nodes.get(e.node) ?? [];
      nodes.set(e.node, list);
      list.push([device, value, e]);
    }
    if (nodes.size === 0) return;
    const names = [...nodes.keys()];
    const alive = await redis.mGet(names.map((n) => PRESENCE_NODE_PREFIX + n));
    const gone: { device: string; family: string; zone: string }[] = [];
    for (const [i, n] of names.entries()) {
      if (alive[i] !== null) continue;
      for (const [device, value, e] of nodes.get(n) ?? []) {
        if ((await redis.eval(DELETE_SCRIPT, { keys: [PRESENCE_KEY], arguments: [device, value] })) === 1) {
          gone.push({ device, family: e.family, zone: e.zone });
        }
      }
    }
    if (gone.length) {
      log.warn({ devices: gone.length }, 'broker cluster: devices of a node that stopped answering are offline');
      deps.onGone?.(gone);
    }
  }

  void heartbeat();
  const timer = setInterval(() => void heartbeat(), Math.max(50, Math.floor(ttlMs / 3)));
  timer.unref();

  return {
    set(device, seq) {
      if (stopped) return;
      const value = JSON.stringify({ node, seq, family: device.family, zone: device.zone } satisfies PresenceEntry);
      mine.set(device.id, { value, seq });
      void write(device.id, value, seq);
    },
    clear(deviceId, seq) {
      const e = mine.get(deviceId);
      if (!e || e.seq !== seq) return;
      mine.delete(deviceId);
      if (stopped) return;
      redis.eval(DELETE_SCRIPT, { keys: [PRESENCE_KEY], arguments: [deviceId, e.value] }).catch((err: Error) => failed(err));
    },
    async onlineIds() {
      const all = await redis.hGetAll(PRESENCE_KEY);
      const entries = Object.entries(all).map(([device, value]) => [device, parseEntry(value)] as const);
      const names = [...new Set(entries.flatMap(([, e]) => (e ? [e.node] : [])))];
      if (names.length === 0) return [];
      const alive = await redis.mGet(names.map((n) => PRESENCE_NODE_PREFIX + n));
      const live = new Set(names.filter((_, i) => alive[i] !== null));
      return entries.flatMap(([device, e]) => (e && live.has(e.node) ? [device] : []));
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      // A clean stop says so at once: its entries and heartbeat go (bounded: Redis may be away).
      const entries = [...mine];
      mine.clear();
      const done = Promise.all([
        ...entries.map(([id, e]) => redis.eval(DELETE_SCRIPT, { keys: [PRESENCE_KEY], arguments: [id, e.value] })),
        redis.del(nodeKey),
      ]).catch(() => undefined);
      await Promise.race([done, new Promise((r) => setTimeout(r, 1000).unref())]);
    },
  };
}

function parseEntry(value: string): PresenceEntry | undefined {
  try {
    const e = JSON.parse(value) as Partial<PresenceEntry>;
    if (typeof e.node === 'string' && typeof e.seq === 'number') {
      return { node: e.node, seq: e.seq, family: String(e.family ?? ''), zone: String(e.zone ?? '') };
    }
  } catch {
    /* not an entry */
  }
  return undefined;
}
