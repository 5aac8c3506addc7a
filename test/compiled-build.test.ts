/**
 * The platform compiled to JavaScript, as `npm start` and the systemd service run it:
 * - tsc builds tsconfig.build.json into a fresh folder, and plain node (no tsx, so no esbuild process beside it)
 *   starts `<out>/bin/citypulse.js` on a temp data folder and free ports. It finds what it loads by path at run
 *   time (the store worker thread beside its compiled module, the dashboard's build, the city profile), answers
 *   /api/v1/health, stores an acknowledged reading in its InfluxDB, and a SIGTERM stops it with exit code 0.
 * - scripts/node-headers.sh, through which scripts/setup.sh points npm ci's node-gyp at the installed Node headers
 *   whatever the user's npm configuration: it names the prefix of the `node` on PATH when that holds headers of
 *   this Node's ABI, and never one whose headers are of another ABI. It runs with an empty HOME (no ~/.npmrc).
 *
 * Run: node --import tsx --test test/compiled-build.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { freePort, startPlatformProcess } from './helpers/process.ts';
import { waitFor } from './helpers/wait.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const run = promisify(execFile);
const ADMIN_TOKEN = 'test-admin-token-000000000000';

/** Names (comm) of the live child processes of `pid`. */
async function childNames(pid: number): Promise<string[]> {
  const names: string[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid …: comm may hold spaces and parentheses, so split at the last ')'.
    const close = stat.lastIndexOf(')');
    if (close < 0 || Number(stat.slice(close + 2).split(' ')[1]) !== pid) continue;
    names.push(stat.slice(stat.indexOf('(') + 1, close));
  }
  return names;
}

test('the compiled build starts with plain node, stores a reading and stops on SIGTERM', { timeout: 120_000 }, async (t) => {
  // Inside the project folder (.tmp/ is ignored by git), as dist/ is: node_modules and package.json ("type":
  // "module") are found above the compiled files.
  const out = path.join(ROOT, '.tmp', `compiled-build-${process.pid}`);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'citypulse-compiled-'));
  t.after(async () => {
    await rm(out, { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
  });
  const started = Date.now();
  await run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--outDir', out], {
    cwd: ROOT,
  }).catch((err) => assert.fail(`tsc -p tsconfig.build.json failed:\n${err.stdout}${err.stderr}`));
  t.diagnostic(`tsc: ${Date.now() - started} ms`);
  const entry = path.join(out, 'bin', 'citypulse.js');
  assert.ok(existsSync(entry), 'bin/citypulse.js compiled');
  assert.ok(existsSync(path.join(out, 'ingest', 'store-worker.js')), 'the store worker compiled beside ingest/store.js');
  assert.ok(!existsSync(path.join(out, 'test')) && !existsSync(path.join(out, 'bench')), 'tests and bench are not part of the build');
  // Relative imports point at the compiled .js files (rewriteRelativeImportExtensions).
  assert.doesNotMatch(await readFile(entry, 'utf8'), /from\s+["']\.{1,2}\/[^"']*\.ts["']/);

  const ports = { api: await freePort(), mqtt: await freePort() };
  const influxPort = await freePort();
  const env = { CITYPULSE_DATA_DIR: dataDir, CITYPULSE_INFLUX_LOCAL_PORT: String(influxPort), CITYPULSE_API_ADMIN_TOKEN: ADMIN_TOKEN };
  const boot = Date.now();
  const p = await startPlatformProcess(env, ports, [entry]);
  t.diagnostic(`compiled platform: health answered ${Date.now() - boot} ms after spawn`);
  t.after(async () => {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
    const pid = Number((await readFile(path.join(dataDir, 'influxdb', 'influxd.pid'), 'utf8').catch(() => '')).trim());
    if (pid) process.kill(pid, 'SIGKILL');
  });
  const health = (await (await fetch(`${p.api}/api/v1/health`)).json()) as any;
  assert.equal(health.status, 'ok', JSON.stringify(health));
  assert.ok(health.durableLog.segments >= 1, 'the store worker opened the durable log');
  assert.deepEqual(await childNames(p.child.pid as number), ['influxd'], 'no TypeScript compiler process beside the platform');

  // The dashboard's build is found in the project folder, not beside the compiled module.
  const index = path.join(ROOT, 'dashboard', 'dist', 'index.html');
  if (existsSync(index)) {
    const res = await fetch(`${p.api}/`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), await readFile(index, 'utf8'));
  } else t.diagnostic('dashboard/dist not built: its serving is not checked (scripts/setup.sh builds it)');

  // One acknowledged reading through the store worker into InfluxDB.
  const res = await fetch(`${p.api}/api/v1/devices`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ family: 'traffic', zone: 'tran-phu', location: { lat: 21.27, lon: 106.19 } }),
  });
  const text = await res.text();
  assert.equal(res.status, 201, text);
  const { device, token } = JSON.parse(text) as { device: { id: string }; token: string };
  const client = await mqtt.connectAsync(p.mqtt, { clientId: device.id, username: device.id, password: token, reconnectPeriod: 0 });
  t.after(() => client.end(true));
  const observed = Date.now() - 60_000;
  await client.publishAsync(`devices/${device.id}/telemetry`, JSON.stringify({ dateObserved: observed, intensity: 42 }), { qos: 1 });
  const q = `SELECT "intensity" FROM "traffic" WHERE time = ${observed}ms`;
  const values = await waitFor(
    async () => {
      const r = await fetch(`http://127.0.0.1:${influxPort}/query?${new URLSearchParams({ db: 'citypulse', q, epoch: 'ms' })}`);
      const body = (await r.json()) as any;
      return body.results?.[0]?.series?.[0]?.values as unknown[][] | undefined;
    },
    20_000,
    'the reading in InfluxDB',
  );
  assert.deepEqual(values, [[observed, 42]]);
  client.end(true);

  p.child.kill('SIGTERM');
  assert.equal(await p.exited, 0, `SIGTERM exits 0:\n${p.output()}`);
});

test('scripts/node-headers.sh names the installed headers of this Node for npm ci, with an empty HOME', { timeout: 30_000 }, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'citypulse-headers-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const home = path.join(dir, 'home');
  await mkdir(home);
  // A node installed under its own prefix (<prefix>/bin/node, <prefix>/include/node): a wrapper of this one.
  const prefix = path.join(dir, 'prefix');
  await mkdir(path.join(prefix, 'bin'), { recursive: true });
  await mkdir(path.join(prefix, 'include', 'node'), { recursive: true });
  await writeFile(path.join(prefix, 'bin', 'node'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} "$@"\n`);
  await chmod(path.join(prefix, 'bin', 'node'), 0o755);
  const header = path.join(prefix, 'include', 'node', 'node_version.h');
  const headersOf = (abi: string) => `#define NODE_MAJOR_VERSION 20\n#define NODE_MODULE_VERSION ${abi}\n`;
  const nodedir = async () => {
    const { stdout } = await run('bash', [path.join(ROOT, 'scripts', 'node-headers.sh')], {
      cwd: ROOT,
      env: { HOME: home, PATH: `${path.join(prefix, 'bin')}:${process.env.PATH}` },
    });
    return stdout.trim();
  };

  await writeFile(header, headersOf(process.versions.modules));
  assert.equal(await nodedir(), prefix, 'the prefix of the node on PATH, which holds include/node');

  // Headers of another Node (another ABI) would build an addon this Node cannot load: never named.
  await writeFile(header, headersOf(String(Number(process.versions.modules) + 1)));
  assert.notEqual(await nodedir(), prefix);

  // This machine's own Node: where its headers are installed beside it, that folder.
  const system = path.dirname(path.dirname(process.execPath));
  const own = path.join(system, 'include', 'node', 'node_version.h');
  if (existsSync(own) && new RegExp(`^#define NODE_MODULE_VERSION ${process.versions.modules}\\b`, 'm').test(await readFile(own, 'utf8'))) {
    const { stdout } = await run('bash', [path.join(ROOT, 'scripts', 'node-headers.sh')], {
      cwd: ROOT,
      env: { HOME: home, PATH: process.env.PATH },
    });
    assert.equal(stdout.trim(), system);
  } else t.diagnostic(`no headers of this Node in ${system}/include/node`);
});
