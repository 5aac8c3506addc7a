/**
 * One schema for every option of the platform. The loader reads an optional JSON file, applies environment
 * overrides whose names derive from the schema paths (`broker.port` → CITYPULSE_BROKER_PORT), fills defaults,
 * coerces env strings, reports every error at once with its path, and returns a deep-frozen object.
 * Components never read this module: they take plain options objects built from its result.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import type { FromSchema } from 'json-schema-to-ts';
import { DEFAULT_RULE_IDS, RULE_OVERRIDE_SCHEMA, RULE_SCHEMA } from '../alarms/index.ts';
import { LIMIT_DEFAULTS } from '../broker/index.ts';
import { HTTP_LIMIT_DEFAULTS } from '../dashboard-api/connection-limits.ts';
import { PlatformError } from '../core/errors.ts';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const port = (description: string, def: number) => ({ type: 'integer', minimum: 0, maximum: 65535, default: def, description }) as const;
const componentLevel = (name: string) =>
  ({ type: 'string', enum: [...LEVELS, ''], default: '', description: `Log level of ${name}; empty = log.level` }) as const;

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dataDir: {
      type: 'string',
      default: 'data',
      description: 'Folder for the device registry (SQLite), dead letters and the local InfluxDB; relative to the working directory',
    },
    cityProfile: {
      type: 'string',
      default: 'cities/bac-giang.json',
      description: 'City profile (zones with names, shapes, centre; demo fleet sizes), relative to the working directory',
    },
    broker: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
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
        tls: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
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
          },
        },
        ws: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            enabled: { type: 'boolean', default: true, description: 'Also accept MQTT over WebSocket on the API port (api.host:api.port)' },
            path: {
              type: 'string',
              pattern: '^/(?!socket\\.io(/|$))[A-Za-z0-9._~/-]*$',
              default: '/mqtt',
              description: 'URL path of MQTT over WebSocket on the API port (not under /socket.io)',
            },
          },
        },
      },
    },
    api: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
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
          description:
            'Failed logins for one username within api.loginWindowMs; the next attempts get 429 until the oldest leaves the window',
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
            'Connections to the API port held at most per source address; more are closed at once (0 = no limit: behind a reverse proxy, which is one address)',
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
        dashboard: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
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
          },
        },
      },
    },
    influx: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        url: {
          type: 'string',
          default: '',
          description: 'InfluxDB v1 HTTP API base URL (1.x, or 2.x/3.x v1 compatibility); empty = run a local InfluxDB',
        },
        database: { type: 'string', pattern: '^[A-Za-z0-9_]+$', default: 'citypulse', description: 'Database name' },
        retentionPolicy: { type: 'string', pattern: '^[A-Za-z0-9_]+$', default: 'raw', description: 'Retention policy for raw readings' },
        retentionDuration: {
          type: 'string',
          pattern: '^(INF|[0-9]+[hdw])$',
          default: '90d',
          description: 'How long raw readings are kept (InfluxDB duration: 90d, 52w, INF)',
        },
        username: { type: 'string', default: '', description: 'InfluxDB user (empty = no credentials sent)' },
        password: { type: 'string', default: '', description: 'InfluxDB password (sent as HTTP Basic; never logged)' },
        localPort: port('Port of the local InfluxDB started when url is empty (0 = any free port)', 8086),
        downsample: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            enabled: {
              type: 'boolean',
              default: true,
              description:
                'Keep 1-minute and 1-hour means in their own retention policies (`minute`, `hour`), filled by continuous queries',
            },
            minuteRetention: {
              type: 'string',
              pattern: '^(INF|[0-9]+[hdw])$',
              default: '52w',
              description: 'How long 1-minute means are kept (retention policy `minute`)',
            },
            hourRetention: {
              type: 'string',
              pattern: '^(INF|[0-9]+[hdw])$',
              default: '260w',
              description: 'How long 1-hour means are kept (retention policy `hour`)',
            },
            lateAfterMs: {
              type: 'integer',
              minimum: 60000,
              maximum: 240000,
              default: 180000,
              description:
                'A reading stored this long after its observation time is missed by the continuous queries; its hour is recomputed into the tiers, ms',
            },
            catchUpIntervalMs: {
              type: 'integer',
              minimum: 100,
              default: 10000,
              description: 'How often late readings are recomputed into the tiers, ms',
            },
          },
        },
      },
    },
    ingest: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        batchSize: {
          type: 'integer',
          minimum: 1,
          // InfluxDB 1.x sizing guidance: 5,000-10,000 points a request; larger batches hit its body limits.
          maximum: 10000,
          default: 5000,
          description: 'Points per InfluxDB write request at most',
        },
        batchMaxAgeMs: {
          type: 'integer',
          minimum: 1,
          maximum: 10000,
          default: 200,
          description: 'A reading waits at most this long before its batch is written, ms',
        },
        writeConcurrency: {
          type: 'integer',
          minimum: 1,
          // More requests in flight overload InfluxDB 1.6 (HTTP 500 "error syncing wal"); 2 was measured best.
          maximum: 4,
          default: 2,
          description: 'InfluxDB write requests in flight at most',
        },
        maxBufferedPoints: {
          type: 'integer',
          minimum: 1000,
          default: 500000,
          description:
            'Readings held in memory on their way to InfluxDB; beyond it they wait in the durable log on disk and are read back later',
        },
        retryMaxDelayMs: {
          type: 'integer',
          minimum: 100,
          default: 1000,
          description: 'Longest back-off between retries of a failed write, ms',
        },
        maxReadingsPerMessage: {
          type: 'integer',
          minimum: 1,
          maximum: 10000,
          default: 1000,
          description: 'Readings one telemetry message may carry; a longer array is rejected whole',
        },
        maxReadingsPerSecond: {
          type: 'number',
          minimum: 0,
          default: 20,
          description: 'Readings a device may send a second on average (token bucket; 0 = no limit); the excess is rejected with a reason',
        },
        readingsBurst: {
          type: 'integer',
          minimum: 1,
          default: 10000,
          description: 'Burst of the per-device rate limit: a device flushing its backlog after an outage may send this many at once',
        },
        maxFutureMs: {
          type: 'integer',
          minimum: 0,
          default: 86400000,
          description: 'Observation times further ahead than this are rejected (drifting device clocks), ms',
        },
        maxPastMs: {
          type: 'integer',
          minimum: 0,
          default: 0,
          description:
            'Observation times older than this are rejected, ms; 0 = the raw retention duration (older would be dropped by InfluxDB)',
        },
        stopFlushTimeoutMs: {
          type: 'integer',
          minimum: 0,
          default: 10000,
          description: 'On stop, how long to keep writing the durable log to InfluxDB; the rest is written at the next start, ms',
        },
        deadLetterLimit: {
          type: 'integer',
          minimum: 100,
          default: 10000,
          description: 'Dead-letter records kept (oldest removed beyond it)',
        },
      },
    },
    durability: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        dir: { type: 'string', default: '', description: 'Folder of the durable log; empty = dataDir/wal' },
        maxBytes: {
          type: 'integer',
          minimum: 65536,
          default: 1073741824,
          description: 'Disk budget of the durable log, bytes; when it is used up devices are slowed down, nothing is dropped',
        },
        segmentBytes: {
          type: 'integer',
          minimum: 4096,
          default: 16777216,
          description: 'Size of one log segment file, bytes (a segment is deleted once InfluxDB confirmed all of it)',
        },
        fsync: {
          type: 'boolean',
          default: true,
          description:
            'fdatasync each group of appends before acknowledging (off: faster, a power cut can lose the last acknowledged readings)',
        },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { type: 'string', enum: LEVELS, default: 'info', description: 'Default log level' },
        broker: componentLevel('broker'),
        ingest: componentLevel('ingest'),
        api: componentLevel('dashboard-api'),
        registry: componentLevel('registry'),
        influx: componentLevel('the InfluxDB writer and local server'),
        alarms: componentLevel('the alarm engine'),
      },
    },
    commands: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        defaultTtlMs: {
          type: 'integer',
          minimum: 1000,
          default: 3600000,
          description: 'A command not acknowledged within this time (from its creation) expires, ms; a request may give its own ttlMs',
        },
        maxTtlMs: {
          type: 'integer',
          minimum: 1000,
          default: 604800000,
          description: 'Longest ttlMs a command request or schedule may ask for, ms',
        },
        expiryCheckMs: {
          type: 'integer',
          minimum: 50,
          maximum: 60000,
          default: 1000,
          description: 'How often commands past their expiresAt are marked expired, ms',
        },
        scheduleTickMs: {
          type: 'integer',
          minimum: 50,
          maximum: 60000,
          default: 1000,
          description: 'How often schedules are checked for an edge (from/to time passed), ms; schedules take HH:MM or HH:MM:SS',
        },
        historyLimit: {
          type: 'integer',
          minimum: 1000,
          default: 100000,
          description: 'Finished commands (acknowledged, failed, expired) kept; the oldest beyond it are removed',
        },
      },
    },
    alarms: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true, description: 'Evaluate alarm rules and keep alarms (dataDir/alarms.db)' },
        rules: {
          type: 'array',
          // Typed loosely here (the engine has its own types); validated in full by this schema.
          items: RULE_SCHEMA as unknown as { type: 'object' },
          default: [],
          description:
            'Own alarm rules besides the built-in ones (threshold, state, noData, rateOfChange; see README Alarms); JSON array in the environment',
        },
        disabled: {
          type: 'array',
          items: { type: 'string', enum: DEFAULT_RULE_IDS },
          default: [],
          description: 'Built-in rules switched off, by id (comma-separated in the environment)',
        },
        defaults: {
          type: 'object',
          propertyNames: { type: 'string', enum: DEFAULT_RULE_IDS },
          additionalProperties: RULE_OVERRIDE_SCHEMA as unknown as { type: 'object' },
          default: {},
          description:
            'Tuning of built-in rules by id, e.g. {"congestion": {"forMs": 300000}} (severity, forMs, clearForMs, value, clearValue, when, clearWhen, where, message); JSON object in the environment',
        },
        tickMs: {
          type: 'integer',
          minimum: 20,
          maximum: 60000,
          default: 1000,
          description: 'How often rule durations (forMs, clearForMs, noData periods, daylight) are checked between events, ms',
        },
        historyLimit: {
          type: 'integer',
          minimum: 100,
          default: 100000,
          description: 'Cleared alarms kept; the oldest beyond it are removed (open alarms never are)',
        },
      },
    },
    analytics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        aqiEmitIntervalMs: {
          type: 'integer',
          minimum: 0,
          default: 5000,
          description:
            "Least time between two `aqi` events of one station or zone and period, and between two computations of a station's indices while its readings arrive, ms (0 = on every change)",
        },
        indicatorEmitIntervalMs: {
          type: 'integer',
          minimum: 0,
          default: 2000,
          description:
            'Least time between two zone or city `indicator` events, ms (device indicators go out on each reading; 0 = every change)',
        },
        storeIntervalMs: {
          type: 'integer',
          minimum: 0,
          default: 60000,
          description:
            'Indices and indicators are stored in InfluxDB at most once per subject per interval (and on stop), ms; 0 = on every change',
        },
        airHoursKept: {
          type: 'integer',
          // A city-local day (24 h) plus the 12 hours of NowCast before it.
          minimum: 36,
          maximum: 168,
          default: 48,
          description: 'Hourly means kept in memory per air station, hours',
        },
        trafficWindowMs: {
          type: 'integer',
          minimum: 60000,
          default: 3600000,
          description: 'Sliding window of vehiclesPerHour and averageSpeed by observation time, ms (counts are scaled to one hour)',
        },
        congestion: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            occupancyModerate: {
              type: 'number',
              minimum: 0,
              maximum: 1,
              default: 0.15,
              description: 'Occupancy from which a junction is moderate (level 1)',
            },
            occupancyHeavy: {
              type: 'number',
              minimum: 0,
              maximum: 1,
              default: 0.35,
              description: 'Occupancy from which a junction is heavy (level 2)',
            },
            occupancyCongested: {
              type: 'number',
              minimum: 0,
              maximum: 1,
              default: 0.6,
              description: 'Occupancy from which a junction is congested (level 3; a reading with congested=true is level 3 too)',
            },
            speedModerateKmh: {
              type: 'number',
              minimum: 0,
              default: 30,
              description: 'Average speed (km/h, when vehicles were counted) at or below which a junction is moderate',
            },
            speedHeavyKmh: {
              type: 'number',
              minimum: 0,
              default: 20,
              description: 'Average speed at or below which a junction is heavy, km/h',
            },
            speedCongestedKmh: {
              type: 'number',
              minimum: 0,
              default: 10,
              description: 'Average speed at or below which a junction is congested, km/h',
            },
          },
        },
        lampMinPowerW: {
          type: 'number',
          minimum: 0,
          default: 1,
          description: 'A street light that should be on (powerState on or low) drawing less than this is a fault, W',
        },
        lampMaxGapMs: {
          type: 'integer',
          minimum: 1000,
          default: 1800000,
          description: 'Longest gap between two readings of a lit lamp counted as burning time, ms',
        },
        daylightMarginMs: {
          type: 'integer',
          minimum: 0,
          default: 1800000,
          description: 'Daylight for onInDaylight is sunrise + margin .. sunset − margin (a lamp switching at dusk is not flagged), ms',
        },
        restoreMaxReplayMs: {
          type: 'integer',
          minimum: 0,
          default: 86400000,
          description: "At start, raw street-light readings at most this old are replayed after each lamp's last stored state, ms",
        },
        writeMaxAgeMs: {
          type: 'integer',
          minimum: 1,
          maximum: 60000,
          default: 1000,
          description: 'A stored index or indicator waits at most this long before its batch is written to InfluxDB, ms',
        },
      },
    },
    simulate: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true, description: '`citypulse start` also runs a simulated city' },
        airQuality: { type: 'integer', minimum: -1, default: -1, description: 'Simulated air stations (-1 = city profile fleet)' },
        traffic: { type: 'integer', minimum: -1, default: -1, description: 'Simulated traffic counters (-1 = city profile fleet)' },
        streetLight: { type: 'integer', minimum: -1, default: -1, description: 'Simulated street lights (-1 = city profile fleet)' },
        intervalScale: {
          type: 'number',
          exclusiveMinimum: 0,
          default: 1,
          description: 'Multiplies every device report interval (0.1 = ten times faster)',
        },
        seed: { type: 'integer', default: 1, description: 'Random seed: the same seed gives the same fleet and values' },
        qos: { type: 'integer', enum: [0, 1], default: 1, description: 'MQTT QoS of simulated telemetry' },
      },
    },
  },
} as const;

export type Config = FromSchema<typeof CONFIG_SCHEMA>;

/** A partial config, as a file or a test gives it. */
export type ConfigInput = { [K in keyof Config]?: DeepPartial<Config[K]> };
type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

export const ENV_PREFIX = 'CITYPULSE_';

/** Every option as a flat row: path, env var, default, description (the README table is built from this). */
export function describeOptions(): { path: string; env: string; default: unknown; description: string }[] {
  const rows: { path: string; env: string; default: unknown; description: string }[] = [];
  const walk = (props: Record<string, any>, prefix: string[]) => {
    for (const [key, s] of Object.entries(props)) {
      const p = [...prefix, key];
      if (s.type === 'object' && s.properties) walk(s.properties, p);
      else rows.push({ path: p.join('.'), env: envName(p), default: s.default, description: s.description });
    }
  };
  walk(CONFIG_SCHEMA.properties, []);
  return rows;
}

function envName(p: string[]): string {
  return ENV_PREFIX + p.map((k) => k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

/**
 * Loads the configuration. Order: defaults < file (CITYPULSE_CONFIG or `file`) < environment < `overrides`.
 * Throws PlatformError CP_CONFIG_INVALID carrying every error (path and message).
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; overrides?: ConfigInput } = {}): Readonly<Config> {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env[`${ENV_PREFIX}CONFIG`];
  let data: Record<string, any> = {};
  if (file) {
    try {
      data = JSON.parse(readFileSync(path.resolve(file), 'utf8'));
    } catch (err) {
      throw new PlatformError('CP_CONFIG_FILE', `cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  const unknownEnv: string[] = [];
  const badJsonEnv: string[] = [];
  const known = new Map(describeOptions().map((o) => [o.env, o.path]));
  const lists = new Set(
    describeOptions()
      .filter((o) => Array.isArray(o.default))
      .map((o) => o.path),
  );
  // List and object options also take JSON in the environment (a value starting with [ or {).
  const structured = new Set(
    describeOptions()
      .filter((o) => o.default !== null && typeof o.default === 'object')
      .map((o) => o.path),
  );
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || name === `${ENV_PREFIX}CONFIG` || value === undefined) continue;
    const p = known.get(name);
    if (!p) {
      unknownEnv.push(name);
      continue;
    }
    if (structured.has(p) && /^\s*[[{]/.test(value)) {
      try {
        setPath(data, p.split('.'), JSON.parse(value));
      } catch (err) {
        badJsonEnv.push(`${name}: not valid JSON (${(err as Error).message})`);
      }
      continue;
    }
    // A list option takes a comma-separated value in the environment.
    setPath(
      data,
      p.split('.'),
      lists.has(p)
        ? value
            .split(',')
            .map((v) => v.trim())
            .filter(Boolean)
        : value,
    );
  }
  for (const [section, values] of Object.entries(opts.overrides ?? {})) {
    data[section] = merge(data[section], values); // nested sections too (broker.tls)
  }
  const ajv = new Ajv({ allErrors: true, useDefaults: true, coerceTypes: true, strict: true });
  const validate = ajv.compile(CONFIG_SCHEMA);
  const errors: string[] = [...unknownEnv.map((n) => `${n}: unknown environment variable`), ...badJsonEnv];
  if (!validate(data)) {
    for (const e of validate.errors ?? []) {
      const where = e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : '(root)';
      const extra = e.keyword === 'additionalProperties' ? ` '${(e.params as any).additionalProperty}'` : '';
      errors.push(`${where}: ${e.message}${extra}`);
    }
  }
  if (errors.length) {
    throw new PlatformError('CP_CONFIG_INVALID', `invalid configuration:\n  ${errors.join('\n  ')}`, { details: errors });
  }
  return deepFreeze(data as Config);
}

const isPlain = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** `over` merged into a copy of `base`, objects recursively (the caller's objects are never filled or frozen). */
function merge(base: unknown, over: unknown): unknown {
  if (!isPlain(over)) return over;
  const out: Record<string, unknown> = isPlain(base) ? { ...base } : {};
  for (const [k, v] of Object.entries(over)) out[k] = merge(out[k], v);
  return out;
}

function setPath(obj: Record<string, any>, p: string[], value: unknown): void {
  let o = obj;
  for (const k of p.slice(0, -1)) o = o[k] ??= {};
  o[p[p.length - 1] as string] = value;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
