/**
 * The REST API as one table of routes. Each route's params, query and body schemas both validate the
 * request (ajv, compiled once in app.ts) and describe it in the OpenAPI document (openapi.ts).
 */
import type { Request, Response } from 'express';
import type { InfluxDB } from 'influx';
import { DEVICE_ID_PATTERN, FAMILIES, READING_SCHEMAS, TOPICS, type DeadLetterStore, type Family } from '../ingest/index.ts';
import type { CityProfile, Device, DeviceStore } from '../registry/index.ts';
import { PlatformError } from '../platform/errors.ts';
import { queryLastReading, queryReadings, WINDOWS, type Window } from './history.ts';
import type { LatestValues } from './live.ts';

export interface HealthReport {
  status: 'ok' | 'degraded';
  [part: string]: unknown;
}

export interface ApiDeps {
  devices: DeviceStore;
  profile: CityProfile;
  latest: LatestValues;
  history: { influx: InfluxDB; database: string; retentionPolicy: string };
  deadLetters: DeadLetterStore;
  /** Online state and forced disconnect, from the broker. */
  presence: { isOnline(id: string): boolean; disconnect(id: string): boolean };
  health: () => HealthReport;
  adminToken: string;
}

export interface RouteDef {
  method: 'get' | 'post';
  /** Express path (`:id` params). */
  path: string;
  summary: string;
  tag: string;
  admin?: boolean;
  params?: object;
  query?: object;
  body?: object;
  responses: Record<number, { description: string; schema?: object }>;
  handler: (req: Request, res: Response) => unknown;
}

const point = {
  type: 'object',
  additionalProperties: false,
  required: ['lat', 'lon'],
  properties: { lat: { type: 'number', minimum: -90, maximum: 90 }, lon: { type: 'number', minimum: -180, maximum: 180 } },
} as const;
const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: DEVICE_ID_PATTERN } },
} as const;
const deviceSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    family: { type: 'string', enum: FAMILIES },
    zone: { type: 'string' },
    location: point,
    name: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    revokedAt: { type: 'string', format: 'date-time' },
    lastSeenAt: { type: 'string', format: 'date-time' },
    online: { type: 'boolean' },
  },
} as const;
const readingSchema = {
  type: 'object',
  description: 'An enriched reading: time is epoch ms (observation time); fields are flat (intensityByVehicleType_<type>)',
  properties: {
    device: { type: 'string' },
    family: { type: 'string', enum: FAMILIES },
    zone: { type: 'string' },
    time: { type: 'integer' },
    fields: { type: 'object', additionalProperties: { type: ['number', 'string', 'boolean'] } },
  },
} as const;
const problem = { description: 'application/problem+json with a stable `code`', schema: { $ref: '#/components/schemas/Problem' } };

export const PROVISION_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['family', 'zone', 'location'],
  properties: {
    id: { type: 'string', pattern: DEVICE_ID_PATTERN, description: 'Generated when absent' },
    family: { type: 'string', enum: FAMILIES },
    zone: { type: 'string', description: 'A zone id of the city profile' },
    location: point,
    name: { type: 'string', maxLength: 200 },
  },
} as const;

export function createRoutes(d: ApiDeps): RouteDef[] {
  const withOnline = (dev: Device) => ({ ...dev, online: d.presence.isOnline(dev.id) });
  const mustGet = async (id: string) => {
    const dev = await d.devices.get(id);
    if (!dev) throw new PlatformError('CP_REGISTRY_DEVICE_NOT_FOUND', `no device ${id}`);
    return dev;
  };
  return [
    {
      method: 'get',
      path: '/api/v1/health',
      summary: 'State of broker, InfluxDB and ingest',
      tag: 'platform',
      responses: { 200: { description: 'status ok or degraded, with each part' } },
      handler: (_req, res) => res.json(d.health()),
    },
    {
      method: 'get',
      path: '/api/v1/city',
      summary: 'The city profile: zones with names, shapes and centres',
      tag: 'platform',
      responses: { 200: { description: 'city profile' } },
      handler: (_req, res) => res.json(d.profile),
    },
    {
      method: 'get',
      path: '/api/v1/contract',
      summary: 'The device contract, machine-readable: topics and the JSON Schema of each family’s reading',
      tag: 'platform',
      responses: { 200: { description: 'topics and schemas' } },
      handler: (_req, res) =>
        res.json({
          topics: {
            telemetry: TOPICS.telemetry('{id}'),
            status: TOPICS.status('{id}'),
            errors: TOPICS.errors('{id}'),
          },
          payload: 'One reading object, or an array of them (a device flushing its backlog)',
          families: READING_SCHEMAS,
        }),
    },
    {
      method: 'get',
      path: '/api/v1/devices',
      summary: 'List devices, with filters',
      tag: 'devices',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          family: { type: 'string', enum: FAMILIES },
          zone: { type: 'string' },
          online: { type: 'boolean' },
          includeRevoked: { type: 'boolean', default: false },
        },
      },
      responses: { 200: { description: 'devices', schema: { type: 'array', items: deviceSchema } } },
      handler: async (req, res) => {
        const q = req.query as { family?: Family; zone?: string; online?: boolean; includeRevoked?: boolean };
        const list = (await d.devices.list({ family: q.family, zone: q.zone, includeRevoked: q.includeRevoked })).map(withOnline);
        res.json(q.online === undefined ? list : list.filter((x) => x.online === q.online));
      },
    },
    {
      method: 'post',
      path: '/api/v1/devices',
      summary: 'Provision a device; the token in the answer is shown once and never again',
      tag: 'devices',
      admin: true,
      body: PROVISION_BODY,
      responses: {
        201: {
          description: 'the device and its token',
          schema: { type: 'object', properties: { device: deviceSchema, token: { type: 'string' } } },
        },
        400: problem,
        401: problem,
        409: problem,
      },
      handler: async (req, res) => {
        const out = await d.devices.provision(req.body);
        res.status(201).json({ device: withOnline(out.device), token: out.token });
      },
    },
    {
      method: 'get',
      path: '/api/v1/devices/:id',
      summary: 'One device with its online state and last reading',
      tag: 'devices',
      params: idParams,
      responses: { 200: { description: 'device', schema: deviceSchema }, 404: problem },
      handler: async (req, res) => {
        const dev = await mustGet(req.params.id as string);
        let lastReading: unknown = d.latest.readings.get(dev.id) ?? null;
        if (!lastReading) {
          const p = await queryLastReading(d.history, dev.id, dev.family).catch(() => undefined);
          if (p) {
            const { time, ...fields } = p;
            lastReading = { device: dev.id, family: dev.family, zone: dev.zone, time, fields };
          }
        }
        res.json({ ...withOnline(dev), lastReading });
      },
    },
    {
      method: 'post',
      path: '/api/v1/devices/:id/revoke',
      summary: 'Revoke a device: disconnected now, refused from then on',
      tag: 'devices',
      admin: true,
      params: idParams,
      responses: { 200: { description: 'the revoked device', schema: deviceSchema }, 401: problem, 404: problem },
      handler: async (req, res) => {
        await mustGet(req.params.id as string);
        const dev = await d.devices.revoke(req.params.id as string);
        d.presence.disconnect(dev.id);
        res.json(withOnline(dev));
      },
    },
    {
      method: 'post',
      path: '/api/v1/devices/:id/token',
      summary: 'Issue a new token (shown once); the old one stops working and the device is disconnected',
      tag: 'devices',
      admin: true,
      params: idParams,
      responses: {
        200: { description: 'the new token', schema: { type: 'object', properties: { token: { type: 'string' } } } },
        401: problem,
        404: problem,
      },
      handler: async (req, res) => {
        const token = await d.devices.rotateToken(req.params.id as string);
        d.presence.disconnect(req.params.id as string);
        res.json({ token });
      },
    },
    {
      method: 'get',
      path: '/api/v1/devices/:id/readings',
      summary: 'A device’s readings over a time range, aggregated per window (mean of numbers, last of enums)',
      tag: 'readings',
      params: idParams,
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          from: { type: 'string', format: 'date-time', description: 'Start (default: to − 1 h)' },
          to: { type: 'string', format: 'date-time', description: 'End, exclusive (default: now)' },
          window: { type: 'string', enum: WINDOWS, default: 'auto', description: 'auto = at most ~500 points' },
          fields: { type: 'string', description: 'Comma-separated field names (default: all of the family)' },
        },
      },
      responses: { 200: { description: 'series' }, 400: problem, 404: problem },
      handler: async (req, res) => {
        const dev = await mustGet(req.params.id as string);
        const q = req.query as { from?: string; to?: string; window: Window; fields?: string };
        const toMs = q.to ? Date.parse(q.to) : Date.now();
        const fromMs = q.from ? Date.parse(q.from) : toMs - 3600_000;
        if (!(fromMs < toMs)) throw new PlatformError('CP_API_VALIDATION', '`from` must be before `to`');
        const fields = q.fields
          ?.split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        const out = await queryReadings(d.history, { device: dev.id, family: dev.family, fromMs, toMs, window: q.window, fields });
        res.json({
          device: dev.id,
          family: dev.family,
          zone: dev.zone,
          from: new Date(fromMs).toISOString(),
          to: new Date(toMs).toISOString(),
          ...out,
        });
      },
    },
    {
      method: 'get',
      path: '/api/v1/latest',
      summary: 'Latest reading of each device, filtered by zone and family',
      tag: 'readings',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: { zone: { type: 'string' }, family: { type: 'string', enum: FAMILIES } },
      },
      responses: { 200: { description: 'readings', schema: { type: 'array', items: readingSchema } } },
      handler: (req, res) => {
        const q = req.query as { zone?: string; family?: Family };
        res.json([...d.latest.readings.values()].filter((r) => (!q.zone || r.zone === q.zone) && (!q.family || r.family === q.family)));
      },
    },
    {
      method: 'get',
      path: '/api/v1/dead-letters',
      summary: 'Rejected messages and readings, newest first, with reason and raw payload',
      tag: 'readings',
      admin: true,
      query: {
        type: 'object',
        additionalProperties: false,
        properties: { device: { type: 'string' }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
      },
      responses: { 200: { description: 'dead letters' }, 401: problem },
      handler: (req, res) => {
        const q = req.query as unknown as { device?: string; limit: number };
        res.json(d.deadLetters.list({ device: q.device, limit: q.limit }));
      },
    },
  ];
}
