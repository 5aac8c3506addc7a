/**
 * Limits, each configurable and each with a defined answer: MQTT packet size, per-device reading
 * rate (token bucket; the excess rejected and reported, not dropped silently), connections in total,
 * connection attempts per source address, keepalive bounds, and the zero-length client id MQTT 3.1.1 forbids
 * with a persistent session. Real platform, real InfluxDB, MQTT.js and raw MQTT clients on loopback.
 * (Readings per message: test/platform-resilience.test.ts.)
 *
 * Run: node --import tsx --test test/limits.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import mqttPacket from 'mqtt-packet';
import { connectPacket, rawConnect } from './helpers/raw-mqtt.ts';
import { startTestPlatform } from './helpers/platform.ts';
import { LISTEN_BACKLOG, somaxconn } from '../broker/index.ts';

const execFileAsync = promisify(execFile);

test('a packet over broker.maxPacketBytes closes that connection before it is buffered; others flow on', async (t) => {
  const p = await startTestPlatform(t, { broker: { maxPacketBytes: 4096 } });
  const good = await p.provision('airQuality');
  const bad = await p.provision('airQuality');
  const goodClient = await p.connect(good.id, good.token);
  const raw = await rawConnect(p.addr.mqtt);
  raw.send(connectPacket(bad.id, bad.token));
  assert.equal(((await raw.next('connack')) as { returnCode?: number } | undefined)?.returnCode, 0);
  // A header announcing 100 MB: refused on the header alone (the body is never sent).
  raw.send(Buffer.from([0x30, 0x80, 0xc2, 0xd7, 0x2f]));
  assert.equal(await raw.closed(), true);
  // An honest but too large payload from MQTT.js is refused the same way.
  const big = await p.connect(bad.id, bad.token);
  const closed = new Promise<void>((r) => big.once('close', () => r()));
  big.publish(`devices/${bad.id}/telemetry`, JSON.stringify({ pm25: 1, noise: 50, pad: 'x'.repeat(5000) }), { qos: 1 });
  await closed;
  await goodClient.publishAsync(`devices/${good.id}/telemetry`, JSON.stringify({ pm25: 9 }), { qos: 1 });
  await p.rowsAtLeast(`SELECT "pm25" FROM "airQuality" WHERE "device" = '${good.id}'`);
  assert.equal((await p.rows(`SELECT * FROM "airQuality" WHERE "device" = '${bad.id}'`)).length, 0);
  assert.match(await (await p.api('/metrics')).text(), /citypulse_mqtt_connections_refused_total\{reason="packet-too-large"\} 2/);
});

test('readings over a device’s rate are rejected with a reason on its errors topic, not dropped silently', async (t) => {
  const p = await startTestPlatform(t, { ingest: { maxReadingsPerSecond: 1, readingsBurst: 10 } });
  const dev = await p.provision('traffic');
  const client = await p.connect(dev.id, dev.token);
  await client.subscribeAsync(`devices/${dev.id}/errors`, { qos: 1 });
  const errors: any[] = [];
  client.on('message', (_t, m) => errors.push(JSON.parse(m.toString())));
  const base = Date.now() - 60_000;
  const batch = Array.from({ length: 15 }, (_, i) => ({ dateObserved: base + i, intensity: i }));
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(batch), { qos: 1 });
  await p.waitFor(() => errors.length === 1, 3000, 'the rate-limit error');
  assert.equal(errors[0].code, 'CP_INGEST_RATE_LIMITED');
  assert.equal(errors[0].index, 10);
  assert.match(errors[0].reason, /5 reading\(s\) over/);
  await p.platform.parts.ingest.flush();
  const stored = (await p.rows(`SELECT "intensity" FROM "traffic" WHERE "device" = '${dev.id}'`)).map((r) => r.intensity);
  assert.deepEqual(stored, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const dl = (await (await p.api(`/api/v1/dead-letters?device=${dev.id}`, { admin: true })).json()) as any[];
  assert.equal(dl[0].code, 'CP_INGEST_RATE_LIMITED');
  assert.equal(JSON.parse(dl[0].payload).length, 5);
  // The bucket refills: a second later one more reading goes through.
  await new Promise((r) => setTimeout(r, 1100));
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ dateObserved: base + 100, intensity: 100 }), { qos: 1 });
  await p.rowsAtLeast(`SELECT "intensity" FROM "traffic" WHERE "device" = '${dev.id}' AND "intensity" = 100`);
});

test('connections in total and failed attempts per source address are bounded', async (t) => {
  const p = await startTestPlatform(t, { broker: { maxConnections: 2, maxConnectionAttemptsPerAddress: 0 } });
  const a = await p.provision('airQuality');
  const b = await p.provision('airQuality');
  const c = await p.provision('airQuality');
  await p.connect(a.id, a.token);
  await p.connect(b.id, b.token);
  const third = await rawConnect(p.addr.mqtt);
  third.send(connectPacket(c.id, c.token));
  assert.equal(await third.closed(), true, 'the third connection is closed');
  assert.equal(await third.next('connack', 100), undefined, 'without a CONNACK');
  assert.match(await (await p.api('/metrics')).text(), /citypulse_mqtt_connections_refused_total\{reason="max-connections"\} 1/);

  const q = await startTestPlatform(t, { broker: { maxConnectionAttemptsPerAddress: 3, connectionAttemptWindowMs: 60_000 } });
  const d = await q.provision('airQuality');
  // Successful logins do not count.
  for (let i = 0; i < 5; i++) {
    const client = await q.connect(d.id, d.token);
    await client.endAsync();
  }
  for (let i = 0; i < 3; i++) {
    const failed = await rawConnect(q.addr.mqtt);
    failed.send(connectPacket(d.id, 'wrong-token'));
    assert.equal(((await failed.next('connack')) as { returnCode: number } | undefined)?.returnCode, 4);
    assert.equal(await failed.closed(), true);
  }
  // Held back after 3 failures: only 4 connections that have not authenticated yet at a time.
  const silent = await Promise.all(Array.from({ length: 5 }, () => rawConnect(q.addr.mqtt)));
  assert.deepEqual(await Promise.all(silent.map((r) => r.closed(300))), [false, false, false, false, true], 'the fifth is closed');
  assert.match(await (await q.api('/metrics')).text(), /citypulse_mqtt_connections_refused_total\{reason="too-many-attempts"\} 1/);
  // Once they end, a device with its token still gets in.
  for (const r of silent) r.socket.destroy();
  await new Promise((r) => setTimeout(r, 100)); // the broker sees them close
  assert.equal((await q.connect(d.id, d.token)).connected, true);
});

test('keepalive bounds: more than broker.maxKeepaliveSeconds is closed without CONNACK (MQTT-3.2.2-6: no return code fits, 6 is reserved); 0 is accepted', async (t) => {
  const p = await startTestPlatform(t, { broker: { maxKeepaliveSeconds: 300 } });
  const dev = await p.provision('streetLight');
  const raw = await rawConnect(p.addr.mqtt);
  raw.send(connectPacket(dev.id, dev.token, { keepalive: 301 }));
  assert.equal(await raw.closed(), true);
  assert.deepEqual(
    raw.packets.map((x) => x.cmd),
    [],
    'no CONNACK',
  );
  assert.match(await (await p.api('/metrics')).text(), /citypulse_mqtt_auth_failures_total\{reason="keepalive-too-long"\} 1/);
  for (const keepalive of [300, 0]) {
    const ok = await p.connect(dev.id, dev.token, { keepalive });
    assert.equal(ok.connected, true, `keepalive ${keepalive} accepted`);
    await ok.endAsync();
  }
});

test('a zero-length client id is refused (MQTT-3.1.3-8 with a persistent session; here always: id = username)', async (t) => {
  const p = await startTestPlatform(t);
  const dev = await p.provision('traffic');
  for (const clean of [false, true]) {
    const raw = await rawConnect(p.addr.mqtt);
    // mqtt-packet refuses to generate the forbidden case: build it clean, then clear the clean-session flag.
    const bytes = mqttPacket.generate(connectPacket(dev.id, dev.token, { clientId: '', clean: true }));
    // Connect flags follow the fixed header (type + 1 or 2 length bytes), the protocol name (2 + 4) and level (1).
    const flags = (bytes[1] as number) < 0x80 ? 9 : 10;
    if (!clean) bytes[flags] = (bytes[flags] as number) & ~0x02;
    assert.equal(((bytes[flags] as number) & 0x02) !== 0, clean);
    raw.send(bytes);
    assert.equal(((await raw.next('connack')) as { returnCode: number } | undefined)?.returnCode, 2);
    assert.equal(await raw.closed(), true);
  }
});

test('the MQTT listener asks the kernel for an accept queue of 16,384 connections; the log says what the kernel granted', async (t) => {
  const lines: string[] = [];
  const p = await startTestPlatform(t, { log: { level: 'info' } }, { logLines: lines });
  const port = new URL(p.addr.mqtt).port;
  // For a listening socket `ss` reports the accept queue's size (the listen backlog, capped by somaxconn) as Send-Q.
  const { stdout } = await execFileAsync('ss', ['-Hltn', `sport = :${port}`]);
  const sendQ = Number(stdout.trim().split(/\s+/)[2]);
  const cap = somaxconn();
  assert.equal(sendQ, Math.min(LISTEN_BACKLOG, cap ?? LISTEN_BACKLOG), stdout);
  const listening = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'MQTT broker listening');
  assert.equal(listening?.acceptQueue, sendQ);
  const capped = lines.some((l) => l.includes('the kernel caps the MQTT accept queue'));
  assert.equal(capped, sendQ < LISTEN_BACKLOG, 'the cap is logged exactly when the kernel lowered the queue');
});
