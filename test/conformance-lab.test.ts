/**
 * Lab mode: off by default; when on (loudly logged), anonymous clients may connect and
 * publish/subscribe on any topic with retained messages and QoS 0-2, so independent MQTT conformance suites
 * and tools can run against the broker, while devices keep their rules and their telemetry is still stored.
 * The zero-length client id with a persistent session is refused in lab mode too [MQTT-3.1.3-8], and so is a
 * provisioned device's id without its token; the refused subscription filters are configurable.
 * The MQTT 3.1.1 statements themselves: conformance-mqtt311.test.ts and conformance-paho.test.ts.
 *
 * Run: node --import tsx --test test/conformance-lab.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { connectPacket, rawConnect } from './helpers/raw-mqtt.ts';
import { startTestPlatform } from './helpers/platform.ts';

test('lab mode off (default): anonymous clients are refused', async (t) => {
  const p = await startTestPlatform(t);
  await assert.rejects(mqtt.connectAsync(p.addr.mqtt, { reconnectPeriod: 0 }), (e: any) => e.code === 4);
});

test('lab mode on: anonymous tools use free topics, retained and QoS 2; devices keep their rules', async (t) => {
  const lines: string[] = [];
  const p = await startTestPlatform(t, { broker: { labMode: true }, log: { level: 'warn' } }, { logLines: lines });
  assert.ok(
    lines.some((l) => /LAB MODE IS ON/.test(l)),
    'lab mode is loudly logged',
  );
  const a = await mqtt.connectAsync(p.addr.mqtt, { reconnectPeriod: 0, clientId: 'conformance-a' });
  const b = await mqtt.connectAsync(p.addr.mqtt, { reconnectPeriod: 0, clientId: 'conformance-b', username: 'whoever', password: 'x' });
  t.after(() => Promise.all([a.endAsync(true), b.endAsync(true)]));
  await a.publishAsync('lab/retained', 'kept', { qos: 1, retain: true });
  const got = new Promise<{ topic: string; payload: string; retain: boolean }[]>((resolve) => {
    const seen: { topic: string; payload: string; retain: boolean }[] = [];
    b.on('message', (topic, payload, packet) => {
      seen.push({ topic, payload: payload.toString(), retain: packet.retain });
      if (seen.length === 2) resolve(seen);
    });
  });
  await b.subscribeAsync('lab/#', { qos: 2 });
  await a.publishAsync('lab/qos2', 'exactly once', { qos: 2 });
  const seen = await got;
  assert.deepEqual(
    seen.map((m) => [m.topic, m.payload, m.retain]),
    [
      ['lab/retained', 'kept', true],
      ['lab/qos2', 'exactly once', false],
    ],
  );

  // A device still has its rules, and its telemetry is still ingested.
  const dev = await p.provision('airQuality');
  const device = await p.connect(dev.id, dev.token);
  await assert.rejects(device.subscribeAsync('lab/#'), (e: any) => e.packet?.granted?.[0] === 128);
  // A tool may watch devices' telemetry in lab mode: the broker still routes it after ingest took it (outside
  // lab mode nobody may subscribe to it, and the broker skips that routing).
  let watched: string | undefined;
  b.on('message', (topic, payload) => {
    if (topic === `devices/${dev.id}/telemetry`) watched = payload.toString();
  });
  await b.subscribeAsync('devices/+/telemetry', { qos: 1 });
  await device.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ pm25: 12 }), { qos: 1 });
  const received = await p.waitFor(() => watched, 5000, 'the tool to receive the telemetry');
  assert.deepEqual(JSON.parse(received as string), { pm25: 12 });
  await p.rowsAtLeast(`SELECT "pm25" FROM "airQuality" WHERE "device" = '${dev.id}'`);
  // A known device with a wrong token is still refused.
  await assert.rejects(p.connect(dev.id, 'wrong'), (e: any) => e.code === 4);

  // [MQTT-3.1.3-8] in lab mode too.
  const raw = await rawConnect(p.addr.mqtt);
  const bytes = mqttPacket.generate(connectPacket('', '', { clientId: '', clean: true, username: undefined, password: undefined }));
  const flags = (bytes[1] as number) < 0x80 ? 9 : 10;
  bytes[flags] = (bytes[flags] as number) & ~0x02;
  raw.send(bytes);
  assert.equal(((await raw.next('connack')) as { returnCode?: number } | undefined)?.returnCode, 2);
});

test('lab mode: a provisioned device id without its token is refused (CONNACK 4), as username or as client id, so no tool takes over its session (MQTT-3.1.4-2)', async (t) => {
  const p = await startTestPlatform(t, { broker: { labMode: true } });
  const light = await p.provision('streetLight');
  const device = await p.connect(light.id, light.token);
  let deviceClosed = false;
  device.on('close', () => {
    deviceClosed = true;
  });
  const attempts: mqtt.IClientOptions[] = [
    { clientId: light.id, username: light.id }, // the device's id, no password
    { clientId: light.id }, // anonymous, with the device's client id
    { clientId: light.id, username: 'whoever', password: 'x' }, // another username, the device's client id
    { clientId: 'lab-tool', username: light.id }, // the device's id as username only
  ];
  for (const o of attempts) {
    await assert.rejects(mqtt.connectAsync(p.addr.mqtt, { reconnectPeriod: 0, ...o }), (e: any) => e.code === 4, JSON.stringify(o));
  }
  assert.equal(deviceClosed, false, 'the device keeps its connection');
  assert.equal(p.platform.parts.broker.isOnline(light.id), true);
  // Anonymous tools with other ids still connect.
  const tool = await mqtt.connectAsync(p.addr.mqtt, { reconnectPeriod: 0, clientId: 'lab-tool' });
  await tool.endAsync();
  // A revoked device's id is no free name either.
  assert.equal((await p.api(`/api/v1/devices/${light.id}/revoke`, { method: 'POST', admin: true })).status, 200);
  await assert.rejects(mqtt.connectAsync(p.addr.mqtt, { reconnectPeriod: 0, clientId: light.id }), (e: any) => [4, 5].includes(e.code));
});

test('lab mode: the refused subscription filters are configurable (broker.labRefusedTopics → SUBACK 0x80; the default, test/nosubscribe, in conformance-mqtt311 and -paho)', async (t) => {
  const p = await startTestPlatform(t, { broker: { labMode: true, labRefusedTopics: ['lab/closed'] } });
  const raw = await rawConnect(p.addr.mqtt);
  t.after(() => raw.socket.destroy());
  raw.send({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: 'lab-sub',
    keepalive: 60,
  } as mqttPacket.Packet);
  assert.equal(((await raw.next('connack')) as { returnCode?: number } | undefined)?.returnCode, 0);
  raw.send({
    cmd: 'subscribe',
    messageId: 1,
    subscriptions: [
      { topic: 'test/nosubscribe', qos: 1 },
      { topic: 'lab/closed', qos: 1 },
    ],
  } as mqttPacket.Packet);
  assert.deepEqual(((await raw.next('suback')) as { granted?: number[] } | undefined)?.granted, [1, 0x80]);
});
