/**
 * One behavioural suite for every implementation of the state stores: DeviceStore, OperatorStore and
 * DeadLetterStore, run against SQLite (one node) and against a real PostgreSQL (cluster mode), so that both
 * answer alike: ids and tokens, the answers of a token check, errors and their codes, sessions and their end,
 * refused attempts aggregated in the audit log and the log's bounds, last-seen batching, dead-letter bounds.
 * Then what PostgreSQL adds: stores on two connections (two nodes) see each other's writes, nothing secret is
 * stored in clear there, and the schema is migrated once however many nodes start at once.
 *
 * Run: node --import tsx --test test/state-stores.test.ts (starts its own PostgreSQL; needs Debian postgresql-15)
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalPostgres } from '../platform/engines/postgres.ts';
import { SqliteAlarmStore } from '../alarms/index.ts';
import { SqliteDeadLetterStore, type DeadLetterStore } from '../ingest/dead-letters.ts';
import { DEAD_LETTER_COMPONENT, DEAD_LETTER_MIGRATIONS, PgDeadLetterStore } from '../ingest/pg-dead-letters.ts';
import {
  type DeviceStore,
  type OperatorStore,
  PgDeviceStore,
  PgOperatorStore,
  REGISTRY_COMPONENT,
  REGISTRY_MIGRATIONS,
  SqliteDeviceStore,
  SqliteOperatorStore,
  StateDb,
} from '../registry/index.ts';
import { SEEN_FLUSH_MS } from '../registry/device-store.ts';
import { freshDatabase, startTestPostgres } from './helpers/postgres.ts';
import { fileScope } from './helpers/scope.ts';

const scope = fileScope();
let server: LocalPostgres;
before(async () => {
  server = await startTestPostgres(scope);
});

type After = { after(fn: () => unknown): void };
const ZONES = new Set(['centre', 'north']);
const zoneExists = (z: string) => ZONES.has(z);

/** One backing (a SQLite folder, a PostgreSQL database) on which stores are opened, several times if asked (two nodes). */
interface Backing {
  devices(): Promise<DeviceStore>;
  operators(auditLimit?: number): Promise<OperatorStore>;
  deadLetters(limit?: number): Promise<DeadLetterStore>;
  /** The stored value of one column, for checks of what is kept on disk. */
  raw?(sql: string, values: unknown[]): Promise<unknown[]>;
}

interface Impl {
  name: string;
  backing(t: After): Promise<Backing>;
}

const sqlite: Impl = {
  name: 'SQLite',
  async backing(t) {
    const dir = await mkdtemp(join(tmpdir(), 'citypulse-state-'));
    const closers: (() => Promise<void>)[] = [];
    t.after(async () => {
      for (const c of closers.reverse()) await c();
      await rm(dir, { recursive: true, force: true });
    });
    const keep = <T extends { close(): Promise<void> }>(s: T) => {
      closers.push(() => s.close());
      return s;
    };
    return {
      devices: async () => keep(new SqliteDeviceStore(join(dir, 'registry.db'), zoneExists)),
      operators: async (limit) => keep(new SqliteOperatorStore(join(dir, 'operators.db'), limit)),
      deadLetters: async (limit) => keep(new SqliteDeadLetterStore(join(dir, 'dead-letters.db'), limit)),
    };
  },
};

/** A migrated StateDb on `url` (one node's pool), closed by t's cleanup. */
async function openDb(t: After, url: string, queryTimeoutMs = 5000): Promise<StateDb> {
  const db = new StateDb({ url, queryTimeoutMs, poolSize: 4 });
  t.after(() => db.close());
  await db.migrate(REGISTRY_COMPONENT, REGISTRY_MIGRATIONS);
  await db.migrate(DEAD_LETTER_COMPONENT, DEAD_LETTER_MIGRATIONS);
  return db;
}

const postgres: Impl = {
  name: 'PostgreSQL',
  async backing(t) {
    const url = await freshDatabase(server);
    const closers: (() => Promise<void>)[] = [];
    // Stores close before their pools (cleanups run first in, first out here: registered in this order).
    t.after(async () => {
      for (const c of closers.reverse()) await c();
    });
    const keep = <T extends { close(): Promise<void> }>(s: T) => {
      closers.push(() => s.close());
      return s;
    };
    // Each store opened gets its own pool, as each node of a cluster has.
    return {
      devices: async () => keep(new PgDeviceStore(await openDb(t, url), zoneExists)),
      operators: async (limit) => keep(new PgOperatorStore(await openDb(t, url), limit)),
      deadLetters: async (limit) => {
        const s = keep(new PgDeadLetterStore(await openDb(t, url), limit));
        await s.start();
        return s;
      },
      raw: async (sql, values) => (await (await openDb(t, url)).query(sql, values)).rows,
    };
  },
};

const code = (c: string) => (e: unknown) => (e as { code?: string }).code === c;
const where = { lat: 21.27, lon: 106.19 };

for (const impl of [sqlite, postgres]) {
  describe(`${impl.name}: DeviceStore`, () => {
    test('provisioning: generated and given ids, a token shown once, the checks every store makes', async (t) => {
      const b = await impl.backing(t);
      const s = await b.devices();
      const made = await s.provision({ family: 'airQuality', zone: 'centre', location: where, name: 'School gate' });
      assert.match(made.device.id, /^aq-[0-9a-f]{10}$/);
      assert.match(made.token, /^[\w-]{32}$/);
      assert.deepEqual(
        { ...made.device, createdAt: undefined },
        { id: made.device.id, family: 'airQuality', zone: 'centre', location: where, name: 'School gate', createdAt: undefined },
      );
      assert.ok(Math.abs(Date.parse(made.device.createdAt) - Date.now()) < 5000);
      assert.deepEqual(await s.get(made.device.id), made.device);
      const given = await s.provision({ id: 'tf-gate-1', family: 'traffic', zone: 'north', location: where });
      assert.equal(given.device.id, 'tf-gate-1');
      assert.equal(given.device.name, undefined);
      await assert.rejects(
        s.provision({ id: 'tf-gate-1', family: 'traffic', zone: 'north', location: where }),
        code('CP_REGISTRY_DEVICE_EXISTS'),
      );
      await assert.rejects(s.provision({ family: 'traffic', zone: 'atlantis', location: where }), code('CP_REGISTRY_UNKNOWN_ZONE'));
      await assert.rejects(s.provision({ id: 'no spaces', family: 'traffic', zone: 'north', location: where }), TypeError);
      await assert.rejects(s.provision({ family: 'boat' as never, zone: 'north', location: where }), TypeError);
      assert.equal(await s.get('nobody'), undefined);
    });

    test('token checks: ok, wrong, unknown, revoked (a wrong token on a revoked device is wrong); rotation', async (t) => {
      const s = await (await impl.backing(t)).devices();
      const { device, token } = await s.provision({ family: 'streetLight', zone: 'centre', location: where });
      assert.equal((await s.checkToken(device.id, token)).result, 'ok');
      assert.deepEqual(await s.checkToken(device.id, `${token}x`), { result: 'wrong' });
      assert.deepEqual(await s.checkToken(device.id, ''), { result: 'wrong' });
      assert.deepEqual(await s.checkToken('sl-nobody', token), { result: 'unknown' });
      const rotated = await s.rotateToken(device.id);
      assert.match(rotated, /^[\w-]{32}$/);
      assert.equal((await s.checkToken(device.id, token)).result, 'wrong', 'the old token stops working');
      const ok = await s.checkToken(device.id, rotated);
      assert.equal(ok.result, 'ok');
      assert.equal(ok.result === 'ok' && ok.device.id, device.id);
      await assert.rejects(s.rotateToken('sl-nobody'), code('CP_REGISTRY_DEVICE_NOT_FOUND'));
      const revoked = await s.revoke(device.id);
      assert.ok(revoked.revokedAt);
      const check = await s.checkToken(device.id, rotated);
      assert.equal(check.result, 'revoked');
      assert.equal(check.result === 'revoked' && check.device.revokedAt, revoked.revokedAt);
      assert.deepEqual(await s.checkToken(device.id, 'not-it'), { result: 'wrong' });
      await sleep(5);
      assert.equal((await s.revoke(device.id)).revokedAt, revoked.revokedAt, 'revoking again keeps the first time');
      await assert.rejects(s.revoke('sl-nobody'), code('CP_REGISTRY_DEVICE_NOT_FOUND'));
    });

    test('listing: ordered by id, by family and zone, revoked ones only when asked', async (t) => {
      const s = await (await impl.backing(t)).devices();
      for (const [id, family, zone] of [
        ['tf-b', 'traffic', 'centre'],
        ['aq-c', 'airQuality', 'north'],
        ['tf-a', 'traffic', 'north'],
        ['Tf-upper', 'traffic', 'north'],
      ] as const) {
        await s.provision({ id, family, zone, location: where });
      }
      await s.revoke('tf-b');
      const ids = async (f?: Parameters<DeviceStore['list']>[0]) => (await s.list(f)).map((d) => d.id);
      // Byte order, as SQLite sorts (upper case first), whatever the server's collation.
      assert.deepEqual(await ids(), ['Tf-upper', 'aq-c', 'tf-a']);
      assert.deepEqual(await ids({ includeRevoked: true }), ['Tf-upper', 'aq-c', 'tf-a', 'tf-b']);
      assert.deepEqual(await ids({ family: 'traffic', includeRevoked: true }), ['Tf-upper', 'tf-a', 'tf-b']);
      assert.deepEqual(await ids({ zone: 'north', family: 'traffic' }), ['Tf-upper', 'tf-a']);
      assert.deepEqual(await ids({ zone: 'centre' }), []);
    });

    test('a page of devices: search, filters, id sets, sorting, paging and the total', async (t) => {
      const s = await (await impl.backing(t)).devices();
      for (const [id, family, zone, name] of [
        ['tf-b', 'traffic', 'centre', 'Ngã tư Bưu điện'],
        ['aq-c', 'airQuality', 'north', 'Trạm 100%_A'],
        ['tf-a', 'traffic', 'north', undefined],
        ['sl-d', 'streetLight', 'north', 'Đèn cổng chợ'],
        ['sl-e', 'streetLight', 'centre', 'Đèn bến xe'],
      ] as const) {
        await s.provision({ id, family, zone, location: where, name });
      }
      await s.revoke('sl-e');
      await s.touch('sl-d', new Date('2026-01-02T03:04:05.000Z'));
      await s.touch('tf-b', new Date('2026-01-02T03:04:06.000Z'));
      const page = async (q: Parameters<DeviceStore['query']>[0]) => {
        const out = await s.query(q);
        return { ids: out.devices.map((d) => d.id), total: out.total };
      };
      assert.deepEqual(await page({}), { ids: ['aq-c', 'sl-d', 'tf-a', 'tf-b'], total: 4 });
      assert.deepEqual(await page({ includeRevoked: true, limit: 2, offset: 1 }), { ids: ['sl-d', 'sl-e'], total: 5 });
      assert.deepEqual(await page({ q: 'TF-' }), { ids: ['tf-a', 'tf-b'], total: 2 }, 'ids, ASCII case-insensitive');
      assert.deepEqual(await page({ q: 'Bưu' }), { ids: ['tf-b'], total: 1 }, 'names');
      assert.deepEqual(await page({ q: '100%_' }), { ids: ['aq-c'], total: 1 }, 'wildcards matched as typed');
      assert.deepEqual(await page({ q: '%' }), { ids: ['aq-c'], total: 1 });
      assert.deepEqual(await page({ family: 'traffic', zone: 'north' }), { ids: ['tf-a'], total: 1 });
      assert.deepEqual(await page({ onlyIds: ['tf-a', 'sl-d', 'nobody'] }), { ids: ['sl-d', 'tf-a'], total: 2 });
      assert.deepEqual(await page({ onlyIds: [] }), { ids: [], total: 0 });
      assert.deepEqual(await page({ exceptIds: ['tf-a', 'sl-d'] }), { ids: ['aq-c', 'tf-b'], total: 2 });
      assert.deepEqual(await page({ sort: 'lastSeen', order: 'desc' }), { ids: ['tf-b', 'sl-d', 'tf-a', 'aq-c'], total: 4 });
      assert.deepEqual(await page({ sort: 'lastSeen' }), { ids: ['sl-d', 'tf-b', 'aq-c', 'tf-a'], total: 4 }, 'never seen last');
      assert.deepEqual((await page({ sort: 'name' })).ids, ['tf-b', 'aq-c', 'sl-d', 'tf-a'], 'names by bytes, unnamed last');
      assert.deepEqual((await page({ sort: 'family', order: 'desc', limit: 2 })).ids, ['tf-b', 'tf-a']);
      assert.deepEqual(await page({ limit: 2, offset: 10 }), { ids: [], total: 4 }, 'the total past the last page');
    });

    test('search in Vietnamese: any case, with or without diacritics, also in names written before the folded form was kept', async (t) => {
      const s = await (await impl.backing(t)).devices();
      for (const [id, name] of [
        ['sl-1', 'Đèn đường Trần Phú số 1'],
        ['sl-2', 'ĐÈN CHỢ THỌ XƯƠNG'],
        ['sl-3', 'Đen trắng'],
        ['sl-4', undefined],
      ] as const) {
        await s.provision({ id, family: 'streetLight', zone: 'centre', location: where, name });
      }
      const ids = async (q: string) => (await s.query({ q })).devices.map((d) => d.id);
      // Marks are left out on both sides: what is typed with them finds the same as without.
      assert.deepEqual(await ids('đèn'), ['sl-1', 'sl-2', 'sl-3'], 'đèn finds Đèn and ĐÈN (and Đen)');
      assert.deepEqual(await ids('ĐÈN CHỢ'), ['sl-2']);
      assert.deepEqual(await ids('tran phu'), ['sl-1'], 'without diacritics');
      assert.deepEqual(await ids('Trần Phú'), ['sl-1'], 'as written');
      assert.deepEqual(await ids('den'), ['sl-1', 'sl-2', 'sl-3'], 'd finds đ, e finds è');
      assert.deepEqual(await ids('tho xuong'), ['sl-2']);
      assert.deepEqual(await ids('SL-4'), ['sl-4'], 'ids still found');

      // A registry written before names were kept folded: folded when the store opens (SQLite) or by the
      // migration (PostgreSQL).
      let legacy: DeviceStore;
      if (impl.name === 'SQLite') {
        const dir = await mkdtemp(join(tmpdir(), 'citypulse-legacy-'));
        t.after(() => rm(dir, { recursive: true, force: true }));
        const file = join(dir, 'registry.db');
        const old = new Database(file);
        old.exec(`CREATE TABLE devices (
          id TEXT PRIMARY KEY, family TEXT NOT NULL, zone TEXT NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
          name TEXT, created_at TEXT NOT NULL, revoked_at TEXT, last_seen_at TEXT,
          token_salt BLOB NOT NULL, token_hash BLOB NOT NULL)`);
        old
          .prepare(
            `INSERT INTO devices VALUES ('old-1', 'streetLight', 'centre', 21.27, 106.19, 'Cột đèn Hoàng Văn Thụ', '2026-01-01T00:00:00.000Z', NULL, NULL, x'00', x'00')`,
          )
          .run();
        old.close();
        legacy = new SqliteDeviceStore(file, zoneExists);
        t.after(() => legacy.close());
      } else {
        const url = await freshDatabase(server);
        const db = new StateDb({ url, queryTimeoutMs: 5000, poolSize: 2 });
        t.after(() => db.close());
        await db.migrate(REGISTRY_COMPONENT, REGISTRY_MIGRATIONS.slice(0, 3));
        await db.query(
          `INSERT INTO devices (id, family, zone, lat, lon, name, created_at, token_salt, token_hash)
           VALUES ('old-1', 'streetLight', 'centre', 21.27, 106.19, 'Cột đèn Hoàng Văn Thụ', now(), '\\x00', '\\x00')`,
          [],
        );
        await db.migrate(REGISTRY_COMPONENT, REGISTRY_MIGRATIONS);
        legacy = new PgDeviceStore(db, zoneExists);
        t.after(() => legacy.close());
      }
      for (const q of ['hoang van thu', 'CỘT ĐÈN', 'cot den hoàng']) {
        assert.deepEqual(
          (await legacy.query({ q })).devices.map((d) => d.id),
          ['old-1'],
          q,
        );
      }
    });

    test('last seen: shown at once, the newest kept, written within the batching interval and at close', async (t) => {
      const b = await impl.backing(t);
      const s = await b.devices();
      const other = await b.devices(); // another node (PostgreSQL) or another handle on the file (SQLite)
      const a = (await s.provision({ family: 'traffic', zone: 'centre', location: where })).device.id;
      const c = (await s.provision({ family: 'traffic', zone: 'centre', location: where })).device.id;
      await s.touch(a, new Date('2026-01-02T03:04:05.000Z'));
      await s.touch(a, new Date('2026-01-02T03:04:06.000Z'));
      assert.equal((await s.get(a))?.lastSeenAt, '2026-01-02T03:04:06.000Z', 'the newest touch, at once');
      assert.equal((await s.list()).find((d) => d.id === a)?.lastSeenAt, '2026-01-02T03:04:06.000Z');
      assert.equal((await other.get(a))?.lastSeenAt, undefined, 'not written yet');
      const until = Date.now() + SEEN_FLUSH_MS + 3000;
      while ((await other.get(a))?.lastSeenAt !== '2026-01-02T03:04:06.000Z') {
        assert.ok(Date.now() < until, 'written within the batching interval');
        await sleep(50);
      }
      await s.touch(c, new Date('2026-01-02T03:04:07.000Z'));
      await s.close();
      assert.equal((await other.get(c))?.lastSeenAt, '2026-01-02T03:04:07.000Z', 'a pending touch is written at close');
    });
  });

  describe(`${impl.name}: OperatorStore`, () => {
    test('accounts: the rules for usernames, roles and passwords; duplicates; listing', async (t) => {
      const s = await (await impl.backing(t)).operators();
      assert.equal(await s.count(), 0);
      const made = await s.create({ username: 'night.ops', password: 'night-password-1', role: 'operator' });
      assert.deepEqual(
        { ...made, createdAt: undefined },
        { username: 'night.ops', role: 'operator', disabled: false, createdAt: undefined },
      );
      await assert.rejects(
        s.create({ username: 'night.ops', password: 'another-password', role: 'viewer' }),
        code('CP_REGISTRY_OPERATOR_EXISTS'),
      );
      await assert.rejects(s.create({ username: 'Upper', password: 'long-enough-1', role: 'viewer' }), TypeError);
      await assert.rejects(s.create({ username: 'someone', password: 'long-enough-1', role: 'root' as never }), TypeError);
      await assert.rejects(s.create({ username: 'someone', password: 'short', role: 'viewer' }), code('CP_API_VALIDATION'));
      await s.create({ username: 'admin', password: 'admin-password-1', role: 'admin' });
      assert.equal(await s.count(), 2);
      assert.deepEqual(
        (await s.list()).map((o) => o.username),
        ['admin', 'night.ops'],
      );
      assert.deepEqual(await s.get('night.ops'), made);
      assert.equal(await s.get('nobody'), undefined);
    });

    test('passwords: ok, wrong, unknown user, disabled; a new password ends sessions', async (t) => {
      const s = await (await impl.backing(t)).operators();
      await s.create({ username: 'ana', password: 'ana-password-1', role: 'viewer' });
      assert.equal((await s.checkPassword('ana', 'ana-password-1')).result, 'ok');
      const wrong = await s.checkPassword('ana', 'not-the-password');
      assert.equal(wrong.result, 'wrong-password');
      assert.equal(wrong.result === 'wrong-password' && wrong.operator.username, 'ana');
      const started = Date.now();
      assert.deepEqual(await s.checkPassword('nobody', 'whatever-password'), { result: 'unknown-user' });
      assert.ok(Date.now() - started > 20, 'an unknown user costs a hash too');
      const { token } = await s.createSession('ana', 60_000);
      await s.setPassword('ana', 'ana-password-2');
      assert.equal(await s.findSession(token), undefined, 'a new password ends the sessions');
      assert.equal((await s.checkPassword('ana', 'ana-password-1')).result, 'wrong-password');
      assert.equal((await s.checkPassword('ana', 'ana-password-2')).result, 'ok');
      await assert.rejects(s.setPassword('ana', 'short'), code('CP_API_VALIDATION'));
      await assert.rejects(s.setPassword('nobody', 'long-enough-1'), code('CP_REGISTRY_OPERATOR_NOT_FOUND'));
      const second = await s.createSession('ana', 60_000);
      const disabled = await s.disable('ana');
      assert.equal(disabled.disabled, true);
      assert.equal(await s.findSession(second.token), undefined, 'disabling ends the sessions');
      assert.equal((await s.checkPassword('ana', 'ana-password-2')).result, 'disabled');
      await assert.rejects(s.disable('nobody'), code('CP_REGISTRY_OPERATOR_NOT_FOUND'));
    });

    test('sessions: found by token until ended or expired; the login time recorded', async (t) => {
      const s = await (await impl.backing(t)).operators();
      await s.create({ username: 'bo', password: 'bo-password-1', role: 'admin' });
      const before = Date.now();
      const { token, session } = await s.createSession('bo', 60_000);
      assert.match(token, /^[\w-]{43}$/);
      assert.match(session.id, /^[0-9a-f]{64}$/);
      assert.ok(Math.abs(Date.parse(session.expiresAt) - (before + 60_000)) < 2000);
      const found = await s.findSession(token);
      assert.equal(found?.id, session.id);
      assert.equal(found?.operator.role, 'admin');
      assert.equal(found?.expiresAt, session.expiresAt);
      assert.ok(Date.parse((await s.get('bo'))?.lastLoginAt ?? '') >= before - 1000, 'last login time');
      assert.equal(await s.findSession(`${token}x`), undefined);
      await s.endSession(session.id);
      assert.equal(await s.findSession(token), undefined);
      const short = await s.createSession('bo', 100);
      assert.ok(await s.findSession(short.token));
      await sleep(150);
      assert.equal(await s.findSession(short.token), undefined, 'expired');
      await assert.rejects(s.createSession('nobody', 60_000), code('CP_REGISTRY_OPERATOR_NOT_FOUND'));
    });

    test('audit: newest first, filtered; refused attempts aggregated per action, address, outcome, minute (and actor)', async (t) => {
      const s = await (await impl.backing(t)).operators();
      const minute = Math.floor(Date.now() / 60_000) * 60_000;
      const at = (ms: number) => new Date(minute + ms).toISOString();
      const action = { role: 'admin' as const, address: '10.0.0.1', outcome: 'ok' };
      await s.audit({ ...action, actor: 'admin', action: 'device.provision', target: 'aq-1', at: at(1) });
      await s.audit({ ...action, actor: 'admin', action: 'device.revoke', target: 'aq-1', at: at(2) });
      // Wrong passwords: one record per actor.
      for (const [actor, ms] of [
        ['ana', 3],
        ['ana', 4],
        ['bo', 5],
      ] as const) {
        await s.audit({
          actor,
          role: 'viewer',
          action: 'login',
          target: actor,
          address: '10.0.0.2',
          outcome: 'wrong-password',
          at: at(ms),
        });
      }
      // Rate-limited logins: one record whatever the usernames (the caller's choice), `(various)` where they differ.
      for (let i = 0; i < 5; i++) {
        await s.audit({
          actor: `u${i}`,
          role: null,
          action: 'login',
          target: `u${i}`,
          address: '10.0.0.3',
          outcome: 'rate-limited',
          at: at(10 + i),
        });
      }
      // The next minute starts a new record.
      await s.audit({ actor: 'x', role: null, action: 'login', target: 'x', address: '10.0.0.3', outcome: 'rate-limited', at: at(60_001) });
      // A refused call of a known caller; roles that differ within a record read null.
      await s.audit({
        actor: 'ana',
        role: 'viewer',
        action: 'device.revoke',
        target: 'd1',
        address: '10.0.0.2',
        outcome: 'CP_API_FORBIDDEN',
        at: at(20),
      });
      await s.audit({
        actor: 'ana',
        role: 'operator',
        action: 'device.revoke',
        target: 'd1',
        address: '10.0.0.2',
        outcome: 'CP_API_FORBIDDEN',
        at: at(21),
      });

      const all = await s.listAudit({ limit: 100 });
      assert.deepEqual(
        all.map((e) => [e.action, e.actor, e.target, e.outcome, e.count, e.role]),
        [
          ['device.revoke', 'ana', 'd1', 'CP_API_FORBIDDEN', 2, null],
          ['login', 'x', 'x', 'rate-limited', 1, null],
          ['login', '(various)', '(various)', 'rate-limited', 5, null],
          ['login', 'bo', 'bo', 'wrong-password', 1, 'viewer'],
          ['login', 'ana', 'ana', 'wrong-password', 2, 'viewer'],
          ['device.revoke', 'admin', 'aq-1', 'ok', 1, 'admin'],
          ['device.provision', 'admin', 'aq-1', 'ok', 1, 'admin'],
        ],
      );
      const limited = all.find((e) => e.outcome === 'rate-limited' && e.count === 5);
      assert.equal(limited?.at, at(10));
      assert.equal(limited?.lastAt, at(14));
      assert.equal(limited?.address, '10.0.0.3');
      const single = all.at(-1);
      assert.equal(single?.at, at(1));
      assert.equal(single?.lastAt, at(1));
      assert.deepEqual(
        (await s.listAudit({ limit: 100, actor: 'ana' })).map((e) => e.action),
        ['device.revoke', 'login'],
      );
      assert.deepEqual(
        (await s.listAudit({ limit: 100, action: 'device.revoke', actor: 'admin' })).map((e) => e.target),
        ['aq-1'],
      );
      assert.equal((await s.listAudit({ limit: 2 })).length, 2);
      // Time bounds (both included), paging and the count of all matches.
      assert.deepEqual(
        (await s.listAudit({ limit: 100, since: at(10), until: at(20) })).map((e) => [e.action, e.actor]),
        [
          ['device.revoke', 'ana'],
          ['login', '(various)'],
        ],
      );
      assert.equal(await s.countAudit({ since: at(10), until: at(20) }), 2);
      assert.equal(await s.countAudit({}), 7);
      assert.equal(await s.countAudit({ actor: 'ana', since: at(3) }), 2);
      assert.deepEqual(
        (await s.listAudit({ limit: 2, offset: 5 })).map((e) => e.action),
        ['device.revoke', 'device.provision'],
      );
      assert.equal((await s.listAudit({ limit: 100, until: at(0) })).length, 0);
    });

    test('audit bounds: actions and refused attempts each capped apart, the oldest removed', async (t) => {
      const s = await (await impl.backing(t)).operators(10);
      const base = Date.parse('2026-03-01T00:00:00.000Z');
      for (let i = 0; i < 1000; i++) {
        await s.audit({
          actor: 'admin',
          role: 'admin',
          action: 'device.provision',
          target: `d${i}`,
          address: null,
          outcome: 'ok',
          at: new Date(base + i).toISOString(),
        });
      }
      // Refusals, each in its own minute (one record each), after the actions.
      for (let i = 0; i < 1000; i++) {
        const at = new Date(base + 60_000 * (i + 1)).toISOString();
        await s.audit({ actor: 'x', role: null, action: 'login', target: 'x', address: '10.9.9.9', outcome: 'unknown-user', at });
      }
      const log = await s.listAudit({ limit: 1000 });
      const actions = log.filter((e) => e.outcome === 'ok').map((e) => e.target);
      assert.deepEqual(
        actions,
        Array.from({ length: 10 }, (_, i) => `d${999 - i}`),
        'the newest 10 actions',
      );
      assert.equal(log.filter((e) => e.outcome === 'unknown-user').length, 10, 'the newest 10 refusal records');
    });
  });

  describe(`${impl.name}: DeadLetterStore`, () => {
    test('letters listed newest first, by device, with index; payloads cut at 64 KiB; counted', async (t) => {
      const s = await (await impl.backing(t)).deadLetters();
      s.add({ device: 'aq-1', code: 'CP_INGEST_BAD_JSON', reason: 'not JSON', payload: '{nope' });
      s.add({
        device: 'aq-2',
        code: 'CP_INGEST_INVALID_READING',
        reason: 'pm25 below 0',
        index: 3,
        payload: '{"pm25":-1}',
        at: '2026-01-01T00:00:00.000Z',
      });
      s.add({ device: 'aq-1', code: 'CP_INGEST_BAD_SHAPE', reason: 'a number', payload: 'x'.repeat(70_000) });
      assert.equal(s.count(), 3);
      const all = await s.list();
      assert.deepEqual(
        all.map((d) => [d.device, d.code, d.index]),
        [
          ['aq-1', 'CP_INGEST_BAD_SHAPE', undefined],
          ['aq-2', 'CP_INGEST_INVALID_READING', 3],
          ['aq-1', 'CP_INGEST_BAD_JSON', undefined],
        ],
      );
      assert.ok((all[0]?.id ?? 0) > (all[1]?.id ?? 0));
      assert.equal(all[0]?.payload.length, 64 * 1024 + '…[cut]'.length);
      assert.ok(all[0]?.payload.endsWith('…[cut]'));
      assert.equal(all[1]?.at, '2026-01-01T00:00:00.000Z');
      assert.ok(Math.abs(Date.parse(all[2]?.at ?? '') - Date.now()) < 5000);
      assert.deepEqual(
        (await s.list({ device: 'aq-1', limit: 1 })).map((d) => d.code),
        ['CP_INGEST_BAD_SHAPE'],
      );
      assert.equal(s.count(), 3);
    });

    test('bounded: the oldest removed beyond the limit', async (t) => {
      const s = await (await impl.backing(t)).deadLetters(50);
      for (let i = 0; i < 300; i++) s.add({ device: 'tf-1', code: 'CP_INGEST_BAD_JSON', reason: `n${i}`, payload: String(i) });
      const kept = await s.list({ limit: 1000 });
      assert.equal(kept[0]?.reason, 'n299');
      assert.ok(kept.length >= 50 && kept.length <= 150, `${kept.length} kept (limit 50, trimmed every 100)`);
      assert.ok(!kept.some((d) => d.reason === 'n0'));
    });
  });
}

describe('PostgreSQL: what a cluster adds', () => {
  test('two nodes: a device, an operator and a session made through one are seen through the other', async (t) => {
    const b = await postgres.backing(t);
    const [devA, devB] = [await b.devices(), await b.devices()];
    const [opA, opB] = [await b.operators(), await b.operators()];
    const { device, token } = await devA.provision({ family: 'traffic', zone: 'centre', location: where });
    assert.equal((await devB.checkToken(device.id, token)).result, 'ok');
    const rotated = await devB.rotateToken(device.id);
    assert.equal((await devA.checkToken(device.id, token)).result, 'wrong');
    await devA.revoke(device.id);
    assert.equal((await devB.checkToken(device.id, rotated)).result, 'revoked');
    await opA.create({ username: 'ana', password: 'ana-password-1', role: 'operator' });
    assert.equal((await opB.checkPassword('ana', 'ana-password-1')).result, 'ok');
    const { token: session } = await opB.createSession('ana', 60_000);
    assert.equal((await opA.findSession(session))?.operator.username, 'ana');
    await opA.disable('ana');
    assert.equal(await opB.findSession(session), undefined);
    // Refused attempts from both nodes land in one record.
    for (const s of [opA, opB, opA]) {
      await s.audit({ actor: 'ana', role: null, action: 'login', target: 'ana', address: '10.1.1.1', outcome: 'wrong-password' });
    }
    const refused = (await opB.listAudit({ limit: 10, action: 'login' })).filter((e) => e.outcome === 'wrong-password');
    assert.deepEqual(
      refused.map((e) => e.count),
      [3],
    );
  });

  test('a flood of refused logins on two nodes at once: one record per minute, every attempt counted', async (t) => {
    const b = await postgres.backing(t);
    const nodes = [await b.operators(), await b.operators()];
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    const at = new Date(minute + 1000).toISOString();
    // 16 in flight on each node, 1,000 attempts in all, with usernames of the flood's choice.
    await Promise.all(
      nodes.flatMap((s, n) =>
        Array.from({ length: 16 }, async (_, lane) => {
          for (let i = lane; i < 500; i += 16) {
            await s.audit({
              actor: `n${n}-u${i}`,
              role: null,
              action: 'login',
              target: `n${n}-u${i}`,
              address: '10.7.7.7',
              outcome: 'rate-limited',
              at,
            });
          }
        }),
      ),
    );
    const records = (await nodes[0]?.listAudit({ limit: 100, action: 'login' })) ?? [];
    assert.deepEqual(
      records.map((e) => [e.actor, e.target, e.count]),
      [['(various)', '(various)', 1000]],
    );
  });

  test('passwords, session tokens and device tokens are not stored in clear', async (t) => {
    const b = await postgres.backing(t);
    const ops = await b.operators();
    const devices = await b.devices();
    await ops.create({ username: 'ana', password: 'ana-password-1', role: 'viewer' });
    const { token } = await ops.createSession('ana', 60_000);
    const dev = await devices.provision({ family: 'traffic', zone: 'centre', location: where });
    const raw = b.raw as NonNullable<Backing['raw']>;
    const [op] = (await raw('SELECT password_hash FROM operators WHERE username = $1', ['ana'])) as { password_hash: string }[];
    assert.match(op?.password_hash ?? '', /^scrypt\$15\$8\$1\$[\w-]{22}\$[\w-]{43}$/);
    const dump = JSON.stringify([
      await raw('SELECT * FROM operators', []),
      await raw('SELECT encode(id, $1) AS id, username FROM sessions', ['escape']),
      await raw('SELECT encode(token_hash, $1) AS h, encode(token_salt, $1) AS s FROM devices', ['escape']),
    ]);
    for (const secret of ['ana-password-1', token, dev.token]) assert.ok(!dump.includes(secret), 'not in the tables');
  });

  test('several nodes starting at once on an empty database migrate it once', async (t) => {
    const url = await freshDatabase(server);
    // A migration that would show being applied twice: it counts its runs, and takes a while.
    const probe = [
      { version: 1, name: 'counter', sql: 'CREATE TABLE probe_runs (n integer); SELECT pg_sleep(0.3)' },
      { version: 2, name: 'count a run', sql: 'INSERT INTO probe_runs VALUES (1)' },
    ];
    const dbs = Array.from({ length: 4 }, () => new StateDb({ url, queryTimeoutMs: 5000, poolSize: 2 }));
    t.after(() => Promise.all(dbs.map((d) => d.close())));
    const runs = await Promise.all(
      dbs.map(async (db) => {
        const probeApplied = await db.migrate('probe', probe);
        const registry = await db.migrate(REGISTRY_COMPONENT, REGISTRY_MIGRATIONS);
        return { probeApplied, registry };
      }),
    );
    assert.deepEqual(
      runs.map((r) => r.probeApplied.length).sort(),
      [0, 0, 0, 2],
      'one node applied the probe migrations, the others found them applied',
    );
    assert.deepEqual(runs.flatMap((r) => r.registry).sort(), [1, 2, 3, 4], 'each registry migration applied once');
    const db = dbs[0] as StateDb;
    assert.equal((await db.query('SELECT count(*)::int AS n FROM probe_runs')).rows[0].n, 1);
    assert.deepEqual(
      (await db.query('SELECT component, version FROM schema_migrations ORDER BY component, version')).rows.map(
        (r) => `${r.component}/${r.version}`,
      ),
      ['probe/1', 'probe/2', 'registry/1', 'registry/2', 'registry/3', 'registry/4'],
    );
    // A later start applies only what is new.
    assert.deepEqual(
      await db.migrate('probe', [...probe, { version: 3, name: 'count again', sql: 'INSERT INTO probe_runs VALUES (3)' }]),
      [3],
    );
    await assert.rejects(db.migrate('probe', [probe[0] as (typeof probe)[0], { ...(probe[0] as (typeof probe)[0]) }]), /twice/);
  });
});

describe('SQLite: alarm store', () => {
  test('search in Vietnamese: any case, with or without diacritics, in messages, notes and operators', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'citypulse-alarms-'));
    const store = new SqliteAlarmStore(join(dir, 'alarms.db'));
    t.after(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    const at = '2026-12-03T01:00:00.000Z';
    const raise = (subject: string, message: string) =>
      store.insert(
        { rule: 'lamp-fault', subject, scope: 'device', family: 'streetLight', zone: 'tran-phu', severity: 'major', message, raisedAt: at },
        'system',
      );
    await raise('sl-1', 'Đèn hỏng ở Trần Phú');
    const b = (await raise('sl-2', 'Lamp fault')).alarm;
    await raise('sl-3', 'Mất kết nối');
    await store.acknowledge(b.id, 'Nguyễn Đức', at, 'Đã báo đội sửa chữa');
    const ids = async (q: string) => (await store.list({ q, limit: 100 })).map((x) => x.subject).sort();
    assert.deepEqual(await ids('đèn'), ['sl-1']);
    assert.deepEqual(await ids('ĐÈN HỎNG'), ['sl-1'], 'upper case finds lower case');
    assert.deepEqual(await ids('tran phu'), ['sl-1'], 'without diacritics');
    assert.deepEqual(await ids('doi sua chua'), ['sl-2'], 'a note');
    assert.deepEqual(await ids('nguyen duc'), ['sl-2'], 'who acknowledged');
    assert.deepEqual(await ids('MẤT'), ['sl-3']);
    assert.deepEqual(await ids('%'), [], 'wildcards as typed');
    assert.equal(await store.count({ q: 'den' }), 1);
  });
});
