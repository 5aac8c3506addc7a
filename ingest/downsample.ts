/**
 * Retention tiers and downsampling: raw readings in the raw retention policy, 1-minute means in
 * `minute`, 1-hour means in `hour` (durations configurable), filled by InfluxDB continuous queries, so a
 * chart over a year reads a few hundred hourly points instead of millions of raw ones.
 *
 * Continuous queries only look back `RESAMPLE FOR` from each run. Readings that arrive later than that (a
 * device flushing a backlog after an outage, a replayed durable log) would be missing from the tiers, so
 * ingest reports every stored reading older than `lateAfterMs` and `Downsampler.catchUp` recomputes the
 * affected hours with the same SELECT … INTO the continuous queries run (idempotent: same series and times).
 *
 * Aggregates: the mean of numeric fields, the last value of strings and booleans, the last value of
 * cumulative counters and identifiers (energyConsumed only grows: its mean would mean nothing; nor would laneId's). The tiers keep the raw field
 * names, so one query shape reads any tier.
 */
import { escape as influxEscape, type InfluxDB } from 'influx';
import type { FieldKind } from '../core/contract.ts';
import { durationMs } from './rate-limit.ts';

export interface Tier {
  /** Retention policy name, e.g. `minute`. */
  name: string;
  /** GROUP BY interval (InfluxDB duration), e.g. `1m`. */
  every: string;
  /** How long the tier keeps points (InfluxDB duration or INF). */
  duration: string;
  /** RESAMPLE FOR of its continuous query: how far back each run recomputes (late readings within it are caught). */
  resampleFor: string;
}

/** Measurement → field → kind: what each continuous query aggregates. */
export type DownsampledMeasurements = Record<string, Record<string, FieldKind>>;

/** Numeric fields aggregated with last(), not mean(): cumulative counters and identifiers. */
export const LAST_VALUE_FIELDS: ReadonlySet<string> = new Set(['energyConsumed', 'laneId']);

const q = (s: string) => influxEscape.quoted(s);

/** The SELECT of one tier for one measurement (without the time range): shared by the CQ and the catch-up. */
export function tierSelect(db: string, fromRp: string, tier: Tier, measurement: string, kinds: Record<string, FieldKind>): string {
  const sel = Object.entries(kinds).map(([f, k]) => {
    const fn = (k === 'float' || k === 'integer') && !LAST_VALUE_FIELDS.has(f) ? 'mean' : 'last';
    return `${fn}(${q(f)}) AS ${q(f)}`;
  });
  return `SELECT ${sel.join(', ')} INTO ${q(db)}.${q(tier.name)}.${q(measurement)} FROM ${q(db)}.${q(fromRp)}.${q(measurement)}`;
}

const cqName = (tier: Tier, measurement: string) => `cp_${tier.name}_${measurement}`;

function cqStatement(db: string, rawRp: string, tier: Tier, measurement: string, kinds: Record<string, FieldKind>): string {
  return (
    `CREATE CONTINUOUS QUERY ${q(cqName(tier, measurement))} ON ${q(db)} RESAMPLE EVERY ${tier.every} FOR ${tier.resampleFor} ` +
    `BEGIN ${tierSelect(db, rawRp, tier, measurement, kinds)} GROUP BY time(${tier.every}), * END`
  );
}

interface RawResult {
  results?: { series?: { name?: string; columns: string[]; values?: unknown[][] }[]; error?: string }[];
}

/**
 * Creates or alters the tiers' retention policies and (re)creates their continuous queries when the
 * definition changed (a CQ cannot be altered in InfluxDB 1.x: it is dropped and created). Idempotent.
 */
export async function ensureTiers(
  client: InfluxDB,
  db: string,
  rawRp: string,
  tiers: readonly Tier[],
  measurements: DownsampledMeasurements,
): Promise<void> {
  const policies = await client.showRetentionPolicies(db);
  for (const tier of tiers) {
    const opts = { database: db, duration: tier.duration, replication: 1, isDefault: false };
    if (policies.some((p) => p.name === tier.name)) await client.alterRetentionPolicy(tier.name, opts);
    else await client.createRetentionPolicy(tier.name, opts);
  }
  const existing = new Map<string, string>();
  const raw = (await client.queryRaw('SHOW CONTINUOUS QUERIES')) as RawResult;
  for (const r of raw.results ?? [])
    for (const s of r.series ?? []) if (s.name === db) for (const v of s.values ?? []) existing.set(String(v[0]), String(v[1]));
  for (const tier of tiers) {
    for (const [m, kinds] of Object.entries(measurements)) {
      const name = cqName(tier, m);
      const stmt = cqStatement(db, rawRp, tier, m, kinds);
      const have = existing.get(name);
      // InfluxDB echoes the statement back normalised; compare the SELECT's fields and the RESAMPLE clause.
      if (have !== undefined && sameCq(have, tier, kinds)) continue;
      if (have !== undefined) await client.query(`DROP CONTINUOUS QUERY ${q(name)} ON ${q(db)}`);
      await client.query(stmt);
    }
  }
}

function sameCq(have: string, tier: Tier, kinds: Record<string, FieldKind>): boolean {
  const every = tier.every;
  if (!have.includes(`RESAMPLE EVERY ${every} FOR ${tier.resampleFor}`) && !have.includes(`EVERY ${every}`)) return false;
  if (!have.includes(`FOR ${tier.resampleFor}`) && !have.includes(`FOR ${normaliseDuration(tier.resampleFor)}`)) return false;
  return Object.keys(kinds).every((f) => have.includes(`AS ${f}`) || have.includes(`AS "${f}"`));
}

/** InfluxDB prints durations normalised (2h → 2h0m0s). */
function normaliseDuration(d: string): string {
  const ms = durationMs(d);
  const h = Math.floor(ms / 3.6e6);
  const m = Math.floor((ms % 3.6e6) / 6e4);
  const s = Math.floor((ms % 6e4) / 1000);
  return `${h}h${m}m${s}s`;
}

/**
 * Late readings → affected hours per measurement → SELECT … INTO per tier, in runs of contiguous hours.
 */
export class Downsampler {
  private readonly dirty = new Map<string, Set<number>>();
  /** Hours being recomputed right now (still not trustworthy in the tiers until the run ends). */
  private readonly inProgress = new Map<string, Set<number>>();
  private running: Promise<void> | undefined;

  constructor(
    private readonly client: InfluxDB,
    private readonly db: string,
    private readonly rawRp: string,
    private readonly tiers: readonly Tier[],
    private readonly measurements: DownsampledMeasurements,
  ) {}

  /** Marks the hour of a late reading of `measurement` (observation time, epoch ms). Cheap: called per point. */
  mark(measurement: string, timeMs: number): void {
    let hours = this.dirty.get(measurement);
    if (!hours) {
      hours = new Set();
      this.dirty.set(measurement, hours);
    }
    hours.add(Math.floor(timeMs / 3.6e6));
  }

  /**
   * True when some hour of [fromMs, toMs) of `measurement` has late readings not yet in the tiers: a query of
   * that range must read raw readings (history.ts does).
   */
  isBehind(measurement: string, fromMs: number, toMs: number): boolean {
    const a = Math.floor(fromMs / 3.6e6);
    const b = Math.ceil(toMs / 3.6e6);
    for (const set of [this.dirty.get(measurement), this.inProgress.get(measurement)]) {
      if (!set) continue;
      if (set.size < b - a) {
        for (const h of set) if (h >= a && h < b) return true;
      } else for (let h = a; h < b; h++) if (set.has(h)) return true;
    }
    return false;
  }

  /** Hours waiting for a catch-up. */
  pending(): number {
    let n = 0;
    for (const h of this.dirty.values()) n += h.size;
    return n;
  }

  /** Recomputes every tier over the marked hours (one run at a time; marks made meanwhile wait for the next). */
  catchUp(): Promise<void> {
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Resolves when no catch-up runs (at once when none does); never rejects. */
  settled(): Promise<void> {
    return (this.running ?? Promise.resolve()).catch(() => undefined);
  }

  /** Recomputes every tier for [fromMs, toMs) (e.g. after an import): the same statements as the catch-up. */
  async backfill(fromMs: number, toMs: number, only?: string[]): Promise<void> {
    for (const m of only ?? Object.keys(this.measurements)) {
      const kinds = this.measurements[m];
      if (!kinds) continue;
      for (const tier of this.tiers) {
        const every = durationMs(tier.every);
        const oldest = tier.duration === 'INF' ? 0 : Date.now() - durationMs(tier.duration) + every;
        const from = Math.max(Math.floor(fromMs / every) * every, Math.ceil(oldest / every) * every);
        const to = Math.ceil(toMs / every) * every;
        if (from >= to) continue;
        await this.client.query(
          `${tierSelect(this.db, this.rawRp, tier, m, kinds)} WHERE time >= ${from}ms AND time < ${to}ms GROUP BY time(${tier.every}), *`,
        );
      }
    }
  }

  private async run(): Promise<void> {
    const work: [string, number, number][] = [];
    for (const [m, hours] of this.dirty) {
      for (const [a, b] of contiguous(hours)) work.push([m, a, b]);
      this.inProgress.set(m, hours);
    }
    this.dirty.clear();
    try {
      await this.runWork(work);
    } finally {
      this.inProgress.clear();
    }
  }

  private async runWork(work: [string, number, number][]): Promise<void> {
    for (let i = 0; i < work.length; i++) {
      const [m, a, b] = work[i] as [string, number, number];
      try {
        await this.backfill(a * 3.6e6, b * 3.6e6, [m]);
      } catch (err) {
        // InfluxDB unavailable: keep this and the remaining hours for the next run.
        for (const [m2, a2, b2] of work.slice(i)) for (let h = a2; h < b2; h++) this.mark(m2, h * 3.6e6);
        throw err;
      }
    }
  }
}

/** Sorted hour numbers → [start, end) runs of consecutive hours. */
function contiguous(hours: Set<number>): [number, number][] {
  const sorted = [...hours].sort((a, b) => a - b);
  const runs: [number, number][] = [];
  for (const h of sorted) {
    const last = runs[runs.length - 1];
    if (last && last[1] === h) last[1] = h + 1;
    else runs.push([h, h + 1]);
  }
  return runs;
}
