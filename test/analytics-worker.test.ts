/**
 * Analytics off the main thread (single-node mode, `analytics.offMainThread`): the store worker hands analytics every reading it makes
 * durable, read back from the log's own lines; the indices and indicators come back to the main thread's live bus
 * and API. A real platform (broker over TCP, MQTT.js device, real InfluxDB) computes them on the store thread; a
 * real store worker with a real InfluxDB is made to die under appends, and the new one restores analytics from
 * InfluxDB with every reading counted once: those shipped before the restore in the restored hourly sums, those
 * appended while it ran applied on top.
 *
 * Run: node --import tsx --test test/analytics-worker.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { createWorkerAnalytics, vnHourlyAqi } from '../analytics/index.ts';
import type { AqiEvent } from '../core/bus.ts';
import { createBus } from '../core/bus.ts';
import type { EnrichedReading } from '../core/contract.ts';
import { createInfluxClient, ensureDatabase, fromLine, toLine } from '../ingest/index.ts';
import { ReadingStore } from '../ingest/store.ts';
import { loadCityProfile } from '../registry/index.ts';
import { startTestInflux } from './helpers/influx.ts';
import { startTestPlatform } from './helpers/platform.ts';

const HOUR = 3_600_000;
const FAST = {
  aqiEmitIntervalMs: 0,
  indicatorEmitIntervalMs: 0,
  storeIntervalMs: 0,
  writeMaxAgeMs: 20,
};

test('a reading goes back from its line to the same reading, escapes and field kinds included', () => {
  const readings: EnrichedReading[] = [
    {
      device: 'lamp 1,a=b',
      family: 'streetLight',
      zone: 'zone x',
      time: 1_764_000_000_123,
      fields: { powerState: 'low', status: 'defectiveLamp', illuminanceLevel: 0.35, powerConsumption: 12.25, energyConsumed: 3.5 },
    },
    { device: 'tf-1', family: 'traffic', zone: 'le-loi', time: 1, fields: { intensity: 12, averageVehicleSpeed: 31.5, congested: false } },
    { device: 'aq-1', family: 'airQuality', zone: 'tran-phu', time: 2, fields: { pm25: 1e-7, no2: 120, relativeHumidity: 0.61 } },
  ];
  for (const r of readings) assert.deepEqual(fromLine(toLine(r), r.family), r);
});

test('on a platform, analytics run on the store worker thread and their indices reach the bus and the API', async (t) => {
  const lines: string[] = [];
  const p = await startTestPlatform(t, { analytics: { ...FAST, offMainThread: true }, log: { level: 'info' } }, { logLines: lines });
  const events: AqiEvent[] = [];
  p.platform.bus.on('aqi', (e) => events.push(e));
  const dev = await p.provision('airQuality', { zone: 'tran-phu' });
  const client = await p.connect(dev.id, dev.token);
  // NowCast needs two of the last three hours: the previous hour's mean 20, this hour's 30.
  const h0 = Math.floor((Date.now() - 1000) / HOUR) * HOUR;
  const readings = [
    { dateObserved: h0 - HOUR + 1000, pm25: 20 },
    { dateObserved: h0, pm25: 30 },
  ];
  await client.publishAsync(`devices/${dev.id}/telemetry`, JSON.stringify(readings), { qos: 1 });
  const expected = vnHourlyAqi({ pm25: [30, 20] })?.aqi;
  assert.equal(expected, 52);
  const e = await p.waitFor(
    () => events.find((x) => x.scope === 'station' && x.id === dev.id && x.period === 'hour' && x.time === h0),
    10_000,
    'aqi event',
  );
  assert.equal(e?.vn?.aqi, expected);
  const cur = (await (await p.api('/api/v1/aqi?zone=tran-phu')).json()) as { stations: { id: string; hour: { vn: { aqi: number } } }[] };
  assert.equal(cur.stations.find((s) => s.id === dev.id)?.hour.vn.aqi, expected);
  // Restored, computing and logging on the store thread: its log records reach the platform's log marked so.
  const restored = lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l.msg === 'analytics state restored from InfluxDB');
  assert.equal(restored?.thread, 'store');
  assert.equal(restored?.component, 'analytics');
});

test('a store worker that dies is restarted with analytics restored from InfluxDB, each reading counted once', async (t) => {
  const influx = await startTestInflux(t);
  const dir = await mkdtemp(path.join(tmpdir(), 'citypulse-analytics-worker-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const target = { url: influx.url, database: 'analytics_worker', retentionPolicy: 'raw' };
  await ensureDatabase(createInfluxClient(target), target, 'INF');
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => logs.push(JSON.parse(l) as Record<string, unknown>) });
  const bus = createBus();
  const profile = loadCityProfile(path.resolve('cities/bac-giang.json'));
  const analytics = createWorkerAnalytics(
    {
      ...FAST,
      timezone: profile.timezone,
      airHoursKept: 48,
      trafficWindowMs: HOUR,
      congestion: {
        occupancyModerate: 0.15,
        occupancyHeavy: 0.35,
        occupancyCongested: 0.6,
        speedModerateKmh: 30,
        speedHeavyKmh: 20,
        speedCongestedKmh: 10,
      },
      lampMinPowerW: 1,
      lampMaxGapMs: 1_800_000,
      daylightMarginMs: 1_800_000,
      restoreMaxReplayMs: 86_400_000,
    },
    { bus, target, influx: () => createInfluxClient(target), profile, devices: { get: async () => undefined }, logger },
  );
  const writer = { batchSize: 20, batchMaxAgeMs: 20, writeConcurrency: 2, maxBufferedPoints: 100_000, retryMaxDelayMs: 200 };
  const store = new ReadingStore(
    {
      log: { dir, segmentBytes: 1 << 20, maxBytes: 1 << 24, fsync: true },
      influx: target,
      writer,
      shipper: { memoryPoints: 100_000, chunk: writer.batchSize },
      lateAfterMs: 0,
    },
    {
      prepareDatabase: async () => undefined,
      deadLetter: () => undefined,
      late: () => undefined,
      processor: () => analytics.processor(),
    },
    { logger },
  );
  t.after(async () => {
    await analytics.stop();
    await store.close();
  });
  const replay = await store.open();
  store.replay(replay.from, replay.to);
  await analytics.start();

  // One station: its NowCast of this hour and the last is what every reading counted once gives.
  const h0 = Math.floor(Date.now() / HOUR) * HOUR;
  let n = 0;
  const reading = (pm25: number, hour = h0): EnrichedReading => ({
    device: 'aq-restart',
    family: 'airQuality',
    zone: 'tran-phu',
    time: hour + n++,
    fields: { pm25 },
  });
  const append = (rs: EnrichedReading[]) => store.append(rs.map((r) => ({ family: r.family, device: r.device, line: toLine(r) })));
  const stationAqi = async () => {
    const cur = (await analytics.currentAqi()) as { stations: { id: string; hour: AqiEvent | null }[] };
    return cur.stations.find((s) => s.id === 'aq-restart')?.hour?.vn?.aqi;
  };

  await append([...Array.from({ length: 20 }, () => reading(20, h0 - HOUR)), ...Array.from({ length: 10 }, () => reading(20))]);
  assert.equal(await stationAqi(), vnHourlyAqi({ pm25: [20, 20] })?.aqi);
  assert.equal(await store.flush(20_000), true);

  // The worker dies (a message it cannot handle throws there); appends are refused until the new one opened the
  // log, then go on while analytics restores: each of them must count once.
  (store as unknown as { worker: Worker }).worker.postMessage({ t: 'append', text: 42, lens: new Uint32Array(1) });
  let accepted = 0;
  const deadline = Date.now() + 60_000;
  while (accepted < 30) {
    assert.ok(Date.now() < deadline, 'appends accepted again after the restart');
    const batch = Array.from({ length: 5 }, () => reading(50));
    try {
      await append(batch);
      accepted += batch.length;
    } catch {
      n -= batch.length; // refused while no worker runs: the same times are sent again
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  // This hour: 10 readings of 20 before the death, 30 of 50 after it: 42.5 (VN 70); the first 10 counted twice
  // give 38 (VN 64), the later ones counted twice more than 42.5.
  const expected = vnHourlyAqi({ pm25: [(10 * 20 + 30 * 50) / 40, 20] })?.aqi;
  assert.equal(expected, 70);
  assert.equal(vnHourlyAqi({ pm25: [(20 * 20 + 30 * 50) / 50, 20] })?.aqi, 64);
  let last: number | undefined;
  for (const end = Date.now() + 30_000; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
    last = await stationAqi().catch(() => undefined);
    if (last === expected && logs.some((l) => l.msg === 'analytics restored on the restarted store worker')) break;
  }
  assert.equal(last, expected, `hourly index of the 60 readings, each counted once (got ${last})`);
  assert.ok(logs.some((l) => /store worker failed/.test(String(l.msg))));
  // Nothing lost on the way: every acknowledged reading is in InfluxDB.
  assert.equal(await store.flush(20_000), true);
  const count = await influx.query(`SELECT count("pm25") FROM "airQuality" WHERE "device" = 'aq-restart'`, target.database);
  assert.equal(count.results[0].series[0].values[0][1], 60);
});
