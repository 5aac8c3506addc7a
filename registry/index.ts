/**
 * Public face of the registry: devices (identity, credentials), operators, the city profile, and the shared
 * state database of cluster mode (PostgreSQL: the connection, its migrations, the registry's stores there).
 */
export { SqliteDeviceStore } from './device-store.ts';
export type { Device, DeviceFilter, DeviceQuery, DeviceSort, DeviceStore, ProvisionRequest, TokenCheck } from './device-store.ts';
export { DEVICE_SORTS } from './device-store.ts';
export { CITY_PROFILE_SCHEMA, leafZones, loadCityProfile, validateCityProfile } from './city-profile.ts';
export type { CityProfile, GeoPoint, Zone } from './city-profile.ts';
export {
  ensureInitialAdmin,
  hashPassword,
  PASSWORD_MAX_LENGTH,
  PASSWORD_MIN_LENGTH,
  ROLES,
  roleAtLeast,
  SqliteOperatorStore,
  USERNAME_PATTERN,
  verifyPassword,
} from './operators.ts';
export type { AuditEntry, Operator, OperatorStore, PasswordCheck, Role, Session } from './operators.ts';
export { asStateError, isoOf, isUnavailable, StateDb } from './pg-state.ts';
export type { Migration, Queryable, StateDbOptions } from './pg-state.ts';
export { PgDeviceStore } from './pg-device-store.ts';
export { PgOperatorStore } from './pg-operators.ts';
export { REGISTRY_COMPONENT, REGISTRY_MIGRATIONS } from './pg-schema.ts';
export { parseChange, STATE_CHANNEL } from './pg-changes.ts';
export type { StateChange } from './pg-changes.ts';
export { STATE_OPTIONS } from './options.ts';
