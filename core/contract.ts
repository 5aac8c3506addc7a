/**
 * The device contract, written once: topics, payloads and units.
 *
 * Every JSON Schema here is the single source for three things:
 *  - the ajv validators ingest compiles once at start-up (ingest/validate.ts),
 *  - the TypeScript types (json-schema-to-ts `FromSchema`),
 *  - the machine-readable contract served at GET /api/v1/contract and the field types written to InfluxDB
 *    (`integer` stays an InfluxDB integer, `number` a float, `boolean` a boolean, enums strings).
 *
 * Names and units follow the FIWARE Smart Data Models (AirQualityObserved, TrafficFlowObserved, Streetlight);
 * see ../shared/domain.md. Family and zone never come from the payload: they come from the device registry.
 */
import type { FromSchema } from 'json-schema-to-ts';

/** Device families, as stored in the registry and used as the InfluxDB measurement name. */
export const FAMILIES = ['airQuality', 'traffic', 'streetLight'] as const;
export type Family = (typeof FAMILIES)[number];

/** Topic layout. [C-TOPIC] in code comments refers to this table. */
export const TOPICS = {
  /** device → platform: one reading or an array of readings (QoS 0 or 1). */
  telemetry: (id: string) => `devices/${id}/telemetry`,
  /** platform → anyone allowed: retained `{ state: "online" | "offline", at }`, kept by the platform itself. */
  status: (id: string) => `devices/${id}/status`,
  /** platform → device: why a message or reading was rejected (`DeviceError`). */
  errors: (id: string) => `devices/${id}/errors`,
  /** platform → device (QoS 1): a command to carry out (`DeviceCommand`); street lights subscribe to it. */
  commands: (id: string) => `devices/${id}/commands`,
  /** device → platform (QoS 0 or 1): the answer to a command (`CommandAck`). */
  acks: (id: string) => `devices/${id}/acks`,
} as const;

/** Parses `devices/{id}/{kind}`; returns undefined for anything else. */
export function parseDeviceTopic(topic: string): { id: string; kind: string } | undefined {
  const parts = topic.split('/');
  if (parts.length !== 3 || parts[0] !== 'devices' || !parts[1]) return undefined;
  return { id: parts[1], kind: parts[2] as string };
}

/** Device ids: what may stand in a topic level, a client id and an InfluxDB tag without escaping surprises. */
export const DEVICE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';

/** Observation time: ISO 8601 date-time with offset, or epoch milliseconds. Receive time when absent. */
const timeSchema = {
  description: 'Observation time: ISO 8601 date-time (with Z or an offset) or epoch milliseconds (integer).',
  anyOf: [
    { type: 'string', format: 'date-time' },
    { type: 'integer', minimum: 0, maximum: 8640000000000000 },
  ],
} as const;

/** Every number has an upper bound: a value past it is a broken sensor, and JSON's 1e400 parses to Infinity. */
const nonNegative = <M extends number>(description: string, maximum: M) => ({ type: 'number', minimum: 0, maximum, description }) as const;
const fraction = (description: string) => ({ type: 'number', minimum: 0, maximum: 1, description }) as const;
const count = (description: string) => ({ type: 'integer', minimum: 0, maximum: 1_000_000_000, description }) as const;

/** A reading with only its time carries nothing: require one more property. */
const atLeastOneField = {
  if: { properties: { dateObserved: true }, required: ['dateObserved'] },
  // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then/else keyword, not a thenable
  then: { minProperties: 2 },
  else: { minProperties: 1 },
} as const;

export const airQualityReadingSchema = {
  $id: 'citypulse/airQuality',
  title: 'Air quality reading (SDM AirQualityObserved)',
  type: 'object',
  additionalProperties: false,
  properties: {
    dateObserved: timeSchema,
    pm1: nonNegative('PM1 mass concentration, µg/m³', 100_000),
    pm25: nonNegative('PM2.5 mass concentration, µg/m³', 100_000),
    pm10: nonNegative('PM10 mass concentration, µg/m³', 100_000),
    no2: nonNegative('Nitrogen dioxide, µg/m³', 100_000),
    o3: nonNegative('Ozone, µg/m³', 100_000),
    so2: nonNegative('Sulphur dioxide, µg/m³', 100_000),
    co: nonNegative('Carbon monoxide, µg/m³ (VN_AQI uses µg/m³ for CO too)', 10_000_000),
    temperature: { type: 'number', minimum: -60, maximum: 70, description: 'Air temperature, °C' },
    relativeHumidity: fraction('Relative humidity, 0..1'),
    noise: { type: 'number', minimum: 0, maximum: 200, description: 'Noise level LAeq, dB(A)' },
  },
  ...atLeastOneField,
} as const;

export const VEHICLE_TYPES = ['motorcycle', 'car', 'bus', 'lorry', 'bicycle'] as const;

export const trafficReadingSchema = {
  $id: 'citypulse/traffic',
  title: 'Traffic flow reading (SDM TrafficFlowObserved)',
  type: 'object',
  additionalProperties: false,
  required: ['intensity'],
  properties: {
    dateObserved: timeSchema,
    dateObservedFrom: { ...timeSchema, description: 'Start of the counting period (ISO 8601 or epoch ms)' },
    dateObservedTo: { ...timeSchema, description: 'End of the counting period; the point time when dateObserved is absent' },
    intensity: count('Vehicles counted in the period'),
    averageVehicleSpeed: { type: 'number', minimum: 0, maximum: 300, description: 'Average vehicle speed, km/h' },
    occupancy: fraction('Fraction of the period the detector was occupied, 0..1'),
    laneId: { type: 'integer', minimum: 1, maximum: 64, description: 'Lane number, from 1' },
    congested: { type: 'boolean', description: 'Whether the lane is congested' },
    intensityByVehicleType: {
      type: 'object',
      additionalProperties: false,
      description: 'Vehicles counted in the period per vehicle type (stored as integer fields intensityByVehicleType_<type>)',
      properties: Object.fromEntries(VEHICLE_TYPES.map((t) => [t, count(`${t}s counted in the period`)])) as {
        [K in (typeof VEHICLE_TYPES)[number]]: ReturnType<typeof count>;
      },
    },
  },
} as const;

export const POWER_STATES = ['on', 'off', 'low', 'bootingUp'] as const;
export const LAMP_STATUSES = ['ok', 'defectiveLamp', 'columnIssue', 'brokenLantern'] as const;

export const streetLightReadingSchema = {
  $id: 'citypulse/streetLight',
  title: 'Street light reading (SDM Streetlight)',
  type: 'object',
  additionalProperties: false,
  properties: {
    dateObserved: timeSchema,
    powerState: { type: 'string', enum: POWER_STATES, description: 'on | off | low | bootingUp' },
    illuminanceLevel: fraction('Dimming level, 0..1'),
    powerConsumption: nonNegative('Power drawn now, W', 100_000),
    energyConsumed: nonNegative('Cumulative energy counter, kWh (only grows)', 1_000_000_000),
    voltage: nonNegative('Supply voltage, V', 100_000),
    current: nonNegative('Current, A', 10_000),
    status: { type: 'string', enum: LAMP_STATUSES, description: 'ok | defectiveLamp | columnIssue | brokenLantern' },
  },
  ...atLeastOneField,
} as const;

export const READING_SCHEMAS = {
  airQuality: airQualityReadingSchema,
  traffic: trafficReadingSchema,
  streetLight: streetLightReadingSchema,
} as const;

export type AirQualityReading = FromSchema<typeof airQualityReadingSchema>;
export type TrafficReading = FromSchema<typeof trafficReadingSchema>;
export type StreetLightReading = FromSchema<typeof streetLightReadingSchema>;
export interface ReadingByFamily {
  airQuality: AirQualityReading;
  traffic: TrafficReading;
  streetLight: StreetLightReading;
}
export type AnyReading = ReadingByFamily[Family];

/** Limits of one telemetry message (before the per-reading schema applies). */
export const MESSAGE_LIMITS = {
  /** Readings in one array payload: a device flushing its backlog sends at most this many per message. */
  maxReadingsPerMessage: 1000,
} as const;

/** A stored point as it leaves ingest: enriched, typed, with its observation time. */
export interface EnrichedReading {
  device: string;
  family: Family;
  zone: string;
  /** Observation time, epoch ms. */
  time: number;
  /** Flat fields: numbers, booleans and enum strings (a nested object `x: {k: v}` becomes field `x_k`). */
  fields: Record<string, number | boolean | string>;
}

/** Field type written to InfluxDB, derived from the schema (never guessed from the JS value). */
export type FieldKind = 'float' | 'integer' | 'boolean' | 'string';

/** Flat field name → kind per family, derived from READING_SCHEMAS (time properties excluded). */
export const FIELD_KINDS: Record<Family, Record<string, FieldKind>> = Object.fromEntries(
  FAMILIES.map((family) => [family, fieldKindsOf(READING_SCHEMAS[family].properties)]),
) as Record<Family, Record<string, FieldKind>>;

function fieldKindsOf(properties: Record<string, unknown>, prefix = ''): Record<string, FieldKind> {
  const out: Record<string, FieldKind> = {};
  for (const [name, raw] of Object.entries(properties)) {
    const s = raw as { type?: string; enum?: readonly string[]; properties?: Record<string, unknown>; anyOf?: unknown };
    if (s.anyOf) continue; // time properties
    if (s.type === 'object' && s.properties) Object.assign(out, fieldKindsOf(s.properties, `${prefix}${name}_`));
    else if (s.type === 'integer') out[prefix + name] = 'integer';
    else if (s.type === 'number') out[prefix + name] = 'float';
    else if (s.type === 'boolean') out[prefix + name] = 'boolean';
    else if (s.type === 'string') out[prefix + name] = 'string';
  }
  return out;
}

/** Payload on `devices/{id}/status` (retained). */
export interface DeviceStatus {
  state: 'online' | 'offline';
  /** ISO 8601 time of the change. */
  at: string;
}

/** Payload on `devices/{id}/errors`. */
export interface DeviceError {
  /** Stable code, CP_INGEST_* (see ingest/errors.ts). */
  code: string;
  /** Human-readable reason. */
  reason: string;
  /** Index of the rejected reading in an array payload; absent for a whole-message rejection. */
  index?: number;
  /** Where in the reading the problem is (JSON pointer), when known. */
  path?: string;
  /** ISO 8601 time the platform rejected it. */
  at: string;
}

// ---------------------------------------------------------------------------------------------------------
// Commands (platform → device) and their acknowledgements (device → platform)

/** Command ids: what the platform generates (UUIDs) and a device echoes back. */
export const COMMAND_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$';

/**
 * What a street light can be told to do (SDM Streetlight names). At least one property; `powerState: 'off'`
 * with an `illuminanceLevel` above 0 is contradictory and refused by the platform.
 */
export const commandActionSchema = {
  $id: 'citypulse/commandAction',
  title: 'Street-light command action',
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    powerState: { type: 'string', enum: ['on', 'off'], description: 'Switch the lamp on or off' },
    illuminanceLevel: fraction('Dimming level to set, 0..1 (1 = full output); alone it also switches the lamp on (0 = off)'),
  },
} as const;

/** Payload on `devices/{id}/commands` (QoS 1). */
export const deviceCommandSchema = {
  $id: 'citypulse/command',
  title: 'Command to a device',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'action', 'issuedAt', 'expiresAt'],
  properties: {
    id: { type: 'string', pattern: COMMAND_ID_PATTERN, description: 'Command id, echoed in the ack' },
    action: commandActionSchema,
    issuedAt: { type: 'string', format: 'date-time', description: 'When the platform created the command (ISO 8601)' },
    expiresAt: {
      type: 'string',
      format: 'date-time',
      description: 'After this time the command must not be carried out (the platform marks it expired)',
    },
  },
} as const;

/** Payload on `devices/{id}/acks`. */
export const commandAckSchema = {
  $id: 'citypulse/commandAck',
  title: 'Acknowledgement of a command by the device',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'status', 'at'],
  properties: {
    id: { type: 'string', pattern: COMMAND_ID_PATTERN, description: 'The id of the command answered' },
    status: { type: 'string', enum: ['ok', 'failed'], description: 'ok = carried out; failed = not carried out (say why in reason)' },
    reason: { type: 'string', maxLength: 500, description: 'Why it failed (or a note)' },
    at: { ...timeSchema, description: 'When the device carried it out or gave up (ISO 8601 or epoch ms)' },
  },
} as const;

export type CommandAction = FromSchema<typeof commandActionSchema>;
export type DeviceCommand = FromSchema<typeof deviceCommandSchema>;
export type CommandAck = FromSchema<typeof commandAckSchema>;

/** Families that take commands, and the action schema each takes. */
export const COMMAND_SCHEMAS: Partial<Record<Family, typeof commandActionSchema>> = { streetLight: commandActionSchema };
