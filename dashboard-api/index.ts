/** Public face of the dashboard API: REST (Express 5) and live data (socket.io) on one port. */
export { createDashboardApi } from './server.ts';
export type { DashboardApi, DashboardApiOptions } from './server.ts';
export { createApp } from './app.ts';
export type { ApiDeps, HealthReport } from './route-kit.ts';
export type { ClientToServer, ServerToClient, SubscribeAck, Subscription } from './live.ts';
export { BatchPacker, unpackBatch } from './batch-frame.ts';
export type {
  LiveBatch,
  LiveBatchFrame,
  PackedItem,
  PackedRejection,
  PackedStatus,
  UnpackedIndicator,
  UnpackedReading,
  UnpackedRejection,
  UnpackedStatus,
} from './batch-frame.ts';
export { createAuth, SERVICE_ACTOR } from './auth.ts';
export type { Auth, AuthOptions, Principal } from './auth.ts';
