/** Routes of devices: list with filters, provision (the token shown once), one device, revoke, a new token. */
import { DEVICE_ID_PATTERN, FAMILIES, type Family } from '../ingest/index.ts';
import type { Device } from '../registry/index.ts';
import { queryLastReading } from './history.ts';
import { deviceIdParams, mustGetDevice, noStore, problem, type ApiDeps, type RouteDef } from './route-kit.ts';

const point = {
  type: 'object',
  additionalProperties: false,
  required: ['lat', 'lon'],
  properties: { lat: { type: 'number', minimum: -90, maximum: 90 }, lon: { type: 'number', minimum: -180, maximum: 180 } },
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

export function deviceRoutes(d: ApiDeps): RouteDef[] {
  const withOnline = (dev: Device) => ({ ...dev, online: d.presence.isOnline(dev.id) });
  return [
    {
      method: 'get',
      path: '/api/v1/devices',
      summary: 'List devices, with filters',
      tag: 'devices',
      role: 'viewer',
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
      role: 'admin',
      audit: 'device.provision',
      body: PROVISION_BODY,
      responses: {
        201: {
          description: 'the device and its token',
          schema: { type: 'object', properties: { device: deviceSchema, token: { type: 'string' } } },
        },
        400: problem,
        409: problem,
      },
      handler: async (req, res) => {
        const out = await d.devices.provision(req.body);
        res.locals.auditTarget = out.device.id;
        noStore(res);
        res.status(201).json({ device: withOnline(out.device), token: out.token });
      },
    },
    {
      method: 'get',
      path: '/api/v1/devices/:id',
      summary: 'One device with its online state and last reading',
      tag: 'devices',
      role: 'viewer',
      params: deviceIdParams,
      responses: { 200: { description: 'device', schema: deviceSchema }, 404: problem },
      handler: async (req, res) => {
        const dev = await mustGetDevice(d.devices, req.params.id as string);
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
      role: 'admin',
      audit: 'device.revoke',
      params: deviceIdParams,
      responses: { 200: { description: 'the revoked device', schema: deviceSchema }, 404: problem },
      handler: async (req, res) => {
        await mustGetDevice(d.devices, req.params.id as string);
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
      role: 'admin',
      audit: 'device.rotate-token',
      params: deviceIdParams,
      responses: {
        200: { description: 'the new token', schema: { type: 'object', properties: { token: { type: 'string' } } } },
        404: problem,
      },
      handler: async (req, res) => {
        const token = await d.devices.rotateToken(req.params.id as string);
        d.presence.disconnect(req.params.id as string);
        noStore(res);
        res.json({ token });
      },
    },
  ];
}
