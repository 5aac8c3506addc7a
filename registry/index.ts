/** Public face of the registry: devices (identity, credentials) and the city profile. */
export { SqliteDeviceStore } from './device-store.ts';
export type { Device, DeviceFilter, DeviceStore, ProvisionRequest, TokenCheck } from './device-store.ts';
export { CITY_PROFILE_SCHEMA, leafZones, loadCityProfile, validateCityProfile } from './city-profile.ts';
export type { CityProfile, GeoPoint, Zone } from './city-profile.ts';
