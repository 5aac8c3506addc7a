/**
 * Getting commands to devices, at least once: a command is published (QoS 1 on devices/{id}/commands) when it
 * is created if the device's subscription to its commands topic is in place, else it waits in the store; every
 * pending command of a device is (re)sent, oldest first, each time that subscription comes into place; the
 * device's PUBACK marks it delivered.
 */
import { randomUUID } from 'node:crypto';
import { TOPICS } from '../core/contract.ts';
import type { CommandRecord } from '../core/bus.ts';
import type { Logger } from '../core/logger.ts';
import type { Device } from '../registry/index.ts';
import type { CommandStore, CommandTarget } from './store.ts';
import type { CommandTransport } from './types.ts';

export interface CommandDelivery {
  /** Stores one command per device (one batch, with the target it was asked for), emits them and sends those whose device listens. */
  insertAndSend(
    devices: Device[],
    action: Record<string, unknown>,
    ttl: number,
    actor: string,
    batch: string,
    target: CommandTarget,
  ): Promise<CommandRecord[]>;
  /** Sends every pending command of a device whose subscription is in place (on this node), oldest first. */
  dispatch(device: string): Promise<void>;
  /** The transport's `subscribed` event: a device now listens to a topic. */
  onSubscribed(device: string, topic: string): void;
  /** The transport's `delivered` event: a device PUBACKed a publish. */
  onDelivered(device: string, topic: string, payload: Buffer): void;
}

export function createCommandDelivery(
  store: CommandStore,
  transport: CommandTransport,
  emit: (c: CommandRecord) => void,
  log: Logger,
): CommandDelivery {
  function send(c: CommandRecord): void {
    const payload = JSON.stringify({ id: c.id, action: c.action, issuedAt: c.createdAt, expiresAt: c.expiresAt });
    transport.publish(TOPICS.commands(c.device), payload, { qos: 1 }).catch((err: Error) => {
      // Stays pending: sent again when the device subscribes next.
      log.warn({ err: err.message, command: c.id, device: c.device }, 'command not published');
    });
  }

  async function dispatch(device: string): Promise<void> {
    if (!transport.isSubscribed(device, TOPICS.commands(device))) return;
    try {
      for (const c of await store.pendingOf(device, Date.now())) send(c);
    } catch (err) {
      // Stay pending: sent at the device's next subscription (or the next notice of the cluster).
      log.warn({ err: (err as Error).message, device }, 'pending commands not read');
    }
  }

  async function insertAndSend(
    devices: Device[],
    action: Record<string, unknown>,
    ttl: number,
    actor: string,
    batch: string,
    target: CommandTarget,
  ) {
    const now = Date.now();
    const created = await store.insert(
      devices.map((d) => ({
        id: randomUUID(),
        device: d.id,
        zone: d.zone,
        family: d.family,
        action,
        createdAt: new Date(now).toISOString(),
        createdBy: actor,
        expiresAt: new Date(now + ttl).toISOString(),
        batch,
      })),
      target,
    );
    for (const c of created) emit(c);
    // After the insert: a subscription coming in later finds them in the store. In a cluster the node holding the
    // device (when another) hears of them once they are committed (cluster.ts).
    for (const c of created) if (transport.isSubscribed(c.device, TOPICS.commands(c.device))) send(c);
    return created;
  }

  const onSubscribed = (device: string, topic: string) => {
    if (topic === TOPICS.commands(device)) void dispatch(device);
  };
  const onDelivered = (device: string, topic: string, payload: Buffer) => {
    if (topic !== TOPICS.commands(device)) return;
    let id: unknown;
    try {
      id = (JSON.parse(payload.toString('utf8')) as { id?: unknown }).id;
    } catch {
      return;
    }
    if (typeof id !== 'string') return;
    store.markDelivered(id, device, Date.now()).then(
      (c) => c && emit(c),
      (err: Error) => log.warn({ err: err.message, command: id, device }, 'delivery not recorded'),
    );
  };

  return { insertAndSend, dispatch, onSubscribed, onDelivered };
}
