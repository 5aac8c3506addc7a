/** Public face of the broker. */
export { createBroker } from './broker.ts';
export type { Broker, BrokerDeps, BrokerOptions } from './broker.ts';
