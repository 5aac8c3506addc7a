/**
 * The platform's state stores by `state.*`: SQLite files in dataDir (one node, the default), or the PostgreSQL
 * database the nodes of a cluster share (`state.postgresUrl`), migrated before use. Used by the platform and
 * by the command line, so that both write where the running platform reads.
 */
import path from 'node:path';
import type { Logger } from '../core/logger.ts';
import type { DeadLetterStore } from '../ingest/index.ts';
import { DEAD_LETTER_COMPONENT, DEAD_LETTER_MIGRATIONS, PgDeadLetterStore } from '../ingest/pg-dead-letters.ts';
import {
  type DeviceStore,
  type OperatorStore,
  parseChange,
  PgDeviceStore,
  PgOperatorStore,
  REGISTRY_COMPONENT,
  REGISTRY_MIGRATIONS,
  SqliteDeviceStore,
  SqliteOperatorStore,
  STATE_CHANNEL,
  StateDb,
} from '../registry/index.ts';
import { ALARM_COMPONENT, ALARM_MIGRATIONS, PgAlarmStore } from '../alarms/index.ts';
import type { Broker } from '../broker/index.ts';
import type { DashboardApi } from '../dashboard-api/index.ts';
import type { Config } from './config.ts';

export interface StateStores {
  devices: DeviceStore;
  operators: OperatorStore;
  /** Cluster mode only; one node's ingest keeps its own SQLite file (ingest.deadLetterLimit, dataDir). */
  deadLetters: DeadLetterStore | undefined;
  /** Cluster mode only: the shared database's connection pool. */
  db: StateDb | undefined;
  /** Cluster mode only: alarms shared by every node (else the engine keeps dataDir/alarms.db). */
  alarms: PgAlarmStore | undefined;
  /**
   * Cluster mode: acts on the changes other nodes make (registry/pg-changes.ts) from now on; nothing on one
   * node, where every change is made (and acted on) here.
   */
  follow(on: {
    deviceCredentials(id: string): void;
    sessionsEnded(e: { sessionId: string } | { username: string }): void;
    /** Following again after a lost connection: changes made meanwhile were not heard, check what is open. */
    resumed(): void;
  }): Promise<void>;
  /** Closes the stores (dead letters too, unless ingest has), then the pool. */
  close(): Promise<void>;
}

export async function openStateStores(
  config: Pick<Readonly<Config>, 'state' | 'dataDir' | 'api' | 'ingest'> & { alarms?: { historyLimit: number } },
  opts: { zoneExists?: (zone: string) => boolean; logger?: Logger } = {},
): Promise<StateStores> {
  const dataDir = path.resolve(config.dataDir);
  const { postgresUrl, queryTimeoutMs, poolSize } = config.state;
  if (!postgresUrl) {
    const devices = new SqliteDeviceStore(path.join(dataDir, 'registry.db'), opts.zoneExists);
    const operators = new SqliteOperatorStore(path.join(dataDir, 'operators.db'), config.api.auditLimit);
    return {
      devices,
      operators,
      deadLetters: undefined,
      db: undefined,
      alarms: undefined,
      follow: async () => undefined,
      async close() {
        await devices.close();
        await operators.close();
      },
    };
  }
  const db = new StateDb({ url: postgresUrl, queryTimeoutMs, poolSize, logger: opts.logger });
  try {
    await db.migrate(REGISTRY_COMPONENT, REGISTRY_MIGRATIONS);
    await db.migrate(DEAD_LETTER_COMPONENT, DEAD_LETTER_MIGRATIONS);
    await db.migrate(ALARM_COMPONENT, ALARM_MIGRATIONS);
    const alarms = new PgAlarmStore(db, config.alarms?.historyLimit, opts.logger);
    const deadLetters = new PgDeadLetterStore(db, config.ingest.deadLetterLimit, opts.logger);
    await deadLetters.start();
    const devices = new PgDeviceStore(db, opts.zoneExists, opts.logger);
    const operators = new PgOperatorStore(db, config.api.auditLimit);
    return {
      devices,
      operators,
      deadLetters,
      db,
      alarms,
      follow: (on) =>
        db.listen(
          STATE_CHANNEL,
          (payload) => {
            const c = parseChange(payload);
            if (c?.kind === 'device-credentials') on.deviceCredentials(c.id);
            else if (c?.kind === 'sessions-ended')
              on.sessionsEnded('sessionId' in c ? { sessionId: c.sessionId } : { username: c.username });
          },
          on.resumed,
        ),
      async close() {
        await deadLetters.close();
        await devices.close();
        await operators.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}

/**
 * Cluster mode: a device revoked or given a new token through another node is disconnected here too, and
 * sessions ended there close their sockets here; after a gap in that news (the listening connection was lost),
 * the open session sockets and the revoked devices still connected here are checked.
 */
export function followOtherNodes(
  state: StateStores,
  here: { broker: Pick<Broker, 'disconnect' | 'isOnline'>; api: Pick<DashboardApi, 'endSessions' | 'recheckSessions'>; log: Logger },
): Promise<void> {
  const { broker, api, log } = here;
  return state.follow({
    deviceCredentials: (id) => broker.disconnect(id),
    sessionsEnded: (e) => api.endSessions(e),
    resumed: () => {
      api.recheckSessions().catch((err: Error) => log.warn({ err: err.message }, 'live sessions not checked again'));
      state.devices.list({ includeRevoked: true }).then(
        (all) => {
          for (const d of all) if (d.revokedAt && broker.isOnline(d.id)) broker.disconnect(d.id);
        },
        (err: Error) => log.warn({ err: err.message }, 'connected devices not checked again'),
      );
    },
  });
}
