/**
 * The language of alarm rules: kinds, sources, operators, the shape of a rule as written in config (RuleInput,
 * Condition) and its JSON Schema (part of the platform config, `alarms.rules` and `alarms.defaults`).
 *
 * Conditions are a comparison `{ field, op, value }` or `{ all: [...] }` / `{ any: [...] }` of comparisons
 * (two levels deep). A field missing from the event makes every comparison false except `!=`, `notIn` and
 * `missing` (a missing value equals nothing). Field names: a reading's flat fields plus the virtual boolean
 * `daylight`; a status event's `state` ('online' | 'offline') and `online`; an AQI event's paths such as
 * `vn.level`, `vn.aqi`, `epa.level`, `period`, `scope`.
 */
import { FAMILIES, type Family } from '../core/contract.ts';
import type { AlarmSeverity } from '../core/bus.ts';

export const RULE_KINDS = ['threshold', 'state', 'noData', 'rateOfChange'] as const;
export const RULE_SOURCES = ['reading', 'status', 'aqi'] as const;
export const SEVERITIES = ['critical', 'major', 'minor', 'warning'] as const;
export const COMPARE_OPS = ['==', '!=', '>', '>=', '<', '<=', 'in', 'notIn', 'exists', 'missing'] as const;
export const THRESHOLD_OPS = ['>', '>=', '<', '<='] as const;
export const RULE_ID_PATTERN = '^[a-z0-9][a-z0-9-]{0,63}$';

export type RuleKind = (typeof RULE_KINDS)[number];
export type RuleSource = (typeof RULE_SOURCES)[number];
export type CompareOp = (typeof COMPARE_OPS)[number];
export type ThresholdOp = (typeof THRESHOLD_OPS)[number];
export type Scalar = number | string | boolean;
export interface Comparison {
  field: string;
  op: CompareOp;
  value?: Scalar | Scalar[];
}
export type Condition = Comparison | { all: Condition[] } | { any: Condition[] };

/** A rule as written in config (every field but id and kind optional; the kind says which apply). */
export interface RuleInput {
  id: string;
  kind: RuleKind;
  /** What the rule watches (default 'reading'; noData rules watch readings only). */
  source?: RuleSource;
  /** Only devices of this family (reading and status sources). */
  family?: Family;
  /** AQI source: station or zone indices (default station). */
  scope?: 'station' | 'zone';
  /** Only events matching this condition are looked at (e.g. `{ field: 'period', op: '==', value: 'hour' }`). */
  where?: Condition;
  severity?: AlarmSeverity;
  description?: string;
  /** Alarm message; `{field}` is replaced by the field's value at the raise. */
  message?: string;
  /** threshold and rateOfChange: the field; state: shorthand with `values`, and the alarm's value. */
  field?: string;
  /** threshold: comparison of `field` with `value`. */
  op?: ThresholdOp;
  value?: number;
  /** threshold: the alarm clears once `field op clearValue` no longer holds (hysteresis); default `value`. */
  clearValue?: number;
  /** state: `field` equals one of these. */
  values?: Scalar[];
  /** state: the raise condition (instead of field/values). */
  when?: Condition;
  /** state: the clear condition; default: the raise condition no longer holds. */
  clearWhen?: Condition;
  /** noData: no reading from a device for this long, ms. */
  periodMs?: number;
  /** rateOfChange: raised when the field changes faster than this per minute (between consecutive readings). */
  maxPerMinute?: number;
  /** rateOfChange: cleared when the change is at most this per minute (default maxPerMinute). */
  clearPerMinute?: number;
  /** rateOfChange: 'up' (rises), 'down' (falls) or 'both' (default). */
  direction?: 'up' | 'down' | 'both';
  /** The condition must hold this long before the alarm is raised, ms (default 0). */
  forMs?: number;
  /** The clear condition must hold this long before the alarm is cleared, ms (default 0). */
  clearForMs?: number;
}

const num = { type: 'number' } as const;
const str = { type: 'string', maxLength: 200 } as const;
const bool = { type: 'boolean' } as const;
const scalar = { anyOf: [num, str, bool] } as const;
const comparisonSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['field', 'op'],
  properties: {
    field: { type: 'string', minLength: 1, maxLength: 100 },
    op: { type: 'string', enum: COMPARE_OPS },
    value: { anyOf: [num, str, bool, { type: 'array', maxItems: 50, items: scalar }] },
  },
} as const;
const group = <T extends object>(items: T) =>
  ({
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    maxProperties: 1,
    properties: {
      all: { type: 'array', minItems: 1, maxItems: 50, items },
      any: { type: 'array', minItems: 1, maxItems: 50, items },
    },
  }) as const;
/** A comparison, or all/any of comparisons and all/any groups of comparisons. */
export const CONDITION_SCHEMA = {
  description: 'A comparison { field, op, value }, or { all: [...] } / { any: [...] } of them (two levels deep)',
  anyOf: [comparisonSchema, group({ anyOf: [comparisonSchema, group(comparisonSchema)] })],
} as const;

const ms = { type: 'integer', minimum: 0, maximum: 31_536_000_000 } as const;
const TUNABLE_PROPERTIES = {
  where: CONDITION_SCHEMA,
  severity: { type: 'string', enum: SEVERITIES },
  description: { type: 'string', maxLength: 500 },
  message: { type: 'string', maxLength: 300 },
  field: { type: 'string', minLength: 1, maxLength: 100 },
  op: { type: 'string', enum: THRESHOLD_OPS },
  value: num,
  clearValue: num,
  values: { type: 'array', minItems: 1, maxItems: 50, items: scalar },
  when: CONDITION_SCHEMA,
  clearWhen: CONDITION_SCHEMA,
  periodMs: { ...ms, minimum: 1 },
  maxPerMinute: { type: 'number', minimum: 0 },
  clearPerMinute: { type: 'number', minimum: 0 },
  direction: { type: 'string', enum: ['up', 'down', 'both'] },
  forMs: ms,
  clearForMs: ms,
} as const;

/** One rule of `alarms.rules` (kind-specific requirements are checked when the rules are compiled). */
export const RULE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'kind'],
  properties: {
    id: { type: 'string', pattern: RULE_ID_PATTERN },
    kind: { type: 'string', enum: RULE_KINDS },
    source: { type: 'string', enum: RULE_SOURCES },
    family: { type: 'string', enum: FAMILIES },
    scope: { type: 'string', enum: ['station', 'zone'] },
    ...TUNABLE_PROPERTIES,
  },
} as const;

/** What `alarms.defaults.<id>` may change in a built-in rule. */
export const RULE_OVERRIDE_SCHEMA = { type: 'object', additionalProperties: false, properties: TUNABLE_PROPERTIES } as const;
