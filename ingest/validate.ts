/**
 * Parses and validates a telemetry payload against the contract. Validators are compiled once per family at
 * start-up (`createReadingParser`), never per message.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { FAMILIES, READING_SCHEMAS, type AnyReading, type EnrichedReading, type Family } from '../core/contract.ts';
import type { ErrorCode } from '../core/errors.ts';

export interface DeviceMeta {
  id: string;
  family: Family;
  zone: string;
}

export interface Rejection {
  code: ErrorCode;
  reason: string;
  /** Index in an array payload; absent when the whole message is rejected. */
  index?: number;
  path?: string;
  /** What is kept in the dead-letter store: the raw message, or the one reading. */
  payload: string;
}

export interface ParseResult {
  readings: EnrichedReading[];
  rejections: Rejection[];
  /** Readings the message carried (valid + invalid), for the received counter. */
  total: number;
  /** The payload was an array (rejection indexes refer to it). */
  array: boolean;
  /**
   * The readings of `readings` that carried no observation time, in order: stamped with consecutive receive
   * times (the first one's, +1 ms, …), which a resend of the same message must reproduce (resend-guard.ts).
   */
  timeless: EnrichedReading[];
}

/** Never older than this, whatever the retention: devices with a reset clock report 1970. */
const MIN_TIME = Date.UTC(2000, 0, 1);

export interface ParserOptions {
  maxReadingsPerMessage: number;
  /**
   * Accepted observation times: now − maxPastMs .. now + maxFutureMs. Outside, a reading is rejected with a
   * reason rather than stored at a wrong place in time (a drifting clock) or dropped by InfluxDB's retention
   * after being acknowledged (older than the retention policy).
   */
  maxPastMs: number;
  maxFutureMs: number;
}

export function createReadingParser(opts: ParserOptions) {
  const ajv = new Ajv({ allErrors: false, strict: true });
  addFormats.default(ajv, ['date-time']);
  const validators = Object.fromEntries(FAMILIES.map((f) => [f, ajv.compile<AnyReading>(READING_SCHEMAS[f])])) as Record<
    Family,
    ValidateFunction<AnyReading>
  >;
  // Fatal: a payload in another encoding is refused with a reason instead of being read with U+FFFD in it.
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  /** Last receive time given per device, so time-less readings never share a timestamp (they would overwrite). */
  const lastReceiveTime = new Map<string, number>();

  function receiveTime(device: string, now: number): number {
    const last = lastReceiveTime.get(device) ?? 0;
    const t = now > last ? now : last + 1;
    lastReceiveTime.set(device, t);
    return t;
  }

  return function parse(device: DeviceMeta, payload: Buffer, receivedAt: number): ParseResult {
    let data: unknown;
    let text: string;
    try {
      text = utf8.decode(payload);
    } catch {
      return whole('CP_INGEST_BAD_JSON', 'payload is not valid UTF-8', payload.toString('base64'));
    }
    try {
      data = JSON.parse(text);
    } catch (err) {
      return whole('CP_INGEST_BAD_JSON', `payload is not JSON: ${(err as Error).message}`, text);
    }
    const items = Array.isArray(data) ? data : [data];
    if (items.length > opts.maxReadingsPerMessage) {
      return whole(
        'CP_INGEST_TOO_MANY_READINGS',
        `${items.length} readings in one message; at most ${opts.maxReadingsPerMessage}`,
        text,
        items.length,
      );
    }
    if (items.length === 0) return whole('CP_INGEST_BAD_SHAPE', 'empty array: no reading', text);
    const validate = validators[device.family];
    const readings: EnrichedReading[] = [];
    const timeless: EnrichedReading[] = [];
    const rejections: Rejection[] = [];
    const single = !Array.isArray(data);
    // Only an array can repeat an observation time.
    const seenTimes = single ? undefined : new Set<number>();
    // A plain loop with no closures per reading: this runs for every reading on the hot path.
    for (let i = 0; i < items.length; i++) {
      const item: unknown = items[i];
      const index = single ? undefined : i;
      if (item === null || typeof item !== 'object' || Array.isArray(item)) {
        rejections.push(
          rejection(
            'CP_INGEST_BAD_SHAPE',
            `a reading must be a JSON object, got ${item === null ? 'null' : Array.isArray(item) ? 'array' : typeof item}`,
            single ? text : stringifyForDeadLetter(item),
            index,
          ),
        );
        continue;
      }
      if (!validate(item)) {
        const errs = validate.errors ?? [];
        const e = (errs.find((x) => x.keyword === 'anyOf') ?? errs[0]) as ErrorObject;
        rejections.push(
          rejection(
            'CP_INGEST_INVALID_READING',
            describe(e),
            single ? text : stringifyForDeadLetter(item),
            index,
            e.instancePath || undefined,
          ),
        );
        continue;
      }
      const obj = item as Record<string, unknown>;
      const explicit = obj.dateObserved ?? (device.family === 'traffic' ? obj.dateObservedTo : undefined);
      let time: number;
      if (explicit === undefined) time = receiveTime(device.id, receivedAt);
      else {
        time = typeof explicit === 'number' ? explicit : Date.parse(explicit as string);
        if (!(time >= Math.max(MIN_TIME, receivedAt - opts.maxPastMs) && time <= receivedAt + opts.maxFutureMs)) {
          rejections.push(
            rejection(
              'CP_INGEST_INVALID_READING',
              `observation time ${String(explicit)} is outside the accepted window (now − ${Math.round(opts.maxPastMs / 3_600_000)} h .. now + ${Math.round(opts.maxFutureMs / 3_600_000)} h)`,
              single ? text : stringifyForDeadLetter(item),
              index,
              '/dateObserved',
            ),
          );
          continue;
        }
        if (seenTimes?.has(time)) {
          rejections.push(
            rejection(
              'CP_INGEST_INVALID_READING',
              `another reading of this message has the same observation time ${String(explicit)}`,
              stringifyForDeadLetter(item),
              index,
              '/dateObserved',
            ),
          );
          continue;
        }
      }
      seenTimes?.add(time);
      const reading: EnrichedReading = { device: device.id, family: device.family, zone: device.zone, time, fields: flatten(obj) };
      readings.push(reading);
      if (explicit === undefined) timeless.push(reading);
    }
    return { readings, rejections, total: items.length, array: !single, timeless };
  };
}

/** JSON of one rejected array member; a hostile, deeply nested one would overflow JSON.stringify's stack. */
function stringifyForDeadLetter(item: unknown): string {
  try {
    return JSON.stringify(item) ?? String(item);
  } catch {
    return '[unserialisable: nested too deeply]';
  }
}

function rejection(code: ErrorCode, reason: string, payload: string, index?: number, path?: string): Rejection {
  const r: Rejection = { code, reason, payload };
  if (index !== undefined) r.index = index;
  if (path) r.path = path;
  return r;
}

function whole(code: ErrorCode, reason: string, payload: string, total = 1): ParseResult {
  return { readings: [], rejections: [{ code, reason, payload }], total, array: false, timeless: [] };
}

const TIME_KEYS = new Set(['dateObserved', 'dateObservedFrom', 'dateObservedTo']);

/** Contract object → flat InfluxDB fields: a nested object `x: { k: v }` becomes field `x_k` (FIELD_KINDS follows the same rule). */
function flatten(obj: Record<string, unknown>): Record<string, number | boolean | string> {
  const out: Record<string, number | boolean | string> = {};
  for (const k in obj) {
    if (TIME_KEYS.has(k)) continue;
    const v = obj[k];
    if (v !== null && typeof v === 'object') {
      for (const [sub, sv] of Object.entries(v)) out[`${k}_${sub}`] = sv as number;
    } else out[k] = v as number | boolean | string;
  }
  return out;
}

function describe(e: ErrorObject): string {
  const where = e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : 'reading';
  switch (e.keyword) {
    case 'additionalProperties':
      return `${where}: unknown field '${(e.params as { additionalProperty: string }).additionalProperty}'`;
    case 'required':
      return `${where}: missing field '${(e.params as { missingProperty: string }).missingProperty}'`;
    case 'minProperties':
      return `${where}: carries no measurement field`;
    case 'anyOf':
      return `${where}: must be an ISO 8601 date-time with offset or epoch milliseconds`;
    case 'enum':
      return `${where} ${e.message}: ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    default:
      return `${where} ${e.message}`;
  }
}
