/**
 * Test helper: a raw MQTT 3.1.1 connection (node:net + mqtt-packet), for packets a well-behaved client
 * library refuses to send: empty client ids, wildcard or non-UTF-8 topics, oversized or malformed packets.
 */
import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';

export interface RawConnection {
  socket: net.Socket;
  /** Packets received from the broker. */
  packets: Packet[];
  send(packet: Packet | Buffer): void;
  /** Resolves with the first received packet of `cmd`, or undefined when the connection closes first. */
  next(cmd: string, timeoutMs?: number): Promise<Packet | undefined>;
  /** Resolves once the broker has closed the connection (true) or after `timeoutMs` (false). */
  closed(timeoutMs?: number): Promise<boolean>;
}

/**
 * `localAddress`: the source address to connect from (127.0.0.2, … are loopback too); `prefix`: bytes written
 * before any packet (a PROXY protocol header).
 */
export async function rawConnect(url: string, opts: { localAddress?: string; prefix?: Buffer } = {}): Promise<RawConnection> {
  const u = new URL(url);
  const socket = net.connect({ port: Number(u.port), host: u.hostname, localAddress: opts.localAddress });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => {
      if (opts.prefix) socket.write(opts.prefix);
      resolve();
    });
    socket.once('error', reject);
    setTimeout(() => reject(new Error('raw MQTT connect timed out')), 5000).unref();
  });
  socket.on('error', () => undefined);
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const packets: Packet[] = [];
  const waiters: (() => void)[] = [];
  parser.on('packet', (p: Packet) => {
    packets.push(p);
    for (const w of waiters.splice(0)) w();
  });
  socket.on('data', (d) => parser.parse(d));
  let isClosed = false;
  socket.on('close', () => {
    isClosed = true;
    for (const w of waiters.splice(0)) w();
  });
  return {
    socket,
    packets,
    send(packet) {
      socket.write(Buffer.isBuffer(packet) ? packet : mqttPacket.generate(packet));
    },
    async next(cmd, timeoutMs = 3000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const found = packets.find((p) => p.cmd === cmd);
        if (found || isClosed || Date.now() > until) return found;
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
    },
    async closed(timeoutMs = 3000) {
      const until = Date.now() + timeoutMs;
      while (!isClosed && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      return isClosed;
    },
  };
}

/** A CONNECT packet for a device (username = client id = id). */
export function connectPacket(id: string, token: string, extra: Record<string, unknown> = {}): Packet {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: id,
    keepalive: 60,
    username: id,
    password: Buffer.from(token),
    ...extra,
  } as Packet;
}
