/**
 * `citypulse install-service`: the systemd unit it writes passes `systemd-analyze verify`, holds the settings an
 * unattended machine needs (restart after a crash, start at boot, stop that ends the influxd child, the
 * configuration), and its ExecStart (plain node on the compiled dist/bin/citypulse.js, built first when stale), run
 * as systemd runs it (WorkingDirectory, a bare environment plus the unit's Environment=), starts the platform,
 * which a SIGTERM (KillSignal) stops cleanly with its influxd. Without dist/ no unit is written.
 * Writes into a temporary folder with --no-enable: the machine's own systemd is never touched.
 *
 * Run: node --import tsx --test test/install-service.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { existsSync } from 'node:fs';
import { installService } from '../platform/service.ts';
import { freePort } from './helpers/process.ts';
import { waitFor, isAlive } from './helpers/wait.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const run = promisify(execFile);
/** The PATH systemd gives a service. */
const SYSTEMD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `[Section] Key=value` lines as `Section.Key` → every value given (comments and blank lines skipped). */
function parseUnit(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1] as string;
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

/** Splits a command line as systemd does for ExecStart (double quotes, backslash escapes, `%%` and `$$`). */
function splitWords(line: string): string[] {
  const words = line.match(/"(?:[^"\\]|\\.)*"|\S+/g) ?? [];
  return words.map((w) => (w.startsWith('"') ? w.slice(1, -1).replace(/\\(.)/g, '$1') : w).replace(/%%/g, '%').replace(/\$\$/g, '$'));
}

test('install-service writes a unit that systemd accepts and whose ExecStart runs the platform', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'citypulse-service-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const ports = { api: await freePort(), mqtt: await freePort(), influx: await freePort() };
  const configFile = path.join(dir, 'config with space.json');
  await writeFile(
    configFile,
    JSON.stringify({
      dataDir: path.join(dir, 'data'),
      broker: { port: ports.mqtt },
      api: { port: ports.api },
      influx: { localPort: ports.influx },
      log: { level: 'warn' },
    }),
  );
  const unitDir = path.join(dir, 'units');
  const envFile = path.join(dir, 'etc', 'citypulse.env');
  const cli = ['--import', 'tsx', 'bin/citypulse.ts', 'install-service'];
  // installService refuses a unit whose ExecStart is not built yet: dist/ first.
  await run('bash', [path.join(ROOT, 'scripts', 'build-dist.sh')], { cwd: ROOT });
  const args = [...cli, '--config', configFile, '--unit-dir', unitDir, '--environment-file', envFile, '--no-enable'];
  await run(process.execPath, args, { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME } });

  const unitFile = path.join(unitDir, 'citypulse.service');
  const text = await readFile(unitFile, 'utf8');
  const unit = parseUnit(text);
  const one = (key: string) => {
    const v = unit.get(key);
    assert.equal(v?.length, 1, `${key} once in\n${text}`);
    return v?.[0] as string;
  };
  assert.equal(one('Service.Restart'), 'always');
  assert.ok(Number(one('Service.RestartSec')) > 0);
  assert.equal(one('Unit.StartLimitIntervalSec'), '0', 'never gives up restarting');
  assert.equal(one('Service.KillMode'), 'mixed', 'SIGTERM to the platform, SIGKILL to what is left (influxd)');
  assert.equal(one('Service.WorkingDirectory'), ROOT);
  const owner = (await stat(ROOT)).uid;
  const passwd = await readFile('/etc/passwd', 'utf8');
  const ownerName = passwd
    .split('\n')
    .find((l) => Number(l.split(':')[2]) === owner)
    ?.split(':')[0];
  assert.equal(one('Service.User'), ownerName, 'runs as the owner of the project folder by default');
  assert.deepEqual(splitWords(one('Service.Environment')), [`CITYPULSE_CONFIG=${configFile}`]);
  assert.equal(one('Service.EnvironmentFile'), `-${envFile}`);
  assert.equal(one('Install.WantedBy'), 'multi-user.target', 'started at boot');
  assert.equal((await stat(envFile)).mode & 0o777, 0o600, 'the environment file may hold secrets');

  // `--print` shows the same unit.
  const printed = await run(process.execPath, [...cli, '--print', '--config', configFile, '--environment-file', envFile], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
  });
  assert.equal(printed.stdout, text);

  // systemd's own parser: exit 0 and not one warning (an unknown key or bad value only warns).
  const verify = await run('systemd-analyze', ['verify', unitFile]).catch((err) => err);
  assert.equal(verify.code ?? 0, 0, `systemd-analyze verify failed:\n${verify.stderr}`);
  assert.equal(`${verify.stdout}${verify.stderr}`.trim(), '', 'systemd-analyze verify warns');

  // ExecStart runs the compiled platform (dist/) with plain node: no TypeScript loader in production.
  const [cmd, ...execArgs] = splitWords(one('Service.ExecStart'));
  assert.deepEqual([cmd, ...execArgs], [process.execPath, path.join(ROOT, 'dist', 'bin', 'citypulse.js'), 'start', '--no-simulate']);

  // ExecStart as systemd runs it: in WorkingDirectory, systemd's PATH, the unit's Environment= only.
  const env: Record<string, string> = { PATH: SYSTEMD_PATH, HOME: process.env.HOME ?? '/root', LANG: 'C.UTF-8' };
  for (const e of splitWords(one('Service.Environment'))) env[e.slice(0, e.indexOf('='))] = e.slice(e.indexOf('=') + 1);
  const platform = spawn(cmd as string, execArgs, { cwd: one('Service.WorkingDirectory'), env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  platform.stdout.on('data', (d: Buffer) => (output += d));
  platform.stderr.on('data', (d: Buffer) => (output += d));
  const exited = new Promise<number | string>((res) => platform.once('exit', (code, signal) => res(code ?? signal ?? -1)));
  t.after(() => platform.kill('SIGKILL'));

  const health = await waitFor(
    async () => {
      if (platform.exitCode !== null) throw new Error(`ExecStart exited:\n${output}`);
      const res = await fetch(`http://127.0.0.1:${ports.api}/api/v1/health`).catch(() => undefined);
      return res?.ok ? ((await res.json()) as any) : undefined;
    },
    60_000,
    'the platform started by ExecStart',
  );
  assert.equal(health.status, 'ok');
  assert.equal((await fetch(`http://127.0.0.1:${ports.influx}/ping`)).status, 204, 'its own InfluxDB on the configured port');
  const influxd = Number((await readFile(path.join(dir, 'data', 'influxdb', 'influxd.pid'), 'utf8')).trim());
  const ppid = Number((await readFile(`/proc/${influxd}/stat`, 'utf8')).split(') ')[1]?.split(' ')[1]);
  assert.equal(ppid, platform.pid, 'influxd is a child of the service process (in its cgroup)');
  t.after(() => {
    if (isAlive(influxd)) process.kill(influxd, 'SIGKILL');
  });

  platform.kill('SIGTERM'); // KillSignal= to the main process
  assert.equal(await exited, 0, `SIGTERM exits 0:\n${output}`);
  assert.equal(isAlive(influxd), false, 'the platform stops its influxd');
});

test('install-service refuses to write a unit whose compiled platform is missing', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'citypulse-service-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const unitDir = path.join(dir, 'units');
  await assert.rejects(
    installService({ workingDirectory: dir, user: 'root', unitDir, envFile: path.join(dir, 'citypulse.env'), enable: false }),
    /dist\/bin\/citypulse\.js is missing: build the platform first \(npm run build\)/,
  );
  assert.equal(existsSync(unitDir), false, 'nothing written');
});
