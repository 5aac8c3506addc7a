/**
 * Options of the MQTT broker (`broker.*`): listen address and port, connection and packet limits, lab mode,
 * the PROXY protocol behind the edge proxy, MQTT over TLS and over WebSocket. The limits' defaults are those the broker applies (connection-guard.ts).
 */
import { port, section } from '../core/options.ts';
import { LIMIT_DEFAULTS } from './connection-guard.ts';

export const BROKER_OPTIONS = section({
  host: { type: 'string', default: '127.0.0.1', description: 'MQTT listen address; 0.0.0.0 to accept field devices' },
  port: port('MQTT TCP port (0 = any free port)', 1883),
  maxConnections: {
    type: 'integer',
    minimum: 1,
    maximum: 19000,
    default: LIMIT_DEFAULTS.maxConnections,
    description: 'MQTT connections held at most, all listeners together (the process may hold 20,000 file descriptors)',
  },
  maxConnectionAttemptsPerAddress: {
    type: 'integer',
    minimum: 0,
    default: LIMIT_DEFAULTS.maxConnectionAttemptsPerAddress,
    description:
      'Failed MQTT connection attempts (CONNECT refused, or closed before authenticating) per source address per window; past it the address may hold only 4 connections that have not authenticated yet (a device with a correct token still gets in; successful logins never count). 0 = no limit',
  },
  connectionAttemptWindowMs: {
    type: 'integer',
    minimum: 100,
    default: LIMIT_DEFAULTS.connectionAttemptWindowMs,
    description: 'Window of the per-address failed-attempt limit, ms',
  },
  maxPacketBytes: {
    type: 'integer',
    minimum: 1024,
    maximum: 268435455,
    default: LIMIT_DEFAULTS.maxPacketBytes,
    description: 'Largest MQTT packet accepted, bytes; a larger one closes the connection before it is buffered',
  },
  maxKeepaliveSeconds: {
    type: 'integer',
    minimum: 10,
    maximum: 65535,
    default: LIMIT_DEFAULTS.maxKeepaliveSeconds,
    description:
      'Largest MQTT keepalive a client may ask for, s; a larger one is closed without CONNACK (no MQTT 3.1.1 return code fits). Keepalive 0 (keep-alive off) is accepted: see idleTimeoutSeconds',
  },
  idleTimeoutSeconds: {
    type: 'integer',
    minimum: 1,
    maximum: 100000,
    default: LIMIT_DEFAULTS.idleTimeoutSeconds,
    description:
      'A connection with keepalive 0 (keep-alive off) that sends no packet for this many seconds is closed, so half-open connections are reclaimed; one with a keepalive is closed after 1.5 × keepalive (MQTT 3.1.1)',
  },
  labMode: {
    type: 'boolean',
    default: false,
    description:
      'Lab mode for conformance suites and tools: anonymous MQTT clients and free topics (devices keep their rules; a provisioned device id still needs its token); loudly logged, never in production',
  },
  labRefusedTopics: {
    type: 'array',
    items: { type: 'string', minLength: 1 },
    default: ['test/nosubscribe'],
    description:
      'Lab mode: subscription filters refused to anonymous clients (SUBACK 0x80, exact match), as conformance suites expect (Paho interoperability test_subscribe_failure)',
  },
  drainTimeoutMs: {
    type: 'integer',
    // aedes stalls fan-out to every client behind one stalled socket until this runs out (default 60 s):
    // a short bound keeps one dead cellular link from freezing the platform's own publishes.
    minimum: 1000,
    maximum: 60000,
    default: 10000,
    description: 'Drop a client whose socket does not drain within this time, ms',
  },
  redisUrl: {
    type: 'string',
    default: '',
    pattern: '^(|rediss?://.+)$',
    description:
      'Several broker nodes behind the edge: the Redis (redis://host:port) through which a device that connects to this node closes its older connection on another node (MQTT takeover across nodes). Empty = a single node. Redis unreachable: logged, takeover within each node only',
  },
  presenceTtlMs: {
    type: 'integer',
    minimum: 300,
    maximum: 600000,
    default: 5000,
    description:
      "With broker.redisUrl: how long a node's presence heartbeat in Redis lives (renewed every third of it), ms; the devices of a node silent that long (killed, cut off) are shown offline by every node and reported offline once",
  },
  proxyProtocol: section({
    enabled: {
      type: 'boolean',
      default: false,
      description:
        'Behind the edge proxy (HAProxy send-proxy-v2, docs/cluster-edge.md): every connection to broker.port must start with a PROXY v2 header from a peer in broker.proxyProtocol.trustedPeers, else it is closed (citypulse_mqtt_connections_refused_total{reason="proxy-header"|"proxy-untrusted"}); the device address in it is the one limits, logs and status see. A LOCAL header (a health check of the proxy) is served without an address and never counts as a failed attempt. Off: headers are not read, a client cannot claim an address',
    },
    trustedPeers: {
      type: 'array',
      items: { type: 'string', pattern: '^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$' },
      default: ['127.0.0.0/8', '::1'],
      description:
        'Addresses or CIDR networks of the edge proxies allowed to send PROXY headers (only with broker.proxyProtocol.enabled); a connection from any other peer is closed before a byte is read. Keep broker.port reachable by the proxies alone',
    },
  }),
  tls: section({
    enabled: { type: 'boolean', default: false, description: 'Also listen for MQTT over TLS (mqtts) on broker.host' },
    port: port('MQTT over TLS port (0 = any free port)', 8883),
    certFile: {
      type: 'string',
      default: '',
      description:
        'Server certificate (PEM, may hold the chain); empty with keyFile empty = a self-signed one for localhost made in dataDir/tls',
    },
    keyFile: { type: 'string', default: '', description: 'Private key of certFile (PEM)' },
    caFile: {
      type: 'string',
      default: '',
      description: 'CA (PEM) that signs client certificates; empty = client certificates are not asked for',
    },
    requireClientCert: {
      type: 'boolean',
      default: false,
      description:
        'A client without a certificate signed by caFile fails the TLS handshake (needs caFile); devices still log in with their token',
    },
  }),
  ws: section({
    enabled: { type: 'boolean', default: true, description: 'Also accept MQTT over WebSocket on the API port (api.host:api.port)' },
    path: {
      type: 'string',
      pattern: '^/(?!socket\\.io(/|$))[A-Za-z0-9._~/-]*$',
      default: '/mqtt',
      description: 'URL path of MQTT over WebSocket on the API port (not under /socket.io)',
    },
  }),
});
