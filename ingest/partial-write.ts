/**
 * What an InfluxDB "partial write" answer (HTTP 400) says about a batch: the points its message names (a field
 * type conflict names measurement and field, a parse error quotes the line) and how many points InfluxDB dropped
 * in all. When it dropped more than it named, the rest of the batch is not known to be stored.
 */
import { CUT } from './influx-http.ts';

/** The named points of `batch`, and the count dropped (infinite when the message was cut: unknown). */
export function readPartialWrite<P extends { line: string }>(batch: P[], reason: string): { bad: P[]; dropped: number } {
  const conflict = /input field \\?"([^"\\]+)\\?" on measurement \\?"([^"\\]+)\\?"/.exec(reason);
  const quoted = [...reason.matchAll(/unable to parse '([^']*)'/g)].map((m) => m[1]);
  const unparsed = new Set(quoted);
  const field = conflict ? new RegExp(`[ ,]${escapeRegExp(conflict[1] as string)}=`) : undefined;
  const bad = batch.filter(
    (p) => unparsed.has(p.line) || (conflict && field && p.line.startsWith(`${conflict[2]},`) && field.test(p.line)),
  );
  const droppedText = /dropped=(\d+)/.exec(reason)?.[1];
  // Parse errors come with dropped=0 in InfluxDB 1.6, and a quoted line may not be found (a quote in it, a
  // message cut at its length limit): then the rest is not known to be stored either.
  const parseErrors = (reason.match(/unable to parse/g) ?? []).length;
  const dropped = reason.endsWith(CUT)
    ? Number.POSITIVE_INFINITY
    : Math.max(droppedText === undefined ? 0 : Number(droppedText), parseErrors, bad.length);
  return { bad, dropped };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
