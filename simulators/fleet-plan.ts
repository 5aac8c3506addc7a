/**
 * The fleet's plan: which devices exist, in which zone, where on the map, and the seeds of their value models
 * and timing. A pure function of the seed and the fleet's shape, so two runs with the same seed replay the
 * same city and device 1 keeps its place when the fleet grows.
 */
import { createHash } from 'node:crypto';
import type { Family } from '../core/contract.ts';
import type { CityProfile, GeoPoint, Zone } from '../registry/index.ts';
import { leafZones } from '../registry/index.ts';
import { createRng, type Rng } from './models.ts';

/** Devices per family. */
export interface FleetCounts {
  airQuality: number;
  traffic: number;
  streetLight: number;
}

/** Where and what one simulated device is; a pure function of the seed and the fleet's shape. */
export interface DevicePlan {
  id: string;
  family: Family;
  index: number;
  zone: string;
  location: GeoPoint;
  laneId?: number;
  /** Its name from the city profile's `fleet.names` template, if any. */
  name?: string;
}

const FAMILY_PREFIX: Record<Family, string> = { airQuality: 'aq', traffic: 'tf', streetLight: 'sl' };
const FAMILY_ORDER: readonly Family[] = ['airQuality', 'traffic', 'streetLight'];
/** Nominal report intervals of field devices, ms (see ../shared/domain.md for the ranges). */
export const REPORT_INTERVAL_MS: Record<Family, number> = { airQuality: 60_000, traffic: 30_000, streetLight: 300_000 };

/** A 32-bit seed per (fleet seed, purpose, key): independent streams that do not shift when counts change. */
export function deriveSeed(seed: number, purpose: string, key: string): number {
  return createHash('sha256').update(`${seed}\u0000${purpose}\u0000${key}`).digest().readUInt32LE(0);
}

function shuffled<T>(items: readonly T[], rng: Rng): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

type Ring = number[][]; // GeoJSON: [lon, lat] pairs

function insideRing(lon: number, lat: number, ring: Ring): boolean {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i] as [number, number];
    const [xj, yj] = ring[j] as [number, number];
    if (yi > lat !== yj > lat && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** GeoJSON polygon semantics: inside the outer ring and outside every hole. */
export function pointInPolygon(p: GeoPoint, rings: Ring[]): boolean {
  const [outer, ...holes] = rings;
  return !!outer && insideRing(p.lon, p.lat, outer) && !holes.some((h) => insideRing(p.lon, p.lat, h));
}

const round6 = (x: number): number => Math.round(x * 1e6) / 1e6; // ~0.1 m: plenty for a map pin

function locate(zone: Zone, profile: CityProfile, rng: Rng): GeoPoint {
  const rings = zone.shape?.coordinates as Ring[] | undefined;
  const outer = rings?.[0];
  if (rings && outer && outer.length >= 3) {
    const lons = outer.map((c) => c[0]!);
    const lats = outer.map((c) => c[1]!);
    const [minLon, maxLon, minLat, maxLat] = [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)];
    // Ward polygons fill a good share of their bbox; the bound only guards against a degenerate shape.
    for (let tries = 0; tries < 10_000; tries++) {
      const p = { lat: round6(minLat + (maxLat - minLat) * rng()), lon: round6(minLon + (maxLon - minLon) * rng()) };
      if (pointInPolygon(p, rings)) return p;
    }
  }
  // No usable shape: scatter within ~300 m of the zone's (or the city's) centre.
  const c = zone.centre ?? profile.centre;
  return { lat: round6(c.lat + (rng() - 0.5) * 0.006), lon: round6(c.lon + (rng() - 0.5) * 0.006) };
}

/** The fleet's devices, in a stable order (families, then index). Same inputs → same plan. */
export function planFleet(profile: CityProfile, counts: FleetCounts, seed: number, idPrefix = 'sim'): DevicePlan[] {
  const zones = leafZones(profile);
  if (zones.length === 0) throw new Error(`city profile ${profile.id} has no zones of level ${profile.zoneLevels.at(-1)}`);
  const plans: DevicePlan[] = [];
  for (const family of FAMILY_ORDER) {
    const n = counts[family];
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`counts.${family} must be a non-negative integer, got ${n}`);
    // Dealing zones round-robin from a seeded shuffle covers every ward even in a small fleet, and device 1 keeps
    // its zone when the fleet grows.
    const order = shuffled(zones, createRng(deriveSeed(seed, 'zones', family)));
    const template = profile.fleet?.names?.[family];
    const inZone = new Map<string, number>();
    for (let i = 1; i <= n; i++) {
      const id = `${idPrefix}-${FAMILY_PREFIX[family]}-${String(i).padStart(4, '0')}`;
      const zone = order[(i - 1) % order.length]!;
      const plan: DevicePlan = {
        id,
        family,
        index: i,
        zone: zone.id,
        location: locate(zone, profile, createRng(deriveSeed(seed, 'place', id))),
      };
      if (family === 'traffic') plan.laneId = 1 + ((i - 1) % 3);
      const n = (inZone.get(zone.id) ?? 0) + 1;
      inZone.set(zone.id, n);
      if (template) {
        const named = template.replaceAll('{zone}', zone.name.vi).replaceAll('{n}', String(n));
        // Two devices of a family in one zone with a template without {n} still get distinct names.
        plan.name = n > 1 && !template.includes('{n}') ? `${named} ${n}` : named;
      }
      plans.push(plan);
    }
  }
  return plans;
}
