/**
 * Routes of the operator reports: a city day or month of energy per ward, lamp burning and fault hours, days per
 * AQI category and congestion hours, as JSON or CSV (for the dashboard's Reports page and for a province's
 * data-sharing platform pulling them). The figures and their rules are analytics' (analytics/reports.ts).
 */
import type { Request, Response } from 'express';
import { REPORT_KINDS, reportCsv, type Analytics, type ReportKind } from '../analytics/index.ts';
import { PlatformError } from '../core/errors.ts';
import type { Family } from '../ingest/index.ts';
import type { DeviceStore } from '../registry/index.ts';
import { problem, type RouteDef } from './route-kit.ts';

const names = { type: 'object', properties: { vi: { type: 'string' }, en: { type: 'string' } } } as const;
const num = { type: 'number' } as const;
const int = { type: 'integer' } as const;
const str = { type: 'string' } as const;
const obj = (properties: Record<string, object>) => ({ type: 'object', properties }) as const;
const list = (items: object) => ({ type: 'array', items }) as const;
const counts = {
  type: 'object',
  description: 'Days per category key of the scale (VN_AQI: good … hazardous; US EPA: good … hazardous), and noData',
  additionalProperties: { type: 'integer' },
} as const;
const series = (fields: Record<string, object>) =>
  list(
    obj({
      time: { type: 'integer', description: 'epoch ms: start of the hour (day report) or city day (month report)' },
      label: str,
      ...fields,
    }),
  );

const periodQuery = {
  day: {
    type: 'string',
    pattern: '^\\d{4}-\\d{2}-\\d{2}$',
    description: 'A city day, YYYY-MM-DD (the city profile’s time zone); give day or month',
  },
  month: { type: 'string', pattern: '^\\d{4}-\\d{2}$', description: 'A city month, YYYY-MM; give day or month' },
  ward: { type: 'string', maxLength: 64, description: 'Only this zone (and the zones under it); a zone id of the city profile' },
} as const;

const reportSchemas = {
  energy: obj({
    unit: { const: 'kWh' },
    method: { const: 'energyCounter', description: 'From the lamps’ cumulative energyConsumed counters' },
    wards: list(obj({ zone: str, name: names, lamps: int, energyKWh: num })),
    lamps: list(obj({ id: str, name: str, zone: str, energyKWh: num })),
    series: series({ energyKWh: num }),
    total: obj({ lamps: int, energyKWh: num }),
  }),
  lighting: obj({
    wards: list(obj({ zone: str, name: names, lamps: int, burningHours: num, faultyLamps: int, faultHours: num })),
    lamps: list(obj({ id: str, name: str, zone: str, burningHours: num, faultHours: num, faulty: { type: 'boolean' } })),
    series: series({ burningHours: num, faultHours: num }),
    total: obj({ lamps: int, burningHours: num, faultyLamps: int, faultHours: num }),
  }),
  aqi: obj({
    days: { type: 'integer', description: 'Days of the period counted (those begun in the city)' },
    minHours: { type: 'integer', description: 'Hours of PM means a day needs for its daily index (18 of 24)' },
    categories: obj({ vn: list(str), epa: list(str) }),
    stations: list(
      obj({
        id: str,
        name: str,
        zone: str,
        vn: counts,
        epa: counts,
        daily: list(
          obj({
            date: { type: 'string', format: 'date' },
            hours: int,
            vn: { type: ['object', 'null'], properties: { aqi: int, level: int, category: str } },
            epa: { type: ['object', 'null'], properties: { aqi: int, level: int, category: str } },
          }),
        ),
      }),
    ),
    wards: list(obj({ zone: str, name: names, stations: int, vn: counts, epa: counts })),
    total: obj({ stations: int, vn: counts, epa: counts }),
  }),
  congestion: obj({
    junctions: list(obj({ id: str, name: str, zone: str, congestedHours: int })),
    wards: list(obj({ zone: str, name: names, junctions: int, congestedHours: int })),
    series: series({ congestedHours: int }),
    total: obj({ junctions: int, congestedHours: int }),
  }),
} as const;

const head = {
  period: obj({
    period: { type: 'string', enum: ['day', 'month'] },
    key: str,
    from: { type: 'string', format: 'date-time', description: 'The city’s midnight starting the period' },
    to: { type: 'string', format: 'date-time', description: 'The city’s midnight ending it (exclusive)' },
    timezone: str,
  }),
  ward: { type: ['string', 'null'] },
  generatedAt: { type: 'string', format: 'date-time' },
};

const RULES =
  'Energy from the energyConsumed counters (a counter that went down counts its new value; a reading at midnight closes the day it ends); ' +
  'burning and fault hours as the share of each hour’s readings with the lamp on (or faulty); a day’s VN_AQI and US EPA AQI from its hourly means, ' +
  '"noData" with fewer than 18 hours of PM means, a ward’s day is its worst station’s; a congestion hour is one in which at least half of the junction’s readings were congested.';

const FAMILY_OF: Record<ReportKind, Family> = { energy: 'streetLight', lighting: 'streetLight', aqi: 'airQuality', congestion: 'traffic' };

/** Device names of the families the reports need, by id. */
async function deviceNames(devices: DeviceStore, kinds: readonly ReportKind[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const family of new Set(kinds.map((k) => FAMILY_OF[k]))) {
    for (const d of await devices.list({ family, includeRevoked: true })) if (d.name) out.set(d.id, d.name);
  }
  return out;
}

function reportsOf(analytics: Analytics | undefined) {
  if (!analytics) throw new PlatformError('CP_API_NOT_FOUND', 'reports need analytics, which this node does not run');
  return analytics.reports;
}

export function reportRoutes(analytics: Analytics | undefined, devices: DeviceStore): RouteDef[] {
  return [
    {
      method: 'get',
      path: '/api/v1/reports',
      summary:
        'All operator reports of a city day or month: energy per ward, lamp burning hours and faults, days per AQI category, congestion hours',
      tag: 'reports',
      role: 'viewer',
      query: { type: 'object', additionalProperties: false, properties: periodQuery },
      responses: {
        200: {
          description: `The four reports. ${RULES}`,
          schema: obj({ ...head, ...reportSchemas }),
        },
        400: {
          description: `${problem.description}: no day or month, both, a date that is not one, a future period, or an unknown ward`,
          schema: problem.schema,
        },
      },
      handler: async (req, res) => {
        const q = req.query as { day?: string; month?: string; ward?: string };
        const reports = reportsOf(analytics);
        const period = reports.period(q);
        res.json(await reports.build(period, { ward: q.ward, names: await deviceNames(devices, REPORT_KINDS) }));
      },
    },
    {
      method: 'get',
      path: '/api/v1/reports/:report',
      summary: 'One operator report of a city day or month, as JSON or CSV (format=csv or Accept: text/csv)',
      tag: 'reports',
      role: 'viewer',
      params: { type: 'object', required: ['report'], properties: { report: { type: 'string', enum: REPORT_KINDS } } },
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          ...periodQuery,
          format: { type: 'string', enum: ['json', 'csv'], description: 'csv, or json (default; Accept: text/csv also gives csv)' },
        },
      },
      responses: {
        200: {
          description:
            `The report (JSON: period, ward, generatedAt and the report under its name). CSV (RFC 4180): a row per ward, per device and the total, ` +
            `each with its level; the AQI rows name their scale and count days per category level 1..6, then noData. ${RULES}`,
          schema: obj({ ...head, report: { type: 'string', enum: REPORT_KINDS }, ...reportSchemas }),
          also: { 'text/csv': { type: 'string' } },
        },
        400: {
          description: `${problem.description}: no day or month, both, a date that is not one, a future period, or an unknown ward`,
          schema: problem.schema,
        },
      },
      handler: async (req: Request, res: Response) => {
        const kind = req.params.report as ReportKind;
        const q = req.query as { day?: string; month?: string; ward?: string; format?: 'json' | 'csv' };
        const reports = reportsOf(analytics);
        const period = reports.period(q);
        const csv = q.format === 'csv' || (q.format === undefined && req.accepts(['application/json', 'text/csv']) === 'text/csv');
        const r = await reports.build(period, { ward: q.ward, kinds: [kind], names: await deviceNames(devices, [kind]) });
        if (!csv) return void res.json({ period: r.period, ward: r.ward, generatedAt: r.generatedAt, report: kind, [kind]: r[kind] });
        const file = `citypulse-${kind}-${period.key}${q.ward ? `-${q.ward}` : ''}.csv`;
        res.type('text/csv; charset=utf-8').set('content-disposition', `attachment; filename="${file}"`).send(reportCsv(r, kind));
      },
    },
  ];
}
