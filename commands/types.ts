/**
 * Options, dependencies and requests of commands, in a file of their own so that the parts of the component
 * (targets.ts, delivery.ts, acks.ts, schedules.ts) and its wiring (commands.ts) share them.
 */
import type { EventEmitter } from 'node:events';
import type { LiveBus } from '../core/bus.ts';
import type { Logger } from '../core/logger.ts';
import type { AuditEntry, CityProfile, DeviceStore, StateDb } from '../registry/index.ts';
import type { CommandTarget } from './store.ts';

export interface CommandsOptions {
  /** SQLite file (dataDir/commands.db); ':memory:' for tests of the component alone. */
  file: string;
  /** Default 1 h. */
  defaultTtlMs?: number;
  /** Default 7 days. */
  maxTtlMs?: number;
  /** Default 1000. */
  expiryCheckMs?: number;
  /** Default 1000. */
  scheduleTickMs?: number;
  /** Finished commands kept, default 100 000. */
  historyLimit?: number;
  /** Cluster mode: how often a node asks for the schedules' lock (and the leader checks it still holds it), ms. Default 2000. */
  leaderRetryMs?: number;
}

/** What commands need from the broker (broker/broker.ts implements it). */
export interface CommandTransport {
  publish(topic: string, payload: string | Buffer, opts?: { qos?: 0 | 1; retain?: boolean }): Promise<void>;
  isSubscribed(deviceId: string, topic: string): boolean;
  readonly events: EventEmitter<{
    subscribed: [deviceId: string, topic: string];
    delivered: [deviceId: string, topic: string, payload: Buffer];
  }>;
}

export interface CommandsDeps {
  devices: Pick<DeviceStore, 'get' | 'list'>;
  /** Zones (a zone target takes its sub-zones too) and the time zone of schedules. */
  profile: Pick<CityProfile, 'zones' | 'timezone'>;
  transport: CommandTransport;
  bus?: LiveBus;
  /**
   * Cluster mode: the nodes' shared PostgreSQL (state.postgresUrl). Commands and schedules are kept there instead
   * of `file`, and schedules run on the one node holding their lock.
   */
  state?: StateDb;
  /** The operator audit log (commands created by schedules are recorded as `(system)`). */
  audit?: (entry: Omit<AuditEntry, 'at'>) => Promise<void>;
  logger?: Logger;
}

export interface CommandRequest {
  target: CommandTarget;
  action: Record<string, unknown>;
  /** Default commands.defaultTtlMs. */
  ttlMs?: number;
}

export interface ScheduleRequest {
  name: string;
  target: CommandTarget;
  from: string;
  to: string;
  action: Record<string, unknown>;
  endAction?: Record<string, unknown>;
  ttlMs?: number;
  /** Default true. */
  enabled?: boolean;
}
