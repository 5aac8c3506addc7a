/**
 * The platform when things go wrong:
 * InfluxDB dies under a publishing device (health degraded, readings buffered and stored once it is back),
 * a graceful stop flushes what is buffered, and an over-long array is rejected whole with a reason.
 *
 * Run: node --import tsx --test test/platform-resilience.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startLocalInflux } from '../platform/influxdb-local.ts';
import { startTestInflux } from './helpers/influx.ts';
import { startTestPlatform } from './helpers/platform.ts';

test('InfluxDB down: readings are acknowledged and buffered, health says degraded, all land once it is back', async (t) => {
  const influx = await startTestInflux(t);
  const p = await startTestPlatform(t, { ingest: { retryMaxDelayMs: 200 } }, { influx });
  const dev = await p.provision('traffic');
  const client = await p.connect(dev.id, dev.token);
  const base = Date.now() - 600_000;
  const send = (i: number) =>
    client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ dateObserved: base + i * 1000, intensity: i }), { qos: 1 });
  for (let i = 0; i < 10; i++) await send(i);
  await p.rowsAtLeast(`SELECT "intensity" FROM "traffic"`, 10);

  await influx.stop();
  for (let i = 10; i < 60; i++) await send(i); // every one acknowledged while InfluxDB is down
  const health = await p.waitFor(
    async () => {
      const h = (await (await p.api('/api/v1/health')).json()) as any;
      return h.status === 'degraded' && h;
    },
    5000,
    'degraded health',
  );
  assert.equal(health.influx.status, 'unavailable');
  assert.ok(health.ingest.buffered > 0);

  const again = await startLocalInflux({ dir: influx.dir, port: influx.port });
  t.after(() => again.stop());
  const rows = await p.rowsAtLeast(`SELECT "intensity" FROM "traffic"`, 60, 15000);
  assert.deepEqual(
    rows.map((r) => r.intensity),
    Array.from({ length: 60 }, (_, i) => i),
  );
  await p.waitFor(async () => ((await (await p.api('/api/v1/health')).json()) as any).status === 'ok', 5000, 'health ok again');
});

test('a graceful stop flushes buffered readings to InfluxDB', async (t) => {
  const influx = await startTestInflux(t);
  // Batches would wait 10 s: only the stop can have written them.
  const p = await startTestPlatform(t, { ingest: { batchMaxAgeMs: 10000 } }, { influx });
  const dev = await p.provision('streetLight');
  const client = await p.connect(dev.id, dev.token);
  const base = Date.now() - 600_000;
  const batch = Array.from({ length: 25 }, (_, i) => ({ dateObserved: base + i * 1000, powerState: 'on', powerConsumption: 80 + i }));
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(batch), { qos: 1 });
  assert.equal((await p.rows('SELECT "powerConsumption" FROM "streetLight"')).length, 0);
  await p.platform.stop();
  assert.equal((await p.rows('SELECT "powerConsumption" FROM "streetLight"')).length, 25);
});

test('an array longer than ingest.maxReadingsPerMessage is rejected whole, with the reason on the errors topic', async (t) => {
  const p = await startTestPlatform(t, { ingest: { maxReadingsPerMessage: 5 } });
  const dev = await p.provision('airQuality');
  const client = await p.connect(dev.id, dev.token);
  await client.subscribeAsync(`devices/${dev.id}/errors`, { qos: 1 });
  const got = new Promise<any>((resolve) => client.once('message', (_t, m) => resolve(JSON.parse(m.toString()))));
  await client.publishAsync(
    `devices/${dev.id}/telemetry`,
    JSON.stringify(Array.from({ length: 6 }, (_, i) => ({ pm25: i, dateObserved: Date.now() - i * 1000 }))),
    { qos: 1 },
  );
  const err = await got;
  assert.equal(err.code, 'CP_INGEST_TOO_MANY_READINGS');
  assert.match(err.reason, /6 readings.*at most 5/);
  await p.platform.parts.ingest.flush();
  assert.equal((await p.rows('SELECT * FROM "airQuality"')).length, 0);
  const dl = (await (await p.api('/api/v1/dead-letters', { admin: true })).json()) as any[];
  assert.equal(dl[0].code, 'CP_INGEST_TOO_MANY_READINGS');
});

test('a payload that is not UTF-8 is rejected with its reason; the device keeps publishing', async (t) => {
  const p = await startTestPlatform(t);
  const dev = await p.provision('airQuality');
  const client = await p.connect(dev.id, dev.token);
  await client.subscribeAsync(`devices/${dev.id}/errors`, { qos: 1 });
  const got = new Promise<any>((resolve) => client.once('message', (_t, m) => resolve(JSON.parse(m.toString()))));
  // "pm25" in UTF-16LE with a BOM: another encoding, not UTF-8.
  await client.publishAsync(`devices/${dev.id}/telemetry`, Buffer.from('\ufeff{"pm25": 1}', 'utf16le'), { qos: 1 });
  const err = await got;
  assert.equal(err.code, 'CP_INGEST_BAD_JSON');
  assert.match(err.reason, /UTF-8/);
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 2 }), { qos: 1 });
  await p.rowsAtLeast('SELECT "pm25" FROM "airQuality"');
});
