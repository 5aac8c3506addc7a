/** The OpenAPI 3.1 document, built from the same route table and schemas that validate requests. */
import type { RouteDef } from './routes.ts';

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
    const op: Record<string, unknown> = {
      summary: r.summary,
      tags: [r.tag],
      parameters,
      responses: Object.fromEntries(
        Object.entries(r.responses).map(([code, resp]) => [
          code,
          {
            description: resp.description,
            ...(resp.schema
              ? { content: { [Number(code) >= 400 ? 'application/problem+json' : 'application/json']: { schema: resp.schema } } }
              : {}),
          },
        ]),
      ),
    };
    if (r.body) op.requestBody = { required: true, content: { 'application/json': { schema: r.body } } };
    if (r.admin) op.security = [{ adminToken: [] }];
    paths[p] = { ...paths[p], [r.method]: op };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'citypulse API',
      version: info.version,
      description: 'REST API of the citypulse telemetry platform. Live data: socket.io on the same port.',
    },
    paths,
    components: {
      securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } },
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
