/**
 * Alarm routes: list and filter alarms, one alarm with its timeline, acknowledge and clear (role
 * operator, audited by the route table as alarm.acknowledge / alarm.clear), and the effective rules.
 */
import type { Alarms } from '../alarms/index.ts';
import { ALARM_SORTS, SEVERITIES } from '../alarms/index.ts';
import { FAMILIES } from '../ingest/index.ts';
import { PlatformError } from '../core/errors.ts';
import type { AlarmFilter } from '../alarms/index.ts';
import { principalOf, problem, type RouteDef } from './route-kit.ts';

const STATES = ['active', 'acknowledged', 'cleared'] as const;
const nullableTime = { type: ['string', 'null'], format: 'date-time' } as const;

export const ALARM_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    rule: { type: 'string', description: 'Rule id (built-in ids are fixed: the dashboard translates by them)' },
    subject: { type: 'string', description: 'Device id, or zone id for zone-scoped rules' },
    scope: { type: 'string', enum: ['device', 'zone'] },
    family: { type: 'string', enum: FAMILIES },
    zone: { type: 'string' },
    severity: { type: 'string', enum: SEVERITIES },
    state: { type: 'string', enum: STATES },
    message: { type: 'string', description: 'Short English message with the values at the raise' },
    value: { type: ['number', 'string', 'boolean', 'null'], description: 'The value behind the alarm at the raise' },
    raisedAt: { type: 'string', format: 'date-time' },
    acknowledgedAt: nullableTime,
    acknowledgedBy: { type: ['string', 'null'] },
    clearedAt: nullableTime,
    clearedBy: { type: ['string', 'null'], description: "'system' when the condition ended, else the operator" },
    conditionClearedAt: { ...nullableTime, description: 'When the condition ended (null while it holds)' },
  },
} as const;

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER } },
} as const;
const note = { type: 'string', minLength: 1, maxLength: 1000 } as const;

/** The alarm routes; none when the platform runs without the alarm engine. */
export function alarmRoutes(alarms: Alarms | undefined): RouteDef[] {
  if (!alarms) return [];
  const changed = { 200: { description: 'the alarm', schema: ALARM_SCHEMA }, 400: problem, 404: problem, 409: problem };
  return [
    {
      method: 'get',
      path: '/api/v1/alarms',
      summary:
        'Alarms, filtered and sorted (default: active first, then by severity, critical … warning, then newest), a page at a time; the number of matches is in the X-Total-Count header',
      tag: 'alarms',
      role: 'viewer',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          state: { type: 'string', enum: [...STATES, 'open'], description: 'open = active or acknowledged' },
          severity: { type: 'string', enum: SEVERITIES },
          rule: { type: 'string', maxLength: 64 },
          zone: { type: 'string', maxLength: 64, description: 'The ward (zone id) of the device or zone' },
          family: { type: 'string', enum: FAMILIES },
          subject: { type: 'string', maxLength: 64, description: 'Device id or zone id the alarm is about' },
          device: { type: 'string', maxLength: 64, description: 'Same as subject' },
          since: { type: 'string', format: 'date-time', description: 'Alarms raised at or after this time' },
          until: { type: 'string', format: 'date-time', description: 'Alarms raised at or before this time' },
          q: {
            type: 'string',
            minLength: 1,
            maxLength: 200,
            description:
              'Text found in the subject, rule, zone, message, who acknowledged or cleared, or a note; in any case, with or without diacritics',
          },
          sort: {
            type: 'string',
            enum: ALARM_SORTS,
            default: 'default',
            description: 'default = active first, then by severity, then newest; duration = until cleared, or until now',
          },
          order: { type: 'string', enum: ['asc', 'desc'], default: 'desc', description: 'For every sort but default' },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
          offset: { type: 'integer', minimum: 0, maximum: 1_000_000, default: 0, description: 'Matches skipped (paging)' },
        },
      },
      responses: { 200: { description: 'alarms', schema: { type: 'array', items: ALARM_SCHEMA } }, 400: problem },
      handler: async (req, res) => {
        const q = req.query as unknown as AlarmFilter & { device?: string };
        const { device, ...filter } = q;
        if (device && filter.subject && device !== filter.subject) {
          throw new PlatformError('CP_API_VALIDATION', '`device` and `subject` name different subjects');
        }
        const f = { ...filter, subject: filter.subject ?? device };
        const [n, list] = await Promise.all([alarms.count(f), alarms.list(f)]);
        res.set('x-total-count', String(n));
        res.json(list);
      },
    },
    {
      method: 'get',
      path: '/api/v1/alarms/rules',
      summary: 'The effective alarm rules: built-in ones as tuned by config (alarms.defaults, alarms.disabled), then own rules',
      tag: 'alarms',
      role: 'viewer',
      responses: {
        200: {
          description: 'rules with their defaults filled in',
          schema: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                id: { type: 'string' },
                kind: { type: 'string', enum: ['threshold', 'state', 'noData', 'rateOfChange'] },
                source: { type: 'string', enum: ['reading', 'status', 'aqi'] },
                severity: { type: 'string', enum: SEVERITIES },
                forMs: { type: 'integer' },
                clearForMs: { type: 'integer' },
                builtIn: { type: 'boolean' },
              },
            },
          },
        },
      },
      handler: (_req, res) => res.json(alarms.rules()),
    },
    {
      method: 'get',
      path: '/api/v1/alarms/:id',
      summary: 'One alarm with its timeline (raise, acknowledge, clear: who, when, note)',
      tag: 'alarms',
      role: 'viewer',
      params: idParams,
      responses: {
        200: {
          description: 'the alarm and its notes',
          schema: {
            ...ALARM_SCHEMA,
            properties: {
              ...ALARM_SCHEMA.properties,
              notes: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    at: { type: 'string', format: 'date-time' },
                    actor: { type: 'string' },
                    action: { type: 'string', enum: ['raise', 'acknowledge', 'clear', 'condition-cleared'] },
                    note: { type: ['string', 'null'] },
                  },
                },
              },
            },
          },
        },
        400: problem,
        404: problem,
      },
      handler: async (req, res) => {
        const id = Number(req.params.id);
        const a = await alarms.get(id);
        if (!a) throw new PlatformError('CP_ALARM_NOT_FOUND', `no alarm ${id}`);
        res.json(a);
      },
    },
    {
      method: 'post',
      path: '/api/v1/alarms/:id/acknowledge',
      summary: 'Acknowledge an active alarm (optional note); another state gets 409 CP_ALARM_WRONG_STATE',
      tag: 'alarms',
      role: 'operator',
      audit: 'alarm.acknowledge',
      params: idParams,
      body: { type: 'object', additionalProperties: false, properties: { note } },
      responses: changed,
      handler: async (req, res) => {
        const id = Number(req.params.id);
        res.locals.auditTarget = `alarm:${id}`;
        res.json(await alarms.acknowledge(id, principalOf(res).username, (req.body as { note?: string }).note));
      },
    },
    {
      method: 'post',
      path: '/api/v1/alarms/:id/clear',
      summary:
        'Clear (close) an open alarm by hand, with a note saying why; a condition that still holds raises a new alarm once it has held the rule’s forMs again',
      tag: 'alarms',
      role: 'operator',
      audit: 'alarm.clear',
      params: idParams,
      body: { type: 'object', additionalProperties: false, required: ['note'], properties: { note } },
      responses: changed,
      handler: async (req, res) => {
        const id = Number(req.params.id);
        res.locals.auditTarget = `alarm:${id}`;
        res.json(await alarms.clear(id, principalOf(res).username, (req.body as { note: string }).note));
      },
    },
  ];
}
