/**
 * The benchmark's lean MQTT client (bench/lean-client.ts) against a real Aedes broker over TCP: the throughput
 * figures count its PUBACKs, so it must match each to its publish across split and coalesced TCP reads, and an
 * MQTT.js subscriber (an independent client) must receive exactly what it published.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { Aedes } from 'aedes';
import { connectAsync } from 'mqtt';
import { LeanClient } from '../bench/lean-client.ts';

async function startAedes(t: { after: (fn: () => unknown) => void }, opts: Parameters<typeof Aedes.createBroker>[0] = {}) {
  const aedes = await Aedes.createBroker(opts);
  const server = net.createServer(aedes.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

test('lean client: every QoS 1 publish answered once, in any size; subscribers (lean and MQTT.js) get them all', async (t) => {
  const url = await startAedes(t);
  const mqttjs = await connectAsync(url, { clientId: 'independent', protocolVersion: 4, reconnectPeriod: 0 });
  t.after(() => mqttjs.endAsync(true));
  const seen: string[] = [];
  mqttjs.on('message', (_topic, payload) => seen.push(payload.toString()));
  await mqttjs.subscribeAsync('devices/+/telemetry', { qos: 1 });
  const sink = await LeanClient.connect(url, { clientId: 'lean-sink' });
  await sink.subscribe('devices/+/telemetry');
  const pub = await LeanClient.connect(url, { clientId: 'lean-pub', username: 'u', password: 'p' });

  // Sizes across the 1-, 2- and 3-byte remaining-length encodings, large enough to span TCP reads.
  const sizes = [1, 50, 120, 127, 128, 300, 16_000, 16_383, 16_384, 70_000, 200_000];
  const payloads = Array.from({ length: 600 }, (_, i) => `${i}:${'x'.repeat(sizes[i % sizes.length] as number)}`);
  const acked = new Map<number, number>();
  await new Promise<void>((resolve, reject) => {
    let next = 0;
    let inFlight = 0;
    const send = () => {
      const i = next++;
      inFlight++;
      pub.publish('devices/d1/telemetry', payloads[i] as string, (err) => {
        inFlight--;
        if (err) return reject(err);
        acked.set(i, (acked.get(i) ?? 0) + 1);
        if (next < payloads.length) send();
        else if (inFlight === 0) resolve();
      });
    };
    for (let k = 0; k < 40; k++) send(); // a window of 40, as the bench keeps 20
  });
  assert.equal(acked.size, payloads.length);
  assert.ok(
    [...acked.values()].every((n) => n === 1),
    'a publish was answered twice',
  );

  const deadline = Date.now() + 10_000;
  while ((seen.length < payloads.length || sink.received < payloads.length) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(seen, payloads, 'the MQTT.js subscriber received other bytes');
  assert.equal(sink.received, payloads.length);
  await pub.end();
  await sink.end();
  const late = await new Promise<Error | undefined>((resolve) => pub.publish('devices/d1/telemetry', 'late', resolve));
  assert.match(String(late?.message), /closed/, 'a closed client answers a publish with an error at once');
});

test('lean client: a refused CONNECT rejects with its return code; a lost connection fails the waiting publishes', async (t) => {
  const url = await startAedes(t, {
    authenticate: (_client, username, _password, done) =>
      username === 'good' ? done(null, true) : done(Object.assign(new Error('no'), { returnCode: 4 }), false),
  });
  await assert.rejects(LeanClient.connect(url, { clientId: 'bad', username: 'bad', password: 'x' }), /CONNACK 4/);

  const c = await LeanClient.connect(url, { clientId: 'good', username: 'good', password: 'x' });
  const failed = new Promise<Error | undefined>((resolve) => {
    // Published, then the socket is cut before any answer can be read.
    c.publish('devices/d2/telemetry', 'one', (err) => resolve(err));
  });
  (c as unknown as { socket: net.Socket }).socket.destroy();
  const err = await failed;
  assert.match(String(err?.message), /closed/);
});
