/**
 * A device's answer to a command (devices/{id}/acks): checked against the contract's schema and against the
 * commands of that device; the first answer moves the command to acknowledged or failed, a later one is ignored.
 * A device whose ack is refused is told why on its errors topic.
 */
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { commandAckSchema, TOPICS, type CommandAck, type DeviceError } from '../core/contract.ts';
import type { DeviceMeta } from '../ingest/validate.ts';
import type { CommandRecord } from '../core/bus.ts';
import type { ErrorCode } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { CommandStore } from './store.ts';
import type { CommandTransport } from './types.ts';

/** A message of a device on its acks topic. */
export function createAckHandler(
  store: CommandStore,
  transport: CommandTransport,
  emit: (c: CommandRecord) => void,
  log: Logger,
): (device: DeviceMeta, payload: Buffer) => Promise<void> {
  const ajv = new Ajv({ allErrors: true, strict: true });
  addFormats.default(ajv, ['date-time']);
  const validateAck = ajv.compile<CommandAck>(commandAckSchema);

  function tellDevice(device: string, code: ErrorCode, reason: string): void {
    const err: DeviceError = { code, reason, at: new Date().toISOString() };
    transport.publish(TOPICS.errors(device), JSON.stringify(err), { qos: 1 }).catch(() => undefined);
  }

  async function handleAck(device: DeviceMeta, payload: Buffer): Promise<void> {
    let ack: unknown;
    try {
      ack = JSON.parse(payload.toString('utf8'));
    } catch (err) {
      log.info({ device: device.id }, 'ack is not JSON');
      tellDevice(device.id, 'CP_COMMAND_BAD_ACK', `ack is not JSON: ${(err as Error).message}`);
      return;
    }
    if (!validateAck(ack)) {
      const why = (validateAck.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message}`).join('; ');
      log.info({ device: device.id, why }, 'ack refused');
      tellDevice(device.id, 'CP_COMMAND_BAD_ACK', `ack breaks its schema: ${why}`);
      return;
    }
    const known = await store.get(ack.id);
    if (!known || known.device !== device.id) {
      log.info({ device: device.id, command: ack.id }, 'ack for an unknown command');
      tellDevice(device.id, 'CP_COMMAND_NOT_FOUND', `no command ${ack.id} for ${device.id}`);
      return;
    }
    const ok = ack.status === 'ok';
    const reason = ok ? (ack.reason ?? null) : (ack.reason ?? 'the device gave no reason');
    const c = await store.markAnswered(ack.id, device.id, ok ? 'acknowledged' : 'failed', reason, Date.now());
    if (c) emit(c);
    // else: already finished (a repeated ack, or one after expiry): the first answer stands.
    else log.debug({ device: device.id, command: ack.id, state: known.state }, 'ack for a finished command ignored');
  }

  return handleAck;
}
