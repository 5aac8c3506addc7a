/** Routes of readings: a device's history aggregated per window, the latest reading of each device, dead letters. */
import { FAMILIES, type Family } from '../ingest/index.ts';
import {
  checkWindowCount,
  HISTORY_RANGE_TEXT,
  MAX_WINDOWS,
  parseFields,
  parseRange,
  queryReadings,
  WINDOWS,
  type Window,
} from './history.ts';
import { deviceIdParams, mustGetDevice, problem, type ApiDeps, type RouteDef } from './route-kit.ts';

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

export function readingRoutes(d: ApiDeps): RouteDef[] {
  return [
    {
      method: 'get',
      path: '/api/v1/devices/:id/readings',
      summary: 'A device’s readings over a time range, aggregated per window (mean of numbers, last of enums)',
      tag: 'readings',
      role: 'viewer',
      params: deviceIdParams,
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
        const dev = await mustGetDevice(d.devices, req.params.id as string);
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
      handler: async (req, res) => {
        const q = req.query as unknown as { device?: string; limit: number };
        res.json(await d.deadLetters.list({ device: q.device, limit: q.limit }));
      },
    },
  ];
}
