/**
 * One behavioural suite for both alarm stores, SQLite (one node) and a real PostgreSQL (cluster mode), so that
 * both answer alike: raising (and raising again while open: the open alarm back, nothing written), the
 * lifecycle's guarded changes and their notes, the alarms open and cleared while holding, filters, search,
 * sorting, paging and counts, and the bounded history. Then what PostgreSQL adds: two stores on two pools (two
 * nodes) raising the same (rule, subject) at once create one alarm, see each other's changes, and hear each
 * other's operator clears; the migration applies once.
 *
 * Run: node --import tsx --test test/alarm-stores.test.ts (starts its own PostgreSQL; needs Debian postgresql-15)
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALARM_COMPONENT, ALARM_MIGRATIONS, type AlarmStore, type NewAlarm, PgAlarmStore, SqliteAlarmStore } from '../alarms/index.ts';
import type { LocalPostgres } from '../platform/engines/postgres.ts';
import { StateDb } from '../registry/index.ts';
import { freshDatabase, startTestPostgres } from './helpers/postgres.ts';
import { fileScope } from './helpers/scope.ts';

const scope = fileScope();
let server: LocalPostgres;
before(async () => {
  server = await startTestPostgres(scope);
});

type After = { after(fn: () => unknown): void };

interface Impl {
  name: string;
  /** A store on a fresh backing, with this history limit. */
  open(t: After, historyLimit?: number): Promise<AlarmStore>;
}

const sqlite: Impl = {
  name: 'SQLite',
  async open(t, historyLimit) {
    const dir = await mkdtemp(join(tmpdir(), 'citypulse-alarms-'));
    const s = new SqliteAlarmStore(join(dir, 'alarms.db'), historyLimit);
    t.after(async () => {
      await s.close();
      await rm(dir, { recursive: true, force: true });
    });
    return s;
  },
};

const postgres: Impl = {
  name: 'PostgreSQL',
  async open(t, historyLimit) {
    const db = new StateDb({ url: await freshDatabase(server), queryTimeoutMs: 5000 });
    t.after(() => db.close());
    await db.migrate(ALARM_COMPONENT, ALARM_MIGRATIONS);
    return new PgAlarmStore(db, historyLimit);
  },
};

const base = Date.parse('2026-12-01T10:00:00.000Z');
const iso = (minutes: number) => new Date(base + minutes * 60_000).toISOString();

function alarm(rule: string, subject: string, minutes: number, more: Partial<NewAlarm> = {}): NewAlarm {
  return {
    rule,
    subject,
    scope: 'device',
    family: 'streetLight',
    zone: 'centre',
    severity: 'major',
    message: `lamp ${subject} is faulty`,
    value: 3.5,
    raisedAt: iso(minutes),
    ...more,
  };
}

for (const impl of [sqlite, postgres]) {
  describe(`alarm store: ${impl.name}`, () => {
    test('raising is idempotent while the alarm is open; a cleared one is raised anew', async (t) => {
      const s = await impl.open(t);
      const first = await s.insert(alarm('lampFault', 'L1', 0), 'system');
      assert.equal(first.created, true);
      assert.deepEqual(
        { ...first.alarm, id: 0 },
        {
          id: 0,
          rule: 'lampFault',
          subject: 'L1',
          scope: 'device',
          family: 'streetLight',
          zone: 'centre',
          severity: 'major',
          state: 'active',
          message: 'lamp L1 is faulty',
          value: 3.5,
          raisedAt: iso(0),
          acknowledgedAt: null,
          acknowledgedBy: null,
          clearedAt: null,
          clearedBy: null,
          conditionClearedAt: null,
        },
      );
      const again = await s.insert(alarm('lampFault', 'L1', 5, { message: 'other' }), 'system');
      assert.equal(again.created, false, 'the open alarm of (rule, subject) is returned');
      assert.equal(again.alarm.id, first.alarm.id);
      assert.equal(again.alarm.message, 'lamp L1 is faulty', 'nothing written');
      assert.equal((await s.notes(first.alarm.id)).length, 1, 'one raise note');
      assert.equal(await s.count({ rule: 'lampFault' }), 1);
      // Acknowledged is still open: still one.
      assert.equal(await s.acknowledge(first.alarm.id, 'op', iso(1), null), true);
      assert.equal((await s.insert(alarm('lampFault', 'L1', 6), 'system')).created, false);
      // Another subject or rule is its own alarm.
      assert.equal((await s.insert(alarm('lampFault', 'L2', 0), 'system')).created, true);
      assert.equal((await s.insert(alarm('lampOnInDaylight', 'L1', 0), 'system')).created, true);
      // Cleared: a new alarm of the same (rule, subject).
      assert.equal(await s.clear(first.alarm.id, 'system', iso(7), null, true), true);
      const next = await s.insert(alarm('lampFault', 'L1', 8), 'system');
      assert.equal(next.created, true);
      assert.notEqual(next.alarm.id, first.alarm.id);
      assert.ok(next.alarm.id > first.alarm.id, 'ids grow');
    });

    test('lifecycle: guarded changes, their notes, open and cleared-while-holding alarms', async (t) => {
      const s = await impl.open(t);
      const a = (await s.insert(alarm('lampFault', 'L1', 0), 'system')).alarm;
      const z = (await s.insert(alarm('zoneAqiPoor', 'centre', 1, { scope: 'zone', family: undefined, value: null }), 'system')).alarm;
      assert.equal(z.family, undefined);
      assert.equal(z.value, null);
      assert.deepEqual(
        (await s.open()).map((x) => x.id),
        [a.id, z.id],
      );
      assert.equal(await s.acknowledge(a.id, 'lan', iso(2), 'on my way'), true);
      assert.equal(await s.acknowledge(a.id, 'lan', iso(3), null), false, 'only an active alarm is acknowledged');
      const acked = await s.get(a.id);
      assert.equal(acked?.state, 'acknowledged');
      assert.equal(acked?.acknowledgedBy, 'lan');
      assert.equal(acked?.acknowledgedAt, iso(2));
      // An operator clears while the condition holds: the end of the condition is recorded later.
      assert.equal(await s.clear(a.id, 'lan', iso(4), 'replaced the lamp', false), true);
      assert.equal(await s.clear(a.id, 'lan', iso(5), 'again', false), false, 'cleared once');
      assert.deepEqual(
        (await s.clearedWhileHolding()).map((x) => x.id),
        [a.id],
      );
      assert.equal(await s.conditionCleared(a.id, iso(6), 'system'), true);
      assert.equal(await s.conditionCleared(a.id, iso(7), 'system'), false, 'recorded once');
      assert.deepEqual(await s.clearedWhileHolding(), []);
      const done = await s.get(a.id);
      assert.deepEqual([done?.state, done?.clearedBy, done?.clearedAt, done?.conditionClearedAt], ['cleared', 'lan', iso(4), iso(6)]);
      assert.deepEqual(
        (await s.notes(a.id)).map((n) => [n.action, n.actor, n.at, n.note]),
        [
          ['raise', 'system', iso(0), null],
          ['acknowledge', 'lan', iso(2), 'on my way'],
          ['clear', 'lan', iso(4), 'replaced the lamp'],
          ['condition-cleared', 'system', iso(6), null],
        ],
      );
      // A system clear ends the condition too.
      assert.equal(await s.clear(z.id, 'system', iso(8), null, true), true);
      assert.equal((await s.get(z.id))?.conditionClearedAt, iso(8));
      assert.deepEqual(await s.open(), []);
      assert.equal(await s.get(9999), undefined);
      assert.deepEqual(await s.notes(9999), []);
    });

    test('filters, search, sorting, paging and counts', async (t) => {
      const s = await impl.open(t);
      const ids: number[] = [];
      const severities = ['minor', 'critical', 'major', 'warning'] as const;
      for (let i = 0; i < 8; i++) {
        const a = await s.insert(
          alarm(i % 2 ? 'lampFault' : 'congestion', `D${i}`, i, {
            severity: severities[i % 4],
            zone: i < 4 ? 'centre' : 'north',
            family: i % 2 ? 'streetLight' : 'traffic',
            message: i === 5 ? 'Cột 5 nghiêng 50%_x' : `message ${i}`,
          }),
          'system',
        );
        ids.push(a.alarm.id);
      }
      await s.acknowledge(ids[1] as number, 'Mai', iso(10), null);
      await s.clear(ids[2] as number, 'system', iso(11), null, true);
      await s.clear(ids[3] as number, 'hung', iso(12), 'checked the pole', true);
      const idsOf = (l: { id: number }[]) => l.map((a) => ids.indexOf(a.id));
      // Default order: active first, then acknowledged, cleared; by severity; newest first.
      assert.deepEqual(idsOf(await s.list({ limit: 100 })), [5, 6, 4, 0, 7, 1, 2, 3]);
      assert.deepEqual(idsOf(await s.list({ state: 'open', limit: 100 })), [5, 6, 4, 0, 7, 1]);
      assert.equal(await s.count({ state: 'open' }), 6);
      assert.equal(await s.count({ state: 'cleared' }), 2);
      assert.deepEqual(idsOf(await s.list({ severity: 'critical', limit: 100 })), [5, 1]);
      assert.deepEqual(idsOf(await s.list({ zone: 'north', family: 'traffic', limit: 100 })), [6, 4]);
      assert.deepEqual(idsOf(await s.list({ rule: 'lampFault', subject: 'D3', limit: 100 })), [3]);
      assert.deepEqual(idsOf(await s.list({ since: iso(6), limit: 100 })), [6, 7]);
      assert.deepEqual(idsOf(await s.list({ until: iso(1), limit: 100 })), [0, 1]);
      // Search: the words as typed (wildcards are plain characters), in the message, who acted, a note.
      assert.deepEqual(idsOf(await s.list({ q: '50%_', limit: 100 })), [5]);
      assert.deepEqual(idsOf(await s.list({ q: '%', limit: 100 })), [5]);
      assert.deepEqual(idsOf(await s.list({ q: 'mai', limit: 100 })), [1], 'who acknowledged, case aside');
      assert.deepEqual(idsOf(await s.list({ q: 'the pole', limit: 100 })), [3], 'a note');
      assert.equal(await s.count({ q: 'message' }), 7);
      // Sorting and paging.
      assert.deepEqual(idsOf(await s.list({ sort: 'raisedAt', order: 'asc', limit: 3 })), [0, 1, 2]);
      assert.deepEqual(idsOf(await s.list({ sort: 'raisedAt', order: 'asc', limit: 3, offset: 3 })), [3, 4, 5]);
      assert.deepEqual(idsOf(await s.list({ sort: 'subject', order: 'desc', limit: 2 })), [7, 6]);
      assert.deepEqual(idsOf(await s.list({ sort: 'severity', order: 'desc', limit: 2 })), [5, 1], 'most severe first');
      assert.deepEqual(idsOf(await s.list({ sort: 'clearedAt', order: 'asc', limit: 3 })), [2, 3, 0], 'not cleared last');
      assert.deepEqual(idsOf(await s.list({ sort: 'duration', order: 'asc', limit: 2 })), [2, 3], 'cleared soonest');
    });

    test('history: cleared alarms beyond the limit are removed, oldest first; open ones never', async (t) => {
      const s = await impl.open(t, 100);
      const open = (await s.insert(alarm('lampFault', 'keep', 0), 'system')).alarm;
      for (let i = 0; i < 230; i++) {
        const a = (await s.insert(alarm('congestion', `C${i}`, i), 'system')).alarm;
        await s.clear(a.id, 'system', iso(i + 1), null, true);
      }
      await s.insert(alarm('lampFault', 'trigger', 0), 'system'); // trimming runs every 100 raises
      // (SQLite trims at every 100th insert of the store, as PostgreSQL's node does.)
      const cleared = await s.count({ state: 'cleared' });
      assert.ok(cleared <= 100 + 100, `cleared history bounded (${cleared})`);
      assert.ok(cleared >= 100, `at least the limit kept (${cleared})`);
      assert.equal((await s.get(open.id))?.state, 'active', 'the open alarm is kept');
      const oldest = await s.list({ state: 'cleared', sort: 'raisedAt', order: 'asc', limit: 1 });
      assert.notEqual(oldest[0]?.subject, 'C0', 'the oldest went first');
    });
  });
}

describe('alarm store: PostgreSQL shared by nodes', () => {
  test('two nodes raising the same alarm at once create one; each sees and changes the other’s; clears are heard', async (t) => {
    const url = await freshDatabase(server);
    const dbs = [0, 1, 2, 3].map(() => new StateDb({ url, queryTimeoutMs: 5000 }));
    t.after(() => Promise.all(dbs.map((d) => d.close())));
    // Four nodes start at once: the migration applies once.
    const applied = await Promise.all(dbs.map((d) => d.migrate(ALARM_COMPONENT, ALARM_MIGRATIONS)));
    assert.deepEqual(applied.flat(), [1]);
    const [a, b] = dbs.slice(0, 2).map((d) => new PgAlarmStore(d)) as [PgAlarmStore, PgAlarmStore];
    for (let round = 0; round < 10; round++) {
      const results = await Promise.all([a, b, a, b].map((s) => s.insert(alarm('lampFault', `R${round}`, round), 'system')));
      assert.equal(results.filter((r) => r.created).length, 1, `round ${round}: one raise created the alarm`);
      assert.equal(new Set(results.map((r) => r.alarm.id)).size, 1, `round ${round}: every node has the same alarm`);
      assert.equal((await a.notes(results[0]?.alarm.id as number)).length, 1, 'one raise note');
    }
    assert.equal(await b.count({ state: 'open' }), 10);
    const heard: number[] = [];
    await a.follow((id) => heard.push(id));
    const first = (await a.list({ subject: 'R0', limit: 1 }))[0] as { id: number };
    assert.equal(await b.acknowledge(first.id, 'op-b', iso(30), null), true);
    assert.equal((await a.get(first.id))?.acknowledgedBy, 'op-b');
    assert.equal(await a.acknowledge(first.id, 'op-a', iso(31), null), false, 'acknowledged once');
    const second = (await a.list({ subject: 'R1', limit: 1 }))[0] as { id: number };
    assert.equal(await b.clear(first.id, 'op-b', iso(32), 'done', false), true);
    assert.equal(await b.clear(second.id, 'system', iso(33), null, true), true);
    const until = Date.now() + 5000;
    while (!heard.length && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(heard, [first.id], "an operator's clear is heard by the other node; the engine's own clear is not announced");
  });
});
