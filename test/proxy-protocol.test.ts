/**
 * The PROXY v2 reader (core/proxy-protocol.ts) byte by byte: IPv4 and IPv6 headers, LOCAL, TLVs skipped, a
 * header split at every byte, the client's bytes after it kept, garbage and absent headers refused; and on a
 * real socket: untrusted peers closed unread, a late header closed, the address seen by the next reader.
 * The same reader against HAProxy itself: test/edge-haproxy.test.ts.
 *
 * Run: node --import tsx --test test/proxy-protocol.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  encodeProxyV2,
  isTrusted,
  PROXY_V2_SIGNATURE,
  ProxyV2Reader,
  readProxiedConnection,
  trustedPeers,
  type ProxyReadResult,
} from '../core/proxy-protocol.ts';

/** Header of the specification's IPv4 example: 127.0.0.1:12345 → 192.0.2.1:54321, built by hand. */
const IPV4 = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x11, 0x00, 0x0c, 127, 0, 0, 1, 192, 0, 2, 1, 0x30, 0x39, 0xd4, 0x31])]);
const CONNECT = Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00]);

const readAll = (...chunks: Buffer[]): ProxyReadResult => {
  const r = new ProxyV2Reader();
  let last: ProxyReadResult = { state: 'incomplete' };
  for (const c of chunks) {
    last = r.push(c);
    if (last.state !== 'incomplete') return last;
  }
  return last;
};

test('IPv4: address and ports, and the client bytes after the header kept in order', () => {
  const r = readAll(Buffer.concat([IPV4, CONNECT]));
  assert.equal(r.state, 'done');
  if (r.state !== 'done') return;
  assert.deepEqual(r.header, {
    command: 'proxy',
    family: 'ipv4',
    source: '127.0.0.1',
    sourcePort: 12345,
    destination: '192.0.2.1',
    destinationPort: 54321,
  });
  assert.deepEqual(r.rest, CONNECT);
});

test('a header split at every byte, with the MQTT bytes in the last segment', () => {
  const whole = Buffer.concat([IPV4, CONNECT]);
  for (let cut = 1; cut < IPV4.length; cut++) {
    const r = readAll(whole.subarray(0, cut), whole.subarray(cut));
    assert.equal(r.state, 'done', `cut at ${cut}`);
    if (r.state === 'done') assert.deepEqual(r.rest, CONNECT);
  }
  // One byte a segment.
  const r = readAll(...[...IPV4].map((b) => Buffer.from([b])));
  assert.equal(r.state, 'done');
});

test('IPv6 in RFC 5952 text (as Node gives remoteAddress), IPv4-mapped as ::ffff:a.b.c.d', () => {
  const cases: [string, string][] = [
    ['2001:db8::1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::1', '::1'],
    ['fe80::abcd:ef01:2345:6789', 'fe80::abcd:ef01:2345:6789'],
    ['::ffff:10.1.2.3', '::ffff:10.1.2.3'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ];
  for (const [given, text] of cases) {
    const r = readAll(encodeProxyV2({ address: given, port: 40000 }, { address: '::1', port: 1883 }));
    assert.equal(r.state, 'done', given);
    if (r.state === 'done' && r.header.command === 'proxy') {
      assert.equal(r.header.family, 'ipv6');
      assert.equal(r.header.source, text, given);
      assert.equal(r.header.sourcePort, 40000);
    }
  }
});

test('LOCAL (a health check): no address, whatever the family block says', () => {
  assert.deepEqual(readAll(encodeProxyV2()), { state: 'done', header: { command: 'local' }, rest: Buffer.alloc(0) });
  // HAProxy may send LOCAL with an address block: discarded, as the specification asks.
  const withBlock = Buffer.from(IPV4);
  withBlock[12] = 0x20;
  const r = readAll(withBlock);
  assert.equal(r.state === 'done' && r.header.command, 'local');
});

test('TLVs after the addresses are skipped, bounded by the length field', () => {
  const tlv = Buffer.from([0x05, 0x00, 0x03, 0x61, 0x62, 0x63]); // PP2_TYPE_UNIQUE_ID "abc"
  const h = Buffer.concat([IPV4, tlv]);
  h.writeUInt16BE(12 + tlv.length, 14);
  const r = readAll(Buffer.concat([h, CONNECT]));
  assert.equal(r.state, 'done');
  if (r.state === 'done') assert.deepEqual(r.rest, CONNECT);
});

test('garbage, an absent header, v1, bad versions and families are refused', () => {
  const refused = (b: Buffer, why: RegExp) => {
    const r = readAll(b);
    assert.equal(r.state, 'invalid', `${b.toString('hex')}`);
    if (r.state === 'invalid') assert.match(r.reason, why);
  };
  refused(CONNECT, /signature/); // a device straight to the broker, no header: refused at the first byte
  refused(Buffer.from('GET / HTTP/1.1\r\n'), /signature/);
  refused(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), /signature/);
  refused(Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b]), /signature/);
  const withByte = (i: number, v: number) => {
    const b = Buffer.from(IPV4);
    b[i] = v;
    return b;
  };
  refused(withByte(12, 0x11), /version 1/);
  refused(withByte(12, 0x22), /command 2/);
  refused(withByte(13, 0x12), /transport 2/); // UDP
  refused(withByte(13, 0x01), /family 0/); // PROXY with UNSPEC: no client address
  refused(withByte(13, 0x31), /family 3/); // AF_UNIX
  refused(withByte(15, 0x08), /cut short/); // IPv4 with 8 bytes of addresses
  const long = Buffer.from(IPV4);
  long.writeUInt16BE(0xffff, 14);
  refused(long, /exceeds/);
  // Signature right, still incomplete: waits (the timeout of readProxiedConnection bounds it).
  assert.equal(readAll(PROXY_V2_SIGNATURE.subarray(0, 5)).state, 'incomplete');
});

test('trusted peers: addresses and networks, IPv4-mapped peers, bad entries refused', () => {
  const list = trustedPeers(['127.0.0.0/8', '::1', '10.0.0.5']);
  assert.ok(isTrusted(list, '127.0.0.1'));
  assert.ok(isTrusted(list, '::ffff:127.0.0.2'));
  assert.ok(isTrusted(list, '::1'));
  assert.ok(isTrusted(list, '10.0.0.5'));
  assert.ok(!isTrusted(list, '10.0.0.6'));
  assert.ok(!isTrusted(list, undefined));
  assert.throws(() => trustedPeers(['localhost']), /CIDR/);
  assert.throws(() => trustedPeers(['10.0.0.0/33']), /CIDR/);
});

/** A loopback server whose connections go through readProxiedConnection; returns what each one came to. */
async function proxiedServer(t: { after(fn: () => unknown): void }, trusted: string[], timeoutMs = 300) {
  const outcomes: { address?: string; remote?: string; bytes?: Buffer; refused?: string }[] = [];
  const server = net.createServer((socket) =>
    readProxiedConnection(
      socket,
      { trusted: trustedPeers(trusted), timeoutMs },
      (address, rest) => {
        const o: (typeof outcomes)[number] = { address, remote: socket.remoteAddress, bytes: rest };
        outcomes.push(o);
        socket.unshift(rest);
        // The next reader (as aedes or Node's HTTP parser would) sees the client bytes from the first one on.
        let got = Buffer.alloc(0);
        socket.on('data', (d: Buffer) => {
          got = Buffer.concat([got, d]);
          o.bytes = got;
        });
      },
      (reason) => outcomes.push({ refused: reason }),
    ),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, outcomes };
}

const send = async (port: number, parts: Buffer[], gapMs = 20) => {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  const closed = new Promise((r) => s.once('close', r));
  await new Promise((r) => s.once('connect', r));
  for (const p of parts) {
    if (!s.destroyed) s.write(p);
    await new Promise((r) => setTimeout(r, gapMs));
  }
  return { socket: s, closed };
};

test('on a socket: the header in pieces, the client address as remoteAddress, the MQTT bytes intact', async (t) => {
  const srv = await proxiedServer(t, ['127.0.0.0/8']);
  const header = encodeProxyV2({ address: '203.0.113.7', port: 5555 });
  const c = await send(srv.port, [
    header.subarray(0, 3),
    header.subarray(3, 20),
    Buffer.concat([header.subarray(20), CONNECT.subarray(0, 4)]),
    CONNECT.subarray(4),
  ]);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(srv.outcomes[0]?.address, '203.0.113.7');
  assert.equal(srv.outcomes[0]?.remote, '203.0.113.7');
  assert.deepEqual(srv.outcomes[0]?.bytes, CONNECT);
  c.socket.destroy();
});

test('on a socket: no header, garbage, a late header and an untrusted peer are closed', async (t) => {
  const srv = await proxiedServer(t, ['127.0.0.0/8']);
  const a = await send(srv.port, [CONNECT]);
  await a.closed;
  const b = await send(srv.port, [encodeProxyV2({ address: '1.2.3.4', port: 1 }).subarray(0, 10)]);
  await b.closed; // closed by the timeout
  assert.deepEqual(
    srv.outcomes.map((o) => o.refused),
    ['proxy-header', 'proxy-header'],
  );
  const untrusted = await proxiedServer(t, ['10.0.0.0/8']);
  const c = await send(untrusted.port, [encodeProxyV2({ address: '1.2.3.4', port: 1 })]);
  await c.closed;
  assert.deepEqual(untrusted.outcomes, [{ refused: 'proxy-untrusted' }]);
});
