/** Options of commands to devices and their schedules (`commands.*`): time to live, checks and history kept. */
import { section } from '../core/options.ts';

export const COMMANDS_OPTIONS = section({
  defaultTtlMs: {
    type: 'integer',
    minimum: 1000,
    default: 3600000,
    description: 'A command not acknowledged within this time (from its creation) expires, ms; a request may give its own ttlMs',
  },
  maxTtlMs: {
    type: 'integer',
    minimum: 1000,
    default: 604800000,
    description: 'Longest ttlMs a command request or schedule may ask for, ms',
  },
  expiryCheckMs: {
    type: 'integer',
    minimum: 50,
    maximum: 60000,
    default: 1000,
    description: 'How often commands past their expiresAt are marked expired, ms',
  },
  scheduleTickMs: {
    type: 'integer',
    minimum: 50,
    maximum: 60000,
    default: 1000,
    description: 'How often schedules are checked for an edge (from/to time passed), ms; schedules take HH:MM or HH:MM:SS',
  },
  leaderRetryMs: {
    type: 'integer',
    minimum: 100,
    maximum: 60000,
    default: 2000,
    description:
      'Cluster mode (state.postgresUrl): how often a node asks for the lock of the schedule runner, and the runner checks it still holds it, ms; a dead runner is replaced within about this time',
  },
  historyLimit: {
    type: 'integer',
    minimum: 1000,
    default: 100000,
    description: 'Finished commands (acknowledged, failed, expired) kept; the oldest beyond it are removed',
  },
});
