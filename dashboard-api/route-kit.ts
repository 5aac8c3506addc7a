/**
 * What every route file shares: the shape of a route, the dependencies routes are built from, and the
 * helpers and schemas more than one resource uses. The route files import this; routes.ts assembles them
 * into the one table app.ts serves and openapi.ts documents.
 */
import type { Request, Response } from 'express';
import type { Alarms } from '../alarms/index.ts';
import type { Analytics } from '../analytics/index.ts';
import type { Commands } from '../commands/index.ts';
import { PlatformError } from '../core/errors.ts';
import { DEVICE_ID_PATTERN, type DeadLetterStore } from '../ingest/index.ts';
import type { CityProfile, Device, DeviceStore, Role } from '../registry/index.ts';
import type { Auth, Principal } from './auth.ts';
import type { HistoryTarget } from './history.ts';
import type { LatestValues } from './live.ts';

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
  /**
   * Online state and forced disconnect, from the broker. `onlineIds`: the devices connected to any node (a
   * cluster's presence, broker/cluster-presence.ts), or to this one on a single node.
   */
  presence: { onlineIds(): string[] | Promise<string[]>; disconnect(id: string): boolean };
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
  /** `also`: other media types of the same answer (e.g. text/csv), with their schemas, for the OpenAPI document. */
  responses: Record<number, { description: string; schema?: object; also?: Record<string, object> }>;
  handler: (req: Request, res: Response) => unknown;
}

/** An error answer, as documented for every route that gives one. */
export const problem = { description: 'application/problem+json with a stable `code`', schema: { $ref: '#/components/schemas/Problem' } };

/** Answers that carry a secret (a session or device token) or describe a session: never kept by any cache. */
export const noStore = (res: Response) => res.set('cache-control', 'no-store');

/** The caller, set by the role check in app.ts. */
export const principalOf = (res: Response): Principal => res.locals.principal as Principal;

/** The `:id` of a device route. */
export const deviceIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: DEVICE_ID_PATTERN } },
} as const;

/** The device `id`, or CP_REGISTRY_DEVICE_NOT_FOUND (404). */
export async function mustGetDevice(devices: DeviceStore, id: string): Promise<Device> {
  const dev = await devices.get(id);
  if (!dev) throw new PlatformError('CP_REGISTRY_DEVICE_NOT_FOUND', `no device ${id}`);
  return dev;
}
