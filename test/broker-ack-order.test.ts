/**
 * A connection's PUBACKs leave in the order its publishes came [MQTT-4.6.0-2], whatever order their
 * acknowledgements settle in: one answered at once (a refused reading) waits behind an earlier one still being
 * made durable. A refused acknowledgement closes the connection with nothing behind it acknowledged.
 *
 * A real broker over TCP and a raw MQTT connection (node:net + mqtt-packet), so the test decides exactly which
 * packets share one TCP write. onMessage is the broker's boundary to ingest: here it hands back promises the
 * test settles, standing in for "durable", which is how the test holds an acknowledgement as long as it needs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { createBroker } from '../broker/index.ts';
import { SqliteDeviceStore, leafZones, loadCityProfile } from '../registry/index.ts';
import { connectPacket, rawConnect } from './helpers/raw-mqtt.ts';
import { waitFor } from './helpers/wait.ts';

const profile = loadCityProfile(fileURLToPath(new URL('../cities/bac-giang.json', import.meta.url)));
const zones = leafZones(profile);
const zone = zones[0] as (typeof zones)[number];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('PUBACKs leave in publish order whatever order the acknowledgements settle in; a refusal acknowledges nothing after it', async (t) => {
  const store = new SqliteDeviceStore(':memory:', (z) => zones.some((l) => l.id === z));
  const { device, token } = await store.provision({ family: 'traffic', zone: zone.id, location: zone.centre ?? profile.centre });
  /** Message number → how to settle its acknowledgement; numbers divisible by 3 are answered at once. */
  const held = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  const handled: number[] = [];
  const broker = await createBroker(
    { host: '127.0.0.1', port: 0, drainTimeoutMs: 5000 },
    {
      devices: store,
      onMessage: (_device, _kind, payload) => {
        const n = (JSON.parse(payload.toString()) as { n: number }).n;
        handled.push(n);
        if (n % 3 === 0) return undefined; // settled at once (a refused reading is answered without waiting)
        return new Promise<void>((resolve, reject) => held.set(n, { resolve, reject }));
      },
    },
  );
  const { port } = await broker.start();
  t.after(async () => {
    await broker.stop();
    await store.close();
  });

  const raw = await rawConnect(`mqtt://127.0.0.1:${port}`);
  t.after(() => raw.socket.destroy());
  raw.send(connectPacket(device.id, token));
  assert.equal(((await raw.next('connack')) as { returnCode?: number } | undefined)?.returnCode, 0);

  const publish = (n: number): Buffer =>
    mqttPacket.generate({
      cmd: 'publish',
      topic: `devices/${device.id}/telemetry`,
      payload: Buffer.from(JSON.stringify({ n })),
      qos: 1,
      messageId: n,
      retain: false,
      dup: false,
    } as Packet);
  const pubacks = () => raw.packets.filter((p) => p.cmd === 'puback').map((p) => (p as { messageId: number }).messageId);

  // 1 and 2 wait, 3 is answered at once, 4 and 5 wait: 3's PUBACK may not overtake 1's or 2's.
  raw.socket.write(Buffer.concat([publish(1), publish(2), publish(3), publish(4), publish(5)]));
  await waitFor(() => handled.length === 5, 5_000, 'messages 1–5 handled', { every: 10 });
  assert.deepEqual(handled, [1, 2, 3, 4, 5]);
  await sleep(200);
  assert.deepEqual(pubacks(), [], 'a PUBACK left while message 1 was not yet acknowledged');
  // Later ones settle first: still nothing before 1.
  held.get(4)?.resolve();
  held.get(2)?.resolve();
  await sleep(200);
  assert.deepEqual(pubacks(), []);
  held.get(1)?.resolve();
  await waitFor(() => pubacks().length === 4, 5_000, 'PUBACKs 1–4', { every: 10 });
  assert.deepEqual(pubacks(), [1, 2, 3, 4]);
  // With nothing waiting, an answer at once leaves at once.
  held.get(5)?.resolve();
  await waitFor(() => pubacks().length === 5, 5_000, 'PUBACK 5', { every: 10 });
  raw.socket.write(publish(6));
  await waitFor(() => pubacks().length === 6, 5_000, 'PUBACK 6', { every: 10 });
  assert.deepEqual(pubacks(), [1, 2, 3, 4, 5, 6]);

  // A refused acknowledgement closes the connection without a PUBACK for it or for the one behind it.
  raw.socket.write(Buffer.concat([publish(7), publish(9)]));
  await waitFor(() => handled.length === 8, 5_000, 'messages 7 and 9 handled', { every: 10 });
  held.get(7)?.reject(new Error('disk failed'));
  assert.equal(await raw.closed(), true);
  assert.deepEqual(pubacks(), [1, 2, 3, 4, 5, 6]);
});
