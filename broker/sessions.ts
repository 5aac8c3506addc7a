/**
 * The broker's view of connected devices: who is online (with the retained `devices/{id}/status` and the
 * registry's last-seen kept from connect and disconnect), which topics a device's current connection listens to
 * (commands are published only once it does: `subscribed`), and which QoS 1 publishes to a device its PUBACK
 * answers (`delivered`).
 */
import { EventEmitter } from 'node:events';
import type { Aedes, AedesPublishPacket, Client } from 'aedes';
import { TOPICS, type DeviceStatus } from '../core/contract.ts';
import type { DeviceMeta } from '../ingest/index.ts';
import type { Logger } from '../core/logger.ts';
import type { BrokerDeps, BrokerEvents } from './types.ts';

type Publish = (topic: string, payload: string | Buffer, o?: { qos?: 0 | 1; retain?: boolean }) => Promise<void>;

export interface DeviceSessions {
  readonly events: EventEmitter<BrokerEvents>;
  /** For aedes' authorizeForward: remembers a QoS 1 publish written to a device, until its PUBACK. */
  trackForward(client: Client, packet: AedesPublishPacket): void;
  /** Listens to aedes: connects and disconnects, subscriptions, PUBACKs of devices. */
  attach(aedes: Aedes, publish: Publish): void;
  /** The connection ended: its subscriptions are no longer the device's. */
  forgetSubscriptions(client: Client, device: DeviceMeta | undefined): void;
  isOnline(deviceId: string): boolean;
  isSubscribed(deviceId: string, topic: string): boolean;
  onlineCount(): number;
  /** The ids of the devices connected now. */
  onlineIds(): string[];
  disconnect(deviceId: string): boolean;
}

const MAX_TRACKED_INFLIGHT = 1000;

export function createDeviceSessions(
  deps: Pick<BrokerDeps, 'devices' | 'bus' | 'metrics'>,
  devices: WeakMap<Client, DeviceMeta>,
  log: Logger,
): DeviceSessions {
  const metrics = deps.metrics;
  const online = new Map<string, Client>();
  /**
   * QoS 1 publishes written to each device, oldest first, until its PUBACK: aedes 1.2 stores outgoing packets
   * only for persistent sessions, so its 'ack' event carries no packet for a clean session (every simulated
   * light). A client must send PUBACKs in the order it received the PUBLISHes [MQTT-4.6.0-2], and aedes writes
   * a client's packets in the order it forwards them (authorizeForward, then one setImmediate each): the oldest
   * entry is the one a PUBACK answers.
   */
  const inflight = new WeakMap<Client, { topic: string; payload: Buffer }[]>();
  // Subscriptions of devices, per current connection: commands are published only once this says the device
  // listens (a publish before the SUBSCRIBE is processed would reach nobody). Restored subscriptions of a
  // persistent session are announced on 'subscribe' before the CONNACK: `subscribed` waits for 'clientReady'.
  const events = new EventEmitter<BrokerEvents>();
  const subscriptions = new Map<string, { client: Client; topics: Set<string>; ready: boolean }>();
  const announce = (id: string, topic: string) => {
    try {
      events.emit('subscribed', id, topic);
    } catch (err) {
      log.error({ err, device: id }, 'subscribed listener failed');
    }
  };

  function attach(aedes: Aedes, publish: Publish): void {
    const setStatus = (device: DeviceMeta, state: DeviceStatus['state']) => {
      const at = new Date();
      const status: DeviceStatus = { state, at: at.toISOString() };
      publish(TOPICS.status(device.id), JSON.stringify(status), { qos: 1, retain: true }).catch((err: Error) =>
        log.warn({ err: err.message, device: device.id }, 'cannot publish status'),
      );
      deps.devices.touch(device.id, at).catch(() => undefined);
      deps.bus?.emit('status', { device: device.id, family: device.family, zone: device.zone, ...status });
    };

    aedes.on('client', (client) => {
      const device = devices.get(client);
      if (!device) return;
      online.set(device.id, client);
      metrics?.mqttConnections.set(online.size);
      log.debug({ device: device.id }, 'device online');
      setStatus(device, 'online');
    });
    aedes.on('clientDisconnect', (client) => {
      const device = devices.get(client);
      if (!device || online.get(device.id) !== client) return;
      online.delete(device.id);
      metrics?.mqttConnections.set(online.size);
      log.debug({ device: device.id }, 'device offline');
      if (!aedes.closed) setStatus(device, 'offline');
    });
    aedes.on('subscribe', (subs, client) => {
      const device = client && devices.get(client);
      if (!device) return;
      let entry = subscriptions.get(device.id);
      if (entry?.client !== client) {
        entry = { client, topics: new Set(), ready: (client as Client & { connackSent?: boolean }).connackSent === true };
        subscriptions.set(device.id, entry);
      }
      for (const sub of subs) {
        if ((sub.qos as number) === 128) continue; // refused by authorizeSubscribe
        entry.topics.add(sub.topic);
        if (entry.ready) announce(device.id, sub.topic);
      }
    });
    aedes.on('clientReady', (client) => {
      const device = devices.get(client);
      const entry = device && subscriptions.get(device.id);
      if (!device || !entry || entry.client !== client || entry.ready) return;
      entry.ready = true;
      for (const topic of entry.topics) announce(device.id, topic);
    });
    aedes.on('unsubscribe', (topics, client) => {
      const device = client && devices.get(client);
      const entry = device && subscriptions.get(device.id);
      if (entry?.client === client) for (const t of topics) entry.topics.delete(t);
    });
    // aedes 1.2 emits 'ack' on a client's PUBACK, with the stored outgoing packet for a persistent session and
    // undefined for a clean one: then the oldest publish in flight to that client is the one answered.
    aedes.on('ack', (packet, client) => {
      const device = client && devices.get(client);
      if (!device || (packet && packet.cmd !== 'publish')) return;
      const list = inflight.get(client);
      let acked: { topic: string; payload: Buffer } | undefined;
      if (packet) {
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        acked = { topic: packet.topic, payload };
        const i = list?.findIndex((x) => x.topic === packet.topic && x.payload.equals(payload)) ?? -1;
        if (i >= 0) list?.splice(i, 1);
      } else {
        acked = list?.shift();
      }
      if (!acked) return;
      try {
        events.emit('delivered', device.id, acked.topic, acked.payload);
      } catch (err) {
        log.error({ err, device: device.id }, 'delivered listener failed');
      }
    });
  }

  return {
    events,
    attach,
    trackForward(client, packet) {
      if (!devices.has(client)) return;
      // The QoS the client gets: the publish's, lowered to its subscription's (aedes does the same on write).
      const sub = (client as Client & { subscriptions?: Record<string, { qos?: number }> }).subscriptions?.[packet.topic];
      const qos = Math.min(packet.qos, sub?.qos ?? packet.qos);
      if (qos > 0) {
        let list = inflight.get(client);
        if (!list) {
          list = [];
          inflight.set(client, list);
        }
        list.push({ topic: packet.topic, payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload) });
        if (list.length > MAX_TRACKED_INFLIGHT) list.shift(); // a client that never acknowledges: forget the oldest
      }
    },
    forgetSubscriptions(client, device) {
      if (device && subscriptions.get(device.id)?.client === client) subscriptions.delete(device.id);
    },
    isOnline: (id) => online.has(id),
    isSubscribed: (id, topic) => {
      const entry = subscriptions.get(id);
      return !!entry?.ready && entry.topics.has(topic);
    },
    onlineCount: () => online.size,
    onlineIds: () => [...online.keys()],
    disconnect(id) {
      const c = online.get(id);
      c?.close();
      return !!c;
    },
  };
}
