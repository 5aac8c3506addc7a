/**
 * The platform as a systemd service: the unit file `citypulse install-service` writes, and the install itself.
 *
 * systemd is the supervisor of the whole process: it starts the platform at boot and starts it again after a
 * crash (Restart=always, no start limit), while the platform supervises its own influxd child. On a stop only
 * the platform gets SIGTERM (KillMode=mixed), so it can flush buffered readings into that InfluxDB and stop it
 * itself; whatever is left in the unit's cgroup afterwards (an influxd after a crash, or after TimeoutStopSec)
 * gets SIGKILL, so no influxd outlives the service.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../core/paths.ts';

/** The project folder (the service's WorkingDirectory): the one holding dist/, cities/ and node_modules/. */
export { PROJECT_ROOT };
/** What the service runs, relative to the project folder: the compiled platform (`npm run build`). */
export const SERVICE_ENTRY = path.join('dist', 'bin', 'citypulse.js');

export const DEFAULT_UNIT_DIR = '/etc/systemd/system';
export const DEFAULT_ENV_FILE = '/etc/citypulse/citypulse.env';

/** What the unit runs and as whom. */
export interface ServiceUnitOptions {
  /** Account the platform runs as; it must be able to write the data folder (dataDir). */
  user: string;
  /** Project folder (default {@link PROJECT_ROOT}); relative dataDir and cityProfile resolve against it. */
  workingDirectory?: string;
  /** Absolute path of `node` (default the one running this code). */
  node?: string;
  /** Configuration file, passed as CITYPULSE_CONFIG (absolute). */
  configFile?: string;
  /** Optional file of CITYPULSE_* variables (default {@link DEFAULT_ENV_FILE}); a missing file is no error. */
  envFile?: string;
  /** Seconds systemd waits before starting a crashed platform again (default 2). */
  restartSec?: number;
  /** Seconds a stop may take (flush, then influxd's own stop) before SIGKILL (default 90). */
  timeoutStopSec?: number;
}

/** The systemd unit (citypulse.service) for these options. */
export function systemdUnit(opts: ServiceUnitOptions): string {
  const root = opts.workingDirectory ?? PROJECT_ROOT;
  const node = opts.node ?? process.execPath;
  const envFile = opts.envFile ?? DEFAULT_ENV_FILE;
  // Plain node on the compiled JavaScript: no TypeScript loader (and its compiler processes) in production.
  const exec = [node, path.join(root, SERVICE_ENTRY), 'start', '--no-simulate'];
  const lines = [
    '# Written by `citypulse install-service` (platform/service.ts); see docs/operations.md.',
    '[Unit]',
    'Description=citypulse smart-city telemetry platform (MQTT broker, ingest, local InfluxDB, API)',
    `Documentation=${escapeSpecifiers(`file://${path.join(root, 'docs', 'operations.md')}`)}`,
    'After=network-online.target',
    'Wants=network-online.target',
    '# No start limit: an unattended machine keeps trying, however often the platform crashed.',
    'StartLimitIntervalSec=0',
    '',
    '[Service]',
    'Type=simple',
    `User=${opts.user}`,
    `WorkingDirectory=${escapeSpecifiers(root)}`,
    ...(opts.configFile ? [`Environment=${quoteWord(`CITYPULSE_CONFIG=${path.resolve(opts.configFile)}`)}`] : []),
    `EnvironmentFile=-${escapeSpecifiers(envFile)}`,
    `ExecStart=${exec.map(quoteArg).join(' ')}`,
    'Restart=always',
    `RestartSec=${opts.restartSec ?? 2}`,
    '# SIGTERM to the platform only: it flushes readings into its InfluxDB, then stops it. What is left after',
    '# a crash or after TimeoutStopSec (the influxd child) gets SIGKILL.',
    'KillMode=mixed',
    'KillSignal=SIGTERM',
    `TimeoutStopSec=${opts.timeoutStopSec ?? 90}`,
    '# broker.maxConnections (18,000 by default) needs a descriptor each, besides files and InfluxDB.',
    'LimitNOFILE=65536',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
  ];
  return `${lines.join('\n')}\n`;
}

/** Options for {@link installService}. */
export interface InstallServiceOptions extends Omit<ServiceUnitOptions, 'user'> {
  /** Default: the owner of the working directory ({@link defaultServiceUser}). */
  user?: string;
  /** Unit name without `.service` (default citypulse). */
  name?: string;
  /** Folder the unit is written to (default /etc/systemd/system). */
  unitDir?: string;
  /** `systemctl daemon-reload` and `enable --now` when systemd runs this machine (default true). */
  enable?: boolean;
  log?: (msg: string) => void;
}

/**
 * Writes the unit, a commented environment file when none exists, and, when systemd runs this machine and
 * `enable` is not false, reloads systemd and enables and starts the service (it then also starts at boot).
 */
export async function installService(
  opts: InstallServiceOptions = {},
): Promise<{ unitFile: string; envFile: string; user: string; enabled: boolean }> {
  const log = opts.log ?? (() => {});
  const root = opts.workingDirectory ?? PROJECT_ROOT;
  const user = opts.user ?? (await defaultServiceUser(root));
  const name = opts.name ?? 'citypulse';
  const unitFile = path.join(opts.unitDir ?? DEFAULT_UNIT_DIR, `${name}.service`);
  const envFile = opts.envFile ?? DEFAULT_ENV_FILE;
  // A unit whose ExecStart is missing would fail at every restart: refuse to write it.
  const entry = path.join(root, SERVICE_ENTRY);
  if (!existsSync(entry)) throw new Error(`${entry} is missing: build the platform first (npm run build)`);

  await mkdir(path.dirname(unitFile), { recursive: true });
  await writeFile(unitFile, systemdUnit({ ...opts, user, workingDirectory: root, envFile }));
  log(`wrote ${unitFile} (runs as ${user} in ${root})`);
  if (!existsSync(envFile)) {
    await mkdir(path.dirname(envFile), { recursive: true });
    // 0600: it may hold tokens and passwords (CITYPULSE_API_ADMIN_TOKEN, CITYPULSE_INFLUX_PASSWORD).
    await writeFile(envFile, ENV_FILE_TEMPLATE, { mode: 0o600 });
    log(`wrote ${envFile} (CITYPULSE_* options for the service; see \`citypulse options\`)`);
  }

  // sd_booted(): systemd is the running init when this folder exists.
  const systemdRuns = existsSync('/run/systemd/system');
  if (opts.enable === false || !systemdRuns) {
    log(
      systemdRuns
        ? `not enabled; to start it now and at every boot: systemctl daemon-reload && systemctl enable --now ${name}`
        : `systemd is not running on this machine: nothing enabled. On a systemd host: systemctl daemon-reload && systemctl enable --now ${name}`,
    );
    return { unitFile, envFile, user, enabled: false };
  }
  const run = promisify(execFile);
  await run('systemctl', ['daemon-reload']);
  await run('systemctl', ['enable', '--now', `${name}.service`]);
  log(`enabled and started ${name}.service (status: systemctl status ${name}; logs: journalctl -u ${name} -f)`);
  return { unitFile, envFile, user, enabled: true };
}

const ENV_FILE_TEMPLATE = `# CITYPULSE_* options of the citypulse service (one NAME=value a line; \`citypulse options\` lists them all).
# An unknown CITYPULSE_* name stops the platform at start with CP_CONFIG_INVALID (see journalctl -u citypulse).
# After a change: systemctl restart citypulse
#CITYPULSE_BROKER_HOST=0.0.0.0
#CITYPULSE_API_HOST=0.0.0.0
#CITYPULSE_DATA_DIR=/var/lib/citypulse
`;

/** The account owning `dir` (from /etc/passwd), or its numeric uid, which systemd's User= accepts too. */
export async function defaultServiceUser(dir: string = PROJECT_ROOT): Promise<string> {
  const { uid } = await stat(dir);
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  for (const line of passwd.split('\n')) {
    const [name, , id] = line.split(':');
    if (name && Number(id) === uid) return name;
  }
  return String(uid);
}

/** `%` starts a specifier in every unit setting: doubled, it stands for itself. */
function escapeSpecifiers(s: string): string {
  return s.replace(/%/g, '%%');
}

/** One ExecStart= word: `$` (variable expansion there) escaped as well. */
function quoteArg(arg: string): string {
  return quoteWord(arg.replace(/\$/g, '$$$$'));
}

/** One word of a setting that splits on spaces: specifiers escaped; quoted when it holds a space, quote or backslash. */
function quoteWord(word: string): string {
  const escaped = escapeSpecifiers(word);
  return /[\s"'\\;]/.test(escaped) ? `"${escaped.replace(/[\\"]/g, '\\$&')}"` : escaped;
}
