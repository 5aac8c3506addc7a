/**
 * InfluxQL reads for rebuilding analytics' state at start: raw query rows as plain objects, the fully
 * qualified measurement names, and a raw row turned back into the reading the live path would have received.
 */
import type { InfluxDB } from 'influx';
import type { EnrichedReading, Family, InfluxTarget } from '../ingest/index.ts';

export interface RestoreSource {
  /** Runs a query; its rows as objects (tags and columns by name, time in ms). */
  query(sql: string): Promise<Record<string, unknown>[]>;
  /** `"db"."rp"."measurement"` of the target database. */
  from(measurement: string): string;
}

export function createRestoreSource(influx: InfluxDB, target: InfluxTarget): RestoreSource {
  return {
    async query(sql) {
      const raw = (await influx.queryRaw(sql, { precision: 'ms', database: target.database })) as {
        results?: { series?: { columns: string[]; values: unknown[][]; tags?: Record<string, string> }[]; error?: string }[];
      };
      const out: Record<string, unknown>[] = [];
      for (const r of raw.results ?? []) {
        if (r.error) throw new Error(r.error);
        for (const s of r.series ?? []) {
          for (const v of s.values) out.push({ ...s.tags, ...Object.fromEntries(s.columns.map((c, i) => [c, v[i]])) });
        }
      }
      return out;
    },
    from: (m) => `"${target.database}"."${target.retentionPolicy}"."${m}"`,
  };
}

const TAG_COLUMNS = new Set(['device', 'zone', 'time']);

export function rowToReading(row: Record<string, unknown>, family: Family): EnrichedReading {
  const fields: Record<string, number | boolean | string> = {};
  for (const [k, v] of Object.entries(row)) if (!TAG_COLUMNS.has(k) && v !== null && v !== undefined) fields[k] = v as number;
  return { device: row.device as string, zone: row.zone as string, family, time: row.time as number, fields };
}
