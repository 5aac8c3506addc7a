/**
 * The REST API as one table of routes. Each route's params, query and body schemas both validate the
 * request (ajv, compiled once in app.ts) and describe it in the OpenAPI document (openapi.ts).
 */
import type { Request, Response } from 'express';
import {
  COMMAND_SCHEMAS,
  commandAckSchema,
  DEVICE_ID_PATTERN,
  deviceCommandSchema,
  FAMILIES,
  READING_SCHEMAS,
  TOPICS,
  type DeadLetterStore,
  type Family,
} from '../ingest/index.ts';
import {
  PASSWORD_MAX_LENGTH,
  PASSWORD_MIN_LENGTH,
  ROLES,
  USERNAME_PATTERN,
  type CityProfile,
  type Device,
  type DeviceStore,
  type Role,
} from '../registry/index.ts';
import { PlatformError } from '../core/errors.ts';
import type { Auth, Principal } from './auth.ts';
import {
  checkWindowCount,
  HISTORY_RANGE_TEXT,
  MAX_WINDOWS,
  parseFields,
  parseRange,
  queryLastReading,
  queryReadings,
  WINDOWS,
  type HistoryTarget,
  type Window,
} from './history.ts';
import type { LatestValues } from './live.ts';
import type { Alarms } from '../alarms/index.ts';
import { alarmRoutes } from './routes-alarms.ts';
import type { Commands } from '../commands/index.ts';
import { commandRoutes } from './routes-commands.ts';
import type { Analytics } from '../analytics/index.ts';
import { analyticsRoutes } from './routes-analytics.ts';

export interface HealthReport {
  status: 'ok' | 'degraded';
  [part: string]: unknown;
}

export interface ApiDeps {
  devices: DeviceStore;
  profile: CityProfile;
  latest: LatestValues;
  history: HistoryTarget;
  deadLetters: DeadLetterStore;
  /** Online state and forced disconnect, from the broker. */
  presence: { isOnline(id: string): boolean; disconnect(id: string): boolean };
  health: () => HealthReport;
  /** Sessions, the service token, operator accounts and the audit log. */
  auth: Auth;
  /** The alarm engine (routes-alarms.ts); absent = no alarm routes. */
  alarms?: Alarms;
  /** Commands to devices and schedules (routes-commands.ts); absent = no command routes. */
  commands?: Commands;
  /** Air-quality indices and derived indicators (routes-analytics.ts); absent = the routes answer empty lists. */
  analytics?: Analytics;
}

export interface RouteDef {
  method: 'get' | 'post' | 'delete';
  /** Express path (`:id` params). */
  path: string;
  summary: string;
  tag: string;
  /** The least role the route needs (viewer < operator < admin); absent = public. */
  role?: Role;
  /** Audit action recorded for every call that passes the role check (with its outcome). */
  audit?: string;
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
const operatorSchema = {
  type: 'object',
  properties: {
    username: { type: 'string' },
    role: { type: 'string', enum: ROLES },
    disabled: { type: 'boolean' },
    createdAt: { type: 'string', format: 'date-time' },
    lastLoginAt: { type: 'string', format: 'date-time' },
  },
} as const;
const usernameParams = {
  type: 'object',
  required: ['username'],
  properties: { username: { type: 'string', pattern: USERNAME_PATTERN } },
} as const;
const password = { type: 'string', minLength: PASSWORD_MIN_LENGTH, maxLength: PASSWORD_MAX_LENGTH } as const;

/** Answers that carry a secret (a session or device token) or describe a session: never kept by any cache. */
const noStore = (res: Response) => res.set('cache-control', 'no-store');

/** The caller, set by the role check in app.ts. */
export const principalOf = (res: Response): Principal => res.locals.principal as Principal;

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
      role: 'viewer',
      responses: { 200: { description: 'city profile' } },
      handler: (_req, res) => res.json(d.profile),
    },
    {
      method: 'get',
      path: '/api/v1/contract',
      summary: 'The device contract, machine-readable: topics and the JSON Schema of each family’s reading',
      tag: 'platform',
      role: 'viewer',
      responses: { 200: { description: 'topics and schemas' } },
      handler: (_req, res) =>
        res.json({
          topics: {
            telemetry: TOPICS.telemetry('{id}'),
            status: TOPICS.status('{id}'),
            errors: TOPICS.errors('{id}'),
            commands: TOPICS.commands('{id}'),
            acks: TOPICS.acks('{id}'),
          },
          payload: 'One reading object, or an array of them (a device flushing its backlog)',
          families: READING_SCHEMAS,
          commands: { command: deviceCommandSchema, ack: commandAckSchema, actions: COMMAND_SCHEMAS },
        }),
    },
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
      role: 'admin',
      audit: 'device.revoke',
      params: idParams,
      responses: { 200: { description: 'the revoked device', schema: deviceSchema }, 404: problem },
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
      role: 'admin',
      audit: 'device.rotate-token',
      params: idParams,
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
    {
      method: 'get',
      path: '/api/v1/devices/:id/readings',
      summary: 'A device’s readings over a time range, aggregated per window (mean of numbers, last of enums)',
      tag: 'readings',
      role: 'viewer',
      params: idParams,
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          from: { type: 'string', format: 'date-time', description: `Start (default: to − 1 h); ${HISTORY_RANGE_TEXT}, before to` },
          to: { type: 'string', format: 'date-time', description: `End, exclusive (default: now); ${HISTORY_RANGE_TEXT}` },
          window: {
            type: 'string',
            enum: WINDOWS,
            default: 'auto',
            description: `auto = at most ~500 points; a window chosen explicitly may cut the range into at most ${MAX_WINDOWS} windows. A point’s time is the start of its window; windows longer than an hour follow the city’s clock: a 1d window is a city-local day, starting at the city’s midnight (e.g. 17:00 UTC the day before in Asia/Ho_Chi_Minh, UTC+7)`,
          },
          fields: {
            type: 'string',
            maxLength: 2000,
            description: 'Comma-separated field names of the device’s family, as in GET /api/v1/contract (default: all of the family)',
          },
        },
      },
      responses: {
        200: { description: 'series' },
        400: {
          description: `${problem.description}: a time that is not ${HISTORY_RANGE_TEXT}, from not before to, a field the family does not have, or a window too small for the range`,
          schema: problem.schema,
        },
        404: problem,
      },
      handler: async (req, res) => {
        const dev = await mustGet(req.params.id as string);
        const q = req.query as { from?: string; to?: string; window: Window; fields?: string };
        const { fromMs, toMs } = parseRange(q, 3600_000);
        const fields = parseFields(dev.family, q.fields);
        checkWindowCount(q.window, fromMs, toMs);
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
      role: 'viewer',
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
      role: 'operator',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: { device: { type: 'string' }, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
      },
      responses: { 200: { description: 'dead letters' } },
      handler: (req, res) => {
        const q = req.query as unknown as { device?: string; limit: number };
        res.json(d.deadLetters.list({ device: q.device, limit: q.limit }));
      },
    },
    ...accessRoutes(d),
    ...alarmRoutes(d.alarms),
    ...commandRoutes(d.commands),
    ...analyticsRoutes(d.analytics, d.history),
  ];
}

/** Sessions, operator accounts and the audit log. */
function accessRoutes(d: ApiDeps): RouteDef[] {
  const ops = d.auth.operators;
  return [
    {
      method: 'post',
      path: '/api/v1/auth/login',
      summary: 'Log in: a session token for `Authorization: Bearer` (api.sessionTtlMs); failures are rate-limited',
      tag: 'access',
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['username', 'password'],
        properties: { username: { type: 'string', maxLength: 64 }, password: { type: 'string', maxLength: PASSWORD_MAX_LENGTH } },
      },
      responses: {
        200: {
          description: 'the session token (shown once, `Cache-Control: no-store`), its expiry and the operator',
          schema: {
            type: 'object',
            properties: {
              token: { type: 'string' },
              expiresAt: { type: 'string', format: 'date-time' },
              operator: { type: 'object', properties: { username: { type: 'string' }, role: { type: 'string', enum: ROLES } } },
            },
          },
        },
        400: problem,
        401: problem,
        429: { description: 'too many failed logins (Retry-After header)', schema: problem.schema },
      },
      handler: async (req, res) => {
        const { username, password } = req.body as { username: string; password: string };
        noStore(res);
        try {
          const out = await d.auth.login(username, password, req.ip ?? 'unknown');
          res.json({ token: out.token, expiresAt: out.expiresAt, operator: { username: out.operator.username, role: out.operator.role } });
        } catch (err) {
          const retry = (err as PlatformError).code === 'CP_API_RATE_LIMITED' && (err as PlatformError).details;
          if (retry) res.set('retry-after', String((retry as { retryAfterSeconds: number }).retryAfterSeconds));
          throw err;
        }
      },
    },
    {
      method: 'post',
      path: '/api/v1/auth/logout',
      summary: 'End this session (the service token has none: nothing happens)',
      tag: 'access',
      role: 'viewer',
      audit: 'logout',
      responses: { 204: { description: 'ended' } },
      handler: async (_req, res) => {
        await d.auth.logout(principalOf(res));
        noStore(res);
        res.status(204).end();
      },
    },
    {
      method: 'get',
      path: '/api/v1/auth/me',
      summary: 'Who the bearer token belongs to',
      tag: 'access',
      role: 'viewer',
      responses: {
        200: {
          description: 'username, role, kind (session or service) and, for a session, its expiry',
          schema: {
            type: 'object',
            properties: {
              username: { type: 'string' },
              role: { type: 'string', enum: ROLES },
              kind: { type: 'string', enum: ['session', 'service'] },
              expiresAt: { type: 'string', format: 'date-time' },
            },
          },
        },
      },
      handler: (_req, res) => {
        const p = principalOf(res);
        noStore(res);
        res.json({ username: p.username, role: p.role, kind: p.kind, ...(p.expiresAt ? { expiresAt: p.expiresAt } : {}) });
      },
    },
    {
      method: 'get',
      path: '/api/v1/operators',
      summary: 'Operator accounts',
      tag: 'access',
      role: 'admin',
      responses: { 200: { description: 'operators', schema: { type: 'array', items: operatorSchema } } },
      handler: async (_req, res) => res.json(await ops.list()),
    },
    {
      method: 'post',
      path: '/api/v1/operators',
      summary: `Create an operator (password of at least ${PASSWORD_MIN_LENGTH} characters)`,
      tag: 'access',
      role: 'admin',
      audit: 'operator.create',
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['username', 'password', 'role'],
        properties: { username: { type: 'string', pattern: USERNAME_PATTERN }, password, role: { type: 'string', enum: ROLES } },
      },
      responses: { 201: { description: 'the operator', schema: operatorSchema }, 400: problem, 409: problem },
      handler: async (req, res) => res.status(201).json(await ops.create(req.body)),
    },
    {
      method: 'post',
      path: '/api/v1/operators/:username/disable',
      summary: 'Disable an operator: its sessions end at once (REST and sockets), logins are refused',
      tag: 'access',
      role: 'admin',
      audit: 'operator.disable',
      params: usernameParams,
      responses: { 200: { description: 'the operator', schema: operatorSchema }, 404: problem },
      handler: async (req, res) => {
        const op = await ops.disable(req.params.username as string);
        d.auth.ended({ username: op.username });
        res.json(op);
      },
    },
    {
      method: 'post',
      path: '/api/v1/operators/:username/password',
      summary: 'Set an operator’s password; its sessions end',
      tag: 'access',
      role: 'admin',
      audit: 'operator.password',
      params: usernameParams,
      body: { type: 'object', additionalProperties: false, required: ['password'], properties: { password } },
      responses: { 204: { description: 'changed' }, 400: problem, 404: problem },
      handler: async (req, res) => {
        await ops.setPassword(req.params.username as string, (req.body as { password: string }).password);
        d.auth.ended({ username: req.params.username as string });
        res.status(204).end();
      },
    },
    {
      method: 'get',
      path: '/api/v1/audit',
      summary:
        'Audit log of state-changing actions (logins, logouts, devices, operators), newest first. Refused attempts (failed or rate-limited logins, calls refused for a too-low role) are aggregated per minute and source address, with a count, and capped apart: they never push out other records',
      tag: 'access',
      role: 'admin',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
          actor: { type: 'string', maxLength: 64 },
          action: { type: 'string', maxLength: 64 },
        },
      },
      responses: {
        200: {
          description: 'audit entries',
          schema: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                at: { type: 'string', format: 'date-time' },
                actor: { type: 'string' },
                role: { type: ['string', 'null'] },
                action: { type: 'string' },
                target: { type: ['string', 'null'] },
                address: { type: ['string', 'null'] },
                outcome: { type: 'string', description: 'ok, or why it failed' },
                count: {
                  type: 'integer',
                  minimum: 1,
                  description:
                    'Attempts the record stands for: refused ones are aggregated per action, source address, outcome and minute (and actor, except for rate-limited logins); an actor or target that differed reads (various)',
                },
                lastAt: { type: 'string', format: 'date-time', description: 'The last attempt of the record (at: the first)' },
              },
            },
          },
        },
      },
      handler: async (req, res) => {
        const q = req.query as unknown as { limit: number; actor?: string; action?: string };
        res.json(await ops.listAudit(q));
      },
    },
  ];
}
