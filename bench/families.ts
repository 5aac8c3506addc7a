/**
 * Which device families a bench load is made of: the city's own mix (by default) or one family alone, so that
 * the platform's CPU per reading can be compared between families (an air reading feeds the air-quality
 * indices, a traffic reading the junction window, a lamp reading the energy counters and the daylight alarm).
 *
 * The mix is the city profile's fleet (cities/bac-giang.json: 8 air stations, 40 traffic counters, 250 lamps)
 * weighted by how often each family reports (the simulators' nominal intervals: 60 s, 30 s, 300 s): per second
 * 0.13 air, 1.33 traffic and 0.83 lamp readings, so 6 % air, 58 % traffic and 36 % lamps. Bench devices all
 * publish as fast as they are acknowledged, so the readings follow the share of devices.
 */
import { readFileSync } from 'node:fs';
import type { Family } from '../core/contract.ts';
import { REPORT_INTERVAL_MS } from '../simulators/fleet.ts';
import { BENCH_CITY_PROFILE } from './settings.ts';

/** What a load is made of, by its command-line name. */
export const LOADS = ['mix', 'air', 'traffic', 'light'] as const;
export type Load = (typeof LOADS)[number];

/** The family of each single-family load. */
export const LOAD_FAMILY: Readonly<Record<Exclude<Load, 'mix'>, Family>> = { air: 'airQuality', traffic: 'traffic', light: 'streetLight' };

const FAMILIES: readonly Family[] = ['airQuality', 'traffic', 'streetLight'];

/** Readings per second of each family in the city profile's fleet (devices ÷ nominal report interval). */
export function cityReadingRates(profileFile = BENCH_CITY_PROFILE): Record<Family, number> {
  const fleet = (JSON.parse(readFileSync(profileFile, 'utf8')) as { fleet?: Partial<Record<Family, number>> }).fleet ?? {};
  const rates = {} as Record<Family, number>;
  for (const f of FAMILIES) rates[f] = ((fleet[f] ?? 0) * 1000) / REPORT_INTERVAL_MS[f];
  return rates;
}

/**
 * The family of each of `count` bench devices. A single-family load: all of them. The mix: each family's share
 * of the city's readings, rounded by largest remainder (a family the city has keeps at least one device when
 * there are enough), and interleaved (each next device goes to the family furthest behind its share), so any
 * slice of the list (the storm splits the devices over two processes) carries the same mix.
 */
export function deviceFamilies(load: Load, count: number, profileFile = BENCH_CITY_PROFILE): Family[] {
  if (load !== 'mix') return Array.from({ length: count }, () => LOAD_FAMILY[load]);
  const rates = cityReadingRates(profileFile);
  const present = FAMILIES.filter((f) => rates[f] > 0);
  if (!present.length) throw new Error(`${profileFile}: the fleet has no devices to mix`);
  const total = present.reduce((s, f) => s + rates[f], 0);
  const exact = present.map((f) => (count * rates[f]) / total);
  const counts = exact.map((x) => (count >= present.length ? Math.max(1, Math.floor(x)) : Math.floor(x)));
  // Largest remainder: hand out (or take back) the rest one device at a time.
  const order = present
    .map((_, i) => i)
    .sort((a, b) => (exact[b] as number) - Math.floor(exact[b] as number) - ((exact[a] as number) - Math.floor(exact[a] as number)));
  let sum = counts.reduce((s, n) => s + n, 0);
  for (let k = 0; sum < count; k++, sum++) (counts[order[k % order.length] as number] as number)++;
  for (let k = order.length - 1; sum > count; k = (k + order.length - 1) % order.length) {
    const i = order[k] as number;
    if ((counts[i] as number) > 1) {
      (counts[i] as number)--;
      sum--;
    }
  }
  const out: Family[] = [];
  const given = present.map(() => 0);
  for (let n = 1; n <= count; n++) {
    let pick = 0;
    let behind = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < present.length; i++) {
      const d = ((counts[i] as number) * n) / count - (given[i] as number);
      if (d > behind) {
        behind = d;
        pick = i;
      }
    }
    (given[pick] as number)++;
    out.push(present[pick] as Family);
  }
  return out;
}

const NAMES: Record<Family, string> = { airQuality: 'air', traffic: 'traffic', streetLight: 'light' };

/** "3 air, 29 traffic, 18 light" for a list of device families. */
export function describeFamilies(families: readonly Family[]): string {
  return FAMILIES.filter((f) => families.includes(f))
    .map((f) => `${families.filter((x) => x === f).length} ${NAMES[f]}`)
    .join(', ');
}

/** "air 6 %, traffic 57 %, light 37 %" for readings counted per family. */
export function describeShares(byFamily: Partial<Record<Family, number>>): string {
  const total = FAMILIES.reduce((s, f) => s + (byFamily[f] ?? 0), 0);
  return FAMILIES.filter((f) => byFamily[f])
    .map((f) => `${NAMES[f]} ${Math.round((100 * (byFamily[f] as number)) / total)} %`)
    .join(', ');
}
