/**
 * Routes of commands and schedules, spliced into the route table of routes.ts. Operators create;
 * viewers read. Commands answer 202: they are accepted and stored, their delivery happens later (follow their
 * state here or on the bus).
 */
import { COMMAND_ID_PATTERN, DEVICE_ID_PATTERN } from '../ingest/index.ts';
import type { Commands } from '../commands/index.ts';
import { BATCH_ACTIONS, BATCH_OUTCOMES, TIME_OF_DAY_PATTERN } from '../commands/index.ts';
import { PlatformError } from '../core/errors.ts';
import { principalOf, problem, type RouteDef } from './route-kit.ts';

const STATES = ['pending', 'delivered', 'acknowledged', 'failed', 'expired'] as const;

const target = {
  description: 'Which devices: a list of device ids, or every street light of a zone (and of the zones below it)',
  oneOf: [
    {
      type: 'object',
      additionalProperties: false,
      required: ['devices'],
      properties: {
        devices: { type: 'array', minItems: 1, maxItems: 1000, items: { type: 'string', pattern: DEVICE_ID_PATTERN } },
      },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['zone'],
      properties: { zone: { type: 'string', minLength: 1, maxLength: 64 } },
    },
  ],
} as const;
const action = {
  type: 'object',
  description:
    'streetLight: { powerState?: "on" | "off", illuminanceLevel?: 0..1 }, at least one (schema: GET /api/v1/contract → commands.actions); a wrong one is CP_COMMAND_BAD_ACTION',
} as const;
const ttlMs = {
  type: 'integer',
  minimum: 1000,
  description: 'Expire if not acknowledged within this time, ms (default commands.defaultTtlMs)',
} as const;
const commandSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    device: { type: 'string' },
    zone: { type: 'string' },
    family: { type: 'string' },
    action: { type: 'object' },
    state: { type: 'string', enum: STATES },
    reason: { type: ['string', 'null'], description: 'Why it failed (from the device) or expired' },
    createdAt: { type: 'string', format: 'date-time' },
    createdBy: { type: 'string', description: 'Operator, `(service token)`, or `schedule:<id>`' },
    expiresAt: { type: 'string', format: 'date-time' },
    deliveredAt: { type: ['string', 'null'], format: 'date-time', description: 'The device’s MQTT PUBACK' },
    acknowledgedAt: { type: ['string', 'null'], format: 'date-time', description: 'The device’s answer (ok or failed)' },
    batch: { type: ['string', 'null'], description: 'Group: one request, or the schedule id' },
  },
} as const;
const batchSchema = {
  type: 'object',
  properties: {
    batch: { type: 'string', description: 'Batch id (a schedule’s batches share the schedule id, one per edge)' },
    createdAt: { type: 'string', format: 'date-time' },
    createdBy: { type: 'string', description: 'Operator, `(service token)`, or `schedule:<id>`' },
    action: { type: 'object' },
    target: { type: ['object', 'null'], description: 'As asked: `{zone}` or `{devices}`' },
    zones: { type: 'array', items: { type: 'string' }, description: 'The zones of its devices' },
    size: { type: 'integer', description: 'Commands (one per device)' },
    states: {
      type: 'object',
      description: 'Commands per state now',
      properties: Object.fromEntries(STATES.map((s) => [s, { type: 'integer' }])),
    },
    reached: { type: 'integer', description: 'Commands that reached their device (PUBACK or an answer)' },
    finishedAt: { type: ['string', 'null'], format: 'date-time', description: 'When the last one finished, once none is open' },
  },
} as const;
const scheduleSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    target: { type: 'object' },
    from: { type: 'string' },
    to: { type: 'string' },
    action: { type: 'object' },
    endAction: { type: ['object', 'null'] },
    ttlMs: { type: ['integer', 'null'] },
    enabled: { type: 'boolean' },
    timeZone: { type: 'string' },
    createdAt: { type: 'string', format: 'date-time' },
    createdBy: { type: 'string' },
    lastEdge: { type: ['object', 'null'] },
  },
} as const;
const commandParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: COMMAND_ID_PATTERN } } } as const;

/** Empty when the platform runs without commands. */
export function commandRoutes(commands: Commands | undefined): RouteDef[] {
  if (!commands) return [];
  return [
    {
      method: 'post',
      path: '/api/v1/commands',
      summary: 'Send a command to street lights (a list or a zone): one command per device, one batch',
      tag: 'commands',
      role: 'operator',
      audit: 'command.create',
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['target', 'action'],
        properties: { target, action, ttlMs },
      },
      responses: {
        202: {
          description: 'accepted: the batch id and the commands created (state pending, or already further)',
          schema: { type: 'object', properties: { batch: { type: 'string' }, commands: { type: 'array', items: commandSchema } } },
        },
        400: problem,
        404: problem,
        409: problem,
      },
      handler: async (req, res) => {
        const body = req.body as Parameters<Commands['create']>[0];
        const out = await commands.create(body, principalOf(res).username);
        res.locals.auditTarget = `batch ${out.batch} (${out.commands.length} commands)`;
        res.status(202).json(out);
      },
    },
    {
      method: 'get',
      path: '/api/v1/commands',
      summary: 'Commands, newest first, filtered by device, state or batch',
      tag: 'commands',
      role: 'viewer',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          device: { type: 'string', maxLength: 64 },
          state: { type: 'string', enum: STATES },
          batch: { type: 'string', maxLength: 64 },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
        },
      },
      responses: { 200: { description: 'commands', schema: { type: 'array', items: commandSchema } } },
      handler: async (req, res) => res.json(await commands.list(req.query as unknown as Parameters<Commands['list']>[0])),
    },
    {
      method: 'get',
      path: '/api/v1/commands/batches',
      summary:
        'The command history: one entry per request or schedule edge (who, what, target, when) with how many of its commands reached their device, were carried out, failed or expired; newest first',
      tag: 'commands',
      role: 'viewer',
      query: {
        type: 'object',
        additionalProperties: false,
        properties: {
          by: { type: 'string', maxLength: 200, description: 'Who created it: operator, `(service token)` or `schedule:<id>`' },
          zone: { type: 'string', maxLength: 64, description: 'Batches with a device in this zone' },
          device: { type: 'string', maxLength: 64, description: 'Batches with this device' },
          action: { type: 'string', enum: BATCH_ACTIONS, description: 'off = switch off; dim = a light level; on = switch on' },
          outcome: {
            type: 'string',
            enum: BATCH_OUTCOMES,
            description: 'open = some still pending or delivered; done = all carried out; failed = some failed or expired',
          },
          since: { type: 'string', format: 'date-time', description: 'Created at or after' },
          until: { type: 'string', format: 'date-time', description: 'Created at or before' },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
          offset: { type: 'integer', minimum: 0, maximum: 1_000_000, default: 0 },
        },
      },
      responses: { 200: { description: 'batches', schema: { type: 'array', items: batchSchema } }, 400: problem },
      handler: async (req, res) => res.json(await commands.batches(req.query as unknown as Parameters<Commands['batches']>[0])),
    },
    {
      method: 'get',
      path: '/api/v1/commands/:id',
      summary: 'One command with its state',
      tag: 'commands',
      role: 'viewer',
      params: commandParams,
      responses: { 200: { description: 'command', schema: commandSchema }, 404: problem },
      handler: async (req, res) => {
        const c = await commands.get(req.params.id as string);
        if (!c) throw new PlatformError('CP_COMMAND_NOT_FOUND', `no command ${req.params.id}`);
        res.json(c);
      },
    },
    {
      method: 'get',
      path: '/api/v1/schedules',
      summary: 'Schedules (times are local to the city’s time zone)',
      tag: 'commands',
      role: 'viewer',
      responses: { 200: { description: 'schedules', schema: { type: 'array', items: scheduleSchema } } },
      handler: async (_req, res) => res.json(await commands.listSchedules()),
    },
    {
      method: 'get',
      path: '/api/v1/schedules/:id',
      summary: 'One schedule, with the last edge that created commands',
      tag: 'commands',
      role: 'viewer',
      params: commandParams,
      responses: { 200: { description: 'schedule', schema: scheduleSchema }, 404: problem },
      handler: async (req, res) => {
        const s = await commands.getSchedule(req.params.id as string);
        if (!s) throw new PlatformError('CP_COMMAND_SCHEDULE_NOT_FOUND', `no schedule ${req.params.id}`);
        res.json(s);
      },
    },
    {
      method: 'post',
      path: '/api/v1/schedules',
      summary:
        'Create a schedule: at `from` (local time, HH:MM or HH:MM:SS) every target device gets `action`, at `to` `endAction`; the commands share the schedule id as batch',
      tag: 'commands',
      role: 'operator',
      audit: 'schedule.create',
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'target', 'from', 'to', 'action'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 200 },
          target,
          from: { type: 'string', pattern: TIME_OF_DAY_PATTERN, description: 'Start, local time of the city (HH:MM or HH:MM:SS)' },
          to: { type: 'string', pattern: TIME_OF_DAY_PATTERN, description: 'End, local time; may be past midnight (before `from`)' },
          action,
          endAction: { ...action, description: 'Sent at `to` (none when absent)' },
          ttlMs,
          enabled: { type: 'boolean', default: true },
        },
      },
      responses: { 201: { description: 'the schedule', schema: scheduleSchema }, 400: problem, 404: problem, 409: problem },
      handler: async (req, res) => {
        const s = await commands.createSchedule(req.body as Parameters<Commands['createSchedule']>[0], principalOf(res).username);
        res.locals.auditTarget = s.id;
        res.status(201).json(s);
      },
    },
    {
      method: 'delete',
      path: '/api/v1/schedules/:id',
      summary: 'Delete a schedule (commands it already created keep their course)',
      tag: 'commands',
      role: 'operator',
      audit: 'schedule.delete',
      params: commandParams,
      responses: { 200: { description: 'the deleted schedule', schema: scheduleSchema }, 404: problem },
      handler: async (req, res) => res.json(await commands.deleteSchedule(req.params.id as string)),
    },
  ];
}
