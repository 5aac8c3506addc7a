/**
 * A lean MQTT 3.1.1 client for the throughput load: CONNECT, QoS 1 PUBLISH with a window of message ids,
 * PUBACK matching, and a QoS 1 subscriber that answers every PUBLISH with a PUBACK. Nothing else (no
 * reconnect, no QoS 2, no stores, no keepalive pings: the runs last seconds and keepalive is 300 s).
 *
 * Why not MQTT.js here: on this machine's 2 cores the devices share the CPU with the platform and InfluxDB,
 * which real devices (other machines) never do. MQTT.js costs ~26 µs of CPU per QoS 1 publish in the device
 * process (60–70 % of a core at 25,000 messages/s, `npm run bench -- throughput --client=mqttjs`), the broker's
 * own share; this client costs a few µs. It is the default load for throughput and the bare-Aedes baseline;
 * `--client=mqttjs` runs the same load through MQTT.js. The packets on the wire are the same MQTT 3.1.1 either
 * way (CONNECT is encoded by mqtt-packet, as MQTT.js does; PUBLISH and PUBACK are fixed-layout).
 */
import net from 'node:net';
import mqttPacket from 'mqtt-packet';

export interface LeanOptions {
  clientId: string;
  username?: string;
  password?: string;
  keepaliveSeconds?: number;
  connectTimeoutMs?: number;
}

type AckCallback = (err?: Error) => void;

export class LeanClient {
  readonly clientId: string;
  private readonly socket: net.Socket;
  /** Message id → callback of the PUBLISH it answers. */
  private readonly waiting = new Map<number, AckCallback>();
  private nextId = 1;
  private buffered: Buffer | undefined;
  private corked = false;
  private closed = false;
  private readonly closeHandlers: (() => void)[] = [];
  private onConnack: ((code: number) => void) | undefined;
  private onSuback: (() => void) | undefined;
  /** QoS 1 PUBLISH packets received (subscriber side). */
  received = 0;

  private constructor(socket: net.Socket, clientId: string) {
    this.socket = socket;
    this.clientId = clientId;
    socket.setNoDelay(true);
    socket.on('data', (d) => this.parse(d));
    socket.on('error', () => undefined); // 'close' follows and tells
    socket.on('close', () => {
      this.closed = true;
      const err = new Error(`connection of ${clientId} closed`);
      for (const cb of this.waiting.values()) cb(err);
      this.waiting.clear();
      for (const h of this.closeHandlers.splice(0)) h();
    });
  }

  static async connect(url: string, o: LeanOptions): Promise<LeanClient> {
    const u = new URL(url);
    const socket = net.connect(Number(u.port), u.hostname);
    const client = new LeanClient(socket, o.clientId);
    const timeoutMs = o.connectTimeoutMs ?? 10_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect of ${o.clientId} timed out`));
      }, timeoutMs);
      client.onConnack = (code) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else {
          socket.destroy();
          reject(new Error(`connect of ${o.clientId} refused: CONNACK ${code}`));
        }
      };
      client.onClose(() => {
        clearTimeout(timer);
        reject(new Error(`connection of ${o.clientId} closed before CONNACK`));
      });
      socket.once('connect', () =>
        socket.write(
          mqttPacket.generate({
            cmd: 'connect',
            protocolId: 'MQTT',
            protocolVersion: 4,
            clean: true,
            clientId: o.clientId,
            keepalive: o.keepaliveSeconds ?? 300,
            ...(o.username ? { username: o.username } : {}),
            ...(o.password ? { password: Buffer.from(o.password) } : {}),
          }),
        ),
      );
    });
    return client;
  }

  onClose(handler: () => void): void {
    if (this.closed) handler();
    else this.closeHandlers.push(handler);
  }

  /** QoS 1 PUBLISH; `cb` runs on its PUBACK (or with an error when the connection closes first). */
  publish(topic: string, payload: string, cb: AckCallback): void {
    if (this.closed) {
      cb(new Error(`connection of ${this.clientId} is closed`));
      return;
    }
    let id = this.nextId;
    while (this.waiting.has(id)) id = id === 65535 ? 1 : id + 1;
    this.nextId = id === 65535 ? 1 : id + 1;
    this.waiting.set(id, cb);
    const topicLen = Buffer.byteLength(topic);
    const payloadLen = Buffer.byteLength(payload);
    const remaining = 2 + topicLen + 2 + payloadLen;
    const lenBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4;
    const packet = Buffer.allocUnsafe(1 + lenBytes + remaining);
    packet[0] = 0x32; // PUBLISH, QoS 1
    let o = 1;
    let r = remaining;
    do {
      let b = r % 128;
      r = Math.floor(r / 128);
      if (r > 0) b |= 0x80;
      packet[o++] = b;
    } while (r > 0);
    packet.writeUInt16BE(topicLen, o);
    o += 2;
    o += packet.write(topic, o, 'utf8');
    packet.writeUInt16BE(id, o);
    o += 2;
    packet.write(payload, o, 'utf8');
    this.write(packet);
  }

  /** Subscribes at QoS 1; every PUBLISH then gets its PUBACK and counts in `received`. */
  subscribe(topic: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.onSuback = resolve;
      this.onClose(() => reject(new Error(`connection of ${this.clientId} closed before SUBACK`)));
      this.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] }));
    });
  }

  /** Cuts the connection without DISCONNECT (a lost link, as in the storm). */
  destroy(): void {
    this.socket.destroy();
  }

  /** DISCONNECT, then the socket's end; resolves once it is closed. */
  end(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.onClose(resolve);
      this.socket.end(Buffer.from([0xe0, 0x00]));
      setTimeout(() => this.socket.destroy(), 2000).unref();
    });
  }

  /** Writes of one turn of the event loop leave in one system call. */
  private write(packet: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(packet);
  }

  private parse(data: Buffer): void {
    const buf = this.buffered ? Buffer.concat([this.buffered, data]) : data;
    this.buffered = undefined;
    let o = 0;
    while (o < buf.length) {
      // Fixed header: type byte, then the remaining length (1–4 bytes).
      let len = 0;
      let mul = 1;
      let i = o + 1;
      let complete = false;
      while (i < buf.length && i - o <= 4) {
        const b = buf[i++] as number;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || i + len > buf.length) break;
      this.packet(buf[o] as number, buf, i, len);
      o = i + len;
    }
    if (o < buf.length) this.buffered = buf.subarray(o);
  }

  private packet(type: number, buf: Buffer, at: number, len: number): void {
    switch (type >> 4) {
      case 2: // CONNACK
        this.onConnack?.(buf[at + 1] as number);
        return;
      case 4: {
        // PUBACK
        const id = buf.readUInt16BE(at);
        const cb = this.waiting.get(id);
        if (cb) {
          this.waiting.delete(id);
          cb();
        }
        return;
      }
      case 3: {
        // PUBLISH to the subscriber: QoS 1 ones are answered.
        this.received++;
        if (((type >> 1) & 3) > 0) {
          const topicLen = buf.readUInt16BE(at);
          const id = buf.readUInt16BE(at + 2 + topicLen);
          this.write(Buffer.from([0x40, 0x02, id >> 8, id & 0xff]));
        }
        return;
      }
      case 9: // SUBACK
        if (len >= 3 && buf[at + 2] === 0x80) this.socket.destroy();
        else this.onSuback?.();
        return;
      default:
    }
  }
}
