/**
 * What a command may be and whom it reaches: an action checked against the contract's schema of the device
 * family, a time to live within bounds, and a target (a list of devices, or a zone with every zone below it)
 * resolved to the registry's devices that take commands. Strict for the API (a bad device is an error),
 * lenient for schedules at an edge (bad devices are skipped).
 */
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { COMMAND_SCHEMAS, type Family } from '../core/contract.ts';
import { PlatformError, type ErrorCode } from '../core/errors.ts';
import type { Device } from '../registry/index.ts';
import type { CommandTarget } from './store.ts';
import type { CommandsDeps } from './types.ts';

/** The families whose devices take commands. */
export const COMMANDABLE = Object.keys(COMMAND_SCHEMAS) as Family[];

export interface CommandChecks {
  /** The action, if a device of `family` takes it; else throws CP_COMMAND_WRONG_FAMILY or CP_COMMAND_BAD_ACTION. */
  checkAction(family: Family, action: unknown, what?: string): Record<string, unknown>;
  /** The time to live (default when absent); throws CP_API_VALIDATION outside 1 s .. maxTtlMs. */
  checkTtl(ttlMs: number | undefined | null): number;
  /**
   * The devices of a target. Strict (API): an unknown, revoked or non-commandable device is an error. Lenient
   * (schedules, at an edge): those are skipped, the rest get their command.
   */
  resolveTarget(target: CommandTarget, strict: boolean): Promise<Device[]>;
}

export function createCommandChecks(
  deps: Pick<CommandsDeps, 'devices' | 'profile'>,
  ttl: { defaultTtlMs: number; maxTtlMs: number },
): CommandChecks {
  const { defaultTtlMs, maxTtlMs } = ttl;
  const ajv = new Ajv({ allErrors: true, strict: true });
  addFormats.default(ajv, ['date-time']);
  const actionValidators = new Map<Family, ValidateFunction>(
    COMMANDABLE.map((f) => [f, ajv.compile(COMMAND_SCHEMAS[f] as object)] as const),
  );

  function checkAction(family: Family, action: unknown, what = 'action'): Record<string, unknown> {
    const validate = actionValidators.get(family);
    if (!validate) throw new PlatformError('CP_COMMAND_WRONG_FAMILY', `${family} devices take no commands`);
    if (!validate(action)) {
      const errors = (validate.errors ?? []).map((e) => `${what}${e.instancePath.replaceAll('/', '.')} ${e.message}`);
      throw new PlatformError('CP_COMMAND_BAD_ACTION', `the ${what} is not one a ${family} device takes: ${errors.join('; ')}`, {
        details: errors,
      });
    }
    const a = action as { powerState?: string; illuminanceLevel?: number };
    if (a.powerState === 'off' && a.illuminanceLevel !== undefined && a.illuminanceLevel > 0) {
      throw new PlatformError('CP_COMMAND_BAD_ACTION', `the ${what} switches off with an illuminanceLevel above 0`);
    }
    return action as Record<string, unknown>;
  }

  function checkTtl(ttlMs: number | undefined | null): number {
    const ttl = ttlMs ?? defaultTtlMs;
    if (!Number.isInteger(ttl) || ttl < 1000 || ttl > maxTtlMs) {
      throw new PlatformError('CP_API_VALIDATION', `ttlMs must be an integer from 1000 to ${maxTtlMs} (commands.maxTtlMs)`);
    }
    return ttl;
  }

  /** The zone and every zone below it in the profile's hierarchy. */
  function zoneAndBelow(zone: string): Set<string> {
    const out = new Set([zone]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const z of deps.profile.zones) {
        if (z.parent && out.has(z.parent) && !out.has(z.id)) {
          out.add(z.id);
          grew = true;
        }
      }
    }
    return out;
  }

  async function resolveTarget(target: CommandTarget, strict: boolean): Promise<Device[]> {
    if ('zone' in target) {
      if (!deps.profile.zones.some((z) => z.id === target.zone)) {
        throw new PlatformError('CP_REGISTRY_UNKNOWN_ZONE', `zone ${target.zone} is not in the city profile`);
      }
      const zones = zoneAndBelow(target.zone);
      const out: Device[] = [];
      for (const family of COMMANDABLE) out.push(...(await deps.devices.list({ family })).filter((d) => zones.has(d.zone)));
      if (out.length === 0 && strict) {
        throw new PlatformError(
          'CP_COMMAND_EMPTY_TARGET',
          `zone ${target.zone} has no device that takes commands (${COMMANDABLE.join(', ')})`,
        );
      }
      return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }
    const ids = [...new Set(target.devices)];
    if (ids.length === 0) {
      if (strict) throw new PlatformError('CP_COMMAND_EMPTY_TARGET', 'the target lists no device');
      return [];
    }
    const found = await Promise.all(ids.map((id) => deps.devices.get(id)));
    const problems: { code: ErrorCode; ids: string[]; text: string }[] = [
      { code: 'CP_REGISTRY_DEVICE_NOT_FOUND', ids: ids.filter((_, i) => !found[i]), text: 'no such device' },
      {
        code: 'CP_COMMAND_WRONG_FAMILY',
        ids: found.filter((d): d is Device => !!d && !COMMANDABLE.includes(d.family)).map((d) => `${d.id} (${d.family})`),
        text: `takes no commands (only ${COMMANDABLE.join(', ')})`,
      },
      { code: 'CP_COMMAND_DEVICE_REVOKED', ids: found.filter((d) => d?.revokedAt).map((d) => (d as Device).id), text: 'revoked' },
    ];
    const problem = problems.find((p) => p.ids.length > 0);
    if (problem && strict) {
      throw new PlatformError(problem.code, `${problem.text}: ${problem.ids.join(', ')}`, { details: problem.ids });
    }
    return found.filter((d): d is Device => !!d && COMMANDABLE.includes(d.family) && !d.revokedAt);
  }

  return { checkAction, checkTtl, resolveTarget };
}
