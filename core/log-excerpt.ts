/**
 * Client-supplied strings (MQTT client ids, usernames, topics, URLs) are logged as bounded excerpts: a client
 * must not make each refused attempt write as much log as it sends (an MQTT client id may be 65,535 bytes).
 */

/** Longest client-supplied string written to the log, characters. */
export const LOG_EXCERPT_CHARS = 128;

/** `value` cut to `max` characters, with a marker of its full length; other values as they are. */
export function excerpt<T extends string | null | undefined>(value: T, max = LOG_EXCERPT_CHARS): T | string {
  if (typeof value !== 'string' || value.length <= max) return value;
  return `${value.slice(0, max)}…[${value.length} chars]`;
}
