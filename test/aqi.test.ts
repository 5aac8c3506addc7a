/**
 * VN_AQI (Decision 1459/QĐ-TCMT) and the US EPA AQI as pure functions: every breakpoint of
 * the table maps to its index value, interpolation between breakpoints, NowCast with missing hours, the daily
 * rules (PM 24-h mean, O3 8-h row not used above 400 µg/m³, 24 eight-hour O3 means reaching back into the
 * previous evening, 18 of 24 hours), the decision's worked examples, rounding half up of exact halves against
 * an exact (integer) calculation, category bounds, and the EPA index differing where it should. Expected values
 * are computed by hand in the comments.
 *
 * Run: node --import tsx --test test/aqi.test.ts
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DAY_MIN_HOURS,
  dayPmHours,
  EPA_BREAKPOINTS,
  EPA_CATEGORIES,
  EPA_AQI_SCALE,
  epaAqi,
  epaCategory,
  epaDailyAqi,
  epaHourlyAqi,
  epaSubIndex,
  nowCast,
  VN_BREAKPOINTS,
  VN_CATEGORIES,
  VN_INDEX_BREAKPOINTS,
  VN_ROWS,
  VN_AQI_SCALE,
  vnAqi,
  vnCategory,
  vnDailyAqi,
  vnHourlyAqi,
  vnSubIndex,
} from '../analytics/aqi.ts';

/** The decision's table, typed out again here so that a wrong table in the code fails the test. */
const DECISION_TABLE: Record<string, number[]> = {
  o3_1h: [0, 160, 200, 300, 400, 800, 1000, 1200],
  o3_8h: [0, 100, 120, 170, 210, 400],
  co: [0, 10000, 30000, 45000, 60000, 90000, 120000, 150000],
  so2: [0, 125, 350, 550, 800, 1600, 2100, 2630],
  no2: [0, 100, 200, 700, 1200, 2350, 3100, 3850],
  pm10: [0, 50, 150, 250, 350, 420, 500, 600],
  pm25: [0, 25, 50, 80, 150, 250, 350, 500],
};

/** 24 hourly means of one value. */
const day = (v: number): (number | null)[] => Array(24).fill(v);

describe('VN_AQI breakpoint table', () => {
  test('the table in the code is the decision’s table', () => {
    assert.deepEqual([...VN_INDEX_BREAKPOINTS], [0, 50, 100, 150, 200, 300, 400, 500]);
    assert.deepEqual(Object.fromEntries(VN_ROWS.map((r) => [r, [...VN_BREAKPOINTS[r]]])), DECISION_TABLE);
  });

  test('every breakpoint of every pollutant maps to its index value exactly', () => {
    let checked = 0;
    for (const [row, bps] of Object.entries(DECISION_TABLE)) {
      bps.forEach((bp, i) => {
        assert.equal(vnSubIndex(row as (typeof VN_ROWS)[number], bp), VN_INDEX_BREAKPOINTS[i], `${row} at ${bp}`);
        checked++;
      });
    }
    assert.equal(checked, 7 * 8 - 2);
  });

  test('each breakpoint gives the overall index too (through vnAqi with PM present)', () => {
    for (const [i, bp] of DECISION_TABLE.pm25!.entries()) assert.equal(vnAqi({ pm25: bp })?.aqi, VN_INDEX_BREAKPOINTS[i]);
    for (const [i, bp] of DECISION_TABLE.pm10!.entries()) assert.equal(vnAqi({ pm10: bp })?.aqi, VN_INDEX_BREAKPOINTS[i]);
    for (const [i, bp] of DECISION_TABLE.co!.entries()) {
      const v = vnAqi({ pm25: 0, co: bp });
      assert.equal(v?.aqi, VN_INDEX_BREAKPOINTS[i]);
      assert.equal(v?.subIndices.co, VN_INDEX_BREAKPOINTS[i]);
    }
  });

  test('each breakpoint of every row gives its index value through vnAqi, as overall index and sub-index', () => {
    for (const [row, bps] of Object.entries(DECISION_TABLE)) {
      const p = row.startsWith('o3') ? 'o3' : row;
      for (const [i, bp] of bps.entries()) {
        const v = vnAqi({ pm25: 0, [row]: bp });
        assert.equal(v?.subIndices[p], VN_INDEX_BREAKPOINTS[i], `${row} at ${bp}`);
        assert.equal(v?.aqi, VN_INDEX_BREAKPOINTS[i], `${row} at ${bp}`);
      }
    }
  });

  test('values between breakpoints interpolate linearly', () => {
    // PM2.5 37.5: 50 + (100−50)/(50−25) × (37.5−25) = 75
    assert.equal(vnSubIndex('pm25', 37.5), 75);
    // PM10 100: 50 + 50/100 × 50 = 75
    assert.equal(vnSubIndex('pm10', 100), 75);
    // NO2 450: 100 + 50/500 × 250 = 125
    assert.equal(vnSubIndex('no2', 450), 125);
    // SO2 1200: 200 + 100/800 × 400 = 250
    assert.equal(vnSubIndex('so2', 1200), 250);
    // CO 20000: 50 + 50/20000 × 10000 = 75
    assert.equal(vnSubIndex('co', 20000), 75);
    // O3 1 h 600: 200 + 100/400 × 200 = 250;  O3 8 h 110: 50 + 50/20 × 10 = 75
    assert.equal(vnSubIndex('o3_1h', 600), 250);
    assert.equal(vnSubIndex('o3_8h', 110), 75);
    // PM2.5 100: 150 + 50/70 × 20 = 164.2857… → overall 164
    assert.ok(Math.abs((vnSubIndex('pm25', 100) as number) - 164.2857142857) < 1e-6);
    assert.equal(vnAqi({ pm25: 100 })?.aqi, 164);
  });

  test('above the top breakpoint the index caps at 500; the O3 8 h row stops at 400 µg/m³', () => {
    assert.equal(vnSubIndex('pm25', 800), 500);
    assert.equal(vnSubIndex('co', 1e6), 500);
    assert.equal(vnSubIndex('o3_8h', 401), undefined);
  });

  test('the overall index is the maximum sub-index, rounded, naming the dominant pollutant', () => {
    // PM2.5 30 → 60; NO2 450 → 125; SO2 100 → 40
    const v = vnAqi({ pm25: 30, no2: 450, so2: 100 });
    assert.deepEqual(v, { aqi: 125, level: 3, category: 'poor', dominant: 'no2', subIndices: { pm25: 60, no2: 125, so2: 40 } });
  });

  test('PM10 or PM2.5 is required', () => {
    assert.equal(vnAqi({ no2: 450, so2: 100, co: 20000, o3_1h: 600 }), null);
    assert.equal(vnHourlyAqi({ no2: [450], o3: [600] }), null);
    assert.notEqual(vnAqi({ pm10: 10, no2: 450 }), null);
  });
});

describe('rounding: half up on the exact value', () => {
  test('the worked cases: PM2.5 55.7 → 109.5 → 110; O3 161.2 µg/m³ → 51.5 → 52 (51.4999… in floating point)', () => {
    // PM2.5 55.7: 100 + 50/30 × 5.7 = 109.5; O3 1 h 161.2: 50 + 50/40 × 1.2 = 51.5
    assert.equal(vnAqi({ pm25: 55.7 })?.aqi, 110);
    const o3 = vnAqi({ pm25: 0, o3_1h: 161.2 });
    assert.equal(o3?.aqi, 52);
    assert.equal(o3?.subIndices.o3, 52);
    assert.equal(o3?.category, 'moderate');
    // Through the hourly index: the hour's O3 mean of 161.2 µg/m³ (PM2.5 NowCast of 0 beside it)
    assert.equal(vnHourlyAqi({ pm25: [0, 0], o3: [161.2] })?.aqi, 52);
  });

  test('every concentration to 0.1 µg/m³ (CO to 1 µg/m³) rounds as the exact fraction does', () => {
    // Exact: with c = k / s (s = 10, CO 1), I = I_lo + (I_hi − I_lo)(k − s·BP_lo) / (s·(BP_hi − BP_lo)) = N / D,
    // all integers; round half up = floor((2N + D) / 2D). Compared with the code's rounded sub-index.
    let halves = 0;
    for (const [row, bps] of Object.entries(DECISION_TABLE)) {
      const scale = row === 'co' ? 1 : 10;
      const p = row.startsWith('o3') ? 'o3' : row;
      for (let i = 0; i + 1 < bps.length; i++) {
        const lo = bps[i] as number;
        const hi = bps[i + 1] as number;
        const ilo = VN_INDEX_BREAKPOINTS[i] as number;
        const ihi = VN_INDEX_BREAKPOINTS[i + 1] as number;
        const d = scale * (hi - lo);
        for (let k = scale * lo; k <= scale * hi; k++) {
          const n = ilo * d + (ihi - ilo) * (k - scale * lo);
          const expected = Math.floor((2 * n + d) / (2 * d));
          if ((2 * n) % d === 0 && ((2 * n) / d) % 2 === 1) halves++;
          const got = vnAqi({ pm25: 0, [row]: k / scale })?.subIndices[p];
          if (got !== expected) assert.fail(`${row} ${k / scale} µg/m³: ${got}, exact rounding gives ${expected}`);
        }
      }
    }
    assert.ok(halves > 100, `${halves} exact halves checked`);
  });

  test('EPA rounds as the exact fraction does (PM2.5 truncated to 0.1, PM10 to 1 µg/m³)', () => {
    // exact: iLo + (iHi − iLo)(c − cLo) / (cHi − cLo) = N / D in tenths (PM2.5) or units (PM10)
    for (const p of ['pm25', 'pm10'] as const) {
      const scale = p === 'pm25' ? 10 : 1;
      for (const b of EPA_BREAKPOINTS[p]) {
        const lo = Math.round(b.cLo * scale);
        const d = Math.round(b.cHi * scale) - lo;
        for (let k = lo; k <= lo + d; k++) {
          const n = b.iLo * d + (b.iHi - b.iLo) * (k - lo);
          assert.equal(epaAqi({ [p]: k / scale })?.aqi, Math.floor((2 * n + d) / (2 * d)), `${p} ${k / scale}`);
        }
      }
    }
  });
});

describe('VN_AQI categories', () => {
  test('category boundaries', () => {
    const cases: [number, string, number][] = [
      [0, 'good', 1],
      [50, 'good', 1],
      [51, 'moderate', 2],
      [100, 'moderate', 2],
      [101, 'poor', 3],
      [150, 'poor', 3],
      [151, 'bad', 4],
      [200, 'bad', 4],
      [201, 'veryBad', 5],
      [300, 'veryBad', 5],
      [301, 'hazardous', 6],
      [500, 'hazardous', 6],
    ];
    for (const [aqi, key, level] of cases) {
      assert.equal(vnCategory(aqi).key, key, `${aqi}`);
      assert.equal(vnCategory(aqi).level, level, `${aqi}`);
    }
    // An overall index of 50.4 rounds to 50 (good); 50.5 rounds to 51 (moderate). PM2.5 25.2: 50 + 2×0.2 = 50.4
    assert.equal(vnAqi({ pm25: 25.2 })?.category, 'good');
    assert.equal(vnAqi({ pm25: 25.25 })?.category, 'moderate');
  });

  test('names and colours of the decision', () => {
    assert.deepEqual(
      VN_CATEGORIES.map((c) => [c.name.vi, c.name.en, c.rgb.r, c.rgb.g, c.rgb.b]),
      [
        ['Tốt', 'Good', 0, 228, 0],
        ['Trung bình', 'Moderate', 255, 255, 0],
        ['Kém', 'Poor', 255, 126, 0],
        ['Xấu', 'Bad', 255, 0, 0],
        ['Rất xấu', 'Very bad', 143, 63, 151],
        ['Nguy hại', 'Hazardous', 126, 0, 35],
      ],
    );
    assert.equal(VN_CATEGORIES[4]?.color, '#8f3f97');
    assert.equal(VN_AQI_SCALE.categories, VN_CATEGORIES);
  });
});

describe('NowCast (hourly PM)', () => {
  test('weights w^(i−1) with w = Cmin/Cmax when above 1/2', () => {
    // c = [40, 30, 32]: w* = 30/40 = 0.75 → (40 + 0.75×30 + 0.5625×32) / (1 + 0.75 + 0.5625) = 80.5 / 2.3125
    const got = nowCast([40, 30, 32]) as number;
    assert.ok(Math.abs(got - 80.5 / 2.3125) < 1e-9, `${got}`);
  });

  test('w is floored at 1/2', () => {
    // c = [10, 40, 40]: w* = 0.25 → w = 0.5 → (10 + 20 + 10) / (1 + 0.5 + 0.25) = 40 / 1.75
    assert.ok(Math.abs((nowCast([10, 40, 40]) as number) - 40 / 1.75) < 1e-9);
  });

  test('a missing hour has weight 0 (and does not shift the others)', () => {
    // c = [20, missing, 30, missing, 25]: w* = 20/30 → w = 2/3; weights 1, –, 4/9, –, 16/81
    const w = 2 / 3;
    const expect = (20 + w ** 2 * 30 + w ** 4 * 25) / (1 + w ** 2 + w ** 4);
    assert.ok(Math.abs((nowCast([20, null, 30, undefined, 25]) as number) - expect) < 1e-9);
  });

  test('hours past the twelfth are ignored', () => {
    const twelve = [30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30];
    assert.equal(nowCast([...twelve, 500]), 30);
  });

  test('refused when fewer than two of c1..c3 exist', () => {
    assert.equal(nowCast([50, null, null, 40, 40, 40]), null);
    assert.equal(nowCast([null, null, 50, 40]), null);
    assert.equal(nowCast([]), null);
    assert.notEqual(nowCast([null, 50, 40]), null);
  });

  test('hourly index: NowCast for PM, 1-hour mean for the gases', () => {
    // PM2.5 [40, 30, 32] → NowCast 34.8108…: 50 + 2 × 9.8108 = 69.62 → 70; NO2 c1 = 120 → 50 + 0.5 × 20 = 60
    // (the earlier hour's 900 µg/m³ is not used)
    const v = vnHourlyAqi({ pm25: [40, 30, 32], no2: [120, 900] });
    assert.equal(v?.aqi, 70);
    assert.equal(v?.subIndices.no2, 60);
    assert.equal(v?.dominant, 'pm25');
    // Only c1 of PM: no NowCast, no index
    assert.equal(vnHourlyAqi({ pm25: [40], no2: [150] }), null);
  });
});

describe('daily VN_AQI', () => {
  test('the decision’s worked example: a daily PM2.5 mean of 55.7 µg/m³ gives 110', () => {
    assert.equal(vnAqi({ pm25: 55.7 })?.aqi, 110);
    // 24 hourly means averaging 55.7 (12 × 50.7 and 12 × 60.7)
    const hours = Array.from({ length: 24 }, (_, i) => (i % 2 ? 60.7 : 50.7));
    const d = vnDailyAqi({ pm25: hours });
    assert.equal(d?.aqi, 110);
    assert.equal(d?.category, 'poor');
  });

  test('SO2, NO2 and CO use the day’s maximum 1-hour mean', () => {
    // NO2 max 450 → 125 beats PM2.5 mean 20 (40)
    const no2 = day(100);
    no2[5] = 450;
    no2[6] = 200;
    const d = vnDailyAqi({ pm25: day(20), no2 });
    assert.equal(d?.aqi, 125);
    assert.equal(d?.dominant, 'no2');
  });

  test('O3: the higher of the max 1-hour mean and the max 8-hour mean; the 8-hour row not above 400 µg/m³', () => {
    // 8 hours of 200 µg/m³ in a day of 50: 1 h row 100; 8 h row: 200 is in [170, 210] → 150 + 50/40 × 30 = 187.5 → 188
    const eight = day(50).map((v, i) => (i >= 10 && i < 18 ? 200 : v));
    assert.equal(vnDailyAqi({ pm25: day(10), o3: eight })?.subIndices.o3, 188);
    // 8 hours of 450 µg/m³: the 8 h mean is above 400, so only the 1 h row counts: 200 + 100/400 × 50 = 212.5 → 213
    const high = day(0).map((v, i) => (i >= 10 && i < 18 ? 450 : v));
    const d = vnDailyAqi({ pm25: day(10), o3: high });
    assert.equal(d?.subIndices.o3, 213);
    assert.equal(d?.aqi, 213);
    // 200 and 50 µg/m³ by turns, the previous evening too: every 8 h mean is 125 → 100 + 50/50 × 5 = 105 (1 h row
    // 200 → 100). Without the evening, the mean ending 07:00 has 7 hours, (4 × 200 + 3 × 50) / 7 = 135.7 → 116.
    const turns = day(200).map((v, i) => (i % 2 ? 50 : v));
    assert.equal(vnDailyAqi({ pm25: day(10), o3: turns, o3PreviousEvening: [50, 200, 50, 200, 50, 200, 50] })?.subIndices.o3, 105);
    assert.equal(vnDailyAqi({ pm25: day(10), o3: turns })?.subIndices.o3, 116);
  });

  test('O3 8 h: 24 means, one ending at each hour; the first ones reach back to the previous day’s hour ending 18:00', () => {
    // Previous evening (hours ending 18:00 .. 00:00): 300 µg/m³; the day: 300 in its first hour, then 50.
    // The mean ending 01:00 is 8 × 300 / 8 = 300 µg/m³ → 8 h row: 200 + 100/190 × 90 = 247.37 → 247.
    // Within the day only, the highest 8 h mean is (300 + 5 × 50) / 6 = 91.7 → 45.8 and the 1 h row 300 → 150:
    // the evening changes the day's index from 150 to 247.
    const o3 = day(50);
    o3[0] = 300;
    const d = vnDailyAqi({ pm25: day(10), o3, o3PreviousEvening: Array(7).fill(300) });
    assert.equal(d?.subIndices.o3, 247);
    assert.equal(d?.aqi, 247);
    assert.equal(vnDailyAqi({ pm25: day(10), o3 })?.subIndices.o3, 150);
    // Only the evening's hour ending 18:00 is high (1000 µg/m³) and the day's first hour is missing: the mean ending
    // 01:00 has 7 of 8 hours, (1000 + 6 × 50) / 7 = 185.71 → 150 + 50/40 × 15.71 = 169.64 → 170; the one ending
    // 02:00 no longer holds it. The 1 h row (max of the day) is 50 → 16.
    const gap = day(50);
    gap[0] = null;
    assert.equal(vnDailyAqi({ pm25: day(10), o3: gap, o3PreviousEvening: [1000, 50, 50, 50, 50, 50, 50] })?.subIndices.o3, 170);
    // A mean needs 6 of its 8 hours. Evening: 3 missing, then 4 × 400; the day's first hour 400, then 50. The mean
    // ending 01:00 has 5 hours (it would be 400 → 300): not used. The one ending 02:00 has 6:
    // (5 × 400 + 50) / 6 = 341.67 → 200 + 100/190 × 131.67 = 269.3 → 269 (1 h row 400 → 200).
    const o3b = day(50);
    o3b[0] = 400;
    const evening = [null, null, null, 400, 400, 400, 400];
    assert.equal(vnDailyAqi({ pm25: day(10), o3: o3b, o3PreviousEvening: evening })?.subIndices.o3, 269);
  });

  test('a day needs 18 of its 24 hours: with fewer, a pollutant has no daily value and without PM no index', () => {
    // Three readings in one hour: one hourly mean, no daily index (not 150 from one hour of 80 µg/m³ PM2.5).
    const oneHour = [80, ...Array(23).fill(null)];
    assert.equal(vnDailyAqi({ pm25: oneHour }), null);
    assert.equal(epaDailyAqi({ pm25: oneHour }), null);
    assert.equal(dayPmHours({ pm25: oneHour }), 1);
    // 17 hours: none; 18 hours: the mean of the 18 (55.7 → 110)
    const hours = (n: number, v: number) => Array.from({ length: 24 }, (_, i) => (i < n ? v : null));
    assert.equal(vnDailyAqi({ pm25: hours(DAY_MIN_HOURS - 1, 55.7) }), null);
    assert.equal(vnDailyAqi({ pm25: hours(DAY_MIN_HOURS, 55.7) })?.aqi, 110);
    assert.equal(dayPmHours({ pm25: hours(12, 1), pm10: hours(DAY_MIN_HOURS, 1) }), DAY_MIN_HOURS);
    // Any other pollutant with 17 hours is left out (PM2.5 mean 20 → 40 decides); with 18 it counts
    for (const p of ['pm10', 'o3', 'no2', 'so2', 'co'] as const) {
      const d17 = vnDailyAqi({ pm25: day(20), [p]: hours(DAY_MIN_HOURS - 1, 1e6) });
      assert.equal(d17?.aqi, 40, p);
      assert.equal(d17?.subIndices[p], undefined, p);
      assert.equal(vnDailyAqi({ pm25: day(20), [p]: hours(DAY_MIN_HOURS, 1e6) })?.aqi, 500, p);
    }
  });
});

describe('US EPA AQI, beside VN_AQI and never mixed', () => {
  test('30 µg/m³ of PM2.5 is VN_AQI 60 but EPA AQI 90', () => {
    assert.equal(vnAqi({ pm25: 30 })?.aqi, 60);
    // EPA: 51 + (100−51)/(35.4−9.1) × (30−9.1) = 89.94 → 90
    const e = epaAqi({ pm25: 30 });
    assert.equal(e?.aqi, 90);
    assert.equal(e?.category, 'moderate');
    assert.equal(vnDailyAqi({ pm25: day(30) })?.aqi, 60);
    assert.equal(epaDailyAqi({ pm25: day(30) })?.aqi, 90);
    assert.equal(epaHourlyAqi({ pm25: [30, 30, 30] })?.aqi, 90);
  });

  test('every EPA band edge maps to its index value; truncation to 0.1 (PM2.5) and 1 (PM10)', () => {
    for (const p of ['pm25', 'pm10'] as const) {
      for (const b of EPA_BREAKPOINTS[p]) {
        assert.equal(epaSubIndex(p, b.cLo), b.iLo, `${p} ${b.cLo}`);
        assert.equal(epaSubIndex(p, b.cHi), b.iHi, `${p} ${b.cHi}`);
      }
    }
    assert.equal(epaSubIndex('pm25', 9.09), 50); // truncated to 9.0
    assert.equal(epaSubIndex('pm10', 54.9), 50); // truncated to 54
    assert.equal(epaAqi({ pm25: 9.1 })?.aqi, 51);
    assert.equal(epaAqi({ pm25: 1000 })?.aqi, 500);
  });

  test('EPA has its own category names', () => {
    assert.deepEqual(
      EPA_CATEGORIES.map((c) => c.name.en),
      ['Good', 'Moderate', 'Unhealthy for Sensitive Groups', 'Unhealthy', 'Very Unhealthy', 'Hazardous'],
    );
    assert.equal(epaCategory(120).key, 'unhealthyForSensitiveGroups');
    assert.equal(vnCategory(120).key, 'poor');
    assert.equal(EPA_AQI_SCALE.id, 'us_epa_aqi');
    assert.equal(VN_AQI_SCALE.id, 'vn_aqi');
  });
});
