/**
 * Prometheus metrics of one platform instance. A registry per instance (not prom-client's global one), so
 * that tests can run several platforms in one process.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  // Default metrics include nodejs_eventloop_lag_seconds and resident memory.
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'citypulse_' });
  const reg = [registry];
  // Readings received are counted per telemetry message (at one reading a message, per reading): a plain map
  // here, handed to the counter when it is scraped (prom-client's `collect`), instead of prom-client's label
  // hashing and validation on the hot path (~1 % of the thread at 1 reading/message in the bench profile).
  const received = new Map<string, number>();
  return {
    registry,
    /** Counts `n` readings of `family` received (citypulse_readings_received_total). */
    countReceived(family: string, n: number): void {
      received.set(family, (received.get(family) ?? 0) + n);
    },
    mqttConnections: new Gauge({ name: 'citypulse_mqtt_connections', help: 'Authenticated MQTT clients connected now', registers: reg }),
    mqttAuthFailures: new Counter({
      name: 'citypulse_mqtt_auth_failures_total',
      help: 'Refused MQTT connections by reason',
      labelNames: ['reason'] as const,
      registers: reg,
    }),
    mqttRefused: new Counter({
      name: 'citypulse_mqtt_connections_refused_total',
      help: 'Connections closed by a limit: max-connections, too-many-attempts (per address), packet-too-large, packet-id-zero, proxy-untrusted and proxy-header (broker.proxyProtocol: a peer not allowed to send PROXY headers, a header absent, malformed or late)',
      labelNames: ['reason'] as const,
      registers: reg,
    }),
    mqttUnauthorized: new Counter({
      name: 'citypulse_mqtt_unauthorized_total',
      help: 'Refused publishes and subscriptions of authenticated devices',
      labelNames: ['action'] as const,
      registers: reg,
    }),
    readingsReceived: new Counter({
      name: 'citypulse_readings_received_total',
      help: 'Readings received in telemetry messages, per family',
      labelNames: ['family'] as const,
      registers: reg,
      collect() {
        for (const [family, n] of received) this.inc({ family }, n);
        received.clear();
      },
    }),
    readingsRejected: new Counter({
      name: 'citypulse_readings_rejected_total',
      help: 'Readings or messages rejected (dead-lettered), per family and error code',
      labelNames: ['family', 'code'] as const,
      registers: reg,
    }),
    readingsStored: new Counter({
      name: 'citypulse_readings_stored_total',
      help: 'Readings confirmed stored by InfluxDB, per family',
      labelNames: ['family'] as const,
      registers: reg,
    }),
    readingsAbandoned: new Counter({
      name: 'citypulse_readings_abandoned_total',
      help: 'QoS 0 readings let go because their connection closed while they waited for room in the full disk budget, per family',
      labelNames: ['family'] as const,
      registers: reg,
    }),
    readingsDropped: new Counter({
      name: 'citypulse_readings_dropped_total',
      help: 'Readings dropped because the in-memory write buffer overflowed during an InfluxDB outage',
      registers: reg,
    }),
    writeBatchSize: new Histogram({
      name: 'citypulse_influx_batch_points',
      help: 'Points per InfluxDB write request',
      buckets: [1, 10, 100, 500, 1000, 2500, 5000, 10000],
      registers: reg,
    }),
    writeLatency: new Histogram({
      name: 'citypulse_influx_write_seconds',
      help: 'InfluxDB write request latency',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: reg,
    }),
    influxErrors: new Counter({
      name: 'citypulse_influx_errors_total',
      help: 'Failed InfluxDB write requests by kind (unavailable, rejected)',
      labelNames: ['kind'] as const,
      registers: reg,
    }),
    bufferedPoints: new Gauge({
      name: 'citypulse_influx_buffered_points',
      help: 'Points waiting to be written to InfluxDB',
      registers: reg,
    }),
    socketClients: new Gauge({ name: 'citypulse_socket_clients', help: 'socket.io clients connected now', registers: reg }),
    socketsDropped: new Counter({
      name: 'citypulse_socket_slow_disconnects_total',
      help: 'socket.io clients disconnected because they stopped reading (their send buffer passed its bound)',
      registers: reg,
    }),
    apiConnections: new Gauge({
      name: 'citypulse_api_connections',
      help: 'Connections to the API port now (HTTP, socket.io, MQTT over WebSocket)',
      registers: reg,
    }),
    apiConnectionsShed: new Counter({
      name: 'citypulse_api_connections_shed_total',
      help: 'API port connections closed by a bound: headers-timeout, request-timeout, max-connections, max-connections-per-address, proxy-untrusted and proxy-header (api.proxyProtocol)',
      labelNames: ['reason'] as const,
      registers: reg,
    }),
    logBacklogPoints: new Gauge({
      name: 'citypulse_log_backlog_points',
      help: 'Readings in the durable log not yet confirmed by InfluxDB',
      registers: reg,
    }),
    logBytes: new Gauge({ name: 'citypulse_log_bytes', help: 'Bytes of the durable log on disk', registers: reg }),
    logOldestSeconds: new Gauge({
      name: 'citypulse_log_oldest_seconds',
      help: 'Age of the oldest unconfirmed log segment',
      registers: reg,
    }),
    logFull: new Gauge({
      name: 'citypulse_log_full',
      help: '1 while the durable log uses its whole disk budget (devices are slowed down)',
      registers: reg,
    }),
    backpressureWaits: new Counter({
      name: 'citypulse_backpressure_waits_total',
      help: 'Telemetry messages held (acknowledgement withheld, socket paused) because the durable log was full',
      registers: reg,
    }),
  };
}
