/**
 * Coded errors of every area, CP_<AREA>_<WHAT>. Each code is documented in docs/api.md (a test checks it).
 * Codes are never reused for another meaning; a retired code stays listed here with `retired: true`.
 */
export const ERROR_CODES = {
  CP_CONFIG_FILE: { status: 500, text: 'The configuration file cannot be read or parsed' },
  CP_CONFIG_INVALID: { status: 500, text: 'The configuration breaks its schema (every error is listed)' },
  CP_REGISTRY_DEVICE_EXISTS: { status: 409, text: 'A device with this id is already provisioned' },
  CP_REGISTRY_DEVICE_NOT_FOUND: { status: 404, text: 'No device with this id' },
  CP_REGISTRY_UNKNOWN_ZONE: { status: 400, text: 'The zone is not in the city profile' },
  CP_REGISTRY_OPERATOR_EXISTS: { status: 409, text: 'An operator with this username already exists' },
  CP_REGISTRY_OPERATOR_NOT_FOUND: { status: 404, text: 'No operator with this username' },
  CP_STATE_UNAVAILABLE: {
    status: 503,
    text: 'Cluster mode: the shared state database (PostgreSQL) refused the connection or did not answer within state.queryTimeoutMs; retry later',
  },
  CP_INGEST_BAD_JSON: { status: 400, text: 'The telemetry payload is not valid UTF-8 JSON' },
  CP_INGEST_BAD_SHAPE: { status: 400, text: 'The payload is neither a reading object nor an array of them' },
  CP_INGEST_TOO_MANY_READINGS: { status: 400, text: 'The array carries more readings than ingest.maxReadingsPerMessage' },
  CP_INGEST_INVALID_READING: { status: 400, text: "A reading breaks its family's schema (the reason names the field)" },
  CP_INGEST_RATE_LIMITED: {
    status: 429,
    text: "Readings over the device's rate limit (ingest.maxReadingsPerSecond, burst ingest.readingsBurst)",
  },
  CP_INGEST_STORE_REJECTED: { status: 400, text: 'InfluxDB refused the point (for example a field type conflict)' },
  CP_INGEST_LOG_UNREADABLE: {
    status: 500,
    text: 'Cluster mode: a message in a replicated log queue is not a batch of readings this platform wrote; kept as a dead letter, never retried',
  },
  CP_INGEST_BUFFER_OVERFLOW: {
    status: 503,
    text: 'The InfluxDB writer used alone (without the durable log) dropped its oldest buffered points',
  },
  CP_API_VALIDATION: { status: 400, text: 'The request breaks its schema (the details list every error)' },
  CP_API_UNAUTHORIZED: { status: 401, text: 'A bearer token is required, or the one given is wrong, expired or ended' },
  CP_API_FORBIDDEN: { status: 403, text: "The operator's role is below the one the route needs" },
  CP_API_RATE_LIMITED: { status: 429, text: 'Too many failed logins from this address or for this username (see Retry-After)' },
  CP_API_NOT_FOUND: { status: 404, text: 'No such route or resource' },
  CP_API_INTERNAL: { status: 500, text: 'An unexpected error; logged on the server, never shown to the client' },
  CP_API_LIVE_UNBATCHED_BUSY: {
    status: 429,
    text: 'socket.io: the platform already sends api.maxUnbatchedFramesPerSecond frames a second to sockets without batching; connect with auth.batch: true, or subscribe to one device',
  },
  CP_ALARM_NOT_FOUND: { status: 404, text: 'No alarm with this id' },
  CP_ALARM_WRONG_STATE: {
    status: 409,
    text: 'The alarm is not in a state that allows this (only an active alarm can be acknowledged; a cleared one cannot be cleared)',
  },
  CP_COMMAND_BAD_ACTION: {
    status: 400,
    text: 'The action breaks the command schema of the device family (or switches off with an illuminanceLevel above 0)',
  },
  CP_COMMAND_WRONG_FAMILY: { status: 400, text: 'A target device is of a family that takes no commands (only streetLight does)' },
  CP_COMMAND_EMPTY_TARGET: { status: 400, text: 'The target names no device (for example a zone without street lights)' },
  CP_COMMAND_DEVICE_REVOKED: { status: 409, text: 'A target device is revoked: it can never receive a command' },
  CP_COMMAND_NOT_FOUND: { status: 404, text: 'No command with this id (to a device: its ack names an unknown command)' },
  CP_COMMAND_BAD_ACK: { status: 400, text: 'A device’s ack breaks its schema (sent to the device on devices/{id}/errors)' },
  CP_COMMAND_SCHEDULE_NOT_FOUND: { status: 404, text: 'No schedule with this id' },
  CP_COMMAND_BAD_SCHEDULE: { status: 400, text: 'The schedule is not usable (for example from equals to)' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class PlatformError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: unknown;
  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; details?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'PlatformError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.details = opts.details;
  }
}
