/**
 * Finding `influxd` (InfluxDB 1.x) on this machine, and installing the Debian packages when it is missing and
 * the platform runs as root: the private InfluxDB of influxdb-process.ts needs the binary, nothing else of the
 * package (its own service and shared data directory are not used).
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

const INSTALL_HINT = 'install the Debian packages as root: DEBIAN_FRONTEND=noninteractive apt-get install -y influxdb influxdb-client';

/**
 * Returns the path of `influxd`, installing the Debian packages `influxdb` and
 * `influxdb-client` with apt-get when it is missing and we run as root.
 * Installing starts no service in a container; on a systemd host the package's own
 * service may start, which this module does not rely on or touch.
 * @throws Error naming the packages to install when not root or when apt-get fails.
 */
export async function ensureInfluxInstalled(log: (msg: string) => void = () => {}): Promise<string> {
  const found = await findInfluxd();
  if (found) return found;

  if (process.getuid?.() !== 0) {
    throw new Error(`influxd (InfluxDB 1.x) not found on PATH or at /usr/bin/influxd; ${INSTALL_HINT}`);
  }

  // Try without `apt-get update` first: when the package lists are already there, this
  // saves a network round trip; a stale or empty list makes install fail, then we update.
  const install = ['install', '-y', '--no-install-recommends', 'influxdb', 'influxdb-client'];
  log('influxd not found; installing influxdb influxdb-client with apt-get');
  try {
    await runApt(install);
  } catch {
    log('apt-get install failed; running apt-get update and retrying');
    try {
      await runApt(['update']);
      await runApt(install);
    } catch (err) {
      throw new Error(`installing InfluxDB failed (${(err as Error).message}); ${INSTALL_HINT}`, { cause: err });
    }
  }

  const installed = await findInfluxd();
  if (!installed) throw new Error(`apt-get reported success but influxd is still missing; ${INSTALL_HINT}`);
  log(`installed ${installed}`);
  return installed;
}

function findInfluxd(): Promise<string | undefined> {
  return findExecutable('influxd');
}

/** The first executable `name` on PATH (or in /usr/bin). */
export async function findExecutable(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin'];
  for (const d of dirs) {
    const candidate = join(d, name);
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

function runApt(args: string[]): Promise<void> {
  return new Promise((res, rej) => {
    execFile(
      'apt-get',
      args,
      { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, maxBuffer: 64 * 1024 * 1024 },
      (err, _stdout, stderr) => {
        if (!err) return res();
        const tail = String(stderr).trim().split('\n').slice(-5).join(' | ');
        rej(new Error(`apt-get ${args[0]} failed: ${tail || err.message}`));
      },
    );
  });
}
