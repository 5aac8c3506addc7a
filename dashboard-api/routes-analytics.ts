/**
 * Routes of analytics: current air-quality indices (VN_AQI and, labelled apart, the US
 * EPA AQI), both scales, index history from the `aqi` measurement, and current derived indicators.
 */
import { escape as influxEscape } from 'influx';
import {
  AQI_MEASUREMENT,
  createCityClock,
  DAY_MIN_HOURS,
  describeIndex,
  EPA_AQI_SCALE,
  epaCategory,
  VN_AQI_SCALE,
  vnCategory,
  type Analytics,
  type CityClock,
  type CurrentAqi,
} from '../analytics/index.ts';
import type { AqiEvent } from '../core/bus.ts';
import { DEVICE_ID_PATTERN, FAMILIES, type Family } from '../ingest/index.ts';
import { chooseWindow, cityWindowOffsetMs, HISTORY_RANGE_TEXT, parseRange, type HistoryTarget } from './history.ts';
import { problem, type RouteDef } from './route-kit.ts';

const names = { type: 'object', properties: { vi: { type: 'string' }, en: { type: 'string' } } } as const;
const rgb = { type: 'object', properties: { r: { type: 'integer' }, g: { type: 'integer' }, b: { type: 'integer' } } } as const;
const described = {
  type: ['object', 'null'],
  description: 'An index value with its category names and colour; null when it cannot be computed (VN_AQI needs PM10 or PM2.5)',
  properties: {
    scale: { type: 'string', enum: ['vn_aqi', 'us_epa_aqi'] },
    aqi: { type: 'integer' },
    level: { type: 'integer', minimum: 1, maximum: 6 },
    category: { type: 'string' },
    name: names,
    color: { type: 'string', description: '#rrggbb' },
    rgb,
    dominant: { type: 'string', description: 'pm25 | pm10 | o3 | no2 | so2 | co' },
    subIndices: { type: 'object', additionalProperties: { type: 'integer' } },
  },
} as const;
const periodIndex = {
  type: ['object', 'null'],
  properties: {
    period: { type: 'string', enum: ['hour', 'day'] },
    time: {
      type: 'string',
      format: 'date-time',
      description:
        'Start of the hour, or of the city-local day (the city’s midnight in UTC: e.g. 2 Dec in Asia/Ho_Chi_Minh, UTC+7, starts 2026-12-01T17:00:00Z)',
    },
    date: { type: 'string', format: 'date', description: 'Daily index only: the city-local date the index is for (YYYY-MM-DD)' },
    hours: {
      type: 'integer',
      minimum: 0,
      maximum: 24,
      description: `Daily index only: the day's hours with a PM2.5 or PM10 mean; the daily index needs ${DAY_MIN_HOURS} of 24`,
    },
    minHours: { type: 'integer', description: `Daily index only: hours a day needs for its index (${DAY_MIN_HOURS})` },
    reason: {
      type: 'string',
      enum: ['incompleteDay'],
      description: `Why vn and epa are null: incompleteDay = fewer than ${DAY_MIN_HOURS} hours of the day have PM means (no daily index yet)`,
    },
    vn: described,
    epa: described,
  },
} as const;
const currentSchema = {
  type: 'object',
  properties: {
    scope: { type: 'string', enum: ['station', 'zone'] },
    id: { type: 'string' },
    zone: { type: 'string' },
    hour: periodIndex,
    day: periodIndex,
  },
} as const;
const category = {
  type: 'object',
  properties: {
    level: { type: 'integer' },
    key: { type: 'string' },
    min: { type: 'integer' },
    max: { type: 'integer' },
    name: names,
    color: { type: 'string' },
    rgb,
  },
} as const;
const indicatorSchema = {
  type: 'object',
  properties: {
    scope: { type: 'string', enum: ['device', 'zone', 'city'] },
    id: { type: 'string' },
    zone: { type: 'string' },
    family: { type: 'string', enum: FAMILIES },
    time: { type: 'integer', description: 'epoch ms: the device’s last observation, or when a zone/city value was computed' },
    values: { type: 'object', additionalProperties: { type: ['number', 'boolean', 'string'] } },
  },
} as const;

function describePeriod(e: AqiEvent | null, clock: CityClock) {
  if (!e) return null;
  const day =
    e.period === 'day'
      ? {
          date: clock.dayKey(e.time),
          hours: e.hours ?? 0,
          minHours: DAY_MIN_HOURS,
          ...(!e.vn && !e.epa && (e.hours ?? 0) < DAY_MIN_HOURS ? { reason: 'incompleteDay' } : {}),
        }
      : {};
  return {
    period: e.period,
    time: new Date(e.time).toISOString(),
    ...day,
    vn: describeIndex('vn_aqi', e.vn),
    epa: describeIndex('us_epa_aqi', e.epa),
  };
}

const describeCurrent = (c: CurrentAqi, clock: CityClock) => ({
  scope: c.scope,
  id: c.id,
  zone: c.zone,
  hour: describePeriod(c.hour, clock),
  day: describePeriod(c.day, clock),
});

export function analyticsRoutes(analytics: Analytics | undefined, history: HistoryTarget): RouteDef[] {
  const clock = createCityClock(history.timezone);
  return [
    {
      method: 'get',
      path: '/api/v1/aqi',
      summary: 'Current air-quality indices per station and per zone (a zone = its worst station): VN_AQI and, apart, the US EPA AQI',
      tag: 'analytics',
      role: 'viewer',
      query: { type: 'object', additionalProperties: false, properties: { zone: { type: 'string', maxLength: 64 } } },
      responses: {
        200: {
          description:
            'stations and zones, each with its hourly (NowCast) and daily index; the daily index is for the city-local day (`date`) and is null with reason incompleteDay until 18 of its 24 hours have PM means',
          schema: {
            type: 'object',
            properties: { stations: { type: 'array', items: currentSchema }, zones: { type: 'array', items: currentSchema } },
          },
        },
        400: problem,
      },
      // Analytics may run on the store worker thread: its reads are then answered by a message.
      handler: async (req, res) => {
        const zone = (req.query as { zone?: string }).zone;
        const cur = (await analytics?.currentAqi()) ?? { stations: [], zones: [] };
        const keep = (c: CurrentAqi) => !zone || c.zone === zone;
        const describe = (c: CurrentAqi) => describeCurrent(c, clock);
        res.json({ stations: cur.stations.filter(keep).map(describe), zones: cur.zones.filter(keep).map(describe) });
      },
    },
    {
      method: 'get',
      path: '/api/v1/aqi/scales',
      summary: 'Both index scales: breakpoints, categories, Vietnamese and English names, colours',
      tag: 'analytics',
      role: 'viewer',
      responses: {
        200: {
          description: 'vn (VN_AQI, Decision 1459/QĐ-TCMT) and epa (US EPA AQI, for comparison)',
          schema: {
            type: 'object',
            properties: {
              vn: {
                type: 'object',
                properties: {
                  id: { const: 'vn_aqi' },
                  name: names,
                  source: { type: 'string' },
                  unit: { type: 'string' },
                  indexBreakpoints: { type: 'array', items: { type: 'integer' } },
                  breakpoints: {
                    type: 'object',
                    description: 'Concentration breakpoints per row (o3_1h, o3_8h, co, so2, no2, pm10, pm25), µg/m³',
                    additionalProperties: { type: 'array', items: { type: 'number' } },
                  },
                  categories: { type: 'array', items: category },
                },
              },
              epa: {
                type: 'object',
                properties: {
                  id: { const: 'us_epa_aqi' },
                  name: names,
                  source: { type: 'string' },
                  unit: { type: 'string' },
                  breakpoints: {
                    type: 'object',
                    description: 'Bands per pollutant (pm25, pm10): concentrations cLo..cHi map to iLo..iHi',
                    additionalProperties: {
                      type: 'array',
                      items: {
                        type: 'object',
                        properties: {
                          cLo: { type: 'number' },
                          cHi: { type: 'number' },
                          iLo: { type: 'integer' },
                          iHi: { type: 'integer' },
                        },
                      },
                    },
                  },
                  categories: { type: 'array', items: category },
                },
              },
            },
          },
        },
      },
      handler: (_req, res) => res.json({ vn: VN_AQI_SCALE, epa: EPA_AQI_SCALE }),
    },
    {
      method: 'get',
      path: '/api/v1/aqi/history',
      summary: 'Index history of a station or zone from InfluxDB, the worst (max) value per window; at most a few hundred points',
      tag: 'analytics',
      role: 'viewer',
      query: {
        type: 'object',
        additionalProperties: false,
        required: ['scope', 'id'],
        properties: {
          scope: { type: 'string', enum: ['station', 'zone'] },
          id: { type: 'string', pattern: DEVICE_ID_PATTERN, description: 'Station (device) id or zone id' },
          period: { type: 'string', enum: ['hour', 'day'], default: 'hour', description: 'Hourly (NowCast) or daily index' },
          from: { type: 'string', format: 'date-time', description: `Start (default: to − 24 h); ${HISTORY_RANGE_TEXT}, before to` },
          to: { type: 'string', format: 'date-time', description: `End, exclusive (default: now); ${HISTORY_RANGE_TEXT}` },
        },
      },
      responses: {
        200: {
          description: 'series: per window the highest VN_AQI and the highest EPA AQI, each with its category',
          schema: {
            type: 'object',
            properties: {
              scope: { type: 'string' },
              id: { type: 'string' },
              period: { type: 'string' },
              window: { type: 'string' },
              from: { type: 'string', format: 'date-time' },
              to: { type: 'string', format: 'date-time' },
              points: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    time: {
                      type: 'integer',
                      description:
                        'epoch ms, start of the window; windows of a day are city-local days, starting at the city’s midnight (e.g. 17:00 UTC the day before in Asia/Ho_Chi_Minh, UTC+7)',
                    },
                    date: { type: 'string', format: 'date', description: 'Windows of a day only: the city-local date (YYYY-MM-DD)' },
                    vn: {
                      type: ['object', 'null'],
                      properties: {
                        aqi: { type: 'integer' },
                        level: { type: 'integer' },
                        category: { type: 'string' },
                        name: names,
                        color: { type: 'string' },
                      },
                    },
                    epa: {
                      type: ['object', 'null'],
                      properties: {
                        aqi: { type: 'integer' },
                        level: { type: 'integer' },
                        category: { type: 'string' },
                        name: names,
                        color: { type: 'string' },
                      },
                    },
                  },
                },
              },
            },
          },
        },
        400: {
          description: `${problem.description}: a time that is not ${HISTORY_RANGE_TEXT}, or from not before to`,
          schema: problem.schema,
        },
      },
      handler: async (req, res) => {
        const q = req.query as { scope: 'station' | 'zone'; id: string; period: 'hour' | 'day'; from?: string; to?: string };
        const { fromMs, toMs } = parseRange(q, 86_400_000);
        // Indices are stored per hour (or day): a finer window than that would only repeat points.
        let window = chooseWindow(fromMs, toMs) as string;
        const floor = q.period === 'day' ? 86_400_000 : 3_600_000;
        const ms: Record<string, number> = { '10s': 1e4, '1m': 6e4, '5m': 3e5, '15m': 9e5, '1h': 3.6e6, '6h': 2.16e7, '1d': 8.64e7 };
        if ((ms[window] ?? 0) < floor) window = q.period === 'day' ? '1d' : '1h';
        const offset = cityWindowOffsetMs(ms[window] ?? 0, history.timezone, fromMs);
        const src = `${influxEscape.quoted(history.database)}.${influxEscape.quoted(history.retentionPolicy)}.${influxEscape.quoted(AQI_MEASUREMENT)}`;
        const sql =
          `SELECT max("vn_aqi") AS "vn_aqi", max("epa_aqi") AS "epa_aqi" FROM ${src} ` +
          `WHERE "scope" = ${influxEscape.stringLit(q.scope)} AND "id" = ${influxEscape.stringLit(q.id)} AND "period" = ${influxEscape.stringLit(q.period)} ` +
          `AND time >= ${fromMs}ms AND time < ${toMs}ms GROUP BY time(${window}, ${offset}ms) fill(none)`;
        const raw = (await history.influx.queryRaw(sql, { precision: 'ms' })) as {
          results?: { series?: { columns: string[]; values: unknown[][] }[]; error?: string }[];
        };
        const points: unknown[] = [];
        for (const r of raw.results ?? []) {
          if (r.error) throw new Error(r.error);
          for (const s of r.series ?? []) {
            const at = (c: string) => s.columns.indexOf(c);
            for (const v of s.values) {
              const vn = v[at('vn_aqi')] as number | null;
              const epa = v[at('epa_aqi')] as number | null;
              const show = (aqi: number | null, cat: typeof vnCategory) => {
                if (aqi === null || aqi === undefined) return null;
                const c = cat(aqi);
                return { aqi, level: c.level, category: c.key, name: c.name, color: c.color };
              };
              const time = v[at('time')] as number;
              const date = window === '1d' ? { date: clock.dayKey(time) } : {};
              points.push({ time, ...date, vn: show(vn, vnCategory), epa: show(epa, epaCategory) });
            }
          }
        }
        res.json({
          scope: q.scope,
          id: q.id,
          period: q.period,
          window,
          from: new Date(fromMs).toISOString(),
          to: new Date(toMs).toISOString(),
          points,
        });
      },
    },
    {
      method: 'get',
      path: '/api/v1/indicators',
      summary: 'Current derived indicators of traffic junctions, street lights, zones and the city',
      tag: 'analytics',
      role: 'viewer',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          scope: { type: 'string', enum: ['device', 'zone', 'city'] },
          zone: { type: 'string', maxLength: 64 },
          family: { type: 'string', enum: ['traffic', 'streetLight'] },
        },
      },
      responses: { 200: { description: 'indicators', schema: { type: 'array', items: indicatorSchema } }, 400: problem },
      handler: async (req, res) => {
        const q = req.query as { scope?: 'device' | 'zone' | 'city'; zone?: string; family?: Family };
        res.json((await analytics?.indicators(q)) ?? []);
      },
    },
  ];
}
