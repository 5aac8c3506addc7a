/**
 * Takeover across broker nodes [MQTT-3.1.4-2]: a device that connects to a second node closes its connection
 * on the first, as aedes does by itself within one node. Through Redis (broker.redisUrl): each login takes a
 * number from one counter (INCR: Redis orders every login of the cluster) and announces `device, number, node`
 * on a pub/sub channel; a node holding an older connection of that device closes it. The newer connection always
 * wins, whatever order the announcements arrive in, and two logins at once on two nodes leave exactly one.
 *
 * Why not aedes' own cluster mode (mqemitter-redis + aedes-persistence-redis, where aedes announces new clients
 * on `$SYS/+/new/clients`): it takes over by routing every publish and keeping every session through Redis,
 * while the platform's device traffic (telemetry and acks, handled in authorizePublish) never needs to cross
 * nodes; it would also need an npm override to install beside aedes 1.2. This needs one counter and one channel.
 *
 * Redis unreachable: logged; the node goes on alone (takeover within the node still works) and the client
 * reconnects by itself.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from 'aedes';
import { createClient } from 'redis';
import type { Logger } from '../core/logger.ts';
import type { DeviceMeta } from '../ingest/index.ts';
import { type ClusterPresence, startClusterPresence } from './cluster-presence.ts';

/** The pub/sub channel of logins and the counter that orders them. */
export const TAKEOVER_CHANNEL = 'citypulse:broker:logins';
export const LOGIN_COUNTER = 'citypulse:broker:login-seq';

export interface ClusterTakeover {
  /** This node's id in the announcements. */
  readonly node: string;
  /** A device's connection was accepted (after its CONNACK) on this node. */
  connected(device: DeviceMeta, client: Client): void;
  /** That connection ended. */
  disconnected(deviceId: string, client: Client): void;
  /** The devices connected to any node of the cluster (cluster-presence.ts); throws when Redis is unreachable. */
  onlineIds(): Promise<string[]>;
  stop(): Promise<void>;
}

interface Local {
  client: Client;
  /** Its number once INCR answered. */
  seq?: number;
  /** The highest number announced for the device by other nodes while this one waited for its own. */
  newerSeen?: number;
}

/** Connects (bounded by `connectTimeoutMs`; on failure the node starts alone and keeps trying). */
export async function startClusterTakeover(
  opts: { redisUrl: string; connectTimeoutMs?: number; presenceTtlMs?: number },
  deps: {
    logger: Logger;
    onTakenOver?: (deviceId: string) => void;
    /** Devices of a node that died without a word, reported offline by this node (once in the cluster). */
    onGone?: (entries: { device: string; family: string; zone: string }[]) => void;
  },
): Promise<ClusterTakeover> {
  const log = deps.logger;
  const node = randomBytes(6).toString('hex');
  const local = new Map<string, Local>();
  let lastError = '';
  let stopped = false;
  const onError = (err: Error) => {
    if (stopped) return;
    // node-redis reports every failed reconnect: one line per kind of failure, not one per attempt.
    if (err.message === lastError) return;
    lastError = err.message;
    log.warn({ err: err.message }, 'broker cluster: Redis unreachable; devices are taken over within this node only until it is back');
  };
  // No offline queue: while Redis is unreachable a login's INCR fails at once (logged) instead of running when it
  // is back, where its late number could take over a newer connection on another node.
  const pub = createClient({ url: opts.redisUrl, disableOfflineQueue: true });
  const sub = pub.duplicate();
  pub.on('error', onError);
  sub.on('error', onError);
  pub.on('ready', () => (lastError = ''));

  let presence: ClusterPresence | undefined;
  const takeOver = (deviceId: string, l: Local) => {
    local.delete(deviceId);
    // Its presence entry is the newer connection's already (or will be: a lower number never overwrites it).
    log.info({ device: deviceId }, 'device connected to another node: its connection here is closed (takeover)');
    deps.onTakenOver?.(deviceId);
    l.client.close();
  };
  const onAnnouncement = (message: string) => {
    let m: { device?: unknown; seq?: unknown; node?: unknown };
    try {
      m = JSON.parse(message);
    } catch {
      return;
    }
    if (m.node === node || typeof m.device !== 'string' || typeof m.seq !== 'number') return;
    const l = local.get(m.device);
    if (!l) return;
    if (l.seq === undefined) l.newerSeen = Math.max(l.newerSeen ?? 0, m.seq);
    else if (l.seq < m.seq) takeOver(m.device, l);
  };

  const ready = Promise.all([pub.connect(), sub.connect().then(() => sub.subscribe(TAKEOVER_CHANNEL, onAnnouncement))]);
  ready.catch((err: Error) => onError(err));
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), opts.connectTimeoutMs ?? 2000).unref());
  if (
    (await Promise.race([
      ready.then(
        () => 'ok' as const,
        () => 'failed' as const,
      ),
      timeout,
    ])) !== 'ok'
  ) {
    log.warn({ redisUrl: opts.redisUrl }, 'broker cluster: Redis not reachable at start; going on alone meanwhile');
  } else {
    log.info({ node }, 'broker cluster: takeover across nodes through Redis');
  }
  presence = startClusterPresence({ node, ttlMs: opts.presenceTtlMs ?? 5000 }, { redis: pub, logger: log, onGone: deps.onGone });

  return {
    node,
    connected(device, client) {
      if (stopped) return;
      const deviceId = device.id;
      const l: Local = { client };
      local.set(deviceId, l);
      pub
        .incr(LOGIN_COUNTER)
        .then(async (seq) => {
          if (local.get(deviceId) !== l) return; // closed or replaced meanwhile
          l.seq = seq;
          if ((l.newerSeen ?? 0) > seq) return takeOver(deviceId, l);
          presence?.set(device, seq);
          await pub.publish(TAKEOVER_CHANNEL, JSON.stringify({ device: deviceId, seq, node }));
        })
        .catch((err: Error) => onError(err));
    },
    disconnected(deviceId, client) {
      const l = local.get(deviceId);
      if (l?.client !== client) return;
      local.delete(deviceId);
      if (l.seq !== undefined) presence?.clear(deviceId, l.seq);
    },
    onlineIds: () => (presence as ClusterPresence).onlineIds(),
    async stop() {
      if (stopped) return;
      await presence?.stop();
      stopped = true;
      local.clear();
      // destroy, not close: close waits for queued commands, which never end while Redis is unreachable.
      for (const c of [sub, pub]) if (c.isOpen) c.destroy();
    },
  };
}
