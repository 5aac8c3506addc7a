/**
 * The frame a batched socket receives: readings, device indicators, device statuses and rejections of
 * one batching interval, packed as arrays instead of objects. Shared by the server (packing) and every client
 * (unpacking): it imports nothing, so the dashboard bundles it as it is.
 *
 * Why packed: at 200 screens and 5,000 readings/s, the bytes written to the sockets are the largest cost of
 * fan-out, for the platform (one loopback or network write per socket per frame) and for every screen that
 * parses them. As objects, a traffic reading and its indicator took ~320 bytes of JSON (field names repeated in
 * every item, 13-digit times); packed they take ~100: each item is an array, the field names of a frame are
 * listed once (`shapes`), and times are offsets from the frame's `t0`. Measured in `npm run bench -- fanout`
 * (KiB/frame column; see docs/benchmarks.md).
 */

export type FieldValue = number | boolean | string;
type Fields = Record<string, FieldValue>;

/**
 * One item: `[id, zone, family, time − t0 (ms), shape, ...values]`; the values follow the order of
 * `shapes[shape]`. For a reading `id` is the device; for an indicator it is the device too (scope `device`).
 */
export type PackedItem = [string, string, string, number, number, ...FieldValue[]];

/**
 * One device status change: `[device, zone, family, state, at]` (`at` as ISO 8601, as in the `status` event).
 * Statuses come in frames because they come in bursts: after a cellular outage thousands of devices reconnect
 * within seconds, and one event per change per screen would be one socket write each.
 */
export type PackedStatus = [string, string, string, 'online' | 'offline', string];

/**
 * One rejection: `[device, zone, family, code, reason, at, index?]` (`index`: the reading's place in an array
 * message). In frames too, because a device with broken firmware can send garbage as fast as its link allows.
 */
export type PackedRejection = [string, string, string, string, string, string, number?];

/** The `batch` event's payload, as it travels. */
export interface LiveBatchFrame {
  /** Times are offsets from this, epoch ms. */
  t0: number;
  /** The field-name lists the items refer to by index. */
  shapes: string[][];
  readings: PackedItem[];
  indicators: PackedItem[];
  /** In the order they happened. */
  statuses: PackedStatus[];
  /** In the order they happened. */
  rejections: PackedRejection[];
}

/** A reading as unpacked (the EnrichedReading of core/contract.ts). */
export interface UnpackedReading {
  device: string;
  family: string;
  zone: string;
  time: number;
  fields: Fields;
}

/** A device indicator as unpacked (the IndicatorEvent of core/bus.ts, scope `device`). */
export interface UnpackedIndicator {
  scope: 'device';
  id: string;
  zone: string;
  family: string;
  time: number;
  values: Fields;
}

/** A device status change as unpacked (the StatusEvent of core/bus.ts). */
export interface UnpackedStatus {
  device: string;
  zone: string;
  family: string;
  state: 'online' | 'offline';
  at: string;
}

/** A rejection as unpacked (the RejectionEvent of core/bus.ts). */
export interface UnpackedRejection {
  device: string;
  zone: string;
  family: string;
  code: string;
  reason: string;
  at: string;
  index?: number;
}

/** A batch as objects: what `unpackBatch` returns (any of the arrays may be empty, never all). */
export interface LiveBatch<R = UnpackedReading, I = UnpackedIndicator, S = UnpackedStatus, J = UnpackedRejection> {
  readings: R[];
  indicators: I[];
  statuses: S[];
  rejections: J[];
}

/** Collects one interval's items for one room; `take()` returns the frame and starts over. */
export class BatchPacker {
  private t0 = 0;
  private shapes: string[][] = [];
  private shapeIndex = new Map<string, number>();
  private readings: PackedItem[] = [];
  private indicators: PackedItem[] = [];
  private statuses: PackedStatus[] = [];
  private rejections: PackedRejection[] = [];

  get empty(): boolean {
    return this.readings.length === 0 && this.indicators.length === 0 && this.statuses.length === 0 && this.rejections.length === 0;
  }

  addReading(r: { device: string; zone: string; family: string; time: number; fields: Fields }): void {
    this.readings.push(this.pack(r.device, r.zone, r.family, r.time, r.fields));
  }

  addIndicator(i: { id: string; zone?: string; family: string; time: number; values: Fields }): void {
    this.indicators.push(this.pack(i.id, i.zone ?? '', i.family, i.time, i.values));
  }

  addStatus(s: { device: string; zone: string; family: string; state: 'online' | 'offline'; at: string }): void {
    this.statuses.push([s.device, s.zone, s.family, s.state, s.at]);
  }

  addRejection(r: { device: string; zone: string; family: string; code: string; reason: string; at: string; index?: number }): void {
    const item: PackedRejection = [r.device, r.zone, r.family, r.code, r.reason, r.at];
    if (r.index !== undefined) item.push(r.index);
    this.rejections.push(item);
  }

  take(): LiveBatchFrame {
    const frame: LiveBatchFrame = {
      t0: this.t0,
      shapes: this.shapes,
      readings: this.readings,
      indicators: this.indicators,
      statuses: this.statuses,
      rejections: this.rejections,
    };
    this.t0 = 0;
    this.shapes = [];
    this.shapeIndex = new Map();
    this.readings = [];
    this.indicators = [];
    this.statuses = [];
    this.rejections = [];
    return frame;
  }

  private pack(id: string, zone: string, family: string, time: number, fields: Fields): PackedItem {
    if (this.readings.length === 0 && this.indicators.length === 0) this.t0 = time;
    const keys = Object.keys(fields);
    // Field names never hold a NUL (schema property names and analytics' indicator names).
    const sig = keys.join('\u0000');
    let shape = this.shapeIndex.get(sig);
    if (shape === undefined) {
      shape = this.shapes.push(keys) - 1;
      this.shapeIndex.set(sig, shape);
    }
    const item: PackedItem = [id, zone, family, time - this.t0, shape];
    for (const k of keys) item.push(fields[k] as FieldValue);
    return item;
  }
}

function unpackFields(frame: LiveBatchFrame, item: PackedItem): Fields {
  const keys = frame.shapes[item[4]] ?? [];
  const out: Fields = {};
  for (let k = 0; k < keys.length; k++) out[keys[k] as string] = item[5 + k] as FieldValue;
  return out;
}

/** The objects of a frame, in the order they were packed. */
export function unpackBatch(frame: LiveBatchFrame): LiveBatch {
  return {
    readings: frame.readings.map((it) => ({
      device: it[0],
      zone: it[1],
      family: it[2],
      time: frame.t0 + it[3],
      fields: unpackFields(frame, it),
    })),
    indicators: frame.indicators.map((it) => ({
      scope: 'device',
      id: it[0],
      zone: it[1],
      family: it[2],
      time: frame.t0 + it[3],
      values: unpackFields(frame, it),
    })),
    // (A frame of an older platform has no statuses or rejections.)
    statuses: (frame.statuses ?? []).map((it) => ({ device: it[0], zone: it[1], family: it[2], state: it[3], at: it[4] })),
    rejections: (frame.rejections ?? []).map((it) => {
      const r: UnpackedRejection = { device: it[0], zone: it[1], family: it[2], code: it[3], reason: it[4], at: it[5] };
      if (it[6] !== undefined) r.index = it[6];
      return r;
    }),
  };
}
