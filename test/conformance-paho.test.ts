/**
 * The ten tests of the Eclipse Paho MQTT 3.1.1 interoperability suite's `client_test` (paho.mqtt.testing,
 * interoperability/client_test.py), re-created against lab mode (`broker.labMode`) from their known behaviour:
 * same client ids, topics, QoS, clean-session flags and assertions; the fixed sleeps became waits for the
 * expected packets plus short quiet periods, and test_keepalive uses a 2 s keepalive instead of 5 s.
 *
 * PahoTestClient behaves like the suite's own client (mqtt/clients/V311.py): keepalive 0 unless given (the
 * suite's default, which the broker once answered with the reserved CONNACK 6), no PINGREQ, incoming QoS 1
 * acknowledged with PUBACK and QoS 2 with PUBREC/PUBCOMP (delivered on PUBREL), and pause() makes it ignore
 * incoming publishes (no acknowledgement). Before each test, Paho's cleanup(): both client ids connect with a
 * clean session, and every retained message is deleted.
 *
 * Run: node --import tsx --test test/conformance-paho.test.ts
 */
import { before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { startTestPlatform, type TestPlatform } from './helpers/platform.ts';
import { fileScope } from './helpers/scope.ts';

const topics = ['TopicA', 'TopicA/B', 'Topic/C', 'TopicA/C', '/TopicA'];
const wildtopics = ['TopicA/+', '+/C', '#', '/#', '/+', '+/+', 'TopicA/#'];
const nosubscribeTopics = ['test/nosubscribe'];

const scope = fileScope();
let p: TestPlatform;
const sockets = new Set<net.Socket>();
scope.after(() => {
  for (const s of sockets) s.destroy();
});

type Message = [topic: string, payload: string, qos: number, retained: boolean, msgid: number | undefined];

interface ConnectOptions {
  cleansession?: boolean;
  keepAliveInterval?: number;
  willFlag?: boolean;
  willTopic?: string;
  willMessage?: string;
  willQoS?: 0 | 1 | 2;
  willRetain?: boolean;
}

class ConnectRefused extends Error {
  constructor(readonly returnCode: number) {
    super(`CONNACK return code ${returnCode}`);
  }
}

/** The suite's client and its Callbacks object (messages, subscribeds) in one. */
class PahoTestClient {
  messages: Message[] = [];
  subscribeds: [number, number[]][] = [];
  private socket: net.Socket | undefined;
  private paused = false;
  private nextId = 1;
  /** Packet ids of our publishes not yet completed (PUBACK / PUBCOMP). */
  private outgoing = new Set<number>();
  /** Incoming QoS 2 publishes between PUBREC and PUBREL. */
  private inbound = new Map<number, Message>();
  private waiters: { cmd: string; id?: number; resolve: (p: Packet | undefined) => void }[] = [];

  constructor(readonly clientId: string) {}

  async connect(o: ConnectOptions = {}): Promise<{ sessionPresent: boolean }> {
    const u = new URL(p.addr.mqtt);
    const socket = net.connect(Number(u.port), u.hostname);
    sockets.add(socket);
    this.socket = socket;
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      if (this.socket === socket) for (const w of this.waiters.splice(0)) w.resolve(undefined);
    });
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (packet: Packet) => this.received(packet));
    socket.on('data', (d) => parser.parse(d));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const clean = o.cleansession ?? true;
    const connect = mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: this.clientId,
      clean: true,
      keepalive: o.keepAliveInterval ?? 0,
      ...(o.willFlag
        ? { will: { topic: o.willTopic, payload: Buffer.from(o.willMessage ?? ''), qos: o.willQoS ?? 2, retain: o.willRetain ?? false } }
        : {}),
    } as Packet);
    // mqtt-packet refuses an empty client id with CleanSession 0, which the suite sends: the flag is cleared in
    // the bytes (connect flags after the fixed header, 1 or 2 length bytes, protocol name and level).
    if (!clean) {
      const flags = (connect[1] as number) < 0x80 ? 9 : 10;
      connect[flags] = (connect[flags] as number) & ~0x02;
    }
    socket.write(connect);
    const connack = (await this.wait('connack')) as { returnCode: number; sessionPresent: boolean } | undefined;
    if (!connack) throw new Error('connection closed without CONNACK');
    if (connack.returnCode !== 0) throw new ConnectRefused(connack.returnCode);
    return { sessionPresent: connack.sessionPresent };
  }

  /** Sends DISCONNECT and waits for the broker to close the connection. */
  async disconnect(): Promise<void> {
    await this.settled();
    const socket = this.socket;
    if (!socket || socket.destroyed) return;
    this.send({ cmd: 'disconnect' } as Packet);
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.end();
    });
  }

  /** Drops the network connection without DISCONNECT. */
  terminate(): void {
    this.socket?.destroy();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  publish(topic: string, payload: string, qos: 0 | 1 | 2, retained = false): void {
    const messageId = qos > 0 ? this.id() : undefined;
    if (messageId !== undefined) this.outgoing.add(messageId);
    this.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: retained, dup: false, messageId } as Packet);
  }

  async subscribe(filters: string[], qoss: (0 | 1 | 2)[]): Promise<void> {
    const messageId = this.id();
    this.send({ cmd: 'subscribe', messageId, subscriptions: filters.map((topic, i) => ({ topic, qos: qoss[i] })) } as Packet);
    assert.ok(await this.wait('suback', messageId), 'SUBACK');
  }

  async unsubscribe(filters: string[]): Promise<void> {
    const messageId = this.id();
    this.send({ cmd: 'unsubscribe', messageId, unsubscriptions: filters } as Packet);
    assert.ok(await this.wait('unsuback', messageId), 'UNSUBACK');
  }

  /** Resolves once every publish of ours has completed its QoS flow. */
  async settled(timeoutMs = 3000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.outgoing.size > 0 && Date.now() < until && !this.socket?.destroyed) await sleep(10);
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = (this.nextId % 65535) + 1;
    return id;
  }

  private send(packet: Packet): void {
    this.socket?.write(mqttPacket.generate(packet));
  }

  private wait(cmd: string, id?: number, timeoutMs = 5000): Promise<Packet | undefined> {
    return new Promise((resolve) => {
      const w = { cmd, id, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(undefined);
      }, timeoutMs).unref();
    });
  }

  private received(packet: Packet): void {
    const id = (packet as { messageId?: number }).messageId;
    switch (packet.cmd) {
      case 'publish': {
        if (this.paused) return; // neither delivered nor acknowledged
        const m: Message = [packet.topic, Buffer.from(packet.payload).toString(), packet.qos, packet.retain, id];
        if (packet.qos === 0) this.messages.push(m);
        else if (packet.qos === 1) {
          this.messages.push(m);
          this.send({ cmd: 'puback', messageId: id } as Packet);
        } else {
          this.inbound.set(id as number, m);
          this.send({ cmd: 'pubrec', messageId: id } as Packet);
        }
        break;
      }
      case 'pubrel': {
        const m = this.inbound.get(id as number);
        this.inbound.delete(id as number);
        if (m) this.messages.push(m);
        this.send({ cmd: 'pubcomp', messageId: id } as Packet);
        break;
      }
      case 'pubrec':
        this.send({ cmd: 'pubrel', messageId: id } as Packet);
        break;
      case 'puback':
      case 'pubcomp':
        this.outgoing.delete(id as number);
        break;
      case 'suback':
        this.subscribeds.push([id as number, (packet as { granted: number[] }).granted]);
        break;
    }
    for (const w of [...this.waiters]) {
      if (w.cmd === packet.cmd && (w.id === undefined || w.id === id)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(packet);
      }
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits until `n` messages arrived (or `timeoutMs` passed), then `quietMs` more for any that should not come. */
async function settle(c: PahoTestClient, n: number, timeoutMs = 3000, quietMs = 500): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (c.messages.length < n && Date.now() < until) await sleep(20);
  await sleep(quietMs);
}

let aclient: PahoTestClient;
let bclient: PahoTestClient;

before(async () => {
  p = await startTestPlatform(scope, { broker: { labMode: true } });
});

// client_test's setUp(): cleanup() (sessions of both client ids, retained messages), fresh clients and callbacks.
beforeEach(async () => {
  for (const clientid of ['myclientid', 'myclientid2']) {
    const c = new PahoTestClient(clientid);
    await c.connect({ cleansession: true });
    await c.disconnect();
  }
  const c = new PahoTestClient('clean retained');
  await c.connect({ cleansession: true });
  await c.subscribe(['#'], [0]);
  await sleep(500); // wait for all retained messages to arrive
  for (const [topic, , , retained] of c.messages) if (retained) c.publish(topic, '', 0, true);
  await c.disconnect();
  aclient = new PahoTestClient('myclientid');
  bclient = new PahoTestClient('myclientid2');
});

test('test_retained_messages: retained messages are kept per topic and deleted by an empty retained publish', async () => {
  await aclient.connect({ cleansession: true });
  aclient.publish(topics[1] as string, 'qos 0', 0, true);
  aclient.publish(topics[2] as string, 'qos 1', 1, true);
  aclient.publish(topics[3] as string, 'qos 2', 2, true);
  await aclient.settled();
  await aclient.subscribe([wildtopics[5] as string], [2]);
  await settle(aclient, 3);
  await aclient.disconnect();
  assert.equal(aclient.messages.length, 3, JSON.stringify(aclient.messages));

  // clear retained messages
  aclient.messages = [];
  await aclient.connect({ cleansession: true });
  aclient.publish(topics[1] as string, '', 0, true);
  aclient.publish(topics[2] as string, '', 1, true);
  aclient.publish(topics[3] as string, '', 2, true);
  await aclient.settled(); // wait for the QoS 2 exchange to be completed
  await aclient.subscribe([wildtopics[5] as string], [2]);
  await settle(aclient, 0);
  await aclient.disconnect();
  assert.equal(aclient.messages.length, 0, JSON.stringify(aclient.messages));
});

test('test_zero_length_clientid: an empty client id is refused with a persistent session and accepted with a clean one', async () => {
  const client0 = new PahoTestClient('');
  await assert.rejects(client0.connect({ cleansession: false }), (e: unknown) => e instanceof ConnectRefused); // should be rejected
  await client0.connect({ cleansession: true }); // should work
  await client0.disconnect();
});

test('test_will_message: the will is published when the client goes away without DISCONNECT', async () => {
  const connack = await aclient.connect({
    cleansession: true,
    willFlag: true,
    willTopic: topics[2],
    willMessage: 'client not disconnected',
    keepAliveInterval: 2,
  });
  assert.equal(connack.sessionPresent, false);
  await bclient.connect({ cleansession: false });
  await bclient.subscribe([topics[2] as string], [2]);
  await sleep(100);
  aclient.terminate();
  await settle(bclient, 1, 5000);
  await bclient.disconnect();
  assert.equal(bclient.messages.length, 1, JSON.stringify(bclient.messages)); // should have the will message
});

test('test_offline_message_queueing: messages for a persistent session are queued while it is offline', async () => {
  await aclient.connect({ cleansession: false });
  await aclient.subscribe([wildtopics[5] as string], [2]);
  await aclient.disconnect();
  const connack = await bclient.connect({ cleansession: true });
  assert.equal(connack.sessionPresent, false);
  bclient.publish(topics[1] as string, 'qos 0', 0);
  bclient.publish(topics[2] as string, 'qos 1', 1);
  bclient.publish(topics[3] as string, 'qos 2', 2);
  await bclient.settled();
  await sleep(200);
  await bclient.disconnect();
  await aclient.connect({ cleansession: false });
  await settle(aclient, 2);
  await aclient.disconnect();
  assert.ok([2, 3].includes(aclient.messages.length), JSON.stringify(aclient.messages));
});

test('test_overlapping_subscriptions: one message at the highest QoS, or one per matching subscription', async () => {
  await aclient.connect();
  await aclient.subscribe([wildtopics[6] as string, wildtopics[0] as string], [2, 1]);
  aclient.publish(topics[3] as string, 'overlapping topic filters', 2);
  await settle(aclient, 2, 1000);
  const qos = aclient.messages.map((m) => m[2]);
  assert.ok([1, 2].includes(qos.length), JSON.stringify(aclient.messages));
  if (qos.length === 1) assert.equal(qos[0], 2);
  else assert.deepEqual([...qos].sort(), [1, 2]);
  await aclient.disconnect();
});

test('test_keepalive: a client that sends nothing within its keepalive is disconnected and its will published', async () => {
  await aclient.connect({
    cleansession: true,
    keepAliveInterval: 2,
    willFlag: true,
    willTopic: topics[4],
    willMessage: 'keepalive expiry',
  });
  await bclient.connect({ cleansession: true, keepAliveInterval: 0 });
  await bclient.subscribe([topics[4] as string], [2]);
  await settle(bclient, 1, 6000);
  await bclient.disconnect();
  assert.equal(bclient.messages.length, 1, JSON.stringify(bclient.messages)); // should have the will message
});

test('test_redelivery_on_reconnect: unacknowledged QoS 1 and 2 messages are sent again on reconnect', async () => {
  await bclient.connect({ cleansession: false });
  await bclient.subscribe([wildtopics[6] as string], [2]);
  bclient.pause(); // stops responding to incoming publishes
  bclient.publish(topics[1] as string, '', 1, false);
  bclient.publish(topics[3] as string, '', 2, false);
  await bclient.settled();
  await sleep(500);
  await bclient.disconnect();
  assert.equal(bclient.messages.length, 0);
  bclient.resume();
  await bclient.connect({ cleansession: false });
  await settle(bclient, 2);
  assert.equal(bclient.messages.length, 2, JSON.stringify(bclient.messages));
  await bclient.disconnect();
});

test('test_subscribe_failure: a subscription the server does not allow gets return code 0x80', async () => {
  await aclient.connect();
  await aclient.subscribe([nosubscribeTopics[0] as string], [2]);
  // subscribeds is a list of (msgid, [qos])
  assert.equal(aclient.subscribeds[0]?.[1][0], 0x80, JSON.stringify(aclient.subscribeds));
  await aclient.disconnect();
});

test('test_dollar_topics: a filter starting with a wildcard does not match a topic starting with $', async () => {
  await bclient.connect({ cleansession: true, keepAliveInterval: 0 });
  await bclient.subscribe([wildtopics[5] as string], [2]);
  await sleep(500); // wait for all retained messages, hopefully
  bclient.messages = [];
  bclient.publish(`$${topics[1]}`, '', 1, false);
  await bclient.settled();
  await settle(bclient, 0);
  assert.equal(bclient.messages.length, 0, JSON.stringify(bclient.messages));
  await bclient.disconnect();
});

test('test_unsubscribe: no more messages of an unsubscribed filter; the other subscriptions stay', async () => {
  await bclient.connect({ cleansession: true });
  await bclient.subscribe([topics[0] as string], [2]);
  await bclient.subscribe([topics[1] as string], [2]);
  await bclient.subscribe([topics[2] as string], [2]);
  await sleep(500); // wait for any retained messages, hopefully
  // Unsubscribe from one topic
  await bclient.unsubscribe([topics[0] as string]);
  bclient.messages = []; // if there were any retained messages
  await aclient.connect({ cleansession: true });
  aclient.publish(topics[0] as string, 'topic 0 - unsubscribed', 1, false);
  aclient.publish(topics[1] as string, 'topic 1', 1, false);
  aclient.publish(topics[2] as string, 'topic 2', 1, false);
  await aclient.settled();
  await settle(bclient, 2);
  await bclient.disconnect();
  await aclient.disconnect();
  assert.equal(bclient.messages.length, 2, JSON.stringify(bclient.messages));
});
