/**
 * The private PostgreSQL launcher (platform/engines/postgres.ts): as root the server runs as the postgres
 * system user in a folder handed to it; the database and its login role answer over TCP with the password in
 * the URL and refuse a wrong one; a crash (SIGKILL) leaves a stale postmaster.pid that the next start on the
 * same folder handles, keeping the data; a pid file naming an unrelated live process is removed (the process
 * left alone); a server
 * left running on the folder is shut down before a new one starts there.
 *
 * Run: node --import tsx --test test/postgres-engine.test.ts (needs Debian postgresql-15)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type LocalPostgres, startLocalPostgres } from '../platform/engines/postgres.ts';

type After = { after(fn: () => unknown): void };

async function folder(t: After): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-pg-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function start(t: After, dir: string): Promise<LocalPostgres> {
  const server = await startLocalPostgres({ dir, settings: { fsync: 'off' } });
  t.after(() => server.stop());
  return server;
}

async function query(url: string, sql: string): Promise<any[]> {
  const c = new pg.Client(url);
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

/** True while `pid` runs (a zombie has ended). */
async function running(pid: number): Promise<boolean> {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return s !== '' && s.slice(s.lastIndexOf(')') + 2)[0] !== 'Z';
}

/** The real uid a process runs as. */
async function uidOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
}

test('a server of its own: the login role over TCP with its password, as the postgres user when root', async (t) => {
  const dir = await folder(t);
  const server = await start(t, dir);
  const url = new URL(server.url);
  assert.equal(url.hostname, '127.0.0.1');
  assert.equal(Number(url.port), server.port);
  assert.deepEqual(await query(server.url, 'SELECT current_user AS u, current_database() AS d'), [{ u: 'citypulse', d: 'citypulse' }]);
  url.password = 'not-the-password';
  await assert.rejects(query(url.toString(), 'SELECT 1'), /password authentication failed/);
  if (process.getuid?.() === 0) {
    const postgresUid = Number(
      (await readFile('/etc/passwd', 'utf8'))
        .split('\n')
        .find((l) => l.startsWith('postgres:'))
        ?.split(':')[2],
    );
    assert.equal(await uidOf(server.pid), postgresUid, 'the server runs as the postgres system user');
    assert.equal((await stat(join(dir, 'data'))).uid, postgresUid, 'its folder is that user’s');
  }
  const other = await server.createDatabase('second_db');
  assert.deepEqual(await query(other, 'SELECT current_database() AS d'), [{ d: 'second_db' }]);
});

test('after a crash: the stale postmaster.pid is handled by the next start on the folder, the data kept', async (t) => {
  const dir = await folder(t);
  const first = await start(t, dir);
  await query(first.url, 'CREATE TABLE kept (n integer); INSERT INTO kept VALUES (7)');
  await first.kill();
  assert.ok(existsSync(join(dir, 'data', 'postmaster.pid')), 'a crash leaves its pid file');
  const second = await start(t, dir);
  assert.deepEqual(await query(second.url, 'SELECT n FROM kept'), [{ n: 7 }]);
  await second.stop();

  // A pid file naming a live process the server could signal (same user) that is not this folder's server, as
  // when the pid of a crashed server was reused: another server's. PostgreSQL alone would refuse to start.
  const foreign = await start(t, await folder(t));
  await writeFile(join(dir, 'data', 'postmaster.pid'), `${foreign.pid}\n${join(dir, 'data')}\n`);
  const third = await start(t, dir);
  assert.deepEqual(await query(third.url, 'SELECT n FROM kept'), [{ n: 7 }]);
  assert.ok(await running(foreign.pid), 'the process the stale file named is left alone');
});

test('a server left running on the folder is shut down before a new one starts there', async (t) => {
  const dir = await folder(t);
  const left = await start(t, dir);
  const again = await start(t, dir);
  assert.notEqual(again.pid, left.pid);
  assert.equal(await running(left.pid), false, 'the one left running was shut down');
  assert.deepEqual(await query(again.url, 'SELECT 1 AS one'), [{ one: 1 }]);
});

test('restart keeps the port and the password; freeze leaves connections unanswered until thaw', async (t) => {
  const server = await start(t, await folder(t));
  const { url, port } = server;
  await server.restart();
  assert.equal(server.port, port);
  assert.equal(server.url, url);
  assert.deepEqual(await query(url, 'SELECT 2 AS two'), [{ two: 2 }]);
  await server.freeze();
  const c = new pg.Client({ connectionString: url, query_timeout: 500, connectionTimeoutMillis: 500 });
  c.on('error', () => undefined);
  await assert.rejects(
    c.connect().then(() => c.query('SELECT 1')),
    /timeout/i,
  );
  await c.end().catch(() => undefined);
  await server.thaw();
  assert.deepEqual(await query(url, 'SELECT 3 AS three'), [{ three: 3 }]);
});
