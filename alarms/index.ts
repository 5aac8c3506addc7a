/**
 * Public face of the alarm engine: declarative rules over readings, device statuses and AQI
 * indices; alarms with a lifecycle (active → acknowledged → cleared), kept in SQLite (one node) or the cluster's
 * PostgreSQL, and streamed on the bus.
 */
export { createAlarms } from './engine.ts';
export type { Alarms, AlarmsDeps, AlarmsOptions } from './engine.ts';
export {
  COMPARE_OPS,
  CONDITION_SCHEMA,
  DEFAULT_RULE_IDS,
  DEFAULT_RULES,
  evaluate,
  resolveRules,
  RULE_KINDS,
  RULE_OVERRIDE_SCHEMA,
  RULE_SCHEMA,
  RULE_SOURCES,
  SEVERITIES,
} from './rules.ts';
export type { CompiledRule, Condition, DefaultRuleId, EffectiveRule, RuleInput } from './rules.ts';
export { ALARM_SORTS, SqliteAlarmStore } from './store.ts';
export type { AlarmFilter, AlarmNote, AlarmSort, AlarmStore, NewAlarm } from './store.ts';
export { ALARM_CHANNEL, ALARM_COMPONENT, ALARM_MIGRATIONS, PgAlarmStore } from './pg-store.ts';
