/**
 * Routes of devices: list with filters, provision (the token shown once), one device, revoke, a new token; the
 * compact list the dashboard's map and overview start from.
 */
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { DEVICE_ID_PATTERN, FAMILIES, type Family } from '../ingest/index.ts';
import { DEVICE_SORTS, type Device, type DeviceSort } from '../registry/index.ts';
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

/** A CSV cell: quoted when needed; a leading = + - @ is neutralised so that a spreadsheet shows it as text. */
function cell(v: unknown): string {
  let s = v === undefined || v === null ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The devices list as CSV (UTF-8 with a BOM, so that spreadsheets read Vietnamese names right). */
export function devicesCsv(list: readonly (Device & { online: boolean })[]): string {
  const head = 'id,name,family,zone,online,lastSeenAt,createdAt,lat,lon';
  const rows = list.map((x) =>
    [x.id, x.name, x.family, x.zone, x.online, x.lastSeenAt, x.createdAt, x.location.lat, x.location.lon].map(cell).join(','),
  );
  return `\ufeff${[head, ...rows].join('\r\n')}\r\n`;
}

const gzipAsync = promisify(gzip);

/** The columns of a row of GET /api/v1/map/devices, in order (the last two only when a row has them). */
export const MAP_DEVICE_FIELDS = ['id', 'family', 'zone', 'lat', 'lon', 'online', 'name', 'lastSeenAt'] as const;

/**
 * Every device as a row of arrays: family and zone as indexes into `families` and `zones`, position to 6
 * decimals (about 0.1 m), online as 0/1, the name and last-seen time (epoch ms) only when there are any. At
 * 50,000 devices this is about a third of the full list's JSON, and a tenth of it gzipped.
 */
export function mapDevices(
  list: readonly Device[],
  isOnline: (id: string) => boolean,
): { fields: typeof MAP_DEVICE_FIELDS; families: readonly Family[]; zones: string[]; devices: unknown[][] } {
  const zones: string[] = [];
  const zoneIndex = new Map<string, number>();
  const rows = list.map((x) => {
    let z = zoneIndex.get(x.zone);
    if (z === undefined) {
      z = zones.push(x.zone) - 1;
      zoneIndex.set(x.zone, z);
    }
    const row: unknown[] = [
      x.id,
      FAMILIES.indexOf(x.family),
      z,
      Math.round(x.location.lat * 1e6) / 1e6,
      Math.round(x.location.lon * 1e6) / 1e6,
      isOnline(x.id) ? 1 : 0,
    ];
    const seen = x.lastSeenAt ? Date.parse(x.lastSeenAt) : undefined;
    if (x.name || seen) row.push(x.name ?? null);
    if (seen) row.push(seen);
    return row;
  });
  return { fields: MAP_DEVICE_FIELDS, families: FAMILIES, zones, devices: rows };
}

export function deviceRoutes(d: ApiDeps): RouteDef[] {
  const onlineSet = async () => new Set(await d.presence.onlineIds());
  const withOnline = (online: Set<string>) => (dev: Device) => ({ ...dev, online: online.has(dev.id) });
  /**
   * Online state (broker) and open alarms (alarm engine) as sets of ids the store joins in SQL: a page with
   * these filters is still one query, counted and cut by the database.
   */
  const idSets = async (
    q: { online?: boolean; openAlarm?: boolean },
    online: Set<string>,
  ): Promise<{ onlyIds?: string[]; exceptIds?: string[] }> => {
    let only: Set<string> | undefined;
    const except: string[] = [];
    if (q.online !== undefined) {
      if (q.online) only = new Set(online);
      else except.push(...online);
    }
    if (q.openAlarm !== undefined) {
      const withAlarm = new Set<string>();
      const n = (await d.alarms?.count({ state: 'open' })) ?? 0;
      if (n > 0)
        for (const a of (await d.alarms?.list({ state: 'open', limit: n })) ?? []) if (a.scope === 'device') withAlarm.add(a.subject);
      if (q.openAlarm) only = only ? new Set([...only].filter((id) => withAlarm.has(id))) : withAlarm;
      else except.push(...withAlarm);
    }
    return { onlyIds: only && [...only], exceptIds: except.length ? except : undefined };
  };
  return [
    {
      method: 'get',
      path: '/api/v1/devices',
      summary: 'List devices, with filters, search, sorting and paging (or the same list as CSV)',
      tag: 'devices',
      role: 'viewer',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          q: {
            type: 'string',
            maxLength: 200,
            description: 'Words found in the id or the name, in any case, with or without diacritics ("tran phu" finds "Trần Phú")',
          },
          family: { type: 'string', enum: FAMILIES },
          zone: { type: 'string' },
          online: { type: 'boolean' },
          openAlarm: { type: 'boolean', description: 'true: devices with an open alarm (active or acknowledged); false: without' },
          includeRevoked: { type: 'boolean', default: false },
          sort: { type: 'string', enum: DEVICE_SORTS, default: 'id' },
          order: { type: 'string', enum: ['asc', 'desc'], default: 'asc' },
          limit: { type: 'integer', minimum: 1, maximum: 1000, description: 'Page size (default: every match)' },
          offset: { type: 'integer', minimum: 0, default: 0 },
          format: { type: 'string', enum: ['json', 'csv'], default: 'json', description: 'csv: the same list as text/csv' },
        },
      },
      responses: {
        200: {
          description:
            'devices (X-Total-Count: how many match in all); with format=csv, text/csv: id, name, family, zone, online, lastSeenAt, createdAt, lat, lon',
          schema: { type: 'array', items: deviceSchema },
        },
      },
      handler: async (req, res) => {
        const q = req.query as {
          q?: string;
          family?: Family;
          zone?: string;
          online?: boolean;
          openAlarm?: boolean;
          includeRevoked?: boolean;
          sort?: DeviceSort;
          order?: 'asc' | 'desc';
          limit?: number;
          offset?: number;
          format?: 'json' | 'csv';
        };
        const online = await onlineSet();
        const out = await d.devices.query({ ...q, ...(await idSets(q, online)) });
        const list = out.devices.map(withOnline(online));
        res.setHeader('X-Total-Count', String(out.total));
        if (q.format === 'csv') {
          res.type('text/csv; charset=utf-8');
          res.setHeader('Content-Disposition', 'attachment; filename="devices.csv"');
          res.send(devicesCsv(list));
          return;
        }
        res.json(list);
      },
    },
    {
      method: 'get',
      path: '/api/v1/map/devices',
      summary:
        'Every device (not revoked) in a compact form for maps and overviews: id, family, ward, position, online, name, last seen (gzip when the client accepts it)',
      tag: 'devices',
      role: 'viewer',
      responses: {
        200: {
          description:
            '`devices`: one array per device in the order of `fields` (id, family index into `families`, zone index into `zones`, lat, lon, online 0/1, then name or null and last-seen epoch ms when the device has them)',
          schema: {
            type: 'object',
            properties: {
              fields: { type: 'array', items: { type: 'string' } },
              families: { type: 'array', items: { type: 'string', enum: FAMILIES } },
              zones: { type: 'array', items: { type: 'string' } },
              devices: { type: 'array', items: { type: 'array' } },
            },
          },
        },
      },
      handler: async (req, res) => {
        const online = await onlineSet();
        const body = JSON.stringify(mapDevices(await d.devices.list(), (id) => online.has(id)));
        res.type('application/json; charset=utf-8');
        res.vary('Accept-Encoding');
        // Compressed here, for this one large answer, with Node's own zlib: the API's other answers are small and
        // the live data go over socket.io, so a compression middleware for every route would buy nothing more.
        if (req.acceptsEncodings('gzip', 'identity') === 'gzip') {
          res.setHeader('Content-Encoding', 'gzip');
          res.send(await gzipAsync(body, { level: 6 }));
          return;
        }
        res.send(body);
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
        res.status(201).json({ device: withOnline(await onlineSet())(out.device), token: out.token });
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
        res.json({ ...withOnline(await onlineSet())(dev), lastReading });
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
        res.json(withOnline(await onlineSet())(dev));
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
