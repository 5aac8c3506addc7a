/**
 * How options are declared and loaded. Each component declares its options beside its code as JSON Schema
 * sections built with these helpers (`section`, `port`, ...); the platform assembles them into one schema
 * (platform/config.ts). `loadOptions` reads that schema's values from a JSON file, the environment (names
 * derived from the option paths: `broker.port` → CITYPULSE_BROKER_PORT) and overrides, fills defaults,
 * coerces env strings, reports every error at once with its path, and returns a deep-frozen object.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import { PlatformError } from './errors.ts';

export const ENV_PREFIX = 'CITYPULSE_';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** A group of options: an object of named options, each taking its default when absent. */
export function section<const P extends Record<string, unknown>>(properties: P) {
  return { type: 'object', additionalProperties: false, default: {}, properties } as const;
}

/** A TCP port option (0 = any free port). */
export const port = (description: string, def: number) =>
  ({ type: 'integer', minimum: 0, maximum: 65535, default: def, description }) as const;

/** The log level of one component; empty = log.level. */
export const componentLevel = (name: string) =>
  ({ type: 'string', enum: [...LOG_LEVELS, ''], default: '', description: `Log level of ${name}; empty = log.level` }) as const;

/** A schema of options: sections of options, nested to any depth. */
export interface OptionsSchema {
  readonly type: 'object';
  readonly properties: Readonly<Record<string, unknown>>;
}

/** One option as a flat row: path, env var, default, description (docs/configuration.md is built from these). */
export interface OptionRow {
  path: string;
  env: string;
  default: unknown;
  description: string;
}

/** Options as a file, a test or a caller gives them: any part of any section. */
export type OptionsInput<T> = { [K in keyof T]?: DeepPartial<T[K]> };
type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/** Every option of `schema` as a flat row, in the schema's order. */
export function optionRows(schema: OptionsSchema): OptionRow[] {
  const rows: OptionRow[] = [];
  const walk = (props: Record<string, any>, prefix: string[]) => {
    for (const [key, s] of Object.entries(props)) {
      const p = [...prefix, key];
      if (s.type === 'object' && s.properties) walk(s.properties, p);
      else rows.push({ path: p.join('.'), env: envName(p), default: s.default, description: s.description });
    }
  };
  walk(schema.properties, []);
  return rows;
}

function envName(p: string[]): string {
  return ENV_PREFIX + p.map((k) => k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

/**
 * Loads the values of `schema`. Order: defaults < file (CITYPULSE_CONFIG or `file`) < environment < `overrides`.
 * Throws PlatformError CP_CONFIG_INVALID carrying every error (path and message). `T` is the type the caller
 * derives from `schema`.
 */
export function loadOptions<T>(
  schema: OptionsSchema,
  opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: OptionsInput<T> } = {},
): Readonly<T> {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env[`${ENV_PREFIX}CONFIG`];
  let data: Record<string, any> = {};
  if (file) {
    try {
      data = JSON.parse(readFileSync(path.resolve(file), 'utf8'));
    } catch (err) {
      throw new PlatformError('CP_CONFIG_FILE', `cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  const rows = optionRows(schema);
  const unknownEnv: string[] = [];
  const badJsonEnv: string[] = [];
  const known = new Map(rows.map((o) => [o.env, o.path]));
  const lists = new Set(rows.filter((o) => Array.isArray(o.default)).map((o) => o.path));
  // List and object options also take JSON in the environment (a value starting with [ or {).
  const structured = new Set(rows.filter((o) => o.default !== null && typeof o.default === 'object').map((o) => o.path));
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || name === `${ENV_PREFIX}CONFIG` || value === undefined) continue;
    const p = known.get(name);
    if (!p) {
      unknownEnv.push(name);
      continue;
    }
    if (structured.has(p) && /^\s*[[{]/.test(value)) {
      try {
        setPath(data, p.split('.'), JSON.parse(value));
      } catch (err) {
        badJsonEnv.push(`${name}: not valid JSON (${(err as Error).message})`);
      }
      continue;
    }
    // A list option takes a comma-separated value in the environment.
    setPath(
      data,
      p.split('.'),
      lists.has(p)
        ? value
            .split(',')
            .map((v) => v.trim())
            .filter(Boolean)
        : value,
    );
  }
  for (const [section, values] of Object.entries(opts.overrides ?? {})) {
    data[section] = merge(data[section], values); // nested sections too (broker.tls)
  }
  const ajv = new Ajv({ allErrors: true, useDefaults: true, coerceTypes: true, strict: true });
  const validate = ajv.compile(schema);
  const errors: string[] = [...unknownEnv.map((n) => `${n}: unknown environment variable`), ...badJsonEnv];
  if (!validate(data)) {
    for (const e of validate.errors ?? []) {
      const where = e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : '(root)';
      const extra = e.keyword === 'additionalProperties' ? ` '${(e.params as any).additionalProperty}'` : '';
      errors.push(`${where}: ${e.message}${extra}`);
    }
  }
  if (errors.length) {
    throw new PlatformError('CP_CONFIG_INVALID', `invalid configuration:\n  ${errors.join('\n  ')}`, { details: errors });
  }
  return deepFreeze(data as T);
}

const isPlain = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** `over` merged into a copy of `base`, objects recursively (the caller's objects are never filled or frozen). */
function merge(base: unknown, over: unknown): unknown {
  if (!isPlain(over)) return over;
  const out: Record<string, unknown> = isPlain(base) ? { ...base } : {};
  for (const [k, v] of Object.entries(over)) out[k] = merge(out[k], v);
  return out;
}

function setPath(obj: Record<string, any>, p: string[], value: unknown): void {
  let o = obj;
  for (const k of p.slice(0, -1)) o = o[k] ??= {};
  o[p[p.length - 1] as string] = value;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
