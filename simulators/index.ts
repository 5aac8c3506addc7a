/** Public face of the simulators: value models per family and a fleet of real MQTT devices. */
export { createFleet, formatProgress, planFleet } from './fleet.ts';
export type { Fleet, FleetOptions, FleetProgress } from './fleet.ts';
export { createModel, createRng, localHour } from './models.ts';
export type { DeviceModel, Rng } from './models.ts';
