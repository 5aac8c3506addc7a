/**
 * InfluxDB line protocol for enriched readings.
 *
 * Hand-built rather than the `influx` package's writePoints: this is the per-reading hot path, and the
 * stack notes measured 154k points/s through `influx` against 214k (1 request in flight) and 286k (2) with
 * hand-built lines over a keep-alive agent. Field types come from the contract (FIELD_KINDS), never from the
 * JS value, so an integer field stays an integer even when a device sends 3.0.
 */
import { FIELD_KINDS, type EnrichedReading } from './contract.ts';

const MEASUREMENT_ESCAPE = /[, ]/g;
const KEY_ESCAPE = /[,= ]/g;
/** Non-global twin of KEY_ESCAPE: a test without lastIndex state, so the common case (nothing to escape) allocates nothing. */
const NEEDS_ESCAPE = /[,= ]/;

function escapeKey(s: string): string {
  return NEEDS_ESCAPE.test(s) ? s.replace(KEY_ESCAPE, (c) => `\\${c}`) : s;
}

/** One line, time in ms (write with precision=ms). Tags sorted by key, as InfluxDB prefers. */
export function toLine(r: EnrichedReading): string {
  const kinds = FIELD_KINDS[r.family];
  let fields = '';
  for (const name in r.fields) {
    const v = r.fields[name] as number | boolean | string;
    let enc: string;
    switch (kinds[name]) {
      case 'integer':
        enc = `${Math.trunc(v as number)}i`;
        break;
      case 'float':
        enc = String(v);
        break;
      case 'boolean':
        enc = v ? 'true' : 'false';
        break;
      case 'string':
        enc = `"${String(v).replace(/["\\]/g, (c) => `\\${c}`)}"`;
        break;
      default:
        continue; // not in the contract: never written (validation already refuses unknown fields)
    }
    fields += `${fields ? ',' : ''}${escapeKey(name)}=${enc}`;
  }
  return `${r.family.replace(MEASUREMENT_ESCAPE, (c) => `\\${c}`)},device=${escapeKey(r.device)},zone=${escapeKey(r.zone)} ${fields} ${r.time}`;
}
