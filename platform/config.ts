/**
 * One schema for every option of the platform, assembled from the options each component declares beside
 * its code (`<component>/options.ts`) and the platform's own (options.ts). Loading follows core/options.ts:
 * an optional JSON file, environment overrides whose names derive from the schema paths (`broker.port` →
 * CITYPULSE_BROKER_PORT), defaults, coerced env strings, every error at once with its path, a deep-frozen result.
 * Components never read this module: they take plain options objects built from its result.
 */
import type { FromSchema } from 'json-schema-to-ts';
import { ALARMS_OPTIONS } from '../alarms/options.ts';
import { ANALYTICS_OPTIONS } from '../analytics/options.ts';
import { BROKER_OPTIONS } from '../broker/options.ts';
import { COMMANDS_OPTIONS } from '../commands/options.ts';
import { loadOptions, optionRows, type OptionRow, type OptionsInput } from '../core/options.ts';
import { API_OPTIONS } from '../dashboard-api/options.ts';
import { DURABILITY_OPTIONS, INFLUX_OPTIONS, INGEST_OPTIONS } from '../ingest/options.ts';
import { STATE_OPTIONS } from '../registry/options.ts';
import { SIMULATE_OPTIONS } from '../simulators/options.ts';
import { LOG_OPTIONS, PLATFORM_OPTIONS } from './options.ts';

export { ENV_PREFIX } from '../core/options.ts';

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...PLATFORM_OPTIONS,
    state: STATE_OPTIONS,
    broker: BROKER_OPTIONS,
    api: API_OPTIONS,
    influx: INFLUX_OPTIONS,
    ingest: INGEST_OPTIONS,
    durability: DURABILITY_OPTIONS,
    log: LOG_OPTIONS,
    commands: COMMANDS_OPTIONS,
    alarms: ALARMS_OPTIONS,
    analytics: ANALYTICS_OPTIONS,
    simulate: SIMULATE_OPTIONS,
  },
} as const;

export type Config = FromSchema<typeof CONFIG_SCHEMA>;

/** A partial config, as a file or a test gives it. */
export type ConfigInput = OptionsInput<Config>;

/** Every option as a flat row: path, env var, default, description (docs/configuration.md's table is built from this). */
export function describeOptions(): OptionRow[] {
  return optionRows(CONFIG_SCHEMA);
}

/**
 * Loads the configuration. Order: defaults < file (CITYPULSE_CONFIG or `file`) < environment < `overrides`.
 * Throws PlatformError CP_CONFIG_INVALID carrying every error (path and message).
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: ConfigInput } = {}): Readonly<Config> {
  return loadOptions<Config>(CONFIG_SCHEMA, opts);
}
