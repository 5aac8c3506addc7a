/**
 * The process's file descriptors, shared out at start: MQTT connections (broker.maxConnections, all
 * listeners), connections to the API port (api.maxConnections) and the platform's own files and sockets
 * (DESCRIPTOR_HEADROOM). With the three within the open-file limit (RLIMIT_NOFILE), a flood on one port
 * cannot take the descriptors of the other: each is refused by its own cap first.
 */
import { readFileSync } from 'node:fs';
import { PlatformError } from '../core/errors.ts';

/**
 * Descriptors kept for everything that is not a client connection: SQLite files, durable log segments,
 * requests to InfluxDB, pipes of a local InfluxDB, stdio. A started platform holds ~60.
 */
export const DESCRIPTOR_HEADROOM = 500;

/** The fewest MQTT connections a lowered broker.maxConnections may keep; with less room start fails. */
export const MIN_BROKER_CONNECTIONS = 100;

/**
 * The open-file limit of this process (the soft RLIMIT_NOFILE, which Node raises to the hard one at start),
 * read from /proc/self/limits; undefined where that file is missing (not Linux) or says unlimited.
 */
export function openFileLimit(file = '/proc/self/limits'): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  const n = m ? Number(m[1]) : Number.NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

export interface DescriptorBudget {
  /** broker.maxConnections to use: as configured, or lowered to fit the limit. */
  brokerMaxConnections: number;
  /** Set when broker.maxConnections was lowered: why, for the log. */
  lowered?: { configured: number; limit: number; apiMaxConnections: number; headroom: number };
}

/**
 * Fits api.maxConnections + broker.maxConnections + headroom into `limit`: when they do not fit, the broker's
 * cap is lowered to what is left (the API's cap is small and kept); when not even MIN_BROKER_CONNECTIONS are
 * left, throws CP_CONFIG_INVALID. An unknown limit leaves both as configured.
 */
export function fitDescriptorBudget(o: {
  limit: number | undefined;
  apiMaxConnections: number;
  brokerMaxConnections: number;
  headroom?: number;
}): DescriptorBudget {
  const headroom = o.headroom ?? DESCRIPTOR_HEADROOM;
  if (o.limit === undefined || o.apiMaxConnections + o.brokerMaxConnections + headroom <= o.limit) {
    return { brokerMaxConnections: o.brokerMaxConnections };
  }
  const left = o.limit - headroom - o.apiMaxConnections;
  if (left < MIN_BROKER_CONNECTIONS) {
    throw new PlatformError(
      'CP_CONFIG_INVALID',
      `the process may open ${o.limit} files (RLIMIT_NOFILE): too few for api.maxConnections (${o.apiMaxConnections}), ${headroom} for the platform's own files and at least ${MIN_BROKER_CONNECTIONS} MQTT connections. Raise the limit (ulimit -n, systemd LimitNOFILE=) or lower api.maxConnections`,
      { details: [`open-file limit ${o.limit} < api.maxConnections ${o.apiMaxConnections} + ${headroom} + ${MIN_BROKER_CONNECTIONS}`] },
    );
  }
  return {
    brokerMaxConnections: left,
    lowered: { configured: o.brokerMaxConnections, limit: o.limit, apiMaxConnections: o.apiMaxConnections, headroom },
  };
}
