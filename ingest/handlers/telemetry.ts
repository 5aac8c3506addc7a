/**
 * `devices/{id}/telemetry` [C-TOPIC]: parse, validate, enrich, append to the log (InfluxDB and the live bus get
 * them from there: ingest/backend.ts); every rejection is counted, dead-lettered and reported on the device's
 * errors topic, while the valid readings of the same message still go through.
 *
 * Acknowledgement: a QoS 1 message is acknowledged once its readings are durable (on disk here, or confirmed by a
 * quorum of the replicated log in cluster mode); QoS 0 is not waited for.
 * Readings without an observation time get their receive time, and a QoS 1 resend of the same message the same
 * times (resend-guard.ts), so a resend after a lost acknowledgement overwrites instead of duplicating.
 * While the log has no room (its disk budget, or in cluster mode its unconfirmed readings, used up), every
 * message waits for room first: the broker then withholds the acknowledgement and stops reading that device's
 * socket, which slows the device down instead of dropping. A message whose connection ends meanwhile is let go
 * (a QoS 1 one is sent again by its device).
 */
import type { DeviceError, EnrichedReading } from '../../core/contract.ts';
import type { DeviceMeta } from '../validate.ts';
import type { Delivery } from '../resend-guard.ts';
import type { HandlerResult, IngestContext } from './context.ts';

export function handleTelemetry(
  ctx: IngestContext,
  device: DeviceMeta,
  payload: Buffer,
  receivedAt: number,
  qos: number,
  delivery?: Delivery,
  closed?: AbortSignal,
): HandlerResult {
  const result = ctx.parse(device, payload, receivedAt);
  const timeless = result.timeless;
  if (qos > 0 && delivery && timeless.length) {
    // A resend of a message not yet acknowledged gets the times its first delivery got (resend-guard.ts).
    const first = (timeless[0] as EnrichedReading).time;
    const base = ctx.resends.stamp(device.id, delivery, payload, first);
    if (base !== first) for (let i = 0; i < timeless.length; i++) (timeless[i] as EnrichedReading).time = base + i;
  }
  ctx.metrics?.countReceived(device.family, result.total);
  const allowed = ctx.rateLimit.take(device.id, result.readings.length, receivedAt);
  if (allowed < result.readings.length) {
    // Over the device's rate: the rest of this message is refused with a reason, in one record.
    const over = result.readings.splice(allowed);
    result.rejections.push({
      code: 'CP_INGEST_RATE_LIMITED',
      reason: `${over.length} reading(s) over this device's rate limit; send them again later`,
      index: result.array ? result.total - over.length : undefined,
      payload: JSON.stringify(over.map((r) => ({ dateObserved: r.time, ...r.fields }))),
    });
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
      ctx.bus.emit('rejected', {
        device: device.id,
        family: device.family,
        zone: device.zone,
        code: rej.code,
        reason: rej.reason,
        index: rej.index,
        at,
      });
    }
    ctx.logger.debug({ device: device.id, rejected: result.rejections.length, accepted: result.readings.length }, 'readings rejected');
  }
  if (!result.readings.length) return undefined;
  const room = ctx.sink.whenSpace(closed);
  if (room !== undefined) {
    ctx.metrics?.backpressureWaits.inc();
    const readings = result.readings;
    return room.then(
      () => accept(ctx, readings, qos),
      (err: Error) => {
        // The connection ended while the message waited for room: a QoS 1 message was not acknowledged and its
        // device sends it again; a QoS 0 message is let go, counted and logged, never held for a gone connection.
        if (qos > 0) throw err;
        ctx.metrics?.readingsAbandoned.inc({ family: device.family }, readings.length);
        ctx.logger.warn(
          { device: device.id, readings: readings.length },
          'QoS 0 readings let go: connection closed while the disk budget was full',
        );
        return undefined;
      },
    );
  }
  return accept(ctx, result.readings, qos);
}

function accept(ctx: IngestContext, readings: EnrichedReading[], qos: number): HandlerResult {
  // The sink also hands the readings to the live bus, at the moment its mode says (ingest/backend.ts).
  const durable = ctx.sink.append(readings);
  if (qos > 0) return durable;
  durable.catch((err: Error) => ctx.logger.error({ err: err.message }, 'QoS 0 readings could not be made durable'));
  return undefined;
}
