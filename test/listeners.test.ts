/**
 * The broker's listeners on real parts: a platform with MQTT over TLS (the demo's self-signed
 * certificate, made once in dataDir/tls and reused) and MQTT over WebSocket on the API port, a real InfluxDB,
 * MQTT.js and mosquitto_pub devices and socket.io clients. Covers: a TLS device's reading stored and pushed to
 * a socket; a WebSocket device's reading stored, a wrong token over WebSocket refused (CONNACK 4), the topic
 * rules on that listener, socket.io (websocket and polling) still served on the same port, other upgrade paths
 * answered 404;
 * with `requireClientCert` and a test CA (openssl, temp dir): a client certificate of that CA admitted, no
 * certificate or a self-signed one refused in the handshake; stop closes the listeners and is idempotent.
 * Ephemeral loopback ports and temp dirs only.
 *
 * Run: node --import tsx --test test/listeners.test.ts
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { io as ioClient, type Socket } from 'socket.io-client';
import { ensureSelfSignedCert } from '../broker/index.ts';
import { startTestInflux, type TestInflux } from './helpers/influx.ts';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const run = promisify(execFile);
const scope = fileScope();
let influx: TestInflux;

before(async () => {
  influx = await startTestInflux(scope);
});

/** An MQTT.js device on `url` (rejects with the CONNACK error, or when the connection closes first). */
async function device(url: string, id: string, token: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(
    url,
    { clientId: id, username: id, password: token, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...opts },
    false,
  );
  scope.after(() => client.endAsync(true).catch(() => undefined));
  return client;
}

/** A socket.io client of `p` subscribed to `sub` over `transport`, collecting readings. Closed after the file. */
async function liveClient(p: TestPlatform, sub: Record<string, string>, transport: 'websocket' | 'polling' = 'websocket') {
  const socket: Socket = ioClient(p.addr.api, { transports: [transport], reconnection: false, auth: { token: p.platform.adminToken } });
  scope.after(() => socket.close());
  const readings: any[] = [];
  socket.on('reading', (r) => readings.push(r));
  const ack = await socket.timeout(5000).emitWithAck('subscribe', sub);
  return { socket, ack, readings };
}

const reading = (pm25: number) => JSON.stringify({ dateObserved: Date.now() - 1000, pm25 });

describe('MQTT over TLS and WebSocket, demo certificate', () => {
  let p: TestPlatform;
  let ca: Buffer;
  before(async () => {
    p = await startTestPlatform(scope, { broker: { tls: { enabled: true, port: 0 } } }, { influx });
    ca = await readFile(p.addr.mqttsCertFile as string);
  });

  test('the addresses name both listeners; the self-signed pair is made once in dataDir/tls and reused', async () => {
    assert.match(p.addr.mqtts ?? '', /^mqtts:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(new URL(p.addr.mqtts as string).port, '8883');
    assert.equal(p.addr.ws, `${p.addr.api.replace('http:', 'ws:')}/mqtt`);
    assert.equal(p.addr.mqttsCertFile, join(p.dataDir, 'tls', 'cert.pem'));
    const again = await ensureSelfSignedCert(join(p.dataDir, 'tls'));
    assert.equal(again.created, false);
    assert.deepEqual(await readFile(again.certFile), ca);
  });

  test('a device over TLS publishes a reading that is stored and reaches a socket.io client', async () => {
    const dev = await p.provision('airQuality');
    const live = await liveClient(p, { device: dev.id });
    assert.equal(live.ack.ok, true);
    const url = `mqtts://127.0.0.1:${new URL(p.addr.mqtts as string).port}`;
    const client = await device(url, dev.id, dev.token, { ca, servername: 'localhost', rejectUnauthorized: true });
    await client.publishAsync(`devices/${dev.id}/telemetry`, reading(41.5), { qos: 1 });
    const rows = await p.rowsAtLeast(`SELECT * FROM "airQuality" WHERE "device" = '${dev.id}'`);
    assert.equal(rows[0]?.pm25, 41.5);
    const pushed = await p.waitFor(() => live.readings.find((r) => r.device === dev.id), 3000, 'socket reading');
    assert.equal(pushed.fields.pm25, 41.5);
    // The same token rules as over TCP.
    await assert.rejects(device(url, dev.id, 'wrong-token', { ca, servername: 'localhost' }), (e: any) => e.code === 4);
  });

  test('mosquitto_pub (an independent client) publishes over TLS, trusting the generated certificate', async () => {
    const dev = await p.provision('airQuality');
    const port = new URL(p.addr.mqtts as string).port;
    const cafile = p.addr.mqttsCertFile as string;
    const args = ['-h', 'localhost', '-p', port, '--cafile', cafile, '-i', dev.id, '-u', dev.id, '-P', dev.token, '-q', '1'];
    await run('mosquitto_pub', [...args, '-t', `devices/${dev.id}/telemetry`, '-m', reading(63.5)]);
    const rows = await p.rowsAtLeast(`SELECT * FROM "airQuality" WHERE "device" = '${dev.id}'`);
    assert.equal(rows[0]?.pm25, 63.5);
  });

  test('a device over WebSocket publishes a reading that is stored; a wrong token gets CONNACK 4', async () => {
    const dev = await p.provision('traffic');
    const wsUrl = p.addr.ws as string;
    assert.match(wsUrl, /^ws:\/\/127\.0\.0\.1:\d+\/mqtt$/);
    const client = await device(wsUrl, dev.id, dev.token);
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ dateObserved: Date.now() - 1000, intensity: 17 }), {
      qos: 1,
    });
    const rows = await p.rowsAtLeast(`SELECT * FROM "traffic" WHERE "device" = '${dev.id}'`);
    assert.equal(rows[0]?.intensity, 17);
    await assert.rejects(device(wsUrl, dev.id, 'wrong-token'), (e: any) => e.code === 4);
    await assert.rejects(device(wsUrl, 'nobody-here', 'x'.repeat(32)), (e: any) => e.code === 4);
    // Topic rules hold on this listener too: SUBACK 0x80 for '#'.
    await assert.rejects(client.subscribeAsync('#', { qos: 1 }), (e: any) => e.packet?.granted?.[0] === 128);
    assert.equal(p.platform.parts.broker.isOnline(dev.id), true);
  });

  test('socket.io keeps working on the same port (websocket and polling); other upgrade paths get 404', async () => {
    const dev = await p.provision('streetLight');
    const overWs = await liveClient(p, { device: dev.id }, 'websocket');
    const overPolling = await liveClient(p, { device: dev.id }, 'polling');
    assert.equal(overWs.ack.ok && overPolling.ack.ok, true);
    const client = await device(p.addr.ws as string, dev.id, dev.token);
    await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify({ powerState: 'on', illuminanceLevel: 0.8 }), { qos: 1 });
    for (const live of [overWs, overPolling]) {
      const r = await p.waitFor(() => live.readings.find((x) => x.device === dev.id), 3000, 'socket reading');
      assert.equal(r.fields.illuminanceLevel, 0.8);
    }
    assert.equal(await upgradeStatus(p.addr.api, '/not-mqtt'), 404);
    assert.equal(await upgradeStatus(p.addr.api, '/mqtt?x=1'), 101);
    const health = await p.api('/api/v1/health');
    assert.equal(health.status, 200);
  });
});

describe('MQTT over TLS with client certificates required', () => {
  let p: TestPlatform;
  let dir: string;
  let pki: { ca: Buffer; cert: Buffer; key: Buffer; rogueCert: Buffer; rogueKey: Buffer };
  let serverCa: Buffer;
  let url: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-pki-'));
    scope.after(() => rm(dir, { recursive: true, force: true }));
    const f = (n: string) => join(dir, n);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await run('openssl', [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      f('ca.key'),
      '-out',
      f('ca.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=citypulse test CA',
    ]);
    await run('openssl', ['req', ...ec, '-keyout', f('client.key'), '-out', f('client.csr'), '-subj', '/CN=field-device']);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      f('client.csr'),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-out',
      f('client.pem'),
      '-days',
      '2',
    ]);
    // Same subject, but signed by itself: a wrong chain.
    await run('openssl', [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      f('rogue.key'),
      '-out',
      f('rogue.pem'),
      '-days',
      '2',
      '-subj',
      '/CN=field-device',
    ]);
    pki = {
      ca: await readFile(f('ca.pem')),
      cert: await readFile(f('client.pem')),
      key: await readFile(f('client.key')),
      rogueCert: await readFile(f('rogue.pem')),
      rogueKey: await readFile(f('rogue.key')),
    };
    p = await startTestPlatform(
      scope,
      { broker: { tls: { enabled: true, port: 0, caFile: f('ca.pem'), requireClientCert: true }, ws: { enabled: false } } },
      { influx },
    );
    serverCa = await readFile(p.addr.mqttsCertFile as string);
    url = `mqtts://127.0.0.1:${new URL(p.addr.mqtts as string).port}`;
  });

  test('a client with a certificate signed by caFile connects and publishes', async () => {
    const dev = await p.provision('airQuality');
    const client = await device(url, dev.id, dev.token, { ca: serverCa, servername: 'localhost', cert: pki.cert, key: pki.key });
    await client.publishAsync(`devices/${dev.id}/telemetry`, reading(7.25), { qos: 1 });
    const rows = await p.rowsAtLeast(`SELECT * FROM "airQuality" WHERE "device" = '${dev.id}'`);
    assert.equal(rows[0]?.pm25, 7.25);
    // The certificate is a gate, not the identity: the token is still checked.
    await assert.rejects(
      device(url, dev.id, 'wrong-token', { ca: serverCa, servername: 'localhost', cert: pki.cert, key: pki.key }),
      (e: any) => e.code === 4,
    );
  });

  test('a client without a certificate, or with a self-signed one, fails the handshake', async () => {
    const dev = await p.provision('airQuality');
    // No CONNACK: the TLS layer refuses (the client sees an alert, or the connection closing under it).
    const refused = (e: any) => typeof e.code !== 'number' && /alert|connect/i.test(`${e.code} ${e.message}`);
    const failures = async () => {
      const m = (await (await p.api('/metrics')).text()).match(/citypulse_mqtt_auth_failures_total\{reason="tls-handshake"\} (\d+)/);
      return Number(m?.[1] ?? 0);
    };
    const before = await failures();
    await assert.rejects(device(url, dev.id, dev.token, { ca: serverCa, servername: 'localhost' }), refused);
    await assert.rejects(
      device(url, dev.id, dev.token, { ca: serverCa, servername: 'localhost', cert: pki.rogueCert, key: pki.rogueKey }),
      refused,
    );
    // Both failed in the server's handshake (client certificate missing / not of caFile's chain).
    await p.waitFor(async () => (await failures()) === before + 2, 3000, 'two failed handshakes counted');
    assert.equal(p.platform.parts.broker.isOnline(dev.id), false);
  });

  test('with broker.ws.enabled false the WebSocket path is not served', async () => {
    assert.equal(p.addr.ws, undefined);
    assert.equal(await upgradeStatus(p.addr.api, '/mqtt'), 404);
  });

  test('stopping the broker closes the TLS listener and refuses WebSocket upgrades; stop is idempotent', async () => {
    const dev = await p.provision('airQuality');
    const client = await device(url, dev.id, dev.token, { ca: serverCa, servername: 'localhost', cert: pki.cert, key: pki.key });
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    const broker = p.platform.parts.broker;
    await Promise.all([broker.stop(), broker.stop()]);
    await broker.stop();
    await closed;
    const port = Number(new URL(url).port);
    await assert.rejects(
      new Promise((resolve, reject) => net.connect(port, '127.0.0.1').once('connect', resolve).once('error', reject)),
      (e: any) => e.code === 'ECONNREFUSED',
    );
  });
});

/** Status of a WebSocket upgrade request for `path` on the API port (101 = switched; the socket is then closed). */
function upgradeStatus(api: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${api}${path}`, {
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-protocol': 'mqtt',
      },
      timeout: 5000,
    });
    req.once('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.once('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy(new Error(`upgrade of ${path} left hanging`)));
    req.once('error', reject);
    req.end();
  });
}
