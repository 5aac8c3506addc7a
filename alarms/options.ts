/**
 * Options of the alarm engine (`alarms.*`): own rules, built-in rules switched off or tuned, the tick and the
 * history kept. Rules are validated by the engine's own schemas (rules.ts).
 */
import { section } from '../core/options.ts';
import { DEFAULT_RULE_IDS, RULE_OVERRIDE_SCHEMA, RULE_SCHEMA } from './rules.ts';

export const ALARMS_OPTIONS = section({
  enabled: { type: 'boolean', default: true, description: 'Evaluate alarm rules and keep alarms (dataDir/alarms.db)' },
  rules: {
    type: 'array',
    // Typed loosely here (the engine has its own types); validated in full by this schema.
    items: RULE_SCHEMA as unknown as { type: 'object' },
    default: [],
    description:
      'Own alarm rules besides the built-in ones (threshold, state, noData, rateOfChange; see docs/city-intelligence.md); JSON array in the environment',
  },
  disabled: {
    type: 'array',
    items: { type: 'string', enum: DEFAULT_RULE_IDS },
    default: [],
    description: 'Built-in rules switched off, by id (comma-separated in the environment)',
  },
  defaults: {
    type: 'object',
    propertyNames: { type: 'string', enum: DEFAULT_RULE_IDS },
    additionalProperties: RULE_OVERRIDE_SCHEMA as unknown as { type: 'object' },
    default: {},
    description:
      'Tuning of built-in rules by id, e.g. {"congestion": {"forMs": 300000}} (severity, forMs, clearForMs, value, clearValue, when, clearWhen, where, message); JSON object in the environment',
  },
  tickMs: {
    type: 'integer',
    minimum: 20,
    maximum: 60000,
    default: 1000,
    description: 'How often rule durations (forMs, clearForMs, noData periods, daylight) are checked between events, ms',
  },
  historyLimit: {
    type: 'integer',
    minimum: 100,
    default: 100000,
    description: 'Cleared alarms kept; the oldest beyond it are removed (open alarms never are)',
  },
});
