/**
 * Test helper: a private PostgreSQL (platform/engines/postgres.ts) in a fresh temp dir, stopped and removed
 * by the cleanup it registers, and a fresh database on it per test so tests share one server without sharing
 * state. fsync is off: the data is thrown away, and crash tests kill the server process, not the machine.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LocalPostgres, startLocalPostgres } from '../../platform/engines/postgres.ts';
import { onCleanup } from './scope.ts';

type After = { after(fn: () => unknown): void };

/** Starts PostgreSQL for `t` (a test, or fileScope() for a whole file). */
export async function startTestPostgres(t: After, settings: Record<string, string> = {}): Promise<LocalPostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-pg-'));
  let pg: LocalPostgres;
  try {
    pg = await startLocalPostgres({ dir, settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', ...settings } });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  onCleanup(t, async () => {
    await pg.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return pg;
}

let databases = 0;

/** A new empty database on `pg`, owned by its login role; returns its URL. */
export function freshDatabase(pg: LocalPostgres): Promise<string> {
  return pg.createDatabase(`t_${process.pid}_${++databases}_${Math.random().toString(36).slice(2, 8)}`);
}
