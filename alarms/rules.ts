/**
 * Declarative alarm rules compiled: the effective rules of a configuration (the built-in defaults, tuned and
 * minus disabled ones, then own rules), each turned into predicates over an event's fields, with every error of
 * the configuration reported at once. The rule language and its schema are in rule-schema.ts, the built-in rules
 * in default-rules.ts, condition evaluation in conditions.ts.
 */
import type { AlarmSeverity } from '../core/bus.ts';
import { PlatformError } from '../core/errors.ts';
import { checkCondition, compare, evaluate, type Fields, firstField, lookup } from './conditions.ts';
import { DEFAULT_RULE_IDS, DEFAULT_RULES } from './default-rules.ts';
import type { RuleInput, RuleSource, ThresholdOp } from './rule-schema.ts';

export { evaluate, type Fields, lookup } from './conditions.ts';
export { DEFAULT_RULE_IDS, DEFAULT_RULES, type DefaultRuleId } from './default-rules.ts';
export * from './rule-schema.ts';

/** A rule with its defaults filled in, as served by GET /api/v1/alarms/rules. */
export type EffectiveRule = RuleInput & {
  source: RuleSource;
  severity: AlarmSeverity;
  forMs: number;
  clearForMs: number;
  builtIn: boolean;
};

export interface CompiledRule {
  rule: EffectiveRule;
  where?: (f: Fields) => boolean;
  /** threshold and state: the raise and the clear conditions. */
  raise: (f: Fields) => boolean;
  clear: (f: Fields) => boolean;
  /** The alarm's value at a raise. */
  valueOf: (f: Fields) => number | boolean | string | null;
  usesDaylight: boolean;
}

export interface AlarmsRuleConfig {
  rules?: readonly RuleInput[];
  disabled?: readonly string[];
  defaults?: Readonly<Record<string, Partial<RuleInput>>>;
}

/** The effective rules: defaults (tuned, minus disabled ones) then own rules. Throws CP_CONFIG_INVALID. */
export function resolveRules(cfg: AlarmsRuleConfig): CompiledRule[] {
  const errors: string[] = [];
  const defaultIds = new Set<string>(DEFAULT_RULE_IDS);
  for (const id of cfg.disabled ?? []) if (!defaultIds.has(id)) errors.push(`alarms.disabled: ${id} is not a built-in rule`);
  for (const id of Object.keys(cfg.defaults ?? {})) if (!defaultIds.has(id)) errors.push(`alarms.defaults: ${id} is not a built-in rule`);
  const inputs: { input: RuleInput; builtIn: boolean; where: string }[] = [];
  for (const d of DEFAULT_RULES) {
    if (cfg.disabled?.includes(d.id)) continue;
    inputs.push({ input: { ...d, ...(cfg.defaults?.[d.id] ?? {}) }, builtIn: true, where: `alarms.defaults.${d.id}` });
  }
  const seen = new Set(inputs.map((i) => i.input.id));
  (cfg.rules ?? []).forEach((r, i) => {
    if (defaultIds.has(r.id)) errors.push(`alarms.rules.${i}: id ${r.id} is a built-in rule (tune it with alarms.defaults)`);
    else if (seen.has(r.id)) errors.push(`alarms.rules.${i}: duplicate id ${r.id}`);
    seen.add(r.id);
    inputs.push({ input: r, builtIn: false, where: `alarms.rules.${i}` });
  });
  const out: CompiledRule[] = [];
  for (const { input, builtIn, where } of inputs) {
    const errs: string[] = [];
    const c = compileRule(input, builtIn, errs);
    for (const e of errs) errors.push(`${where} (${input.id}): ${e}`);
    if (c && !errs.length) out.push(c);
  }
  if (errors.length) throw new PlatformError('CP_CONFIG_INVALID', `invalid alarm rules:\n  ${errors.join('\n  ')}`, { details: errors });
  return out;
}

function compileRule(input: RuleInput, builtIn: boolean, errs: string[]): CompiledRule | undefined {
  const rule: EffectiveRule = {
    ...input,
    source: input.source ?? 'reading',
    severity: input.severity ?? 'major',
    forMs: input.forMs ?? 0,
    clearForMs: input.clearForMs ?? 0,
    builtIn,
  };
  const need = (k: keyof RuleInput) => rule[k] === undefined && errs.push(`a ${rule.kind} rule needs ${k}`);
  let raise: (f: Fields) => boolean = () => false;
  let clear: (f: Fields) => boolean = () => false;
  let valueField = rule.field;
  switch (rule.kind) {
    case 'threshold': {
      need('field');
      need('op');
      need('value');
      if (errs.length) return undefined;
      const field = rule.field as string;
      const op = rule.op as ThresholdOp;
      const value = rule.value as number;
      const clearValue = rule.clearValue ?? value;
      const rising = op === '>' || op === '>=';
      if (rising ? clearValue > value : clearValue < value) {
        errs.push(`clearValue ${clearValue} must be on the normal side of value ${value} (op ${op})`);
      }
      // A missing or non-numeric field neither raises nor clears.
      raise = (f) => typeof lookup(f, field) === 'number' && compare(lookup(f, field), op, value);
      clear = (f) => typeof lookup(f, field) === 'number' && !compare(lookup(f, field), op, clearValue);
      break;
    }
    case 'state': {
      let when = rule.when;
      if (!when) {
        if (!rule.field || !rule.values) errs.push('a state rule needs when, or field and values');
        else when = { field: rule.field, op: 'in', value: rule.values };
      }
      if (!when) return undefined;
      checkCondition(when, 'when', errs);
      if (rule.clearWhen) checkCondition(rule.clearWhen, 'clearWhen', errs);
      const w = when;
      const cw = rule.clearWhen;
      raise = (f) => evaluate(w, f);
      clear = cw ? (f) => evaluate(cw, f) : (f) => !evaluate(w, f);
      valueField ??= firstField(w);
      break;
    }
    case 'noData': {
      need('periodMs');
      if (rule.source !== 'reading') errs.push('a noData rule watches readings (source reading)');
      const period = rule.periodMs as number;
      raise = (f) => (f.silentMs as number) >= period;
      clear = (f) => (f.silentMs as number) < period;
      valueField = 'silentS';
      break;
    }
    case 'rateOfChange': {
      need('field');
      need('maxPerMinute');
      if (rule.source !== 'reading') errs.push('a rateOfChange rule watches readings (source reading)');
      const max = rule.maxPerMinute as number;
      const clearMax = rule.clearPerMinute ?? max;
      if (clearMax > max) errs.push('clearPerMinute must not exceed maxPerMinute');
      const dir = rule.direction ?? 'both';
      const signed = (r: number) => (dir === 'up' ? r : dir === 'down' ? -r : Math.abs(r));
      raise = (f) => typeof f.ratePerMinute === 'number' && signed(f.ratePerMinute) > max;
      clear = (f) => typeof f.ratePerMinute === 'number' && signed(f.ratePerMinute) <= clearMax;
      valueField = 'ratePerMinute';
      break;
    }
    default:
      errs.push(`unknown kind ${String(rule.kind)}`);
      return undefined;
  }
  if (rule.where) checkCondition(rule.where, 'where', errs);
  if (rule.source === 'aqi' && rule.family) errs.push('family applies to reading and status rules');
  if (rule.source !== 'aqi' && rule.scope) errs.push('scope applies to aqi rules');
  const where = rule.where;
  const usesDaylight = JSON.stringify([input.when, input.clearWhen, input.where, input.field]).includes('"daylight"');
  return {
    rule,
    where: where && ((f) => evaluate(where, f)),
    raise,
    clear,
    valueOf: (f) => {
      const v = valueField === undefined ? undefined : lookup(f, valueField);
      return typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean' ? v : null;
    },
    usesDaylight,
  };
}
