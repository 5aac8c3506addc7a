/**
 * Options, dependencies and events of the broker, in a file of their own so that the broker's parts
 * (device-auth.ts, ack-order.ts, sessions.ts) and its wiring (broker.ts) share them without importing each other.
 */
import type { Delivery, DeviceMeta } from '../ingest/index.ts';
import type { LiveBus } from '../core/bus.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { DeviceStore } from '../registry/index.ts';
import type { LIMIT_DEFAULTS } from './connection-guard.ts';

export interface BrokerOptions {
  host: string;
  /** 0 = any free port. */
  port: number;
  drainTimeoutMs: number;
  /** Connections held at most (all listeners). Default LIMIT_DEFAULTS. */
  maxConnections?: number;
  /** Connection attempts per source address per window; 0 = no limit. */
  maxConnectionAttemptsPerAddress?: number;
  connectionAttemptWindowMs?: number;
  /** Largest MQTT packet accepted, bytes; a larger one closes the connection. */
  maxPacketBytes?: number;
  /** Largest keepalive a client may ask for, s; a larger one is closed without CONNACK. */
  maxKeepaliveSeconds?: number;
  /** A connection with keepalive 0 (keep-alive off) is closed after this long without a packet from it, s. */
  idleTimeoutSeconds?: number;
  /**
   * Lab mode (conformance suites, tools): clients that are not devices may connect anonymously and publish and
   * subscribe on any topic. Devices keep their rules and their telemetry is still ingested; a provisioned
   * device's id (as username or client id) still needs its token. Never in production.
   */
  labMode?: boolean;
  /** Subscription filters refused (SUBACK 0x80) to lab tools, as conformance suites expect. Default none. */
  labRefusedTopics?: readonly string[];
  /** MQTT over TLS on `host` (broker/listeners.ts); certFile and keyFile empty = self-signed in tlsSelfSignedDir. */
  tls?: { enabled: boolean; port: number; certFile: string; keyFile: string; caFile?: string; requireClientCert?: boolean };
  tlsSelfSignedDir?: string;
  /**
   * Behind the edge proxy: every connection of the TCP listener must start with a PROXY v2 header from one of
   * `trustedPeers` (addresses or CIDR networks), else it is closed; the device's address in it is the one the
   * limits and logs use. Off by default. The TLS listener and MQTT over WebSocket are not affected here (the
   * latter takes the API port's address: api.proxyProtocol).
   */
  proxyProtocol?: { enabled: boolean; trustedPeers: readonly string[] };
  /** A PROXY header not complete within this time closes the connection, ms (default PROXY_HEADER_TIMEOUT_MS). */
  proxyHeaderTimeoutMs?: number;
  /**
   * Several broker nodes: the Redis (redis://host:port) through which a device connecting to this node closes
   * its older connection on another (cluster-takeover.ts). Empty or absent = a single node.
   */
  redisUrl?: string;
  /**
   * With redisUrl: the time to live of this node's presence heartbeat, ms; the devices of a node silent that long
   * are offline for the cluster (cluster-presence.ts). Default 5000.
   */
  presenceTtlMs?: number;
}

export interface BrokerDeps {
  devices: Pick<DeviceStore, 'checkToken' | 'touch'>;
  /**
   * A message of an authenticated device on one of its own topics (kind = last topic level). A returned
   * promise withholds the acknowledgement until it settles, and with it the acknowledgements of the
   * connection's later messages (they leave in order); a rejection closes the connection with none of them
   * acknowledged, so the device sends them again.
   */
  onMessage: (device: DeviceMeta, kind: string, payload: Buffer, qos: number, delivery?: Delivery, closed?: AbortSignal) => unknown;
  /** A QoS 1 message's PUBACK was handed to its connection (which may still lose it if it breaks). */
  onAcknowledged?: (device: DeviceMeta, delivery: Delivery) => void;
  /** A device's connection ended; `clean`: it sent DISCONNECT, so every PUBACK written to it had arrived. */
  onConnectionClosed?: (device: DeviceMeta, connection: number, clean: boolean) => void;
  /**
   * True while messages wait for room (the durable log's disk budget is used up): a connection whose message
   * waits then stops being read until all its waiting messages are answered, so the device is slowed down by
   * TCP instead of its messages piling up in memory.
   */
  slowDown?: () => boolean;
  bus?: LiveBus;
  metrics?: Metrics;
  logger?: Logger;
}

/** What the broker tells about platform → device delivery. */
export interface BrokerEvents {
  /** A device's connection holds a granted subscription to `topic` and its CONNACK went out: publishes reach it now. */
  subscribed: [deviceId: string, topic: string];
  /** A device answered a QoS 1 publish of the platform with PUBACK (the message reached the device). */
  delivered: [deviceId: string, topic: string, payload: Buffer];
}

/** The options with every limit filled in from LIMIT_DEFAULTS. */
export type ResolvedBrokerOptions = BrokerOptions & { -readonly [K in keyof typeof LIMIT_DEFAULTS]: number };
