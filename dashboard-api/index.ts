/** Public face of the dashboard API: REST (Express 5) and live data (socket.io) on one port. */
export { createDashboardApi } from './server.ts';
export type { DashboardApi, DashboardApiOptions } from './server.ts';
export { createApp } from './app.ts';
export type { ApiDeps, HealthReport } from './routes.ts';
export type { ClientToServer, LiveBatch, ServerToClient, SubscribeAck, Subscription } from './live.ts';
export { createAuth, SERVICE_ACTOR } from './auth.ts';
export type { Auth, AuthOptions, Principal } from './auth.ts';
