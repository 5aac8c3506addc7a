/**
 * Operator reports of a city day or a city month (the city's time zone): energy per ward from the street lights'
 * energy counters, burning and fault hours per lamp and ward, days per VN_AQI (and US EPA) category per station
 * and ward, and congestion hours per junction. Every figure comes from the raw readings in InfluxDB through
 * queries aggregated there (one row per device and hour, or per device and day), never from the readings
 * themselves, so a month of a city of a few hundred devices answers in seconds (`test/reports.test.ts` prints
 * the time).
 *
 * The rules, each chosen for a reason:
 * - Energy: the `energyConsumed` counters, not power integrated over time. A counter is the meter's own figure and
 *   keeps counting while a lamp's link is down, so a gap in the readings loses no energy; integrated power would
 *   miss every gap and trust a power sample for minutes around it. A period's energy is the sum of the counter's
 *   rises between consecutive buckets (the last reading of each hour, for a day; of each day, for a month) from
 *   the last reading at or before the period's start (else the lamp's first reading in it); a counter that went down restarted, and its new value is
 *   new energy (as analytics counts a day's energy). A counter tells the energy up to its reading's time, so a
 *   reading exactly at midnight closes the day it ends: buckets are (start, end].
 * - Burning and fault hours: per lamp and city hour, the share of the hour's readings that reported the lamp on
 *   (powerState on or low), and the share that showed a fault (status not ok, or on or low drawing less than
 *   `lampMinPowerW`, the fault rule of analytics); an hour without a reading counts nothing. Lamps report at a
 *   steady interval (the contract's 1-15 min), so the share of readings is the share of time, to within one
 *   interval around a switch. Readings are counted by their `powerState`.
 * - AQI days: each city day's VN_AQI from the day's hourly means (analytics' `vnDailyAqi`: 24-hour PM means, daily
 *   maxima of the gases, O3 8-hour means reaching into the previous evening) and the US EPA AQI beside it; a day
 *   with fewer than 18 hours of PM means is counted as "no data". A ward's day is its worst station's (as the
 *   ward's live index); "no data" when none of its stations has an index that day.
 * - Congestion hours: the city hours in which at least half of a junction's readings were congested by analytics'
 *   rule (level 3: `congested` true, occupancy at or over `congestion.occupancyCongested`, or vehicles counted at
 *   an average speed at or under `congestion.speedCongestedKmh`).
 */
import { PlatformError } from '../core/errors.ts';
import { utcOffsetMs } from '../core/time-zone.ts';
import type { CityProfile } from '../registry/index.ts';
import { EPA_CATEGORIES, VN_CATEGORIES } from './aqi-categories.ts';
import { epaDailyAqi } from './epa-aqi.ts';
import { HOUR_MS, type CityClock } from './city-time.ts';
import type { RestoreSource } from './restore-query.ts';
import type { CongestionThresholds } from './types.ts';
import {
  DAY_MIN_HOURS,
  dayPmHours,
  O3_8H_PREVIOUS_HOURS,
  vnDailyAqi,
  type DaySeries,
  type MaybeNumber,
  type VnPollutant,
} from './vn-aqi.ts';

export const REPORT_KINDS = ['energy', 'lighting', 'aqi', 'congestion'] as const;
export type ReportKind = (typeof REPORT_KINDS)[number];

/** How far before a period's start the counter it starts from is looked for (a lamp silent longer starts anew). */
export const COUNTER_LOOKBACK_MS = 7 * 86_400_000;
/** How long the report of a period that has ended is kept and answered again without querying, ms. */
export const REPORT_CACHE_MS = 300_000;
/** Reports (one per period, ward and kind) kept at most. */
export const REPORT_CACHE_ENTRIES = 64;
/** The earliest period a report covers. */
export const REPORT_EARLIEST = '2000-01-01';

export interface ReportPeriod {
  period: 'day' | 'month';
  /** YYYY-MM-DD or YYYY-MM */
  key: string;
  /** epoch ms: the city's midnight at its start, and at its end (exclusive) */
  from: number;
  to: number;
  timezone: string;
  /** Starts of its buckets: the hours of a day, the days of a month. */
  buckets: number[];
}

type Names = { vi: string; en: string };
type CategoryCounts = Record<string, number>;

export interface EnergyReport {
  unit: 'kWh';
  method: 'energyCounter';
  wards: { zone: string; name: Names; lamps: number; energyKWh: number }[];
  lamps: { id: string; name: string; zone: string; energyKWh: number }[];
  series: { time: number; label: string; energyKWh: number }[];
  total: { lamps: number; energyKWh: number };
}

export interface LightingReport {
  wards: { zone: string; name: Names; lamps: number; burningHours: number; faultyLamps: number; faultHours: number }[];
  lamps: { id: string; name: string; zone: string; burningHours: number; faultHours: number; faulty: boolean }[];
  series: { time: number; label: string; burningHours: number; faultHours: number }[];
  total: { lamps: number; burningHours: number; faultyLamps: number; faultHours: number };
}

export interface AqiDay {
  date: string;
  hours: number;
  vn: { aqi: number; level: number; category: string } | null;
  epa: { aqi: number; level: number; category: string } | null;
}

export interface AqiReport {
  /** Days of the period counted (up to today for a period in progress). */
  days: number;
  minHours: number;
  categories: { vn: string[]; epa: string[] };
  stations: { id: string; name: string; zone: string; vn: CategoryCounts; epa: CategoryCounts; daily: AqiDay[] }[];
  wards: { zone: string; name: Names; stations: number; vn: CategoryCounts; epa: CategoryCounts }[];
  total: { stations: number; vn: CategoryCounts; epa: CategoryCounts };
}

export interface CongestionReport {
  junctions: { id: string; name: string; zone: string; congestedHours: number }[];
  wards: { zone: string; name: Names; junctions: number; congestedHours: number }[];
  series: { time: number; label: string; congestedHours: number }[];
  total: { junctions: number; congestedHours: number };
}

export interface Report {
  period: { period: 'day' | 'month'; key: string; from: string; to: string; timezone: string };
  ward: string | null;
  generatedAt: string;
  energy?: EnergyReport;
  lighting?: LightingReport;
  aqi?: AqiReport;
  congestion?: CongestionReport;
}

export interface ReportOptions {
  timezone: string;
  congestion: CongestionThresholds;
  lampMinPowerW: number;
}

export interface Reports {
  /** The period of `day` (YYYY-MM-DD) or `month` (YYYY-MM); CP_API_VALIDATION with the reason when it is not one. */
  period(q: { day?: string; month?: string }, now?: number): ReportPeriod;
  /** The reports asked for (all by default), of the whole city or one ward (and its sub-zones). */
  build(p: ReportPeriod, q?: { ward?: string; kinds?: readonly ReportKind[]; names?: ReadonlyMap<string, string> }): Promise<Report>;
}

const invalid = (detail: string, reason: string) => new PlatformError('CP_API_VALIDATION', detail, { details: [reason] });
const round = (x: number, digits: number) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
const kwh = (x: number) => round(x, 3);
const hrs = (x: number) => round(x, 2);
const pad = (n: number) => String(n).padStart(2, '0');

function emptyCounts(cats: readonly { key: string }[]): CategoryCounts {
  const out: CategoryCounts = {};
  for (const c of cats) out[c.key] = 0;
  out.noData = 0;
  return out;
}

export function createReports(opts: ReportOptions, deps: { source: RestoreSource; profile: CityProfile; clock: CityClock }): Reports {
  const { source, profile, clock } = deps;
  const tz = opts.timezone;
  const zoneById = new Map(profile.zones.map((z) => [z.id, z]));
  const zoneName = (id: string): Names => zoneById.get(id)?.name ?? { vi: id, en: id };
  const cache = new Map<string, { until: number; value: unknown }>();

  /** The city's midnight starting the local date y-m-d (m from 1; days past the month's end roll over). */
  const localMidnight = (y: number, m: number, d: number): number => {
    const wall = Date.UTC(y, m - 1, d);
    // The offset of the instant near that midnight: exact for zones without daylight saving (as the city clock).
    return wall - utcOffsetMs(wall - utcOffsetMs(wall, tz), tz);
  };

  /** The zone and every zone under it. */
  function zoneAndBelow(id: string): Set<string> {
    const out = new Set([id]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const z of profile.zones) {
        if (z.parent && out.has(z.parent) && !out.has(z.id)) {
          out.add(z.id);
          grew = true;
        }
      }
    }
    return out;
  }

  function period(q: { day?: string; month?: string }, now = Date.now()): ReportPeriod {
    if ((q.day === undefined) === (q.month === undefined)) {
      throw invalid('a report is of one day or one month', 'query must have either day (YYYY-MM-DD) or month (YYYY-MM), not both');
    }
    const text = (q.day ?? q.month) as string;
    const name = q.day !== undefined ? 'day' : 'month';
    const m = q.day !== undefined ? /^(\d{4})-(\d{2})-(\d{2})$/.exec(text) : /^(\d{4})-(\d{2})$/.exec(text);
    if (!m)
      throw invalid(
        `${name} ${JSON.stringify(text)} is not ${name === 'day' ? 'YYYY-MM-DD' : 'YYYY-MM'}`,
        `query.${name} must be ${name === 'day' ? 'YYYY-MM-DD' : 'YYYY-MM'}`,
      );
    const y = Number(m[1]);
    const mo = Number(m[2]);
    const d = m[3] === undefined ? 1 : Number(m[3]);
    const probe = new Date(Date.UTC(y, mo - 1, d));
    if (mo < 1 || mo > 12 || d < 1 || probe.getUTCMonth() !== mo - 1 || probe.getUTCDate() !== d) {
      throw invalid(`${name} ${text} is not a date of the calendar`, `query.${name} must be a real ${name === 'day' ? 'date' : 'month'}`);
    }
    const from = localMidnight(y, mo, d);
    const to = q.day !== undefined ? localMidnight(y, mo, d + 1) : localMidnight(y, mo + 1, 1);
    if (text < REPORT_EARLIEST.slice(0, text.length)) {
      throw invalid(`${name} ${text} is before ${REPORT_EARLIEST}`, `query.${name} must not be before ${REPORT_EARLIEST}`);
    }
    if (from > now)
      throw invalid(`${name} ${text} has not begun in the city`, `query.${name} must not be in the future (city time, ${tz})`);
    const buckets: number[] = [];
    if (q.day !== undefined) for (let t = from; t < to; t += HOUR_MS) buckets.push(t);
    else for (let day = 1; localMidnight(y, mo, day) < to; day++) buckets.push(localMidnight(y, mo, day));
    return { period: name, key: text, from, to, timezone: tz, buckets };
  }

  /** Offset of GROUP BY time() so that windows start at the city's hours (or midnights). */
  const offsetOf = (windowMs: number, at: number) => ((-utcOffsetMs(at, tz) % windowMs) + windowMs) % windowMs;

  async function build(
    p: ReportPeriod,
    q: { ward?: string; kinds?: readonly ReportKind[]; names?: ReadonlyMap<string, string> } = {},
  ): Promise<Report> {
    if (q.ward !== undefined && !zoneById.has(q.ward)) {
      throw invalid(
        `no ward ${q.ward} in the city profile`,
        `query.ward must be a zone id of the city profile (${profile.zones.map((z) => z.id).join(', ')})`,
      );
    }
    const zones = q.ward === undefined ? undefined : zoneAndBelow(q.ward);
    const kinds = new Set(q.kinds ?? REPORT_KINDS);
    const zoneFilter = zones ? ` AND (${[...zones].map((z) => `"zone" = '${z}'`).join(' OR ')})` : '';
    const nameOf = (id: string) => q.names?.get(id) ?? id;
    const bucketMs = p.period === 'day' ? HOUR_MS : 86_400_000;
    const bucketOf = (t: number): number => {
      // The bucket (hour or day) holding t: the last bucket start at or before it.
      let lo = 0;
      let hi = p.buckets.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if ((p.buckets[mid] as number) <= t) lo = mid;
        else hi = mid - 1;
      }
      return lo;
    };
    const label = (t: number) => (p.period === 'day' ? `${pad(Math.round((t - p.from) / HOUR_MS))}:00` : clock.dayKey(t));
    const hourOff = offsetOf(HOUR_MS, p.from);
    const range = `time >= ${p.from}ms AND time < ${p.to}ms${zoneFilter}`;
    const report: Report = {
      period: { period: p.period, key: p.key, from: new Date(p.from).toISOString(), to: new Date(p.to).toISOString(), timezone: tz },
      ward: q.ward ?? null,
      generatedAt: new Date().toISOString(),
    };
    const jobs: Promise<void>[] = [];
    // A period that has ended is kept for REPORT_CACHE_MS: the dashboard's CSV exports and a data-sharing
    // platform pulling the same month again do not repeat its queries.
    const closed = p.to <= Date.now();
    const run = (kind: ReportKind, job: () => Promise<void>) => {
      if (!kinds.has(kind)) return;
      const key = `${p.key}|${q.ward ?? ''}|${kind}`;
      const hit = closed ? cache.get(key) : undefined;
      if (hit && hit.until > Date.now()) {
        Object.assign(report, { [kind]: hit.value });
        return;
      }
      jobs.push(
        job().then(() => {
          if (!closed) return;
          cache.delete(key);
          cache.set(key, { until: Date.now() + REPORT_CACHE_MS, value: report[kind] });
          // Oldest first in a Map: drop beyond the bound.
          for (const k of cache.keys()) {
            if (cache.size <= REPORT_CACHE_ENTRIES) break;
            cache.delete(k);
          }
        }),
      );
    };

    /** Rows of GROUP BY time(...), "device", "zone": per device its zone and (bucket time, row). */
    const byDevice = (rows: Record<string, unknown>[]) => {
      const out = new Map<string, { zone: string; rows: Record<string, unknown>[] }>();
      for (const r of rows) {
        const id = r.device as string;
        let d = out.get(id);
        if (!d) {
          d = { zone: r.zone as string, rows: [] };
          out.set(id, d);
        }
        d.rows.push(r);
      }
      return out;
    };
    const wardsOf = <T extends { zone: string }>(items: T[], make: (zone: string, items: T[]) => object) => {
      const groups = new Map<string, T[]>();
      for (const it of items) {
        const g = groups.get(it.zone);
        if (g) g.push(it);
        else groups.set(it.zone, [it]);
      }
      return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([z, its]) => make(z, its));
    };
    const sortItems = <T extends { zone: string; id: string }>(xs: T[]) =>
      xs.sort((a, b) => a.zone.localeCompare(b.zone) || a.id.localeCompare(b.id));

    run('energy', async () => {
      // (start, end] buckets: a +1 ms offset, the time column is then the bucket's start + 1 ms.
      const off = offsetOf(bucketMs, p.from) + 1;
      const [base, rows] = await Promise.all([
        source.query(
          `SELECT last("energyConsumed") AS e FROM ${source.from('streetLight')} WHERE time > ${p.from - COUNTER_LOOKBACK_MS}ms AND time <= ${p.from}ms${zoneFilter} GROUP BY "device", "zone"`,
        ),
        source.query(
          `SELECT first("energyConsumed") AS f, last("energyConsumed") AS e FROM ${source.from('streetLight')} WHERE time > ${p.from}ms AND time <= ${p.to}ms${zoneFilter} GROUP BY time(${bucketMs}ms, ${off}ms), "device", "zone" fill(none)`,
        ),
      ]);
      const start = new Map(base.map((r) => [r.device as string, r.e as number]));
      const series = p.buckets.map(() => 0);
      const lamps: EnergyReport['lamps'] = [];
      for (const [id, d] of byDevice(rows)) {
        let sum = 0;
        d.rows.sort((a, b) => (a.time as number) - (b.time as number));
        // Without a counter before the period, its first reading in the period is where it starts.
        let prev = start.get(id) ?? (d.rows[0]?.f as number | undefined);
        for (const r of d.rows) {
          const e = r.e as number;
          if (prev !== undefined) {
            const used = e < prev ? e : e - prev;
            sum += used;
            series[bucketOf((r.time as number) - 1)]! += used;
          }
          prev = e;
        }
        lamps.push({ id, name: nameOf(id), zone: d.zone, energyKWh: kwh(sum) });
      }
      sortItems(lamps);
      report.energy = {
        unit: 'kWh',
        method: 'energyCounter',
        wards: wardsOf(lamps, (zone, its) => ({
          zone,
          name: zoneName(zone),
          lamps: its.length,
          energyKWh: kwh(its.reduce((a, l) => a + l.energyKWh, 0)),
        })) as EnergyReport['wards'],
        lamps,
        series: p.buckets.map((t, i) => ({ time: t, label: label(t), energyKWh: kwh(series[i] as number) })),
        total: { lamps: lamps.length, energyKWh: kwh(lamps.reduce((a, l) => a + l.energyKWh, 0)) },
      };
    });

    run('lighting', async () => {
      const on = `("powerState" = 'on' OR "powerState" = 'low')`;
      const fault = `("status" <> 'ok' OR (${on} AND "powerConsumption" < ${Number(opts.lampMinPowerW)}))`;
      const q3 = (where: string) =>
        source.query(
          `SELECT count("powerState") AS n FROM ${source.from('streetLight')} WHERE ${range}${where} GROUP BY time(1h, ${hourOff}ms), "device", "zone" fill(none)`,
        );
      const [all, lit, bad] = await Promise.all([q3(''), q3(` AND ${on}`), q3(` AND ${fault}`)]);
      const key = (r: Record<string, unknown>) => `${r.device}|${r.time}`;
      const total = new Map(all.map((r) => [key(r), r.n as number]));
      const burnSeries = p.buckets.map(() => 0);
      const faultSeries = p.buckets.map(() => 0);
      const lamps = new Map<string, LightingReport['lamps'][number]>();
      const lamp = (r: Record<string, unknown>) => {
        const id = r.device as string;
        let l = lamps.get(id);
        if (!l) {
          l = { id, name: nameOf(id), zone: r.zone as string, burningHours: 0, faultHours: 0, faulty: false };
          lamps.set(id, l);
        }
        return l;
      };
      for (const r of all) lamp(r);
      for (const [rows, field] of [
        [lit, 'burningHours'],
        [bad, 'faultHours'],
      ] as const) {
        for (const r of rows) {
          const n = total.get(key(r));
          if (!n) continue;
          const share = (r.n as number) / n;
          lamp(r)[field] += share;
          (field === 'burningHours' ? burnSeries : faultSeries)[bucketOf(r.time as number)]! += share;
          if (field === 'faultHours') lamp(r).faulty = true;
        }
      }
      const list = sortItems([...lamps.values()]).map((l) => ({
        ...l,
        burningHours: hrs(l.burningHours),
        faultHours: hrs(l.faultHours),
      }));
      const sum = (its: typeof list, f: 'burningHours' | 'faultHours') => hrs(its.reduce((a, l) => a + l[f], 0));
      report.lighting = {
        wards: wardsOf(list, (zone, its) => ({
          zone,
          name: zoneName(zone),
          lamps: its.length,
          burningHours: sum(its, 'burningHours'),
          faultyLamps: its.filter((l) => l.faulty).length,
          faultHours: sum(its, 'faultHours'),
        })) as LightingReport['wards'],
        lamps: list,
        series: p.buckets.map((t, i) => ({
          time: t,
          label: label(t),
          burningHours: hrs(burnSeries[i] as number),
          faultHours: hrs(faultSeries[i] as number),
        })),
        total: {
          lamps: list.length,
          burningHours: sum(list, 'burningHours'),
          faultyLamps: list.filter((l) => l.faulty).length,
          faultHours: sum(list, 'faultHours'),
        },
      };
    });

    run('aqi', async () => {
      const pollutants: VnPollutant[] = ['pm25', 'pm10', 'o3', 'no2', 'so2', 'co'];
      const sel = pollutants.map((x) => `mean("${x}") AS "${x}"`).join(', ');
      const evening = O3_8H_PREVIOUS_HOURS * HOUR_MS;
      const rows = await source.query(
        `SELECT ${sel} FROM ${source.from('airQuality')} WHERE time >= ${p.from - evening}ms AND time < ${p.to}ms${zoneFilter} GROUP BY time(1h, ${hourOff}ms), "device", "zone" fill(none)`,
      );
      // The days counted: those begun by now (a month in progress does not count its future days).
      const now = Date.now();
      const days = (p.period === 'day' ? [p.from] : p.buckets).filter((t) => t <= now);
      const stations: AqiReport['stations'] = [];
      /** Per ward and day index: the worst station's VN_AQI and EPA AQI. */
      const wardDays = new Map<string, { stations: number; vn: (number | null)[]; epa: (number | null)[] }>();
      for (const [id, d] of byDevice(rows)) {
        const hourly = new Map<number, Record<string, unknown>>();
        for (const r of d.rows) hourly.set(r.time as number, r);
        const vn = emptyCounts(VN_CATEGORIES);
        const epa = emptyCounts(EPA_CATEGORIES);
        const daily: AqiDay[] = [];
        let w = wardDays.get(d.zone);
        if (!w) {
          w = { stations: 0, vn: days.map(() => null), epa: days.map(() => null) };
          wardDays.set(d.zone, w);
        }
        w.stations++;
        days.forEach((dayStart, i) => {
          const series: Record<string, MaybeNumber[]> = {};
          for (const x of pollutants)
            series[x] = Array.from({ length: 24 }, (_, h) => hourly.get(dayStart + h * HOUR_MS)?.[x] as MaybeNumber);
          const before = Array.from(
            { length: O3_8H_PREVIOUS_HOURS },
            (_, h) => hourly.get(dayStart - evening + h * HOUR_MS)?.o3 as MaybeNumber,
          );
          const day: DaySeries = { ...series, o3PreviousEvening: before };
          const hours = dayPmHours(day);
          const v = hours >= DAY_MIN_HOURS ? vnDailyAqi(day) : null;
          const e = hours >= DAY_MIN_HOURS ? epaDailyAqi(day) : null;
          const show = (x: typeof v) => (x ? { aqi: x.aqi, level: x.level, category: x.category } : null);
          daily.push({ date: clock.dayKey(dayStart), hours, vn: show(v), epa: show(e) });
          (vn[v ? v.category : 'noData'] as number)++;
          (epa[e ? e.category : 'noData'] as number)++;
          const wv = w.vn[i];
          if (v && (wv === null || wv === undefined || v.aqi > wv)) w.vn[i] = v.aqi;
          const we = w.epa[i];
          if (e && (we === null || we === undefined || e.aqi > we)) w.epa[i] = e.aqi;
        });
        stations.push({ id, name: nameOf(id), zone: d.zone, vn, epa, daily });
      }
      sortItems(stations);
      const countDays = (values: (number | null)[], cats: typeof VN_CATEGORIES) => {
        const c = emptyCounts(cats);
        for (const a of values) {
          const k = a === null ? 'noData' : (cats.find((x) => a <= x.max) ?? cats[cats.length - 1])?.key;
          (c[k as string] as number)++;
        }
        return c;
      };
      const sumCounts = (xs: CategoryCounts[], cats: typeof VN_CATEGORIES) => {
        const c = emptyCounts(cats);
        for (const x of xs) for (const k of Object.keys(c)) (c[k] as number) += x[k] ?? 0;
        return c;
      };
      report.aqi = {
        days: days.length,
        minHours: DAY_MIN_HOURS,
        categories: { vn: VN_CATEGORIES.map((c) => c.key), epa: EPA_CATEGORIES.map((c) => c.key) },
        stations,
        wards: [...wardDays.entries()]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([zone, w]) => ({
            zone,
            name: zoneName(zone),
            stations: w.stations,
            vn: countDays(w.vn, VN_CATEGORIES),
            epa: countDays(w.epa, EPA_CATEGORIES),
          })),
        total: {
          stations: stations.length,
          vn: sumCounts(
            stations.map((s) => s.vn),
            VN_CATEGORIES,
          ),
          epa: sumCounts(
            stations.map((s) => s.epa),
            EPA_CATEGORIES,
          ),
        },
      };
    });

    run('congestion', async () => {
      const c = opts.congestion;
      const congested = `("congested" = true OR "occupancy" >= ${Number(c.occupancyCongested)} OR ("averageVehicleSpeed" <= ${Number(c.speedCongestedKmh)} AND "intensity" > 0))`;
      const q2 = (where: string) =>
        source.query(
          `SELECT count("intensity") AS n FROM ${source.from('traffic')} WHERE ${range}${where} GROUP BY time(1h, ${hourOff}ms), "device", "zone" fill(none)`,
        );
      const [all, jam] = await Promise.all([q2(''), q2(` AND ${congested}`)]);
      const total = new Map(all.map((r) => [`${r.device}|${r.time}`, r.n as number]));
      const junctions = new Map<string, CongestionReport['junctions'][number]>();
      const junction = (r: Record<string, unknown>) => {
        const id = r.device as string;
        let j = junctions.get(id);
        if (!j) {
          j = { id, name: nameOf(id), zone: r.zone as string, congestedHours: 0 };
          junctions.set(id, j);
        }
        return j;
      };
      for (const r of all) junction(r);
      const series = p.buckets.map(() => 0);
      for (const r of jam) {
        const n = total.get(`${r.device}|${r.time}`);
        // An hour is congested when at least half of its readings were.
        if (!n || (r.n as number) * 2 < n) continue;
        junction(r).congestedHours++;
        series[bucketOf(r.time as number)]!++;
      }
      const list = sortItems([...junctions.values()]);
      report.congestion = {
        junctions: list,
        wards: wardsOf(list, (zone, its) => ({
          zone,
          name: zoneName(zone),
          junctions: its.length,
          congestedHours: its.reduce((a, j) => a + j.congestedHours, 0),
        })) as CongestionReport['wards'],
        series: p.buckets.map((t, i) => ({ time: t, label: label(t), congestedHours: series[i] as number })),
        total: { junctions: list.length, congestedHours: list.reduce((a, j) => a + j.congestedHours, 0) },
      };
    });
    await Promise.all(jobs);
    return report;
  }

  return { period, build };
}

// ---- CSV ----

/** One CSV field: quoted when it holds a comma, quote or line break (RFC 4180). */
const csvField = (v: unknown): string => {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};
const csvLines = (rows: unknown[][]) => `${rows.map((r) => r.map(csvField).join(',')).join('\r\n')}\r\n`;

/**
 * One report as CSV (RFC 4180, CRLF, numbers with a dot): a row per ward, per device and the total, each with its
 * `level` (ward, lamp, station, junction, total); the AQI rows name their scale and count days per category level
 * 1..6 of that scale, then the days without data. Ward and device names are the Vietnamese ones.
 */
export function reportCsv(r: Report, kind: ReportKind): string {
  if (kind === 'energy' && r.energy) {
    const e = r.energy;
    return csvLines([
      ['level', 'id', 'name', 'zone', 'lamps', 'energyKWh'],
      ...e.wards.map((w) => ['ward', w.zone, w.name.vi, w.zone, w.lamps, w.energyKWh]),
      ...e.lamps.map((l) => ['lamp', l.id, l.name, l.zone, 1, l.energyKWh]),
      ['total', '', '', r.ward ?? '', e.total.lamps, e.total.energyKWh],
    ]);
  }
  if (kind === 'lighting' && r.lighting) {
    const g = r.lighting;
    return csvLines([
      ['level', 'id', 'name', 'zone', 'lamps', 'burningHours', 'faultyLamps', 'faultHours'],
      ...g.wards.map((w) => ['ward', w.zone, w.name.vi, w.zone, w.lamps, w.burningHours, w.faultyLamps, w.faultHours]),
      ...g.lamps.map((l) => ['lamp', l.id, l.name, l.zone, 1, l.burningHours, l.faulty ? 1 : 0, l.faultHours]),
      ['total', '', '', r.ward ?? '', g.total.lamps, g.total.burningHours, g.total.faultyLamps, g.total.faultHours],
    ]);
  }
  if (kind === 'aqi' && r.aqi) {
    const a = r.aqi;
    const counts = (c: CategoryCounts, keys: string[]) => [...keys.map((k) => c[k] ?? 0), c.noData ?? 0];
    const both = (level: string, id: string, name: string, zone: string, vn: CategoryCounts, epa: CategoryCounts) => [
      [level, id, name, zone, 'vn_aqi', ...counts(vn, a.categories.vn)],
      [level, id, name, zone, 'us_epa_aqi', ...counts(epa, a.categories.epa)],
    ];
    return csvLines([
      ['level', 'id', 'name', 'zone', 'scale', 'category1', 'category2', 'category3', 'category4', 'category5', 'category6', 'noData'],
      ...a.wards.flatMap((w) => both('ward', w.zone, w.name.vi, w.zone, w.vn, w.epa)),
      ...a.stations.flatMap((s) => both('station', s.id, s.name, s.zone, s.vn, s.epa)),
      ...both('total', '', '', r.ward ?? '', a.total.vn, a.total.epa),
    ]);
  }
  if (kind === 'congestion' && r.congestion) {
    const c = r.congestion;
    return csvLines([
      ['level', 'id', 'name', 'zone', 'junctions', 'congestedHours'],
      ...c.wards.map((w) => ['ward', w.zone, w.name.vi, w.zone, w.junctions, w.congestedHours]),
      ...c.junctions.map((j) => ['junction', j.id, j.name, j.zone, 1, j.congestedHours]),
      ['total', '', '', r.ward ?? '', c.total.junctions, c.total.congestedHours],
    ]);
  }
  return csvLines([['level']]);
}
