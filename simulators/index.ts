/** Public face of the simulators: value models per family and a fleet of real MQTT devices. */
export { createFleet, formatProgress, planFleet } from './fleet.ts';
export { restRegistry } from './provisioning.ts';
export type { Fleet, FleetOptions, FleetProgress } from './fleet.ts';
export { createModel, createRng, createStreetLightModel, localHour } from './models.ts';
export type { DeviceModel, Rng, StreetLightCommand, StreetLightModel } from './models.ts';
