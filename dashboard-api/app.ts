/**
 * The Express app, built apart from listen() so that tests can use it on any server. Every route's params,
 * query and body are validated by its schema; every error leaves as application/problem+json with a stable
 * code, and unexpected ones are logged and answered with a generic 500 (no stack traces to clients).
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { ERROR_CODES, PlatformError, type ErrorCode } from '../core/errors.ts';
import { excerpt } from '../core/log-excerpt.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { roleAtLeast } from '../registry/index.ts';
import { buildOpenApi } from './openapi.ts';
import type { ApiDeps, RouteDef } from './route-kit.ts';
import { createRoutes } from './routes.ts';
import { serveDashboard, type DashboardOptions } from './static.ts';
import type { Principal } from './auth.ts';

export function createApp(
  deps: ApiDeps,
  opts: {
    metrics?: Metrics;
    logger?: Logger;
    version?: string;
    corsOrigins?: readonly string[];
    /** The operations dashboard (static.ts); absent = not served. */
    dashboard?: DashboardOptions;
  } = {},
): express.Express {
  const log = opts.logger ?? silentLogger;
  const app = express();
  app.disable('x-powered-by');
  // CORS: only the configured origins get the headers (and a preflight answer); any other origin gets none,
  // so the browser refuses the response. Bearer tokens, not cookies: no credentials mode.
  const corsOrigins = new Set(opts.corsOrigins ?? []);
  app.use((req, res, next) => {
    const origin = req.get('origin');
    if (origin && corsOrigins.has(origin)) {
      // X-Total-Count: the number of matches of a paged list (the alarm console's pages).
      res.set({ 'access-control-allow-origin': origin, 'access-control-expose-headers': 'x-total-count', vary: 'Origin' });
      if (req.method === 'OPTIONS') {
        res.set({
          'access-control-allow-methods': 'GET, POST, DELETE',
          'access-control-allow-headers': 'authorization, content-type',
          'access-control-max-age': '600',
        });
        return void res.status(204).end();
      }
    }
    next();
  });
  app.set('query parser', 'simple');
  app.use((_req, res, next) => {
    res.set({ 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' });
    next();
  });
  app.use(express.json({ limit: '64kb' }));

  const ajv = new Ajv({ allErrors: true, coerceTypes: true, useDefaults: true, strict: false });
  addFormats.default(ajv);
  const routes = createRoutes(deps);
  const openapi = buildOpenApi(routes, { version: opts.version ?? '0.0.0' });
  const audit = (r: RouteDef, req: Request, res: Response, outcome: string) => {
    const p = res.locals.principal as Principal | undefined;
    // A refusal is recorded before validation: the body may hold anything, keep a short string only.
    const named: unknown = res.locals.auditTarget ?? req.params.id ?? req.params.username ?? req.body?.id ?? req.body?.username;
    const target = typeof named === 'string' ? named.slice(0, 200) : null;
    const entry = {
      actor: p?.username ?? '(anonymous)',
      role: p?.role ?? null,
      action: r.audit as string,
      target,
      address: req.ip ?? null,
    };
    deps.auth.operators.audit({ ...entry, outcome }).catch((err) => log.error({ err, ...entry }, 'audit record failed'));
  };

  for (const r of routes) {
    const checks: [keyof Pick<Request, 'params' | 'query' | 'body'>, ValidateFunction][] = [];
    if (r.params) checks.push(['params', ajv.compile(r.params)]);
    if (r.query) checks.push(['query', ajv.compile(r.query)]);
    if (r.body) checks.push(['body', ajv.compile(r.body)]);
    const validate = (req: Request, _res: Response, next: NextFunction) => {
      const errors: string[] = [];
      for (const [part, v] of checks) {
        // Express 5 re-parses req.query on every read: validate (and coerce) a copy, then pin it.
        const value = part === 'query' ? { ...req.query } : part === 'body' ? (req.body ?? {}) : req[part];
        if (!v(value)) for (const e of v.errors ?? []) errors.push(`${part}${e.instancePath.replaceAll('/', '.')} ${e.message}`);
        else if (part === 'query') Object.defineProperty(req, 'query', { value, writable: true, configurable: true });
        else if (part === 'body') req.body = value;
      }
      if (errors.length) return next(new PlatformError('CP_API_VALIDATION', 'the request breaks its schema', { details: errors }));
      next();
    };
    // Role check before validation: an unauthenticated caller learns nothing about a route's schema.
    const guard = async (req: Request, res: Response, next: NextFunction) => {
      if (!r.role) return next();
      const m = /^Bearer (\S+)$/.exec(req.get('authorization') ?? '');
      const p = await deps.auth.resolve(m?.[1]);
      if (!p) return next(new PlatformError('CP_API_UNAUTHORIZED', 'a valid bearer token (session or service token) is required'));
      res.locals.principal = p;
      if (!roleAtLeast(p.role, r.role)) {
        // Refusals of known callers are audited (anonymous ones are not: they would let anyone fill the log).
        if (r.audit) audit(r, req, res, 'CP_API_FORBIDDEN');
        return next(new PlatformError('CP_API_FORBIDDEN', `this needs the role ${r.role} or higher; ${p.username} is ${p.role}`));
      }
      next();
    };
    const run = async (req: Request, res: Response) => {
      if (!r.audit) return r.handler(req, res);
      try {
        await r.handler(req, res);
      } catch (err) {
        audit(r, req, res, err instanceof PlatformError ? err.code : 'CP_API_INTERNAL');
        throw err;
      }
      audit(r, req, res, 'ok');
    };
    app[r.method](r.path, guard, validate, run);
  }

  app.get('/api/v1/openapi.json', (_req, res) => res.json(openapi));
  app.get('/metrics', async (_req, res) => {
    if (!opts.metrics) return res.status(404).end();
    res.type(opts.metrics.registry.contentType).send(await opts.metrics.registry.metrics());
  });
  if (opts.dashboard) app.use(serveDashboard(opts.dashboard));
  app.use((_req, _res, next) => next(new PlatformError('CP_API_NOT_FOUND', 'no such route')));
  // One final error handler: deliberate errors pass through with their code, the rest become a logged 500.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    let code: ErrorCode;
    let detail: string;
    let errors: unknown;
    if (err instanceof PlatformError) {
      code = err.code;
      detail = err.message;
      errors = err.details;
    } else if ((err as { type?: string }).type === 'entity.parse.failed' || (err as { type?: string }).type === 'entity.too.large') {
      code = 'CP_API_VALIDATION';
      detail = (err as Error).message;
    } else {
      code = 'CP_API_INTERNAL';
      detail = 'internal error';
      log.error({ err, method: req.method, url: excerpt(req.originalUrl) }, 'request failed');
    }
    const status = ERROR_CODES[code].status;
    if (code === 'CP_API_UNAUTHORIZED') res.set('www-authenticate', 'Bearer');
    res
      .status(status)
      .type('application/problem+json')
      .json({ type: `urn:citypulse:error:${code}`, title: ERROR_CODES[code].text, status, code, detail, ...(errors ? { errors } : {}) });
  });
  return app;
}
