/** Dispatches a device's message by topic kind [C-TOPIC]. Only telemetry comes from devices so far. */
import type { Delivery } from '../resend-guard.ts';
import type { DeviceMeta } from '../validate.ts';
import type { HandlerResult, IngestContext } from './context.ts';
import { handleTelemetry } from './telemetry.ts';

export type { HandlerResult, IngestContext, ReadingSink } from './context.ts';

type Handler = (
  ctx: IngestContext,
  device: DeviceMeta,
  payload: Buffer,
  receivedAt: number,
  qos: number,
  delivery: Delivery | undefined,
  closed: AbortSignal | undefined,
) => HandlerResult;

const HANDLERS: Record<string, Handler> = {
  telemetry: handleTelemetry,
};

/** `false` when no handler takes this kind of topic; otherwise the handler's result. */
export function dispatch(
  ctx: IngestContext,
  kind: string,
  device: DeviceMeta,
  payload: Buffer,
  receivedAt: number,
  qos: number,
  delivery?: Delivery,
  closed?: AbortSignal,
): HandlerResult | false {
  const h = HANDLERS[kind];
  if (!h) return false;
  return h(ctx, device, payload, receivedAt, qos, delivery, closed);
}
