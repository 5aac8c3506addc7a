/** The OpenAPI 3.1 document, built from the same route table and schemas that validate requests. */
import type { RouteDef } from './route-kit.ts';

export function buildOpenApi(routes: RouteDef[], info: { version: string }): object {
  const paths: Record<string, Record<string, object>> = {};
  for (const r of routes) {
    const p = r.path.replace(/:([A-Za-z]+)/g, '{$1}');
    const parameters: object[] = [];
    for (const [where, schema] of [
      ['path', r.params],
      ['query', r.query],
    ] as const) {
      const s = schema as { properties?: Record<string, object>; required?: string[] } | undefined;
      for (const [name, ps] of Object.entries(s?.properties ?? {})) {
        parameters.push({ name, in: where, required: where === 'path' || !!s?.required?.includes(name), schema: ps });
      }
    }
    const responses: RouteDef['responses'] = { ...r.responses };
    if (r.role) {
      responses[401] = problemResponse('no token, or an unknown, expired or ended one (CP_API_UNAUTHORIZED)');
      responses[403] = problemResponse(`a role below ${r.role} (CP_API_FORBIDDEN)`);
    }
    const op: Record<string, unknown> = {
      summary: r.role ? `${r.summary} [role: ${r.role}]` : r.summary,
      tags: [r.tag],
      parameters,
      responses: Object.fromEntries(
        Object.entries(responses).map(([code, resp]) => [
          code,
          {
            description: resp.description,
            ...(resp.schema
              ? {
                  content: {
                    [Number(code) >= 400 ? 'application/problem+json' : 'application/json']: { schema: resp.schema },
                    ...Object.fromEntries(Object.entries(resp.also ?? {}).map(([type, schema]) => [type, { schema }])),
                  },
                }
              : {}),
          },
        ]),
      ),
    };
    if (r.body) op.requestBody = { required: true, content: { 'application/json': { schema: r.body } } };
    // OpenAPI 3.1: a non-OAuth scheme's list names the roles it needs; here the least one (higher roles pass).
    op.security = r.role ? [{ bearer: [r.role] }] : [];
    if (r.role) op['x-citypulse-role'] = r.role;
    paths[p] = { ...paths[p], [r.method]: op };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'citypulse API',
      version: info.version,
      description:
        'REST API of the citypulse telemetry platform. Live data: socket.io on the same port. Each route names the least role it ' +
        'needs (viewer < operator < admin): an operator session token from POST /api/v1/auth/login, or the service token ' +
        '(api.adminToken, role admin), as `Authorization: Bearer <token>`.',
    },
    paths,
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'Session token (POST /api/v1/auth/login) or the service token (role admin)',
        },
      },
      schemas: {
        Problem: {
          type: 'object',
          required: ['type', 'title', 'status', 'code'],
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            code: { type: 'string', description: 'Stable error code CP_<AREA>_<WHAT>' },
            detail: { type: 'string' },
            errors: { type: 'array', items: { type: 'string' } },
          },
        },
      },
    },
  };
}

function problemResponse(description: string) {
  return { description, schema: { $ref: '#/components/schemas/Problem' } };
}
