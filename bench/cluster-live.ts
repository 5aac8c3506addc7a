/**
 * What socket.io across nodes (api.redisUrl) costs the node that ingests: with the Redis streams adapter a node
 * broadcasts every event through Redis whether or not a socket anywhere watches it (dashboard-api/live.ts), so
 * the same steady load is run on one platform with api.redisUrl empty and on one with it set, alternating, and
 * the platform's CPU (user + system, this process) per second is compared. No socket is connected.
 *
 *   node --import tsx bench/cluster-live.ts [--rate=2000] [--seconds=10] [--rounds=2]
 *
 * The device (one, QoS 1, 20 readings a message) runs in a child process; the platform, a private InfluxDB and
 * Redis run here (InfluxDB and Redis are their own processes, not counted).
 */
import { fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { startRedis } from '../platform/engines/redis.ts';
import { loadConfig } from '../platform/config.ts';
import { startLocalInflux } from '../platform/influxdb-local.ts';
import { createPlatform } from '../platform/platform.ts';
import { median, textTable } from './stats.ts';

const arg = (name: string, def: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def);
const PER_MESSAGE = 20;

interface DeviceJob {
  url: string;
  id: string;
  token: string;
  rate: number;
  seconds: number;
}

async function runDevice(job: DeviceJob): Promise<number> {
  const client = await mqtt.connectAsync(job.url, {
    clientId: job.id,
    username: job.id,
    password: job.token,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  const messagesPerSecond = job.rate / PER_MESSAGE;
  const total = Math.round(messagesPerSecond * job.seconds);
  const start = Date.now() - 3_600_000;
  const t0 = performance.now();
  let sent = 0;
  const inFlight = new Set<Promise<unknown>>();
  for (let m = 0; m < total; m++) {
    const due = t0 + (m * 1000) / messagesPerSecond;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const readings = Array.from({ length: PER_MESSAGE }, (_, i) => ({
      dateObserved: new Date(start + m * PER_MESSAGE + i).toISOString(),
      pm25: 10 + (i % 50),
      pm10: 20 + (i % 70),
    }));
    const p = client.publishAsync(`devices/${job.id}/telemetry`, JSON.stringify(readings), { qos: 1 });
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    sent += PER_MESSAGE;
    if (inFlight.size > 50) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  await client.endAsync();
  return sent;
}

if (process.argv.includes('--device')) {
  process.once('message', (job: DeviceJob) => {
    runDevice(job).then(
      (n) => process.send?.(n, () => process.exit(0)),
      (err: Error) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
} else {
  const rate = arg('rate', 2000);
  const seconds = arg('seconds', 10);
  const rounds = arg('rounds', 2);
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-bench-cluster-'));
  const influx = await startLocalInflux({ dir: join(dir, 'influxdb') });
  const redis = await startRedis({ dir: join(dir, 'redis') });
  const results: { mode: string; cpu: number }[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      for (const mode of ['single node', 'api.redisUrl']) {
        const platform = createPlatform(
          loadConfig({
            env: {},
            overrides: {
              dataDir: join(dir, `data-${round}-${mode === 'single node' ? 'single' : 'redis'}`),
              influx: { url: influx.url, database: `bench${round}${mode === 'single node' ? 's' : 'r'}` },
              broker: { port: 0 },
              api: { port: 0, redisUrl: mode === 'single node' ? '' : redis.url },
              ingest: { maxReadingsPerSecond: 0 },
              log: { level: 'warn' },
            },
          }),
        );
        const addr = await platform.start();
        try {
          const profile = platform.parts.profile;
          const zone = profile.zones.find((z) => z.centre) ?? profile.zones[0];
          const { device, token } = await platform.parts.devices.provision({
            family: 'airQuality',
            zone: zone?.id as string,
            location: profile.centre,
          });
          const child = fork(fileURLToPath(import.meta.url), ['--device'], { execArgv: ['--import', 'tsx'] });
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          const sent = await new Promise<number>((resolve, reject) => {
            child.once('message', (m) => resolve(m as number));
            child.once('exit', (code) => (code ? reject(new Error(`device exited with ${code}`)) : undefined));
            child.send({ url: addr.mqtt, id: device.id, token, rate, seconds } satisfies DeviceJob);
          });
          const cpu = process.cpuUsage(cpu0);
          const elapsed = (performance.now() - t0) / 1000;
          const share = (cpu.user + cpu.system) / 1e6 / elapsed;
          console.log(
            `round ${round + 1} ${mode}: ${sent} readings in ${elapsed.toFixed(1)} s, platform CPU ${(share * 100).toFixed(0)} % of a core`,
          );
          results.push({ mode, cpu: share });
        } finally {
          await platform.stop();
        }
      }
    }
    const rows = ['single node', 'api.redisUrl'].map((mode) => [
      mode,
      `${(median(results.filter((r) => r.mode === mode).map((r) => r.cpu)) * 100).toFixed(0)} %`,
    ]);
    console.log(
      `\n${rate} readings/s (${PER_MESSAGE} a message, QoS 1) for ${seconds} s, no socket connected; medians of ${rounds} rounds`,
    );
    console.log(textTable(['mode', 'platform CPU (of one core)'], rows));
  } finally {
    await redis.stop();
    await influx.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
