/**
 * Commands across the nodes of a cluster: a command created on one node is sent by the node holding its
 * device's MQTT connection. The store sends a NOTIFY with the batch when it commits new commands
 * (pg-store.ts); every node LISTENs, reads the batch's devices still pending and sends those whose subscription
 * is in place here (the others are not connected here, and their nodes do the same). The device's PUBACK and
 * answer then arrive at that node, which records them in the shared store and emits them on its bus, so every
 * node's API reads the new state and socket.io's Redis adapter takes the event to every node's screens.
 *
 * Why PostgreSQL LISTEN/NOTIFY and not Redis pub/sub: the commands are rows in PostgreSQL, and a NOTIFY sent in
 * the transaction that inserts them is delivered only once they are committed, never before (a node reading
 * the batch finds it) and never for a rolled-back insert; it needs no second system to be up for a command to
 * go out, and no lookup of where the device is (every node asks itself, in memory). What a notification costs:
 * one query per node per batch. A node whose listening connection was lost hears nothing meanwhile: once it
 * listens again it sends every pending command of its devices (as at start), and a device that connects reads
 * its pending commands anyway, so a command is late at worst, not lost.
 */
import type { Logger } from '../core/logger.ts';
import type { StateDb } from '../registry/index.ts';
import { COMMANDS_CHANNEL, parsePendingNotice } from './pg-store.ts';
import type { CommandStore } from './store.ts';

export function followPendingCommands(
  db: StateDb,
  here: {
    node: string;
    store: CommandStore;
    /** Sends a device's pending commands if it listens on this node. */
    dispatch(device: string): Promise<void>;
    /** Listening again after a lost connection. */
    resumed(): void;
    logger: Logger;
  },
): Promise<void> {
  const { node, store, dispatch, logger: log } = here;
  return db.listen(
    COMMANDS_CHANNEL,
    (payload) => {
      const n = parsePendingNotice(payload);
      if (!n || n.node === node) return; // this node sent its own when it created them
      const devices = n.devices ? Promise.resolve(n.devices) : store.devicesWithPending(Date.now(), n.batch ?? undefined);
      devices.then(
        async (list) => {
          for (const d of list) await dispatch(d);
        },
        (err: Error) => log.warn({ err: err.message, batch: n.batch }, 'pending commands of another node not read'),
      );
    },
    here.resumed,
  );
}
