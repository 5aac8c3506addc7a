/**
 * One simulated device: its value model per family (traffic counts over its report period, street lights with
 * commands), its report interval, phase and reconnect jitter from the seed, and how a street light answers a
 * command: apply it to the model, report the new state at once, then acknowledge; a repeated command id is
 * answered again, not redone.
 */
import type { MqttClient } from 'mqtt';
import {
  createModel,
  createRng,
  createStreetLightModel,
  type DeviceModel,
  type StreetLightCommand,
  type StreetLightModel,
} from './models.ts';
import { type DevicePlan, deriveSeed, REPORT_INTERVAL_MS } from './fleet-plan.ts';

const MIN_INTERVAL_MS = 20;
const RECONNECT_MIN_MS = 1_000;
const RECONNECT_MAX_MS = 5_000;
/** Command ids a light remembers with its answer, so a repeat is answered again without acting twice. */
const REMEMBERED_COMMANDS = 64;

export interface Connection {
  client: MqttClient;
  connected: boolean;
  /** Publishes not yet called back on this connection. */
  pending: number;
}

export interface SimDevice {
  plan: DevicePlan;
  model: DeviceModel<object>;
  /** Street lights: the same model, with commands. */
  light?: StreetLightModel;
  /** Answers given, by command id (oldest first, bounded). */
  answers: Map<string, string>;
  intervalMs: number;
  phaseMs: number;
  reconnectMs: number;
  token?: string;
  conn?: Connection;
  /** Set when the device re-provisioned after a refusal; cleared by a successful connect. */
  reprovisioned: boolean;
  gaveUp: boolean;
  /** Its history was sent (once per run, at the first connect). */
  backfilled: boolean;
  timer?: NodeJS.Timeout;
  reporting: boolean;
}

/** The device of a plan, its model and timing drawn from streams of the fleet's seed. */
export function createSimDevice(plan: DevicePlan, fleet: { seed: number; intervalScale: number; timeZone: string }): SimDevice {
  const { timeZone } = fleet;
  const intervalMs = Math.max(MIN_INTERVAL_MS, Math.round(REPORT_INTERVAL_MS[plan.family] * fleet.intervalScale));
  const modelRng = createRng(deriveSeed(fleet.seed, 'model', plan.id));
  const light = plan.family === 'streetLight' ? createStreetLightModel(modelRng, { timeZone }) : undefined;
  const model: DeviceModel<object> =
    light ??
    (plan.family === 'traffic'
      ? createModel('traffic', modelRng, {
          timeZone,
          laneId: plan.laneId ?? 1,
          periodSeconds: Math.max(1, Math.round(intervalMs / 1000)),
        })
      : createModel(plan.family, modelRng, { timeZone }));
  const timing = createRng(deriveSeed(fleet.seed, 'timing', plan.id));
  return {
    plan,
    model,
    light,
    answers: new Map(),
    intervalMs,
    phaseMs: Math.floor(timing() * intervalMs),
    reconnectMs: Math.round(RECONNECT_MIN_MS + timing() * (RECONNECT_MAX_MS - RECONNECT_MIN_MS)),
    reprovisioned: false,
    gaveUp: false,
    backfilled: false,
    reporting: false,
  };
}

/**
 * Answers a command received on devices/{id}/commands through `publishAck` (QoS 1 on devices/{id}/acks); a street
 * light applies it first and `report`s its new state, so whoever sees the ack can already see the reading.
 */
export function answerCommand(d: SimDevice, payload: Buffer, publishAck: (ack: string) => void, report: () => void): void {
  let cmd: { id?: unknown; action?: unknown; expiresAt?: unknown };
  try {
    cmd = JSON.parse(payload.toString('utf8'));
  } catch {
    return; // no id to answer to
  }
  if (!cmd || typeof cmd.id !== 'string') return;
  const id = cmd.id;
  const repeated = d.answers.get(id);
  if (repeated) {
    publishAck(repeated);
    return;
  }
  const answer = (status: 'ok' | 'failed', reason?: string) => {
    const ack = JSON.stringify({ id, status, ...(reason ? { reason } : {}), at: new Date().toISOString() });
    d.answers.set(id, ack);
    if (d.answers.size > REMEMBERED_COMMANDS) d.answers.delete(d.answers.keys().next().value as string);
    publishAck(ack);
  };
  if (!d.light) {
    answer('failed', `a ${d.plan.family} device takes no commands`);
    return;
  }
  const expiresAt = typeof cmd.expiresAt === 'string' ? Date.parse(cmd.expiresAt) : Number.NaN;
  if (expiresAt <= Date.now()) {
    answer('failed', 'expired before it arrived');
    return;
  }
  const action = parseAction(cmd.action);
  if (typeof action === 'string') {
    answer('failed', action);
    return;
  }
  d.light.command(action, new Date());
  report(); // the new state at once, before the answer: whoever sees the ack can already see the reading
  answer('ok');
}

/** A street-light action as the contract defines it, or why not (what a real controller would answer). */
function parseAction(a: unknown): StreetLightCommand | string {
  if (!a || typeof a !== 'object' || Array.isArray(a)) return 'action is not an object';
  const { powerState, illuminanceLevel, ...rest } = a as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) return `unsupported action: ${unknown.join(', ')}`;
  if (powerState !== undefined && powerState !== 'on' && powerState !== 'off') return `unsupported powerState: ${String(powerState)}`;
  if (illuminanceLevel !== undefined && !(typeof illuminanceLevel === 'number' && illuminanceLevel >= 0 && illuminanceLevel <= 1)) {
    return 'illuminanceLevel must be a number from 0 to 1';
  }
  if (powerState === undefined && illuminanceLevel === undefined) return 'empty action';
  return { powerState, illuminanceLevel } as StreetLightCommand;
}
