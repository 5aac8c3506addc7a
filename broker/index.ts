/** Public face of the broker. */
export { createBroker, LISTEN_BACKLOG, somaxconn } from './broker.ts';
export { LIMIT_DEFAULTS } from './connection-guard.ts';
export type { Broker, BrokerDeps, BrokerOptions } from './broker.ts';
export { createWebSocketListener, ensureSelfSignedCert, startTlsListener } from './listeners.ts';
export type { HandleConnection, TlsListener, TlsListenerOptions, WebSocketListener, WebSocketListenerOptions } from './listeners.ts';
