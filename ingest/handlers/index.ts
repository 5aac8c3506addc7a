/** Dispatches a device's message by topic kind [C-TOPIC]. Only telemetry comes from devices so far. */
import type { DeviceMeta } from '../validate.ts';
import type { IngestContext } from './context.ts';
import { handleTelemetry } from './telemetry.ts';

export type { IngestContext } from './context.ts';

const HANDLERS: Record<string, (ctx: IngestContext, device: DeviceMeta, payload: Buffer, receivedAt: number) => unknown> = {
  telemetry: handleTelemetry,
};

/** Returns false when no handler takes this kind of topic. */
export function dispatch(ctx: IngestContext, kind: string, device: DeviceMeta, payload: Buffer, receivedAt: number): boolean {
  const h = HANDLERS[kind];
  if (!h) return false;
  h(ctx, device, payload, receivedAt);
  return true;
}
