/**
 * Client-supplied strings are logged as bounded excerpts: a 60 KB client id, username or topic gives log lines
 * under 1 KB (the broker at debug level, so that every line that names them is written). Real platform, raw
 * MQTT on loopback.
 *
 * Run: node --import tsx --test test/log-excerpts.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { excerpt, LOG_EXCERPT_CHARS } from '../core/log-excerpt.ts';
import { startTestPlatform } from './helpers/platform.ts';
import { connectPacket, rawConnect } from './helpers/raw-mqtt.ts';

test('excerpt cuts long strings with a marker of their length and leaves the rest alone', () => {
  assert.equal(excerpt('dev-1'), 'dev-1');
  assert.equal(excerpt(undefined), undefined);
  const long = excerpt('a'.repeat(60_000));
  assert.equal(long, `${'a'.repeat(LOG_EXCERPT_CHARS)}…[60000 chars]`);
});

test('a 60 KB client id, username or topic makes log lines under 1 KB', async (t) => {
  const lines: string[] = [];
  const p = await startTestPlatform(t, { log: { level: 'info', broker: 'debug' } }, { logLines: lines });
  const huge = (c: string) => c.repeat(60_000);

  // Refused at CONNECT: unknown device with a 60 KB client id and username.
  const anon = await rawConnect(p.addr.mqtt);
  anon.send(connectPacket(huge('c'), 'not-a-token'));
  assert.equal(((await anon.next('connack')) as { returnCode?: number } | undefined)?.returnCode, 4);
  await anon.closed();

  // A device publishing and subscribing to 60 KB topics that are not its own.
  const dev = await p.provision('airQuality');
  const sub = await rawConnect(p.addr.mqtt);
  sub.send(connectPacket(dev.id, dev.token));
  assert.equal(((await sub.next('connack')) as { returnCode?: number } | undefined)?.returnCode, 0);
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `devices/${huge('s')}`, qos: 1 }] });
  assert.ok(await sub.next('suback'));
  sub.send({ cmd: 'publish', topic: `devices/${huge('t')}`, payload: Buffer.from('{}'), qos: 0, retain: false, dup: false });
  assert.equal(await sub.closed(), true, 'the publish to a foreign topic closes the connection');

  await p.waitFor(() => lines.some((l) => l.includes('ttttttttttt')), 3000, 'the refused publish in the log');
  const naming = lines.filter((l) => /c{100}|s{100}|t{100}/.test(l));
  for (const kind of ['MQTT connection refused', 'subscription refused', 'publish refused']) {
    assert.ok(
      naming.some((l) => l.includes(kind)),
      `a "${kind}" line names the client's string`,
    );
  }
  for (const l of naming) {
    assert.ok(Buffer.byteLength(l) < 1024, `a log line of ${Buffer.byteLength(l)} bytes: ${l.slice(0, 200)}`);
    assert.match(l, /…\[600\d\d chars\]/);
  }
  assert.ok(Math.max(...lines.map((l) => Buffer.byteLength(l))) < 4096, 'no line anywhere near the client strings');
});
