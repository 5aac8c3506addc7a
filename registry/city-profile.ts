/**
 * The city is data: a profile file with its zones (a configurable hierarchy, e.g. province → ward), their
 * names in Vietnamese and English, shapes (GeoJSON polygons) and centres, plus the demo fleet sizes.
 */
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import type { FromSchema } from 'json-schema-to-ts';

const point = {
  type: 'object',
  additionalProperties: false,
  required: ['lat', 'lon'],
  properties: {
    lat: { type: 'number', minimum: -90, maximum: 90, description: 'Latitude, degrees (WGS 84)' },
    lon: { type: 'number', minimum: -180, maximum: 180, description: 'Longitude, degrees (WGS 84)' },
  },
} as const;

const names = {
  type: 'object',
  required: ['vi', 'en'],
  properties: { vi: { type: 'string', minLength: 1 }, en: { type: 'string', minLength: 1 } },
  additionalProperties: { type: 'string' },
} as const;

export const CITY_PROFILE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'timezone', 'centre', 'zoneLevels', 'zones'],
  properties: {
    id: { type: 'string', pattern: '^[a-z0-9-]+$' },
    name: names,
    timezone: { type: 'string', minLength: 1, description: 'IANA time zone of the city' },
    centre: point,
    zoneLevels: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
    zones: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'level', 'name'],
        properties: {
          id: { type: 'string', pattern: '^[a-z0-9-]{1,64}$', description: 'Zone id, stored as an InfluxDB tag' },
          level: { type: 'string' },
          parent: { type: 'string' },
          name: names,
          centre: point,
          shape: {
            type: 'object',
            required: ['type', 'coordinates'],
            properties: {
              type: { const: 'Polygon' },
              coordinates: {
                type: 'array',
                minItems: 1,
                items: {
                  type: 'array',
                  minItems: 4,
                  items: { type: 'array', minItems: 2, maxItems: 2, items: { type: 'number' } },
                },
              },
            },
          },
        },
      },
    },
    fleet: {
      type: 'object',
      additionalProperties: false,
      properties: {
        airQuality: { type: 'integer', minimum: 0 },
        traffic: { type: 'integer', minimum: 0 },
        streetLight: { type: 'integer', minimum: 0 },
        names: {
          type: 'object',
          additionalProperties: false,
          description: 'Names of the demo devices per family: {zone} = the zone name, {n} = the number of the device in its zone',
          properties: {
            airQuality: { type: 'string', minLength: 1 },
            traffic: { type: 'string', minLength: 1 },
            streetLight: { type: 'string', minLength: 1 },
          },
        },
      },
    },
  },
} as const;

export type CityProfile = FromSchema<typeof CITY_PROFILE_SCHEMA>;
export type Zone = CityProfile['zones'][number];
export type GeoPoint = FromSchema<typeof point>;

/** Reads and validates a city profile; zone levels and parents must be consistent. */
export function loadCityProfile(file: string): CityProfile {
  const data: unknown = JSON.parse(readFileSync(file, 'utf8'));
  return validateCityProfile(data, file);
}

export function validateCityProfile(data: unknown, source = 'city profile'): CityProfile {
  const ajv = new Ajv({ allErrors: true });
  const validate = ajv.compile<CityProfile>(CITY_PROFILE_SCHEMA);
  const errors: string[] = [];
  if (!validate(data)) {
    for (const e of validate.errors ?? []) errors.push(`${e.instancePath || '(root)'} ${e.message}`);
  } else {
    const ids = new Set<string>();
    for (const z of data.zones) {
      if (ids.has(z.id)) errors.push(`zone ${z.id}: duplicate id`);
      ids.add(z.id);
      if (!data.zoneLevels.includes(z.level)) errors.push(`zone ${z.id}: level ${z.level} is not in zoneLevels`);
    }
    for (const z of data.zones) if (z.parent && !ids.has(z.parent)) errors.push(`zone ${z.id}: unknown parent ${z.parent}`);
  }
  if (errors.length) throw new Error(`${source} is invalid:\n  ${errors.join('\n  ')}`);
  return data as CityProfile;
}

/** Zones devices can be placed in: those of the last (finest) level. */
export function leafZones(profile: CityProfile): Zone[] {
  const leaf = profile.zoneLevels[profile.zoneLevels.length - 1];
  return profile.zones.filter((z) => z.level === leaf);
}
