/**
 * The budget of frames to socket.io clients without batching (api.maxUnbatchedFramesPerSecond): over it, the
 * newest unbatched sockets watching broad scopes are told why and disconnected, new broad subscriptions of
 * unbatched sockets are refused with CP_API_LIVE_UNBATCHED_BUSY, and batched sockets and device subscriptions
 * are left alone. Real platform, real MQTT device, real socket.io clients.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { io as ioClient, type Socket } from 'socket.io-client';
import { startTestPlatform } from './helpers/platform.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('frames to unbatched sockets over api.maxUnbatchedFramesPerSecond: the newest broad ones are shed with a reason, new ones refused', async (t) => {
  const p = await startTestPlatform(t, { api: { maxUnbatchedFramesPerSecond: 1000 }, ingest: { maxReadingsPerSecond: 0 } });
  const token = await p.loginAs('viewer');
  const open = (batch: boolean) => {
    const socket = ioClient(p.addr.api, { transports: ['websocket'], reconnection: false, auth: batch ? { token, batch } : { token } });
    t.after(() => socket.close());
    const seen = { readings: 0, batches: 0, offline: [] as string[], disconnected: false };
    socket.on('reading', () => seen.readings++);
    socket.on('batch', () => seen.batches++);
    socket.on('offline', (o: { reason: string }) => seen.offline.push(o.reason));
    socket.on('disconnect', () => (seen.disconnected = true));
    return { socket, seen };
  };
  const subscribe = (s: Socket, sub: Record<string, string>) =>
    s.timeout(5000).emitWithAck('subscribe', sub) as Promise<{ ok: boolean; code?: string; error?: string }>;

  // Four unbatched screens on everything, oldest first, and one batched.
  const plain = [open(false), open(false), open(false), open(false)];
  for (const c of plain) assert.equal((await subscribe(c.socket, {})).ok, true);
  const batched = open(true);
  assert.equal((await subscribe(batched.socket, {})).ok, true);

  // A traffic counter sending 200 readings a second: each is a reading and a device indicator to every
  // unbatched socket on everything, ~400 frames a second each, ~1,600 for four, over the 1,000 budget.
  const dev = await p.provision('traffic');
  const client = await p.connect(dev.id, dev.token);
  let seq = 0;
  const base = Date.now() - 60_000;
  const timer = setInterval(() => {
    const batch = Array.from({ length: 10 }, () => ({ dateObserved: base + seq++, intensity: seq % 50, averageVehicleSpeed: 30 }));
    client.publish(`devices/${dev.id}/telemetry`, JSON.stringify(batch), { qos: 0 });
  }, 50);
  t.after(() => clearInterval(timer));

  await p.waitFor(() => plain.some((c) => c.seen.disconnected), 10_000, 'an unbatched socket shed');
  // While over the budget: a new broad subscription of an unbatched socket is refused with the code; a device
  // subscription is not.
  const late = open(false);
  const refused = await subscribe(late.socket, {});
  assert.equal(refused.ok, false);
  assert.equal(refused.code, 'CP_API_LIVE_UNBATCHED_BUSY');
  assert.match(String(refused.error), /auth\.batch/);
  assert.equal((await subscribe(late.socket, { device: dev.id })).ok, true);

  await sleep(2500); // the rest of the load: the survivors stay under the budget
  clearInterval(timer);
  const shed = plain.filter((c) => c.seen.disconnected);
  const kept = plain.filter((c) => !c.seen.disconnected);
  assert.ok(shed.length >= 1 && kept.length >= 1, `shed ${shed.length}, kept ${kept.length}`);
  // The newest were shed, each told why before it was disconnected.
  assert.deepEqual(
    plain.map((c) => c.seen.disconnected),
    plain.map((_, i) => i >= kept.length),
  );
  for (const c of shed) assert.match(c.seen.offline[0] ?? '', /CP_API_LIVE_UNBATCHED_BUSY/);
  // The oldest kept receiving; the batched socket was never touched.
  const before = (kept[0] as (typeof plain)[number]).seen.readings;
  assert.ok(before > 0);
  assert.equal(batched.seen.disconnected, false);
  assert.ok(batched.seen.batches > 0);

  // Once the load is gone, broad subscriptions are taken again.
  await sleep(2100);
  const again = open(false);
  assert.equal((await subscribe(again.socket, { zone: 'anything' })).ok, true);
});
