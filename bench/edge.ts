/**
 * What the edge costs: MQTT through HAProxy (platform/engines/haproxy.ts, PROXY v2) against straight to the
 * broker, on one platform with broker.proxyProtocol on (the direct clients write their own PROXY v2 header, so
 * the broker does the same work for both).
 *
 *   node --import tsx bench/edge.ts [--connections=2000] [--concurrency=20] [--pings=5000] [--rounds=2]
 *
 * - connections: sequential MQTT logins per worker (connect, PROXY header, CONNECT, CONNACK, DISCONNECT), one
 *   provisioned device per worker: logins a second and CONNECT → CONNACK latency;
 * - pings: PINGREQ → PINGRESP round trips on one connection, one at a time: the latency a relay adds to every
 *   packet, without the broker's own work.
 * The platform (with a private InfluxDB) and HAProxy run here; the clients in a child process of their own, so
 * that they do not share the platform's event loop. Targets alternate (direct, edge, direct, edge …) so both see
 * the same machine conditions. Prints a table and the medians of the rounds.
 */
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { encodeProxyV2 } from '../core/proxy-protocol.ts';
import { startHaproxy } from '../platform/engines/haproxy.ts';
import { loadConfig } from '../platform/config.ts';
import { startLocalInflux } from '../platform/influxdb-local.ts';
import { createPlatform } from '../platform/platform.ts';
import { median, ms, int, summarize, textTable } from './stats.ts';

const arg = (name: string, def: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def);

interface Target {
  name: 'direct' | 'edge';
  host: string;
  port: number;
  /** Direct: the client writes the PROXY v2 header HAProxy would. */
  header: boolean;
}
interface ClientJob {
  target: Target;
  devices: { id: string; token: string }[];
  connections: number;
  pings: number;
}
interface ClientResult {
  target: string;
  loginsPerSecond: number;
  connack: { p50: number; p99: number };
  ping: { p50: number; p99: number };
}

/** One MQTT connection: resolves with a reader of its packets. */
async function open(target: Target, n: number) {
  const socket = net.connect({ host: target.host, port: target.port });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  if (target.header) socket.write(encodeProxyV2({ address: `10.9.${(n >> 8) & 255}.${n & 255}`, port: 40000 + (n % 20000) }));
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const waiting: ((p: Packet) => void)[] = [];
  parser.on('packet', (p: Packet) => waiting.shift()?.(p));
  socket.on('data', (d) => parser.parse(d));
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return {
    socket,
    closed,
    send: (p: Packet) => socket.write(mqttPacket.generate(p)),
    next: () => new Promise<Packet>((resolve) => waiting.push(resolve)),
  };
}

async function runClient(job: ClientJob): Promise<ClientResult> {
  const connack: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    job.devices.map(async (d, w) => {
      while (next < job.connections) {
        const n = next++;
        const c = await open(job.target, n * job.devices.length + w);
        const t0 = performance.now();
        c.send({
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: 4,
          clean: true,
          clientId: d.id,
          keepalive: 60,
          username: d.id,
          password: Buffer.from(d.token),
        } as Packet);
        const p = await c.next();
        connack.push(performance.now() - t0);
        if (p.cmd !== 'connack' || (p as { returnCode: number }).returnCode !== 0)
          throw new Error(`login ${n} refused: ${JSON.stringify(p)}`);
        c.send({ cmd: 'disconnect' } as Packet);
        c.socket.end();
        await c.closed;
      }
    }),
  );
  const loginsPerSecond = job.connections / ((performance.now() - started) / 1000);
  const d = job.devices[0] as { id: string; token: string };
  const c = await open(job.target, 0);
  c.send({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: d.id,
    keepalive: 60,
    username: d.id,
    password: Buffer.from(d.token),
  } as Packet);
  await c.next();
  const rtt: number[] = [];
  for (let i = 0; i < job.pings; i++) {
    const t0 = performance.now();
    c.send({ cmd: 'pingreq' } as Packet);
    await c.next();
    rtt.push(performance.now() - t0);
  }
  c.socket.destroy();
  const s = summarize(connack);
  const r = summarize(rtt.slice(Math.min(100, rtt.length >> 2))); // the first ones warm the path up
  return { target: job.target.name, loginsPerSecond, connack: { p50: s.p50, p99: s.p99 }, ping: { p50: r.p50, p99: r.p99 } };
}

if (process.argv.includes('--client')) {
  process.once('message', (job: ClientJob) => {
    runClient(job).then(
      (r) => process.send?.(r, () => process.exit(0)),
      (err: Error) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
} else {
  const connections = arg('connections', 2000);
  const concurrency = arg('concurrency', 20);
  const pings = arg('pings', 5000);
  const rounds = arg('rounds', 2);
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-bench-edge-'));
  const influx = await startLocalInflux({ dir: join(dir, 'influxdb') });
  const platform = createPlatform(
    loadConfig({
      env: {},
      overrides: {
        dataDir: join(dir, 'data'),
        influx: { url: influx.url },
        broker: { port: 0, proxyProtocol: { enabled: true }, maxConnectionAttemptsPerAddress: 0 },
        api: { port: 0 },
        log: { level: 'warn' },
      },
    }),
  );
  let hp: Awaited<ReturnType<typeof startHaproxy>> | undefined;
  try {
    const addr = await platform.start();
    const mqtt = new URL(addr.mqtt);
    hp = await startHaproxy({ dir: join(dir, 'haproxy'), mqtt: { backends: [{ host: mqtt.hostname, port: Number(mqtt.port) }] } });
    await hp.waitUntilUp();
    const profile = platform.parts.profile;
    const zone = profile.zones.find((z) => z.centre) ?? profile.zones[0];
    const devices: { id: string; token: string }[] = [];
    for (let i = 0; i < concurrency; i++) {
      const { device, token } = await platform.parts.devices.provision({
        id: `tc-edge-${String(i).padStart(3, '0')}`,
        family: 'traffic',
        zone: zone?.id as string,
        location: profile.centre,
      });
      devices.push({ id: device.id, token });
    }
    const targets: Target[] = [
      { name: 'direct', host: mqtt.hostname, port: Number(mqtt.port), header: true },
      { name: 'edge', host: hp.mqtt?.host as string, port: hp.mqtt?.port as number, header: false },
    ];
    const results: ClientResult[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const target of targets) {
        const child = fork(fileURLToPath(import.meta.url), ['--client'], { execArgv: ['--import', 'tsx'] });
        const result = await new Promise<ClientResult>((resolve, reject) => {
          child.once('message', (m) => resolve(m as ClientResult));
          child.once('exit', (code) => (code ? reject(new Error(`client exited with ${code}`)) : undefined));
          child.send({ target, devices, connections, pings } satisfies ClientJob);
        });
        console.log(
          `round ${round + 1} ${target.name}: ${int(result.loginsPerSecond)} logins/s, CONNACK p50 ${ms(result.connack.p50)} ms, ping p50 ${ms(result.ping.p50)} ms`,
        );
        results.push(result);
      }
    }
    const rows = targets.map((t) => {
      const mine = results.filter((r) => r.target === t.name);
      const med = (f: (r: ClientResult) => number) => median(mine.map(f));
      return [
        t.name,
        int(med((r) => r.loginsPerSecond)),
        ms(med((r) => r.connack.p50)),
        ms(med((r) => r.connack.p99)),
        ms(med((r) => r.ping.p50)),
        ms(med((r) => r.ping.p99)),
      ];
    });
    console.log(
      `\n${os.cpus().length} cores, ${connections} logins at concurrency ${concurrency}, ${pings} pings; medians of ${rounds} rounds`,
    );
    console.log(textTable(['target', 'logins/s', 'CONNACK p50 ms', 'CONNACK p99 ms', 'ping p50 ms', 'ping p99 ms'], rows));
  } finally {
    await hp?.stop();
    await platform.stop();
    await influx.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
