#!/usr/bin/env -S node --import tsx
/**
 * citypulse command line.
 *
 *   citypulse start [--config FILE] [--no-simulate]   platform + (by default) a simulated city, in one process
 *   citypulse cluster [--config FILE] [--dir DIR] [--nodes N] [--host ADDR] [--no-simulate] [--fresh]
 *                                                    the whole cluster on this machine: engines, N nodes, HAProxy,
 *                                                    a simulated city through HAProxy (docs/cluster-operations.md)
 *   citypulse simulate --api URL --token ADMIN_TOKEN [--mqtt URL] [--air N] [--traffic N] [--lights N]
 *                      [--seed N] [--scale X] [--qos 0|1] [--duration SECONDS]
 *                                                    a fleet against a running platform (REST provisioning)
 *   citypulse provision --family F --zone Z --lat LAT --lon LON [--id ID] [--name NAME]
 *   citypulse devices [--family F] [--zone Z] [--all]
 *   citypulse revoke ID
 *   citypulse operator add --username U --role viewer|operator|admin [--password P]   (prints a generated one)
 *   citypulse operator list
 *   citypulse options [--markdown]                    every configuration option, default and variable
 *   citypulse install-service [--config FILE] [--user NAME] [--unit-dir DIR] [--environment-file FILE] [--name NAME]
 *                             [--no-enable] [--print]  the platform as a systemd service (docs/operations.md)
 *
 * provision/devices/revoke work on the registry in dataDir (config or CITYPULSE_DATA_DIR).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, describeOptions, type Config } from '../platform/config.ts';
import { createPlatform } from '../platform/platform.ts';
import { type ClusterHandle, startCluster } from '../platform/cluster.ts';
import { PlatformError } from '../core/errors.ts';
import { defaultServiceUser, installService, systemdUnit } from '../platform/service.ts';
import { type DeviceStore, loadCityProfile, type CityProfile, type ProvisionRequest } from '../registry/index.ts';
import { ROLES, type Role } from '../registry/index.ts';
import { openStateStores } from '../platform/state.ts';
import { FAMILIES, type Family } from '../ingest/index.ts';
import { createFleet, formatProgress, type Fleet, restRegistry } from '../simulators/index.ts';

const [command = 'help', ...rest] = process.argv.slice(2);

async function main(): Promise<number> {
  switch (command) {
    case 'start':
      return start();
    case 'cluster':
      return cluster();
    case 'simulate':
      return simulate();
    case 'provision':
      return provision();
    case 'devices':
      return devices();
    case 'revoke':
      return revoke();
    case 'operator':
      return operator();
    case 'install-service':
      return installSystemdService();
    case 'options':
      for (const o of describeOptions()) {
        if (rest.includes('--markdown'))
          console.log(`| \`${o.path}\` | \`${o.env}\` | \`${JSON.stringify(o.default)}\` | ${o.description} |`);
        else console.log(`${o.env.padEnd(40)} ${JSON.stringify(o.default).padEnd(14)} ${o.description}`);
      }
      return 0;
    default:
      console.log(HELP);
      return command === 'help' || command === '--help' ? 0 : 2;
  }
}

const HELP = `usage: citypulse <start|cluster|simulate|provision|devices|revoke|operator|options|install-service> [options]
  start      run the platform (broker, ingest, API; a local InfluxDB unless influx.url is set) and a simulated city
  cluster    run a whole cluster on this machine: RabbitMQ (3 nodes), PostgreSQL, Redis, InfluxDB, --nodes platform
             nodes (default 3), HAProxy on api.port and broker.port, a simulated city through it; --dir (default
             dataDir/cluster) keeps it all for the next run (docs/cluster-operations.md)
  simulate   run a simulated fleet against a running platform (--api URL --token ADMIN_TOKEN)
  provision  add a device to the registry and print its token (shown once)
  devices    list devices
  revoke     revoke a device
  operator   add --username U --role viewer|operator|admin [--password P] | list: operator accounts in dataDir
  options    list every configuration option with its default and environment variable
  install-service  write /etc/systemd/system/citypulse.service (restarted after a crash, started at boot) and
             enable it when systemd runs the machine; --print shows the unit only (docs/operations.md)`;

function config(values: { config?: string }): Readonly<Config> {
  return loadConfig({ file: values.config });
}

async function start(): Promise<number> {
  const { values } = parseArgs({ args: rest, options: { config: { type: 'string' }, 'no-simulate': { type: 'boolean' } } });
  const cfg = config(values);
  const platform = createPlatform(cfg);
  let fleet: Fleet | undefined;
  let progressTimer: NodeJS.Timeout | undefined;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\n${signal}: stopping (flushing readings to InfluxDB)…\n`);
    clearInterval(progressTimer);
    await fleet?.stop();
    await platform.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  const addr = await platform.start();
  const out = process.stderr;
  out.write(
    `\ncitypulse is running\n${cfg.api.dashboard.enabled ? `  dashboard        ${addr.api}/   (wall screen: ${addr.api}/wall)\n` : ''}  API + socket.io  ${addr.api}   (OpenAPI: ${addr.api}/api/v1/openapi.json, health: ${addr.api}/api/v1/health)\n  MQTT             ${addr.mqtt}\n  InfluxDB         ${addr.influx}   (database ${cfg.influx.database})\n  metrics          ${addr.api}/metrics\n`,
  );
  if (addr.mqtts) out.write(`  MQTT over TLS    ${addr.mqtts}   (server certificate: ${addr.mqttsCertFile})\n`);
  if (addr.ws) out.write(`  MQTT over WS     ${addr.ws}\n`);
  if (platform.adminTokenCreated)
    out.write(`  admin token      ${platform.adminToken}   (shown once; kept in ${path.join(cfg.dataDir, 'admin-token')})\n`);
  if (platform.initialAdmin?.generatedPassword)
    out.write(`  operator login   admin / ${platform.initialAdmin.generatedPassword}   (shown once: log in and change it)\n`);

  if (cfg.simulate.enabled && !values['no-simulate']) {
    const { devices, profile } = platform.parts;
    fleet = createFleet({
      mqttUrl: addr.mqtt,
      profile,
      counts: fleetCounts(cfg, profile),
      seed: cfg.simulate.seed,
      intervalScale: cfg.simulate.intervalScale,
      qos: cfg.simulate.qos as 0 | 1,
      backfillMs: cfg.simulate.backfillHours * 3_600_000,
      credentialsFile: path.join(cfg.dataDir, 'simulator-credentials.json'),
      provision: (req: ProvisionRequest) => devices.provision(req),
      rotateToken: (id: string) => devices.rotateToken(id),
    });
    await fleet.start();
    const f = fleet;
    out.write(`  simulated city   ${profile.name.en}: ${f.progress().devices} devices\n\n`);
    progressTimer = setInterval(
      () => out.write(`${out.isTTY ? '\r' : ''}${formatProgress(f.progress())}${out.isTTY ? '   ' : '\n'}`),
      out.isTTY ? 1000 : 10000,
    );
  }
  out.write('Ctrl+C to stop.\n');
  return new Promise<number>(() => undefined); // runs until a signal
}

async function cluster(): Promise<number> {
  const { values } = parseArgs({
    args: rest,
    options: {
      config: { type: 'string' },
      dir: { type: 'string' },
      nodes: { type: 'string', default: '3' },
      host: { type: 'string', default: '127.0.0.1' },
      'no-simulate': { type: 'boolean' },
      fresh: { type: 'boolean' },
    },
  });
  const nodes = Number(values.nodes);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 16) {
    console.error(`--nodes must be a whole number from 1 to 16, got ${values.nodes}`);
    return 2;
  }
  // The configuration every node starts from (file and CITYPULSE_* variables, as for start); api.port and
  // broker.port are the edge's, where browsers and devices connect, as with one node.
  const cfg = config(values);
  const dir = path.resolve(values.dir ?? path.join(cfg.dataDir, 'cluster'));
  const out = process.stderr;
  const started = Date.now();
  let handle: ClusterHandle | undefined;
  let progressTimer: NodeJS.Timeout | undefined;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(progressTimer);
    if (!handle) {
      // Still starting: every engine and node started so far gets SIGTERM as this process ends (their
      // parent-death signal); the next run in the folder ends anything left.
      out.write(`\n${signal} while starting: ending what was started\n`);
      process.exit(130);
    }
    out.write(`\n${signal}: stopping the cluster (the nodes flush first)…\n`);
    await handle.stop();
    out.write('stopped\n');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  out.write(`starting a cluster of ${nodes} node(s) in ${dir} (RabbitMQ alone takes 20-45 s) …\n`);
  handle = await startCluster({
    dir,
    nodes,
    host: values.host,
    config: cfg,
    mqttPort: cfg.broker.port,
    apiPort: cfg.api.port,
    simulate: cfg.simulate.enabled && !values['no-simulate'],
    fresh: values.fresh,
    log: (m) => out.write(`  ${m}\n`),
  });
  const c = handle;
  const pg = new URL(c.postgres.url);
  pg.password = '';
  out.write(
    `\ncitypulse cluster is running (${c.nodes.length} node(s), started in ${((Date.now() - started) / 1000).toFixed(1)} s; folder ${dir})\n` +
      `${cfg.api.dashboard.enabled ? `  dashboard        ${c.api}/   (through HAProxy; wall screen: ${c.api}/wall)\n` : ''}` +
      `  API + socket.io  ${c.api}   (through HAProxy; health: ${c.api}/api/v1/health)\n` +
      `  MQTT             ${c.mqtt}   (through HAProxy)\n` +
      c.nodes
        .map(
          (n) =>
            `  ${n.name.padEnd(16)} API ${n.api}, MQTT ${n.mqtt}   (pid ${n.pid}; PROXY v2 only; config ${n.configFile}, log ${n.logFile})\n`,
        )
        .join('') +
      `  RabbitMQ         ${c.rabbit.urls.join(' ')}\n` +
      `  PostgreSQL       ${pg.href}   (the password is in the nodes' config files)\n` +
      `  Redis            ${c.redis.url}\n` +
      `  InfluxDB         ${c.influxUrl}   (database ${cfg.influx.database})\n` +
      `  HAProxy          ${c.haproxy.dir}/haproxy.cfg   (admin socket ${c.haproxy.dir}/admin.sock)\n`,
  );
  if (c.adminTokenCreated) out.write(`  admin token      ${c.adminToken}   (shown once; kept in ${path.join(dir, 'admin-token')})\n`);
  if (c.initialAdmin?.password)
    out.write(`  operator login   ${c.initialAdmin.username} / ${c.initialAdmin.password}   (shown once: log in and change it)\n`);
  const f = c.fleet;
  if (f) {
    out.write(`  simulated city   ${f.progress().devices} devices through HAProxy\n\n`);
    progressTimer = setInterval(
      () => out.write(`${out.isTTY ? '\r' : ''}${formatProgress(f.progress())}${out.isTTY ? '   ' : '\n'}`),
      out.isTTY ? 1000 : 10000,
    );
  }
  out.write('Ctrl+C to stop.\n');
  return new Promise<number>(() => undefined); // runs until a signal
}

async function installSystemdService(): Promise<number> {
  const { values } = parseArgs({
    args: rest,
    options: {
      config: { type: 'string' },
      user: { type: 'string' },
      'unit-dir': { type: 'string' },
      'environment-file': { type: 'string' },
      name: { type: 'string' },
      'no-enable': { type: 'boolean' },
      print: { type: 'boolean' },
    },
  });
  // The configuration the service will run with is checked now, not at its first start.
  if (values.config) config(values);
  const opts = { configFile: values.config, envFile: values['environment-file'] };
  if (values.print) {
    process.stdout.write(systemdUnit({ ...opts, user: values.user ?? (await defaultServiceUser()) }));
    return 0;
  }
  await installService({
    ...opts,
    user: values.user,
    unitDir: values['unit-dir'],
    name: values.name,
    enable: !values['no-enable'],
    log: (m) => console.error(m),
  });
  return 0;
}

function fleetCounts(cfg: Readonly<Config>, profile: CityProfile): Record<Family, number> {
  const pick = (n: number, f: Family) => (n >= 0 ? n : (profile.fleet?.[f] ?? 0));
  return {
    airQuality: pick(cfg.simulate.airQuality, 'airQuality'),
    traffic: pick(cfg.simulate.traffic, 'traffic'),
    streetLight: pick(cfg.simulate.streetLight, 'streetLight'),
  };
}

async function simulate(): Promise<number> {
  const { values } = parseArgs({
    args: rest,
    options: {
      api: { type: 'string', default: 'http://127.0.0.1:8080' },
      mqtt: { type: 'string' },
      token: { type: 'string', default: process.env.CITYPULSE_API_ADMIN_TOKEN ?? '' },
      air: { type: 'string' },
      traffic: { type: 'string' },
      lights: { type: 'string' },
      seed: { type: 'string', default: '1' },
      scale: { type: 'string', default: '1' },
      qos: { type: 'string', default: '1' },
      duration: { type: 'string' },
      credentials: { type: 'string', default: 'data/simulator-remote-credentials.json' },
    },
  });
  const api = values.api.replace(/\/$/, '');
  const headers = { authorization: `Bearer ${values.token}` };
  const profile = (await (await fetch(`${api}/api/v1/city`, { headers })).json()) as CityProfile;
  const mqttUrl = values.mqtt ?? `mqtt://${new URL(api).hostname}:1883`;
  const num = (v: string | undefined, f: Family) => (v === undefined ? (profile.fleet?.[f] ?? 0) : Number(v));
  const fleet = createFleet({
    mqttUrl,
    profile,
    counts: {
      airQuality: num(values.air, 'airQuality'),
      traffic: num(values.traffic, 'traffic'),
      streetLight: num(values.lights, 'streetLight'),
    },
    seed: Number(values.seed),
    intervalScale: Number(values.scale),
    qos: Number(values.qos) === 0 ? 0 : 1,
    credentialsFile: values.credentials,
    ...restRegistry(api, values.token),
  });
  const stop = async () => {
    await fleet.stop();
    process.stderr.write(`\n${formatProgress(fleet.progress())}\n`);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  await fleet.start();
  const timer = setInterval(() => process.stderr.write(`${formatProgress(fleet.progress())}\n`), 2000);
  if (values.duration) {
    setTimeout(() => {
      clearInterval(timer);
      void stop();
    }, Number(values.duration) * 1000);
  }
  return new Promise<number>(() => undefined);
}

/** The device registry the platform reads: SQLite in dataDir, or the cluster's PostgreSQL (state.postgresUrl). */
async function localRegistry(): Promise<{ store: DeviceStore; close: () => Promise<void>; profile: CityProfile }> {
  const cfg = loadConfig();
  const profile = loadCityProfile(path.resolve(cfg.cityProfile));
  const zones = new Set(profile.zones.map((z) => z.id));
  const state = await openStateStores(cfg, { zoneExists: (z) => zones.has(z) });
  return { store: state.devices, close: () => state.close(), profile };
}

async function provision(): Promise<number> {
  const { values } = parseArgs({
    args: rest,
    options: {
      family: { type: 'string' },
      zone: { type: 'string' },
      lat: { type: 'string' },
      lon: { type: 'string' },
      id: { type: 'string' },
      name: { type: 'string' },
    },
  });
  if (!values.family || !FAMILIES.includes(values.family as Family) || !values.zone || !values.lat || !values.lon) {
    console.error(`provision needs --family (${FAMILIES.join(' | ')}) --zone --lat --lon`);
    return 2;
  }
  const { store, close } = await localRegistry();
  try {
    const { device, token } = await store.provision({
      id: values.id,
      family: values.family as Family,
      zone: values.zone,
      location: { lat: Number(values.lat), lon: Number(values.lon) },
      name: values.name,
    });
    console.log(JSON.stringify({ device, token }, null, 2));
    console.error('The token is shown once: store it on the device now. MQTT: username = client id = device id, password = token.');
    return 0;
  } finally {
    await close();
  }
}

async function devices(): Promise<number> {
  const { values } = parseArgs({ args: rest, options: { family: { type: 'string' }, zone: { type: 'string' }, all: { type: 'boolean' } } });
  const { store, close } = await localRegistry();
  const list = await store.list({ family: values.family as Family | undefined, zone: values.zone, includeRevoked: values.all });
  for (const d of list) console.log([d.id, d.family, d.zone, d.lastSeenAt ?? '-', d.revokedAt ? `revoked ${d.revokedAt}` : ''].join('\t'));
  await close();
  return 0;
}

async function revoke(): Promise<number> {
  const id = rest[0];
  if (!id) {
    console.error('usage: citypulse revoke DEVICE_ID');
    return 2;
  }
  const { store, close } = await localRegistry();
  try {
    const d = await store.revoke(id);
    console.log(
      `revoked ${d.id} at ${d.revokedAt}. It is refused from its next connect; to also disconnect it now, use POST /api/v1/devices/${d.id}/revoke.`,
    );
    return 0;
  } finally {
    await close();
  }
}

async function operator(): Promise<number> {
  const [sub, ...args] = rest;
  const { values } = parseArgs({
    args,
    options: { username: { type: 'string' }, role: { type: 'string' }, password: { type: 'string' }, config: { type: 'string' } },
  });
  const cfg = config(values);
  const state = await openStateStores(cfg);
  const store = state.operators;
  try {
    if (sub === 'list') {
      for (const o of await store.list())
        console.log([o.username, o.role, o.disabled ? 'disabled' : 'enabled', o.createdAt, o.lastLoginAt ?? '-'].join('\t'));
      return 0;
    }
    if (sub !== 'add' || !values.username || !ROLES.includes(values.role as Role)) {
      console.error(`usage: citypulse operator add --username U --role ${ROLES.join('|')} [--password P]   |   citypulse operator list`);
      return 2;
    }
    const generated = values.password ? undefined : randomBytes(15).toString('base64url');
    const op = await store.create({
      username: values.username,
      role: values.role as Role,
      password: values.password ?? (generated as string),
    });
    await store.audit({ actor: '(cli)', role: null, action: 'operator.create', target: op.username, address: null, outcome: 'ok' });
    console.log(`operator ${op.username} (${op.role}) created${generated ? `; password (shown once): ${generated}` : ''}`);
    return 0;
  } finally {
    await state.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof PlatformError) console.error(`citypulse: ${err.code}: ${err.message}`);
    else console.error('citypulse:', err);
    process.exit(1);
  },
);
