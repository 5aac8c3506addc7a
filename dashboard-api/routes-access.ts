/** Routes of access: log in and out, who the token belongs to, operator accounts and the audit log. */
import type { PlatformError } from '../core/errors.ts';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, ROLES, USERNAME_PATTERN } from '../registry/index.ts';
import { noStore, principalOf, problem, type ApiDeps, type RouteDef } from './route-kit.ts';

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

/** Sessions, operator accounts and the audit log. */
export function accessRoutes(d: ApiDeps): RouteDef[] {
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
          offset: { type: 'integer', minimum: 0, default: 0, description: 'Records skipped (paging; X-Total-Count has how many match)' },
          actor: { type: 'string', maxLength: 64 },
          action: { type: 'string', maxLength: 64 },
          since: { type: 'string', format: 'date-time', description: 'Records from this time (of the first attempt), included' },
          until: { type: 'string', format: 'date-time', description: 'Records up to this time, included' },
        },
      },
      responses: {
        200: {
          description: 'audit entries (X-Total-Count: how many match in all)',
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
        const q = req.query as unknown as {
          limit: number;
          offset: number;
          actor?: string;
          action?: string;
          since?: string;
          until?: string;
        };
        const [list, total] = await Promise.all([ops.listAudit(q), ops.countAudit(q)]);
        res.setHeader('X-Total-Count', String(total));
        res.json(list);
      },
    },
  ];
}
