/**
 * Options of the dashboard API (`api.*`): listen address and port, CORS, live-stream bounds, access (service
 * token, sessions, the first operator, login limits, audit), connection bounds and the operations dashboard.
 * The connection bounds' defaults are those the server applies (connection-limits.ts).
 */
import { port, section } from '../core/options.ts';
import { HTTP_LIMIT_DEFAULTS } from './connection-limits.ts';

export const API_OPTIONS = section({
  host: { type: 'string', default: '127.0.0.1', description: 'HTTP/socket.io listen address' },
  port: port('HTTP/socket.io port (0 = any free port)', 8080),
  corsOrigins: {
    type: 'array',
    items: { type: 'string', pattern: '^https?://[^/]+$' },
    default: [],
    description: 'Origins (scheme://host[:port]) other than the API itself allowed to call the REST API from a browser; empty = none',
  },
  maxSocketBufferedPackets: {
    type: 'integer',
    minimum: 10,
    default: 2000,
    description: 'A socket.io client with more packets than this waiting to be sent is disconnected (it stopped reading)',
  },
  maxUnbatchedFramesPerSecond: {
    type: 'integer',
    minimum: 0,
    default: 20000,
    description:
      'Frames a second the platform may send to socket.io clients without batching (each event a frame and a write per socket); above it the newest such clients watching everything, a zone or a family are disconnected with a reason and new such subscriptions refused (CP_API_LIVE_UNBATCHED_BUSY); 0 = no limit',
  },
  adminToken: {
    type: 'string',
    default: '',
    description:
      'Service token with the admin role, for automation (simulator, scripts); empty = generated at first start, saved in dataDir/admin-token and printed once',
  },
  sessionTtlMs: {
    type: 'integer',
    minimum: 1000,
    default: 43200000,
    description: 'An operator session (login) expires after this long, ms',
  },
  initialAdminPassword: {
    type: 'string',
    // Empty, or the same minimum length as any operator password.
    pattern: '^(|.{10,})$',
    default: '',
    description:
      'Password of the operator `admin` created at the first start (no operator yet); empty = generated and printed once. At least 10 characters',
  },
  loginMaxFailuresPerUser: {
    type: 'integer',
    minimum: 1,
    default: 5,
    description: 'Failed logins for one username within api.loginWindowMs; the next attempts get 429 until the oldest leaves the window',
  },
  loginMaxFailuresPerAddress: {
    type: 'integer',
    minimum: 1,
    default: 20,
    description: 'Failed logins from one source address within api.loginWindowMs; the next attempts get 429',
  },
  loginWindowMs: { type: 'integer', minimum: 1000, default: 900000, description: 'Window of the login failure limits, ms' },
  auditLimit: {
    type: 'integer',
    minimum: 1000,
    default: 100000,
    description:
      'Audit log records kept (oldest removed beyond it), and apart from them as many aggregated records of refused attempts (failed or rate-limited logins, calls refused for a too-low role)',
  },
  maxConnections: {
    type: 'integer',
    minimum: 1,
    maximum: 19000,
    default: HTTP_LIMIT_DEFAULTS.maxConnections,
    description:
      'Connections to the API port held at most (HTTP, socket.io, MQTT over WebSocket); more are closed at once. api.maxConnections + broker.maxConnections + 500 must fit the open-file limit of the process, else broker.maxConnections is lowered at start (logged)',
  },
  maxConnectionsPerAddress: {
    type: 'integer',
    minimum: 0,
    default: HTTP_LIMIT_DEFAULTS.maxConnectionsPerAddress,
    description:
      'Connections to the API port held at most per source address; more are closed at once (0 = no limit). Behind a reverse proxy every connection has its address: set 0 there, or use api.proxyProtocol, which gives each connection its client address',
  },
  headersTimeoutMs: {
    type: 'integer',
    minimum: 500,
    maximum: 300000,
    default: HTTP_LIMIT_DEFAULTS.headersTimeoutMs,
    description:
      'A connection whose request headers are not complete this long after it opened or its request began (half a request, or nothing sent) is answered 408 and closed, ms',
  },
  requestTimeoutMs: {
    type: 'integer',
    minimum: 500,
    maximum: 600000,
    default: HTTP_LIMIT_DEFAULTS.requestTimeoutMs,
    description:
      'A request not received whole (headers and body) this long after it began is answered 408 and closed, ms; a value below api.headersTimeoutMs is raised to it',
  },
  keepAliveTimeoutMs: {
    type: 'integer',
    minimum: 100,
    maximum: 300000,
    default: HTTP_LIMIT_DEFAULTS.keepAliveTimeoutMs,
    description: 'An idle keep-alive HTTP connection is closed after this long, ms',
  },
  redisUrl: {
    type: 'string',
    default: '',
    pattern: '^(|rediss?://.+)$',
    description:
      'Several API nodes behind the edge: the Redis (redis://host:port) through which socket.io broadcasts reach the sockets of every node (@socket.io/redis-streams-adapter), so a screen on one node sees what another ingested. Empty = a single node. Redis unreachable: logged, each node serves its own events',
  },
  proxyProtocol: section({
    enabled: {
      type: 'boolean',
      default: false,
      description:
        'Behind the edge proxy (HAProxy in TCP mode with send-proxy-v2, docs/cluster-edge.md): every connection to api.port must start with a PROXY v2 header from a peer in api.proxyProtocol.trustedPeers, else it is closed (citypulse_api_connections_shed_total{reason="proxy-header"|"proxy-untrusted"}); the client address in it is the one login limits, the audit, api.maxConnectionsPerAddress, socket.io and MQTT over WebSocket see. Off: headers are not read',
    },
    trustedPeers: {
      type: 'array',
      items: { type: 'string', pattern: '^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$' },
      default: ['127.0.0.0/8', '::1'],
      description:
        'Addresses or CIDR networks of the edge proxies allowed to send PROXY headers to the API port (only with api.proxyProtocol.enabled); a connection from any other peer is closed before a byte is read',
    },
  }),
  dashboard: section({
    enabled: {
      type: 'boolean',
      default: true,
      description: 'Serve the operations dashboard (the web app built in dashboard/dist) on the API port',
    },
    tileUrl: {
      type: 'string',
      default: '',
      // A template such as https://tiles.example.vn/{z}/{x}/{y}.png; its origin is allowed in the page's CSP.
      pattern: '^(|https?://[^\\s]+)$',
      description:
        'Map tile URL template ({z}/{x}/{y}) of a tile server on your network; empty = no tiles, the map draws the zones of the city profile',
    },
    tileAttribution: {
      type: 'string',
      default: '',
      description: 'Attribution shown on the map for the tiles of api.dashboard.tileUrl',
    },
    tileMaxZoom: {
      type: 'integer',
      minimum: 1,
      maximum: 24,
      default: 19,
      description: 'Highest zoom level api.dashboard.tileUrl serves',
    },
  }),
});
