/**
 * No credential in any log line, at any level (core/logger.ts, ingest/influx-admin.ts, ingest/influx-writer.ts):
 * the `influx` client's errors carry their request with its `Authorization: Basic …` header, and the writer put
 * `u=`/`p=` in its URL. Here a platform with InfluxDB credentials logs at trace level while every error path that
 * can be forced is taken (bad parameters, InfluxDB errors, the database dropped, InfluxDB stopped); the password,
 * its URL-encoded and its Basic form appear in no line. Without credentials, nothing is sent (not root:root).
 *
 * Run: node --import tsx --test test/secrets-in-logs.test.ts
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { InfluxDB } from 'influx';
import { createInfluxClient, InfluxWriter } from '../ingest/index.ts';
import { createLogger } from '../core/logger.ts';
import { startTestPlatform } from './helpers/platform.ts';

const USER = 'citypulse-writer';
const PASSWORD = 'Hunter2-S3cret/+=pw';
const BASIC = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
const FORMS = [PASSWORD, encodeURIComponent(PASSWORD), BASIC];

function assertNoSecret(lines: string[]): void {
  for (const line of lines) {
    for (const form of FORMS) assert.ok(!line.includes(form), `a log line holds the secret (${form}): ${line.slice(0, 500)}`);
    assert.doesNotMatch(line, /Basic [A-Za-z0-9+/=]{8,}/, `a log line holds Basic credentials: ${line.slice(0, 500)}`);
  }
}

/** A loopback HTTP server that records each request's path and headers and answers like InfluxDB 1.x would. */
async function recorder(t: { after(fn: () => unknown): void }) {
  const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      if (req.url?.startsWith('/write')) return void res.writeHead(204).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"results":[{"statement_id":0}]}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => server.close(r)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

test('the InfluxDB client sends no credentials when none are configured (not root:root); client and writer send them as Basic, never in the URL', async (t) => {
  const srv = await recorder(t);
  const target = { url: srv.url, database: 'db', retentionPolicy: 'raw' };
  await createInfluxClient(target).queryRaw('SHOW DATABASES');
  await createInfluxClient(target).ping(1000);
  assert.ok(srv.seen.length >= 2);
  for (const r of srv.seen) assert.equal(r.headers.authorization, undefined, `${r.url} sent credentials`);

  srv.seen.length = 0;
  const withCreds = { ...target, username: USER, password: PASSWORD };
  await createInfluxClient(withCreds).queryRaw('SHOW DATABASES');
  const writer = new InfluxWriter(withCreds, {
    batchSize: 1,
    batchMaxAgeMs: 10,
    writeConcurrency: 1,
    maxBufferedPoints: 10,
    retryMaxDelayMs: 100,
  });
  writer.writePoints([{ line: 'm,device=d v=1 1700000000000', family: 'airQuality', device: 'd' }]);
  assert.equal(await writer.flush(5000), true);
  await writer.stop();
  assert.equal(srv.seen.length, 2);
  for (const r of srv.seen) {
    assert.equal(r.headers.authorization, `Basic ${BASIC}`, r.url);
    assert.doesNotMatch(r.url, /[?&][up]=/, 'no credentials in the URL');
  }
});

test('a platform with InfluxDB credentials, logging at trace level through every error path: no line holds the password', async (t) => {
  const lines: string[] = [];
  const p = await startTestPlatform(
    t,
    { influx: { username: USER, password: PASSWORD }, log: { level: 'trace' }, ingest: { batchMaxAgeMs: 20 } },
    { logLines: lines },
  );
  const dev = await p.provision('airQuality');
  const client = await p.connect(dev.id, dev.token);
  const readings = `/api/v1/devices/${dev.id}/readings`;
  const badParams = [
    '?fields=nope',
    '?from=1600-01-01T00:00:00Z',
    '?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z',
    '?window=10s&from=2001-01-01T00:00:00Z',
    '?from=2016-12-31T23:59:60Z',
  ];
  for (const q of badParams) assert.equal((await p.api(`${readings}${q}`)).status, 400, q);
  assert.equal((await p.api(`/api/v1/aqi/history?scope=station&id=${dev.id}&from=1600-01-01T00:00:00Z`)).status, 400);

  // InfluxDB refusing a statement: a RequestError of the client, which carries its request and headers.
  const influx = p.platform.parts.ingest.influx;
  const refused = await influx.queryRaw('SELEC nonsense').then(
    () => undefined,
    (err: unknown) => err,
  );
  assert.ok(refused instanceof Error, 'InfluxDB refused the statement');
  p.platform.logger.error({ err: refused }, 'statement refused');
  // The same error straight from the package (not through createInfluxClient): the logger alone must scrub it.
  const u = new URL(p.influx.url);
  const raw = new InfluxDB({ host: u.hostname, port: Number(u.port), username: USER, password: PASSWORD });
  const rawErr = await raw.queryRaw('SELEC nonsense', { database: p.platform.config.influx.database }).catch((e: unknown) => e);
  assert.ok(inspect(rawErr, { depth: 6 }).includes(BASIC), 'the package error carries the Basic credentials');
  for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const) {
    p.platform.logger[level]({ err: rawErr }, 'raw influx error');
    p.platform.logger[level](rawErr as Error);
    p.platform.logger[level]({ url: `${p.influx.url}/write?db=x&u=${USER}&p=${encodeURIComponent(PASSWORD)}` }, 'write url');
  }

  // The database dropped under the platform: queries fail, writes find it missing.
  await p.influx.query(`DROP DATABASE "${p.platform.config.influx.database}"`);
  await p.api(readings);
  await p.api(`/api/v1/aqi/history?scope=station&id=${dev.id}`);

  // InfluxDB stopped: readings buffer, history and the last reading fail.
  await p.influx.stop();
  for (let i = 0; i < 5; i++) await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 10 + i }), { qos: 1 });
  const statuses = [];
  for (const path of [readings, `${readings}?window=raw`, `/api/v1/devices/${dev.id}`, `/api/v1/aqi/history?scope=station&id=${dev.id}`]) {
    statuses.push((await p.api(path)).status);
  }
  assert.ok(statuses.includes(500), `InfluxDB down answers 500: ${statuses}`);
  await p.waitFor(() => lines.some((l) => /InfluxDB unavailable/.test(l)), 10_000, 'the writer logs InfluxDB unavailable');
  await p.platform.stop();

  const parsed = lines.map((l) => JSON.parse(l) as { level: number; msg: string; err?: unknown });
  assert.ok(
    parsed.some((l) => l.msg === 'request failed' && l.level === 50 && l.err),
    'the API logged its 500s with the error',
  );
  assert.ok(parsed.filter((l) => l.msg === 'raw influx error').length === 6, 'the raw error was logged at every level');
  assert.ok(lines.length > 20, `${lines.length} lines`);
  assertNoSecret(lines);
});

test('the logger scrubs credentials without being told the secret', () => {
  const lines: string[] = [];
  const log = createLogger({ level: 'trace', destination: { write: (l: string) => void lines.push(l) } }).forComponent('test');
  const err = Object.assign(new Error(`GET /query?u=${USER}&p=${encodeURIComponent(PASSWORD)} failed`), {
    req: { _header: `POST /query HTTP/1.1\r\nAuthorization: Basic ${BASIC}\r\n\r\n` },
    options: { headers: { Authorization: `Basic ${BASIC}` } },
  });
  log.error({ err }, 'failed');
  log.debug(
    { password: PASSWORD, target: { url: 'http://x', password: PASSWORD }, headers: { authorization: `Basic ${BASIC}` } },
    'target',
  );
  log.info(`connecting to http://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:8086`);
  log.warn({ reason: `{"password":"${PASSWORD}"}` }, `password=${encodeURIComponent(PASSWORD)}`);
  assert.equal(lines.length, 4);
  assertNoSecret(lines);
  for (const l of lines) JSON.parse(l);
  assert.match(lines[0] as string, /failed/);
});
