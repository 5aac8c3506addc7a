/**
 * Hostile input: each gets a defined answer, the process stays up and good devices keep flowing.
 * MQTT level (raw packets): garbage bytes, a malformed length, wildcard and non-UTF-8 topics in PUBLISH.
 * Payload level (the reason on the device's errors topic, nothing in InfluxDB): JSON that is not an object,
 * deeply nested JSON, huge numbers, NaN/Infinity as strings, `__proto__`/`constructor` keys, timestamps far in
 * the future or past (configurable window), strings where numbers belong, unknown fields, another encoding.
 *
 * Run: node --import tsx --test test/hostile-input.test.ts
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { connectPacket, rawConnect } from './helpers/raw-mqtt.ts';
import { fileScope } from './helpers/scope.ts';

const scope = fileScope();
let p: TestPlatform;
let dev: { id: string; token: string };
let client: MqttClient;
const errors: any[] = [];

before(async () => {
  // A 2-hour window in the future, 48 hours in the past: configurable, and narrower than the defaults.
  p = await startTestPlatform(scope, { ingest: { maxFutureMs: 2 * 3600_000, maxPastMs: 48 * 3600_000 } });
  dev = await p.provision('airQuality');
  client = await p.connect(dev.id, dev.token);
  await client.subscribeAsync(`devices/${dev.id}/errors`, { qos: 1 });
  client.on('message', (_t, m) => errors.push(JSON.parse(m.toString())));
});

/** Publishes `payload`; resolves with the error the platform reports for it. */
async function rejectionOf(payload: string | Buffer): Promise<any> {
  const before = errors.length;
  await client.publishAsync(`devices/${dev.id}/telemetry`, payload, { qos: 1 });
  await p.waitFor(() => errors.length > before, 3000, 'an error on the errors topic');
  return errors[errors.length - 1];
}

/** A good reading still goes through afterwards (the process and the connection are fine). */
async function stillFlowing(): Promise<void> {
  const marker = Math.round(Math.random() * 1e6) / 10;
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: marker }), { qos: 1 });
  await p.rowsAtLeast(`SELECT "pm25" FROM "airQuality" WHERE "pm25" = ${marker}`);
}

describe('payloads', () => {
  const cases: [string, string | Buffer, string, RegExp][] = [
    ['a number', '42', 'CP_INGEST_BAD_SHAPE', /JSON object, got number/],
    ['a string', '"pm25"', 'CP_INGEST_BAD_SHAPE', /got string/],
    ['null', 'null', 'CP_INGEST_BAD_SHAPE', /got null/],
    ['an array of arrays', '[[1,2]]', 'CP_INGEST_BAD_SHAPE', /got array/],
    ['deeply nested JSON', `{"pm25":${'['.repeat(5000)}${']'.repeat(5000)}}`, 'CP_INGEST_INVALID_READING', /pm25 must be number/],
    ['deeply nested arrays', `${'['.repeat(100000)}${']'.repeat(100000)}`, 'CP_INGEST_BAD_SHAPE', /got array/],
    // JSON.parse gives Infinity; ajv's `number` excludes non-finite values.
    ['a huge number (1e400 parses to Infinity)', '{"pm25":1e400}', 'CP_INGEST_INVALID_READING', /pm25 must be number/],
    ['a huge integer', '{"pm25":99999999999999999999999}', 'CP_INGEST_INVALID_READING', /pm25 must be <= 100000/],
    ['NaN as a string', '{"pm25":"NaN"}', 'CP_INGEST_INVALID_READING', /pm25 must be number/],
    ['Infinity as a string', '{"pm10":"Infinity"}', 'CP_INGEST_INVALID_READING', /pm10 must be number/],
    ['a string where a number belongs', '{"temperature":"25.3"}', 'CP_INGEST_INVALID_READING', /temperature must be number/],
    ['a __proto__ key', '{"__proto__":{"polluted":true},"pm25":1}', 'CP_INGEST_INVALID_READING', /unknown field '__proto__'/],
    [
      'a constructor key',
      '{"constructor":{"prototype":{"polluted":true}},"pm25":1}',
      'CP_INGEST_INVALID_READING',
      /unknown field 'constructor'/,
    ],
    ['an unknown field', '{"pm25":1,"radiation":0.2}', 'CP_INGEST_INVALID_READING', /unknown field 'radiation'/],
    ['a family’s field on another family', '{"intensity":4}', 'CP_INGEST_INVALID_READING', /unknown field 'intensity'/],
    [
      'a time far in the future',
      JSON.stringify({ dateObserved: Date.now() + 3 * 3600_000, pm25: 1 }),
      'CP_INGEST_INVALID_READING',
      /outside the accepted window/,
    ],
    [
      'a time far in the past',
      JSON.stringify({ dateObserved: '2024-01-01T00:00:00Z', pm25: 1 }),
      'CP_INGEST_INVALID_READING',
      /outside the accepted window/,
    ],
    ['a time in 1970 (a reset clock)', '{"dateObserved":0,"pm25":1}', 'CP_INGEST_INVALID_READING', /outside the accepted window/],
    [
      'a date without a time zone',
      '{"dateObserved":"2026-11-25T10:00:00","pm25":1}',
      'CP_INGEST_INVALID_READING',
      /ISO 8601 date-time with offset/,
    ],
    ['UTF-16 (another encoding)', Buffer.from('\ufeff{"pm25": 1}', 'utf16le'), 'CP_INGEST_BAD_JSON', /not valid UTF-8/],
    ['Latin-1 bytes', Buffer.from([0x7b, 0x22, 0x70, 0x6d, 0xe9, 0x22, 0x3a, 0x31, 0x7d]), 'CP_INGEST_BAD_JSON', /not valid UTF-8/],
    ['an empty payload', '', 'CP_INGEST_BAD_JSON', /not JSON/],
  ];
  for (const [name, payload, code, reason] of cases) {
    test(`${name} → ${code}`, async () => {
      const err = await rejectionOf(payload);
      assert.equal(err.code, code);
      assert.match(err.reason, reason);
    });
  }

  test('none of them reached InfluxDB or polluted a prototype; the device keeps flowing', async () => {
    await stillFlowing();
    const fields = (await p.rows('SHOW FIELD KEYS FROM "airQuality"')).map((r) => r.fieldKey);
    for (const f of fields) assert.match(String(f), /^(pm1|pm25|pm10|no2|o3|so2|co|temperature|relativeHumidity|noise)$/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const rows = await p.rows(`SELECT * FROM "airQuality" WHERE "device" = '${dev.id}'`);
    assert.ok(rows.every((r) => Number(r.pm25) < 100000));
  });
});

describe('MQTT packets', () => {
  test('garbage bytes and a malformed remaining length close only that connection', async () => {
    const garbage = await rawConnect(p.addr.mqtt);
    garbage.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(await garbage.closed(), true);
    const malformed = await rawConnect(p.addr.mqtt);
    malformed.send(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]));
    assert.equal(await malformed.closed(), true);
    await stillFlowing();
  });

  test('a wildcard or non-UTF-8 topic in PUBLISH closes that connection; nothing is stored', async () => {
    const other = await p.provision('airQuality');
    for (const topic of [`devices/${other.id}/#`, `devices/+/telemetry`]) {
      const raw = await rawConnect(p.addr.mqtt);
      raw.send(connectPacket(other.id, other.token));
      assert.equal(((await raw.next('connack')) as { returnCode?: number } | undefined)?.returnCode, 0);
      raw.send({ cmd: 'publish', topic, payload: Buffer.from('{"pm25":1}'), qos: 1, messageId: 1, retain: false, dup: false });
      assert.equal(await raw.closed(), true, `publish to ${topic} closes the connection`);
      assert.equal(await raw.next('puback', 50), undefined);
    }
    // Bytes 0xff 0xfe in the topic are not UTF-8.
    const raw = await rawConnect(p.addr.mqtt);
    raw.send(connectPacket(other.id, other.token));
    await raw.next('connack');
    const good = mqttPacket.generate({
      cmd: 'publish',
      topic: `devices/${other.id}/telemetryXX`,
      payload: Buffer.from('{"pm25":1}'),
      qos: 1,
      messageId: 2,
      retain: false,
      dup: false,
    });
    const at = good.indexOf('XX');
    good[at] = 0xff;
    good[at + 1] = 0xfe;
    raw.send(good);
    assert.equal(await raw.closed(), true);
    await p.platform.parts.ingest.flush();
    assert.equal((await p.rows(`SELECT * FROM "airQuality" WHERE "device" = '${other.id}'`)).length, 0);
    await stillFlowing();
  });
});
