/**
 * Structured JSON logs (pino) with one child logger per component and a level per component.
 */
import { destination, pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * Creates the root logger and a factory for component loggers (`{"component":"ingest",...}`).
 * `levels` maps a component name to its own level; an empty or missing entry uses `level`.
 */
export function createLogger(opts: { level: LogLevel; levels?: Partial<Record<string, LogLevel | ''>>; destination?: DestinationStream }): {
  root: Logger;
  forComponent(name: string): Logger;
} {
  const root = pino({ level: opts.level, base: { pid: process.pid } }, opts.destination ?? destination(1));
  return {
    root,
    forComponent(name) {
      const level = opts.levels?.[name] || opts.level;
      return root.child({ component: name }, { level });
    },
  };
}

/** A logger that writes nothing: the default when a factory is built alone in a test. */
export const silentLogger: Logger = pino({ level: 'silent' });
