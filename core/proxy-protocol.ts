/**
 * PROXY protocol version 2 (the binary header HAProxy's `send-proxy-v2` writes before a client's bytes), read
 * on listeners that sit behind the edge proxy, so that limits, logs and the audit see the client's address
 * rather than the proxy's (docs/cluster-edge.md).
 *
 * The header: a 12-byte signature, version and command (0x20 LOCAL, 0x21 PROXY), address family and transport
 * (0x11 TCP over IPv4, 0x21 TCP over IPv6, 0x00 unspecified), a 2-byte big-endian length, then that many bytes:
 * source and destination addresses and ports (12 bytes for IPv4, 36 for IPv6), then optional TLVs, skipped here.
 * LOCAL is the proxy's own connection (HAProxy's health checks with `check-send-proxy`): the specification asks
 * the receiver to accept it and use the real endpoints, so it carries no client address.
 *
 * Hand-written rather than taken from npm: the listeners need a reader that takes the header as TCP hands it
 * over (a segment may hold part of it, or the header and the first MQTT bytes together) and that bounds it by
 * its length field; proxy-protocol-js (the maintained parser on npm) parses one complete buffer, takes every
 * byte after the addresses as its TLV data (the client's own bytes included) and gives IPv6 addresses as 16
 * numbers, so the framing, the bounds and the formatting would be ours anyway, and what is left is two fixed
 * layouts. The reader is tested against HAProxy itself (test/edge-haproxy.test.ts) and byte by byte
 * (test/proxy-protocol.test.ts).
 */
import net from 'node:net';
import { PlatformError } from './errors.ts';

/** The 12 bytes every v2 header starts with. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/**
 * Longest header accepted after its 16 fixed bytes, bytes. Addresses take at most 216 (AF_UNIX); HAProxy adds
 * TLVs only when asked to (`proxy-v2-options`: ALPN, authority, unique id of at most 128 bytes, SSL details).
 */
export const PROXY_V2_MAX_LENGTH = 1024;

/** A complete, valid header. */
export type ProxyHeader =
  /** The proxy's own connection (a health check): no client address. */
  | { command: 'local' }
  /** A relayed TCP connection: the client's address and port, and the address it connected to. */
  | { command: 'proxy'; family: 'ipv4' | 'ipv6'; source: string; sourcePort: number; destination: string; destinationPort: number };

/** What the reader made of the bytes so far. */
export type ProxyReadResult =
  | { state: 'incomplete' }
  | { state: 'done'; header: ProxyHeader /** Bytes after the header: the client's own, in order. */; rest: Buffer }
  | { state: 'invalid'; reason: string };

/**
 * Reads one v2 header from bytes as they arrive. Feed each chunk to `push` until it answers `done` or
 * `invalid`; nothing is consumed past the header (its `rest` is the caller's).
 */
export class ProxyV2Reader {
  private buffered: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): ProxyReadResult {
    this.buffered = this.buffered.length ? Buffer.concat([this.buffered, chunk]) : chunk;
    const b = this.buffered;
    // The signature, checked byte by byte as it arrives: garbage (an MQTT CONNECT, an HTTP request, a v1 text
    // header) is refused at its first byte that differs, not after waiting for 16.
    const sig = Math.min(b.length, PROXY_V2_SIGNATURE.length);
    if (!b.subarray(0, sig).equals(PROXY_V2_SIGNATURE.subarray(0, sig))) return invalid('no PROXY v2 signature');
    if (b.length < 16) return { state: 'incomplete' };
    const versionCommand = b[12] as number;
    const familyTransport = b[13] as number;
    const length = b.readUInt16BE(14);
    if (versionCommand >> 4 !== 2) return invalid(`PROXY protocol version ${versionCommand >> 4}, not 2`);
    const command = versionCommand & 0x0f;
    if (command > 1) return invalid(`unknown PROXY v2 command ${command}`);
    if (length > PROXY_V2_MAX_LENGTH) return invalid(`PROXY v2 header of ${length} bytes exceeds ${PROXY_V2_MAX_LENGTH}`);
    if (b.length < 16 + length) return { state: 'incomplete' };
    const body = b.subarray(16, 16 + length);
    const rest = b.subarray(16 + length);
    this.buffered = Buffer.alloc(0);
    // LOCAL: the family and any address block are discarded, as the specification asks.
    if (command === 0) return { state: 'done', header: { command: 'local' }, rest };
    const family = familyTransport >> 4;
    const transport = familyTransport & 0x0f;
    // Only TCP is relayed to these listeners; UNSPEC, UNIX or UDP leaves no client address to limit by.
    if (transport !== 1) return invalid(`PROXY v2 transport ${transport} is not TCP`);
    if (family === 1) {
      if (length < 12) return invalid('PROXY v2 IPv4 address block cut short');
      return {
        state: 'done',
        header: {
          command: 'proxy',
          family: 'ipv4',
          source: formatIPv4(body, 0),
          destination: formatIPv4(body, 4),
          sourcePort: body.readUInt16BE(8),
          destinationPort: body.readUInt16BE(10),
        },
        rest,
      };
    }
    if (family === 2) {
      if (length < 36) return invalid('PROXY v2 IPv6 address block cut short');
      return {
        state: 'done',
        header: {
          command: 'proxy',
          family: 'ipv6',
          source: formatIPv6(body, 0),
          destination: formatIPv6(body, 16),
          sourcePort: body.readUInt16BE(32),
          destinationPort: body.readUInt16BE(34),
        },
        rest,
      };
    }
    return invalid(`PROXY v2 address family ${family} carries no IP address`);
  }
}

const invalid = (reason: string): ProxyReadResult => ({ state: 'invalid', reason });

function formatIPv4(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/**
 * RFC 5952 text (lower case, no leading zeros, the longest run of two or more zero groups as `::`), with an
 * IPv4-mapped address as `::ffff:a.b.c.d`: the same text Node gives a socket's remoteAddress, so an address
 * counts once in the per-address limits whichever way it arrived.
 */
function formatIPv6(b: Buffer, at: number): string {
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(at + 2 * i));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `::ffff:${formatIPv4(b, at + 12)}`;
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Builds a v2 header (tests, benchmarks, tools). `undefined` source = LOCAL. */
export function encodeProxyV2(
  source?: { address: string; port: number },
  destination: { address: string; port: number } = { address: '127.0.0.1', port: 1883 },
): Buffer {
  if (!source) return Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const v6 = net.isIPv6(source.address);
  const addr = (a: string) => (v6 ? ipv6Bytes(a) : Buffer.from(a.split('.').map(Number)));
  const body = Buffer.concat([addr(source.address), addr(destination.address), Buffer.alloc(4)]);
  body.writeUInt16BE(source.port, body.length - 4);
  body.writeUInt16BE(destination.port, body.length - 2);
  const head = Buffer.from([0x21, v6 ? 0x21 : 0x11, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, head, body]);
}

function ipv6Bytes(text: string): Buffer {
  let t = text;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (v4) {
    const p = (v4[1] as string).split('.').map(Number);
    t = `${t.slice(0, v4.index)}${(((p[0] as number) << 8) | (p[1] as number)).toString(16)}:${(((p[2] as number) << 8) | (p[3] as number)).toString(16)}`;
  }
  const [head = '', tail] = t.split('::');
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - tl.length).fill('0'), ...tl];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), 2 * i);
  return out;
}

/**
 * A header not complete within this time after the connection opened closes it, ms. HAProxy writes the header
 * with its first write, right after its connection to the backend is up: 5 s leaves room for a loaded proxy.
 */
export const PROXY_HEADER_TIMEOUT_MS = 5000;

/**
 * Which peers may send a header: addresses or CIDR networks (`127.0.0.0/8`, `::1`, `10.0.0.5`). `option` names
 * the setting in the error for an entry that is neither (CP_CONFIG_INVALID).
 */
export function trustedPeers(entries: readonly string[], option = 'trustedPeers'): net.BlockList {
  const list = new net.BlockList();
  for (const e of entries) {
    const [address = '', bits, extra] = e.split('/');
    const family = net.isIPv6(address) ? 'ipv6' : net.isIPv4(address) ? 'ipv4' : undefined;
    const prefix = Number(bits);
    const max = family === 'ipv6' ? 128 : 32;
    if (!family || extra !== undefined || (bits !== undefined && !(Number.isInteger(prefix) && prefix >= 0 && prefix <= max))) {
      throw new PlatformError('CP_CONFIG_INVALID', `${option}: "${e}" is neither an IP address nor a CIDR network`);
    }
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, prefix, family);
  }
  return list;
}

/** Whether `address` (as Node gives remoteAddress, IPv4-mapped IPv6 included) is in `list`. */
export function isTrusted(list: net.BlockList, address: string | undefined): boolean {
  if (!address) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return list.check(mapped[1] as string, 'ipv4') || list.check(address, 'ipv6');
  return list.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4');
}

/** Why a connection was refused before it was handed on. */
export type ProxyRefusal = 'proxy-untrusted' | 'proxy-header';

export interface ProxiedListenerOptions {
  /** Peers whose headers are believed (trustedPeers); a connection from any other is closed unread. */
  trusted: net.BlockList;
  /** A header not complete within this time closes the connection, ms. */
  timeoutMs: number;
}

/**
 * Takes a new socket of a listener behind the proxy: reads its header, then calls `ready` with the client's
 * address (undefined for LOCAL: the proxy's own connection) and the bytes that followed the header, which the
 * caller must hand to its reader before any later ones (`socket.unshift`). The socket's `remoteAddress` and
 * `remotePort` then read the client's, so every later reader of the socket (Express' req.ip, socket.io's
 * handshake address, log lines) sees the client. A peer that is not trusted, an absent, malformed or late
 * header: the socket is destroyed and `refused` says why.
 */
export function readProxiedConnection(
  socket: net.Socket,
  opts: ProxiedListenerOptions,
  ready: (address: string | undefined, rest: Buffer) => void,
  refused: (reason: ProxyRefusal, detail: string, peer: string | undefined) => void,
): void {
  const peer = socket.remoteAddress;
  socket.on('error', () => undefined); // a reset during the header is a refusal like any other
  // Already reset by the peer before it was accepted (it has no address any more): nothing to read or refuse.
  // HAProxy's health checks often end so, sending their LOCAL header and closing at once.
  if (peer === undefined) {
    socket.destroy();
    return;
  }
  if (!isTrusted(opts.trusted, peer)) {
    socket.destroy();
    refused('proxy-untrusted', 'peer not allowed to send PROXY headers', peer);
    return;
  }
  const reader = new ProxyV2Reader();
  const finish = () => {
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('end', onEnd);
  };
  const refuse = (detail: string) => {
    finish();
    socket.destroy();
    refused('proxy-header', detail, peer);
  };
  const timer = setTimeout(() => refuse(`no complete PROXY v2 header within ${opts.timeoutMs} ms`), opts.timeoutMs);
  timer.unref();
  const onEnd = () => refuse('closed before a complete PROXY v2 header');
  // 'readable' and read() rather than 'data': the socket never enters flowing mode here, so its next reader
  // (aedes, Node's HTTP parser) starts from the bytes after the header.
  const onReadable = () => {
    let chunk: Buffer | null;
    // biome-ignore lint/suspicious/noAssignInExpressions: the usual read() loop of a paused stream
    while ((chunk = socket.read() as Buffer | null) !== null) {
      const r = reader.push(chunk);
      if (r.state === 'incomplete') continue;
      if (r.state === 'invalid') return refuse(r.reason);
      finish();
      if (r.header.command === 'proxy') {
        Object.defineProperty(socket, 'remoteAddress', { value: r.header.source, configurable: true });
        Object.defineProperty(socket, 'remotePort', { value: r.header.sourcePort, configurable: true });
        Object.defineProperty(socket, 'remoteFamily', { value: r.header.family === 'ipv4' ? 'IPv4' : 'IPv6', configurable: true });
      }
      ready(r.header.command === 'proxy' ? r.header.source : undefined, r.rest);
      return;
    }
  };
  socket.on('readable', onReadable);
  socket.once('end', onEnd);
}
