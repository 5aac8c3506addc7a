/**
 * The in-process live bus: ingest and the broker emit facts, the dashboard API streams them to sockets.
 * Typed with EventEmitter<EventMap>; listeners are removed by their owners on stop.
 */
import { EventEmitter } from 'node:events';
import type { EnrichedReading, DeviceStatus } from '../ingest/contract.ts';

export interface StatusEvent extends DeviceStatus {
  device: string;
  family: string;
  zone: string;
}

export interface RejectionEvent {
  device: string;
  family: string;
  zone: string;
  code: string;
  reason: string;
  index?: number;
  at: string;
}

export interface BusEvents {
  /** A valid reading, emitted as soon as it is validated (before InfluxDB confirms it). */
  reading: [EnrichedReading];
  /** A device came online or went offline. */
  status: [StatusEvent];
  /** A message or reading was rejected (dead-lettered). */
  rejected: [RejectionEvent];
}

export type LiveBus = EventEmitter<BusEvents>;

export function createBus(): LiveBus {
  const bus = new EventEmitter<BusEvents>();
  // One listener per subsystem, not per socket: sockets join rooms; a high number here is a leak.
  bus.setMaxListeners(50);
  return bus;
}
