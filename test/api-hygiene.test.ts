/**
 * API hygiene: CORS only for configured origins (with a preflight answer), security headers on
 * every answer, no stack trace or internal message in an error body, problem+json with a stable code.
 *
 * Run: node --import tsx --test test/api-hygiene.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform } from './helpers/platform.ts';

test('CORS for configured origins only; security headers; problem documents without internals', async (t) => {
  const p = await startTestPlatform(t, { api: { corsOrigins: ['https://ioc.example.vn'] } });
  const allowed = await p.api('/api/v1/devices', { headers: { origin: 'https://ioc.example.vn' } });
  assert.equal(allowed.headers.get('access-control-allow-origin'), 'https://ioc.example.vn');
  const other = await p.api('/api/v1/devices', { headers: { origin: 'https://evil.example' } });
  assert.equal(other.headers.get('access-control-allow-origin'), null);
  const preflight = await fetch(`${p.addr.api}/api/v1/devices`, {
    method: 'OPTIONS',
    headers: {
      origin: 'https://ioc.example.vn',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization',
    },
  });
  assert.equal(preflight.status, 204);
  assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /authorization/);

  for (const h of ['x-content-type-options', 'referrer-policy', 'x-frame-options']) assert.ok(allowed.headers.get(h), `${h} set`);
  assert.equal(allowed.headers.get('x-powered-by'), null);

  const broken = await p.api('/api/v1/devices', { method: 'POST', admin: true, body: '{"family": "traffic", ' });
  assert.equal(broken.status, 400);
  const body = (await broken.json()) as { code: string; detail: string; stack?: unknown };
  assert.equal(body.code, 'CP_API_VALIDATION');
  assert.equal(body.stack, undefined);
  assert.doesNotMatch(JSON.stringify(body), /node_modules|at \w+ \(/);
});
