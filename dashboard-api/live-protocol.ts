/**
 * The live socket's contract [C-SOCKET]: the subscription a client sends and its schema, the ack with its
 * snapshot, the events each side emits, what the server keeps per socket, the rooms subscriptions map to, and
 * the latest values per device that snapshots are taken from. live.ts serves it; the dashboard imports its types.
 */
import type { Socket } from 'socket.io';
import { FAMILIES, type EnrichedReading, type Family } from '../ingest/index.ts';
import type { AlarmRecord, AqiEvent, CommandRecord, IndicatorEvent, RejectionEvent, StatusEvent } from '../core/bus.ts';
import type { Principal } from './auth.ts';
import type { LiveBatchFrame } from './batch-frame.ts';

export const SUBSCRIPTION_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    device: { type: 'string', maxLength: 64 },
    zone: { type: 'string', maxLength: 64 },
    family: { type: 'string', enum: FAMILIES },
  },
  maxProperties: 1,
} as const;

export interface Subscription {
  device?: string;
  zone?: string;
  family?: Family;
}

/** What a `subscribe` ack carries. */
export interface SubscribeAck {
  ok: boolean;
  /** With ok false: CP_API_LIVE_UNBATCHED_BUSY when refused for load (a malformed subscription has none). */
  code?: string;
  error?: string;
  room?: string;
  snapshot?: { readings: EnrichedReading[]; statuses: StatusEvent[] };
}

/** Socket events the server emits [C-SOCKET]. */
export interface ServerToClient {
  reading: (r: EnrichedReading) => void;
  status: (s: StatusEvent) => void;
  rejected: (r: RejectionEvent) => void;
  /** An air-quality index (station or zone), to all, zone, device (station) and family:airQuality rooms. */
  aqi: (a: AqiEvent) => void;
  /** Derived indicators of a device, a zone or the city. */
  indicator: (i: IndicatorEvent) => void;
  /**
   * Batched sockets: for one of its subscriptions, the readings, the device indicators, the device status
   * changes and the rejections of the last BATCH_MS, packed (`unpackBatch` gives them as objects, oldest first;
   * a batched socket gets no `reading`, `status` or `rejected` events, and zone and city indicators come one by
   * one as `indicator`).
   */
  batch: (b: LiveBatchFrame) => void;
  /** An alarm raised or changed: to every connected socket (every screen announces new alarms). */
  alarm: (a: AlarmRecord) => void;
  /** A command created or changed state: to all, its device's and its zone's rooms. */
  command: (c: CommandRecord) => void;
  /** Sent before the server shuts down, or disconnects this socket for load (the frame budget, live-budget.ts). */
  offline: (info: { reason: string }) => void;
}
export interface ClientToServer {
  subscribe: (sub: Subscription, ack: (a: SubscribeAck) => void) => void;
  unsubscribe: (sub: Subscription, ack?: (a: { ok: boolean }) => void) => void;
}

/** Between API nodes (api.redisUrl): each node's watched rooms, so that others send only what someone watches. */
export interface InterServer {
  [ROOMS_EVENT]: (node: string, rooms: string[]) => void;
}
export const ROOMS_EVENT = 'citypulse:rooms';
/** A node announces its watched rooms at least this often, ms; another's are forgotten 3 times as long after. */
export const ROOMS_HEARTBEAT_MS = 2000;
/** A change of this node's watched rooms is announced this long after it at most (changes in between go together), ms. */
export const ROOMS_ANNOUNCE_MS = 20;

/** Per socket: who connected (set at the handshake), and whether it asked for batched events. */
export interface SocketData {
  principal: Principal;
  batch?: boolean;
}

/** Batched sockets get readings and device indicators at most this often, ms (the latency it adds at most). */
export const BATCH_MS = 20;

/** Latest reading and status per device, kept from the bus (the snapshot source). */
export class LatestValues {
  readonly readings = new Map<string, EnrichedReading>();
  readonly statuses = new Map<string, StatusEvent>();
  matching(sub: Subscription): { readings: EnrichedReading[]; statuses: StatusEvent[] } {
    const match = (x: { device: string; zone: string; family: string }) =>
      (!sub.device || x.device === sub.device) && (!sub.zone || x.zone === sub.zone) && (!sub.family || x.family === sub.family);
    if (sub.device) {
      const r = this.readings.get(sub.device);
      const s = this.statuses.get(sub.device);
      return { readings: r ? [r] : [], statuses: s ? [s] : [] };
    }
    return { readings: [...this.readings.values()].filter(match), statuses: [...this.statuses.values()].filter(match) };
  }
}

/** The room of a subscription (plain sockets; batched ones join its `batch:` counterpart). */
export const roomOf = (s: Subscription) =>
  s.device ? `device:${s.device}` : s.zone ? `zone:${s.zone}` : s.family ? `family:${s.family}` : 'all';
/** The rooms a device's event goes to. */
export const roomsFor = (x: { device: string; zone: string; family: string }) => [
  'all',
  `device:${x.device}`,
  `zone:${x.zone}`,
  `family:${x.family}`,
];

/** A connected live socket, typed by the contract. */
export type LiveSocket = Socket<ClientToServer, ServerToClient, InterServer, SocketData>;
