/**
 * Where the platform's shared state lives (`state.*`): devices, operators, sessions, the audit log and dead
 * letters. One node keeps them in SQLite files in dataDir (the default); the nodes of a cluster share one
 * PostgreSQL database (docs/cluster-state.md).
 */
import { section } from '../core/options.ts';

export const STATE_OPTIONS = section({
  postgresUrl: {
    type: 'string',
    pattern: '^(postgres(ql)?://.+)?$',
    default: '',
    description:
      'PostgreSQL URL (postgres://user:password@host:port/database) whose database the nodes of a cluster share: devices, operators, sessions, audit log, dead letters, commands and their schedules; empty = SQLite files in dataDir (one node). The password is never logged',
  },
  queryTimeoutMs: {
    type: 'integer',
    // Below 100 ms a busy but healthy server would be taken for a failed one; above a minute a login or a
    // device's CONNECT would outwait its client.
    minimum: 100,
    maximum: 60000,
    default: 5000,
    description:
      'A PostgreSQL query, or getting a connection, not answered within this is given up: the API answers 503 CP_STATE_UNAVAILABLE, a connecting device CONNACK 3, ms',
  },
  poolSize: {
    type: 'integer',
    minimum: 1,
    maximum: 100,
    default: 10,
    description: 'PostgreSQL connections each node keeps at most (the server allows max_connections across all nodes)',
  },
});
