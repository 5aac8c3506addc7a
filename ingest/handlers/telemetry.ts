/**
 * `devices/{id}/telemetry` [C-TOPIC]: parse, validate, enrich, queue for InfluxDB, emit on the live bus;
 * every rejection is counted, dead-lettered and reported on the device's errors topic, while the valid
 * readings of the same message still go through.
 */
import type { DeviceError } from '../contract.ts';
import type { DeviceMeta, ParseResult } from '../validate.ts';
import type { IngestContext } from './context.ts';

export function handleTelemetry(ctx: IngestContext, device: DeviceMeta, payload: Buffer, receivedAt: number): ParseResult {
  const result = ctx.parse(device, payload, receivedAt);
  ctx.metrics?.readingsReceived.inc({ family: device.family }, result.total);
  for (const r of result.readings) {
    ctx.writer.write(r);
    ctx.bus.emit('reading', r);
  }
  if (result.rejections.length) {
    const at = new Date(receivedAt).toISOString();
    for (const rej of result.rejections) {
      ctx.metrics?.readingsRejected.inc({ family: device.family, code: rej.code });
      ctx.deadLetters.add({ at, device: device.id, code: rej.code, reason: rej.reason, index: rej.index, payload: rej.payload });
      const err: DeviceError = { code: rej.code, reason: rej.reason, at };
      if (rej.index !== undefined) err.index = rej.index;
      if (rej.path) err.path = rej.path;
      ctx.publishError(device.id, err);
      ctx.bus.emit('rejected', { device: device.id, family: device.family, zone: device.zone, code: rej.code, reason: rej.reason, index: rej.index, at });
    }
    ctx.logger.debug({ device: device.id, rejected: result.rejections.length, accepted: result.readings.length }, 'readings rejected');
  }
  return result;
}
