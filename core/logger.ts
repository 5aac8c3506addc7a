/**
 * Structured JSON logs (pino) with one child logger per component and a level per component.
 *
 * No credential reaches a log line, at any level, in three layers:
 * - `redact`: values of keys such as `password` and `authorization` (and `headers.authorization`) are replaced;
 * - the `err` serializer drops what an error carries of its request or response: the `influx` client's
 *   RequestError holds the whole ClientRequest, whose header text has `Authorization: Basic …`;
 * - every finished line is scrubbed (`scrubSecrets`): Basic and Bearer credentials, `p=`/`u=`/`password=` in
 *   query strings, a password in a URL's user info, JSON members named like a secret, and the literal secrets
 *   the platform registers (`addSecrets`: the InfluxDB password and its Basic form, the service token).
 */
import { destination, pino, stdSerializers, type DestinationStream, type Logger } from 'pino';

export type { Logger };
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

const REDACTED = '[redacted]';

/** Keys whose values are never logged (pino redact paths: top level and one level down). */
const REDACT_PATHS = ['password', 'authorization', 'token', 'secret', 'headers.authorization', 'headers.Authorization'].flatMap((k) => [
  k,
  `*.${k}`,
]);

/** Properties of an error that hold a request, a response or their options (with their headers). */
const REQUEST_KEYS = new Set(['req', 'res', 'request', 'response', 'config', 'options', 'headers', 'socket', 'agent']);

type SerializedError = Record<string, unknown> & { aggregateErrors?: unknown[] };

function withoutRequests(s: unknown, depth = 0): unknown {
  if (!s || typeof s !== 'object' || depth > 4) return s;
  const e = s as SerializedError;
  for (const k of Object.keys(e)) {
    if (REQUEST_KEYS.has(k)) delete e[k];
    else if (e[k] && typeof e[k] === 'object' && 'message' in (e[k] as object)) withoutRequests(e[k], depth + 1);
  }
  if (Array.isArray(e.aggregateErrors)) for (const a of e.aggregateErrors) withoutRequests(a, depth + 1);
  return e;
}

/** pino's error serializer, without the request or response an error may carry. */
export function serializeError(err: unknown): unknown {
  return withoutRequests(stdSerializers.err(err as Error));
}

const PATTERNS: [RegExp, string][] = [
  // HTTP credentials: `Authorization: Basic dXNlcjpwYXNz`, `Bearer <token>` (also URL-encoded spaces).
  [/\b(Basic|Bearer)(\s+|%20|\+)[A-Za-z0-9+/=._~-]{6,}/gi, `$1$2${REDACTED}`],
  // Credentials in query strings: the InfluxDB v1 API takes `u=` and `p=`.
  [/([?&](?:u|p|password|passwd|token|access_token|api_key|apikey|secret)=)[^&\s"'\\#]*/gi, `$1${REDACTED}`],
  // A URL's user info: scheme://user:password@host.
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^/\s:@"'\\]*:)[^@\s/"'\\]+@/gi, `$1${REDACTED}@`],
  // JSON members named like a secret, and the same inside a string that holds JSON (escaped quotes).
  [/"(password|passwd|secret|authorization|token|adminToken|initialAdminPassword)"(\s*:\s*)"(?:[^"\\]|\\.)*"/gi, `"$1"$2"${REDACTED}"`],
  [
    /\\"(password|passwd|secret|authorization|token|adminToken|initialAdminPassword)\\"(\s*:\s*)\\"(?:(?!\\")[^"])*\\"/gi,
    `\\"$1\\"$2\\"${REDACTED}\\"`,
  ],
  // Text such as `password=secret` or `password: secret`.
  [/\b(password|passwd)(\s*[=:]\s*)(?!\\?")[^\s,;&"'\\]+/gi, `$1$2${REDACTED}`],
];

/**
 * A log line (or any text) without credentials: see the module comment. `literal` are exact secrets to
 * replace wherever they appear (as given, JSON-escaped and URL-encoded).
 */
export function scrubSecrets(text: string, literal: Iterable<string> = []): string {
  let out = text;
  for (const s of literal) if (out.includes(s)) out = out.split(s).join(REDACTED);
  for (const [re, to] of PATTERNS) out = out.replace(re, to);
  return out;
}

/** Secrets shorter than this are not replaced literally (they would hit ordinary words); the patterns still apply. */
const MIN_LITERAL_SECRET = 6;

/**
 * Creates the root logger and a factory for component loggers (`{"component":"ingest",...}`).
 * `levels` maps a component name to its own level; an empty or missing entry uses `level`.
 * `addSecrets` registers exact secrets that are replaced in every line from then on.
 */
export function createLogger(opts: {
  level: LogLevel;
  levels?: Partial<Record<string, LogLevel | ''>>;
  destination?: DestinationStream;
  secrets?: readonly (string | undefined)[];
}): {
  root: Logger;
  forComponent(name: string): Logger;
  addSecrets(...secrets: (string | undefined)[]): void;
} {
  const literal = new Set<string>();
  const addSecrets = (...secrets: (string | undefined)[]) => {
    for (const s of secrets) {
      if (!s || s.length < MIN_LITERAL_SECRET) continue;
      literal.add(s);
      literal.add(JSON.stringify(s).slice(1, -1));
      literal.add(encodeURIComponent(s));
    }
  };
  addSecrets(...(opts.secrets ?? []));
  const root = pino(
    {
      level: opts.level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      serializers: { err: serializeError },
      hooks: { streamWrite: (line) => scrubSecrets(line, literal) },
    },
    opts.destination ?? destination(1),
  );
  return {
    root,
    forComponent(name) {
      const level = opts.levels?.[name] || opts.level;
      return root.child({ component: name }, { level });
    },
    addSecrets,
  };
}

/** A logger that writes nothing: the default when a factory is built alone in a test. */
export const silentLogger: Logger = pino({ level: 'silent' });
