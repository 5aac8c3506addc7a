/**
 * Wire types the dashboard reads, taken from the platform's own contract files (type-only imports: nothing of
 * the server is bundled, except the batch unpacker, a file that imports nothing). The socket events are exactly
 * dashboard-api/live.ts' ServerToClient.
 */
export type { ClientToServer, ServerToClient, SubscribeAck } from '../../dashboard-api/live.ts';
export type {
  AlarmRecord,
  AlarmSeverity,
  AqiEvent,
  CommandRecord,
  IndexValue,
  IndicatorEvent,
  RejectionEvent,
  StatusEvent,
} from '../../core/bus.ts';
export type { EnrichedReading, Family } from '../../core/contract.ts';
export type { CityProfile, Zone } from '../../registry/city-profile.ts';

import type { EnrichedReading, Family } from '../../core/contract.ts';
import type { IndicatorEvent, RejectionEvent, StatusEvent } from '../../core/bus.ts';
import { type LiveBatch, type LiveBatchFrame, unpackBatch } from '../../dashboard-api/batch-frame.ts';

/** A batched socket's frame as the platform's own event types (the unpacker is untyped on family). */
export const unpackLiveBatch = unpackBatch as (
  f: LiveBatchFrame,
) => LiveBatch<EnrichedReading, IndicatorEvent, StatusEvent, RejectionEvent>;

export type Role = 'viewer' | 'operator' | 'admin';

/** GET /api/v1/devices item. */
export interface DeviceInfo {
  id: string;
  family: Family;
  zone: string;
  location: { lat: number; lon: number };
  name?: string;
  lastSeenAt?: string;
  online: boolean;
}

/** A category of GET /api/v1/aqi/scales. */
export interface ScaleCategory {
  level: number;
  key: string;
  min: number;
  max: number;
  name: { vi: string; en: string };
  color: string;
}
export interface Scales {
  vn: { categories: ScaleCategory[] };
  epa: { categories: ScaleCategory[] };
}

/** GET /api/v1/devices/:id/readings. */
export interface History {
  window: string;
  tier: string;
  from: string;
  to: string;
  points: ({ time: number } & Record<string, number | string | boolean | null>)[];
}

export interface Session {
  token: string;
  username: string;
  role: Role;
}
