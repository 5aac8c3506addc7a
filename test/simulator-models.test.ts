/**
 * Simulator value models (simulators/models.ts): every reading of a simulated day, for a few devices per family,
 * validates against the device contract (core/contract.ts), and the values behave like a northern Vietnamese
 * city: traffic rush hours and quiet nights with motorcycles the majority, street lights on at night, dimmed
 * after midnight and off by day with a growing energy counter, PM10 above PM2.5 with pollution episodes; same
 * seed, same readings; local hours right with and without daylight saving.
 *
 * Run: node --import tsx --test test/simulator-models.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { FAMILIES, READING_SCHEMAS } from '../core/contract.ts';
import type { AirQualityReading, Family, StreetLightReading, TrafficReading } from '../core/contract.ts';
import {
  createAirQualityModel,
  createModel,
  createRng,
  createStreetLightModel,
  createTrafficModel,
  localHour,
} from '../simulators/models.ts';
import type { DeviceModel } from '../simulators/models.ts';

const TZ = 'Asia/Ho_Chi_Minh';
/** 2025-03-12 00:00 in Vietnam (UTC+7): a Wednesday, so the weekday commute applies. */
const DAY_START = Date.UTC(2025, 2, 11, 17, 0);
const MINUTE = 60_000;

const ajv = new Ajv({ allErrors: true });
addFormats.default(ajv);
const validators = Object.fromEntries(FAMILIES.map((f) => [f, ajv.compile(READING_SCHEMAS[f])])) as Record<
  Family,
  ReturnType<typeof ajv.compile>
>;

interface Sample<R> {
  at: Date;
  /** Local hour of day in TZ. */
  h: number;
  reading: R;
}

/** One simulated day at 1-minute steps for one device. */
function simulateDay<R>(model: DeviceModel<R>, start = DAY_START): Sample<R>[] {
  const out: Sample<R>[] = [];
  for (let m = 0; m < 24 * 60; m++) {
    const at = new Date(start + m * MINUTE);
    out.push({ at, h: localHour(at, TZ), reading: model.next(at) });
  }
  return out;
}

function assertValid(family: Family, days: Sample<unknown>[][]): void {
  const validate = validators[family];
  let n = 0;
  for (const day of days) {
    for (const { at, reading } of day) {
      n++;
      if (!validate(reading)) {
        assert.fail(`${family} reading at ${at.toISOString()} is invalid: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(reading)}`);
      }
    }
  }
  assert.equal(n, days.length * 24 * 60);
}

const between = <R>(day: Sample<R>[], from: number, to: number) => day.filter((s) => s.h >= from && s.h < to);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const at = (day: Sample<StreetLightReading>[], hour: number) => {
  const s = day.find((x) => Math.abs(x.h - hour) < 1e-9);
  assert.ok(s, `no sample at ${hour}:00`);
  return s.reading;
};

// ---------------------------------------------------------------------------------------------------------

test('the contract validators reject what they should (so the checks below are not vacuous)', () => {
  assert.equal(validators.traffic({ intensity: 3, occupancy: 1.2 }), false);
  assert.equal(validators.streetLight({ dateObserved: 'yesterday', powerState: 'on' }), false);
  assert.equal(validators.airQuality({ dateObserved: '2025-03-12T00:00:00Z', pm25: -1 }), false);
});

test('localHour: Vietnam is UTC+7', () => {
  assert.equal(localHour(new Date('2025-01-01T00:00:00Z'), TZ), 7);
  assert.equal(localHour(new Date('2025-07-01T17:30:00Z'), TZ), 0.5);
  assert.equal(localHour(new Date('2025-03-11T16:59:00Z'), TZ), 23 + 59 / 60);
});

test('localHour: follows daylight saving (Europe/Berlin) and minute offsets (Asia/Kathmandu)', () => {
  const berlin = 'Europe/Berlin';
  assert.equal(localHour(new Date('2025-07-15T10:15:00Z'), berlin), 12.25); // CEST, UTC+2
  assert.equal(localHour(new Date('2025-01-15T10:15:00Z'), berlin), 11.25); // CET, UTC+1
  // Across the spring-forward and fall-back instants, queried in time order as a simulator does.
  assert.equal(localHour(new Date('2025-03-30T00:59:00Z'), berlin), 1 + 59 / 60);
  assert.equal(localHour(new Date('2025-03-30T01:00:00Z'), berlin), 3);
  assert.equal(localHour(new Date('2025-10-26T00:59:00Z'), berlin), 2 + 59 / 60);
  assert.equal(localHour(new Date('2025-10-26T01:00:00Z'), berlin), 2);
  assert.equal(localHour(new Date('2025-01-01T00:00:00Z'), 'Asia/Kathmandu'), 5.75);
});

test('an unknown time zone fails when the model is created, not at the first reading', () => {
  assert.throws(() => createAirQualityModel(createRng(1), { timeZone: 'Mars/Olympus_Mons' }), RangeError);
});

test('traffic: valid readings, rush hours, motorcycles, consistent counts, speed and occupancy', () => {
  const days = [1, 2, 3, 4].map((seed, i) =>
    simulateDay(createTrafficModel(createRng(seed), { timeZone: TZ, periodSeconds: 60, laneId: i + 1 })),
  );
  assertValid('traffic', days);

  let congestedAtRush = 0;
  days.forEach((day, i) => {
    const intensity = (s: Sample<TrafficReading>) => s.reading.intensity;
    const rush = [...between(day, 7, 8.5), ...between(day, 16.5, 18.5)];
    const night = between(day, 2, 4);
    const rushRate = mean(rush.map(intensity));
    const nightRate = mean(night.map(intensity));
    assert.ok(rushRate > 10 * Math.max(nightRate, 0.1), `device ${i}: rush ${rushRate}/min vs night ${nightRate}/min`);

    let total = 0;
    let motorcycles = 0;
    for (const { at, reading } of day) {
      const byType = reading.intensityByVehicleType ?? {};
      const sum = Object.values(byType).reduce((a: number, b) => a + (b ?? 0), 0);
      assert.equal(sum, reading.intensity, `counts per type add up to intensity at ${at.toISOString()}`);
      total += reading.intensity;
      motorcycles += byType.motorcycle ?? 0;
      assert.equal(reading.laneId, i + 1);
      assert.equal(reading.dateObservedTo, at.toISOString());
      assert.equal(reading.dateObservedFrom, new Date(at.getTime() - 60_000).toISOString());
      if (reading.congested) assert.ok(reading.occupancy! >= 0.4, 'congested only at high occupancy');
      if (reading.intensity === 0) assert.equal(reading.averageVehicleSpeed, undefined);
    }
    const share = motorcycles / total;
    assert.ok(share >= 0.7 && share <= 0.9, `device ${i}: motorcycle share ${share}`);

    const speed = (xs: Sample<TrafficReading>[]) =>
      mean(xs.flatMap((s) => (s.reading.averageVehicleSpeed === undefined ? [] : [s.reading.averageVehicleSpeed])));
    const occupancy = (xs: Sample<TrafficReading>[]) => mean(xs.map((s) => s.reading.occupancy!));
    assert.ok(speed(rush) < speed(night) - 5, `device ${i}: speed rush ${speed(rush)} vs night ${speed(night)}`);
    assert.ok(occupancy(rush) > 4 * occupancy(night), `device ${i}: occupancy rush vs night`);
    assert.ok(
      night.every((s) => !s.reading.congested),
      `device ${i}: congested at night`,
    );
    congestedAtRush += rush.filter((s) => s.reading.congested).length;
  });
  assert.ok(congestedAtRush > 0, 'some lane congests during the rush hours');
});

test('street lights: on at dusk, dimmed after midnight, off by day, energy counter only grows', () => {
  const rated = [60, 90, 120, 150, undefined];
  const days = rated.map((ratedPowerW, i) =>
    simulateDay(createStreetLightModel(createRng(100 + i), { timeZone: TZ, ratedPowerW, faultProbability: 0 })),
  );
  assertValid('streetLight', days);

  days.forEach((day, i) => {
    const night = at(day, 21);
    const late = at(day, 2);
    const noon = at(day, 12);
    assert.equal(night.powerState, 'on');
    assert.equal(night.illuminanceLevel, 1);
    assert.equal(late.powerState, 'low');
    assert.ok(Math.abs(late.illuminanceLevel! - 0.5) < 0.05);
    assert.equal(noon.powerState, 'off');
    assert.equal(noon.illuminanceLevel, 0);
    assert.ok(noon.powerConsumption! < 2, 'off by day draws ~0 W');
    assert.ok(late.powerConsumption! < 0.7 * night.powerConsumption!, 'dimming saves power');
    const ratedW = rated[i] ?? night.powerConsumption!;
    assert.ok(Math.abs(night.powerConsumption! - ratedW) < 0.1 * ratedW, `device ${i}: ~rated power when on`);

    for (const { reading } of day) {
      assert.equal(reading.status, 'ok');
      assert.ok(reading.voltage! >= 220 && reading.voltage! <= 230);
      assert.ok(Math.abs(reading.current! - reading.powerConsumption! / reading.voltage!) < 0.002, 'I = P / V');
    }
    for (let k = 1; k < day.length; k++) {
      assert.ok(day[k]!.reading.energyConsumed! >= day[k - 1]!.reading.energyConsumed!, 'energy counter grows');
    }
    // 17:45–24:00 and 05:00–05:45 at full power, 00:00–05:00 at half: ~9.5 full-power hours a day.
    if (rated[i] !== undefined) {
      const used = day.at(-1)!.reading.energyConsumed! - day[0]!.reading.energyConsumed!;
      const expected = (rated[i]! * 9.5) / 1000;
      assert.ok(Math.abs(used - expected) < 0.1 * expected, `device ${i}: ${used} kWh vs ~${expected} kWh`);
    }
  });
});

test('street lights: the energy counter never goes back, even when time does', () => {
  const model = createStreetLightModel(createRng(7), { timeZone: TZ, ratedPowerW: 100 });
  const times = [20, 21, 21, 19, 22].map((h) => new Date(DAY_START + h * 3_600_000));
  const energy = times.map((t) => model.next(t).energyConsumed!);
  for (let k = 1; k < energy.length; k++) assert.ok(energy[k]! >= energy[k - 1]!, `step ${k}: ${energy}`);
  assert.ok(energy[1]! - energy[0]! > 0.09, 'an hour at 100 W adds ~0.1 kWh');
});

test('street lights: a failed lamp is commanded on but draws ~0 W', () => {
  const model = createStreetLightModel(createRng(5), { timeZone: TZ, ratedPowerW: 120, faultProbability: 1 });
  const day = simulateDay(model);
  assertValid('streetLight', [day]);
  const night = at(day, 21);
  assert.equal(night.status, 'defectiveLamp');
  assert.equal(night.powerState, 'on');
  assert.ok(night.powerConsumption! < 1);
});

test('air quality: valid readings, PM10 ≥ PM2.5, plausible ranges, warm afternoons', () => {
  const days = [11, 12, 13].map((seed) => simulateDay(createAirQualityModel(createRng(seed), { timeZone: TZ })));
  assertValid('airQuality', days);

  for (const day of days) {
    for (const { reading: r } of day) {
      assert.ok(r.pm10! >= r.pm25!, `PM10 ${r.pm10} ≥ PM2.5 ${r.pm25}`);
      assert.ok(r.pm25! >= r.pm1!);
      assert.ok(r.temperature! >= 15 && r.temperature! <= 35);
      assert.ok(r.relativeHumidity! >= 0.5 && r.relativeHumidity! <= 0.95);
      assert.ok(r.noise! >= 45 && r.noise! <= 80);
      assert.ok(r.co! >= 100 && r.co! <= 10_000, `CO ${r.co} µg/m³`);
      assert.ok(r.no2! < 400 && r.so2! < 200 && r.o3! < 300);
    }
    const temp = (xs: Sample<AirQualityReading>[]) => mean(xs.map((s) => s.reading.temperature!));
    assert.ok(temp(between(day, 13, 16)) > temp(between(day, 4, 7)) + 3, 'afternoons warmer than dawns');
  }
});

test('air quality: typical PM2.5 of 20–60 µg/m³, worse in the evening, with episodes above 150', () => {
  // Over weeks, not one day: a single day's drift or episode can hide the daily cycle, as in real data.
  const all: number[] = [];
  const evening: number[] = [];
  const afternoon: number[] = [];
  for (const seed of [21, 22, 23]) {
    const model = createAirQualityModel(createRng(seed), { timeZone: TZ });
    for (let k = 0; k < 60 * 144; k++) {
      const when = new Date(DAY_START + k * 10 * MINUTE);
      const pm25 = model.next(when).pm25!;
      all.push(pm25);
      const h = localHour(when, TZ);
      if (h >= 20) evening.push(pm25);
      else if (h >= 13 && h < 16) afternoon.push(pm25);
    }
  }
  assert.ok(mean(evening) > 1.3 * mean(afternoon), `PM2.5 evening ${mean(evening)} vs afternoon ${mean(afternoon)}`);
  all.sort((a, b) => a - b);
  const median = all[Math.floor(all.length / 2)]!;
  assert.ok(median >= 20 && median <= 60, `median PM2.5 ${median}`);
  assert.ok(all.at(-1)! > 150, `max PM2.5 over 60 days ${all.at(-1)}`);
});

test('deterministic: same seed and times give the same readings, another seed does not', () => {
  // Irregular steps, as a device with a drifting clock or a backlog flush would produce.
  const times = Array.from({ length: 500 }, (_, k) => new Date(DAY_START + k * 97_000 + (k % 7) * 1_000));
  const opts = {
    airQuality: { timeZone: TZ },
    traffic: { timeZone: TZ, periodSeconds: 97 },
    streetLight: { timeZone: TZ, faultProbability: 0.05 },
  };
  for (const family of FAMILIES) {
    const run = (seed: number) => {
      const model = createModel(family, createRng(seed), opts[family]);
      return times.map((t) => model.next(t));
    };
    assert.deepEqual(run(42), run(42), `${family}: same seed`);
    assert.notDeepEqual(run(42), run(43), `${family}: other seed`);
  }
});

test('createRng: values in [0, 1), reproducible', () => {
  const a = createRng(123);
  const b = createRng(123);
  for (let k = 0; k < 10_000; k++) {
    const x = a();
    assert.ok(x >= 0 && x < 1);
    assert.equal(x, b());
  }
});

test('createModel dispatches on the family', () => {
  const when = new Date(DAY_START + 21 * 3_600_000);
  const traffic = createModel('traffic', createRng(1), { timeZone: TZ, periodSeconds: 30 }).next(when);
  assert.equal(typeof traffic.intensity, 'number');
  const light = createModel('streetLight', createRng(1), { timeZone: TZ }).next(when);
  assert.equal(light.powerState, 'on');
  const air = createModel('airQuality', createRng(1), { timeZone: TZ }).next(when);
  assert.equal(typeof air.pm25, 'number');
  assert.throws(() => createModel('parking' as Family, createRng(1), { timeZone: TZ } as never), RangeError);
});
