/** Public face of commands: commands to devices with their lifecycle, and schedules that create them. */
export { createCommands } from './commands.ts';
export type {
  BatchFilter,
  BatchSummary,
  CommandFilter,
  CommandRequest,
  Commands,
  CommandsDeps,
  CommandsOptions,
  CommandTarget,
  CommandTransport,
  Schedule,
  ScheduleRequest,
} from './commands.ts';
export { BATCH_ACTIONS, BATCH_OUTCOMES, SqliteCommandStore } from './store.ts';
export type { CommandStore, NewCommand } from './store.ts';
export { COMMANDS_CHANNEL, COMMANDS_COMPONENT, COMMANDS_MIGRATIONS, PgCommandStore } from './pg-store.ts';
export { SCHEDULE_LOCK_SQL } from './leader.ts';
export { formatTimeOfDay, latestEdge, parseTimeOfDay, TIME_OF_DAY_PATTERN } from './time-of-day.ts';
