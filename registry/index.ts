/** Public face of the registry: devices (identity, credentials) and the city profile. */
export { SqliteDeviceStore } from './device-store.ts';
export type { Device, DeviceFilter, DeviceStore, ProvisionRequest, TokenCheck } from './device-store.ts';
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
