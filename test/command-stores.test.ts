/**
 * One behavioural suite for both CommandStores: SQLite (one node, commands.db) and PostgreSQL (cluster mode,
 * state.postgresUrl), so that both answer alike: commands of a batch and their lifecycle (conditional changes
 * that report only what they changed), the order pending commands are sent in, expiry, the command history
 * (batches with their filters), schedules and their edges claimed once. Then what PostgreSQL adds: two nodes
 * (two pools) expiring and claiming at once change each command and each edge once, and new commands are
 * announced to every node by a NOTIFY naming the node and the batch.
 *
 * Run: node --import tsx --test test/command-stores.test.ts (starts its own PostgreSQL; needs Debian postgresql-15)
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  COMMANDS_CHANNEL,
  COMMANDS_COMPONENT,
  COMMANDS_MIGRATIONS,
  type CommandStore,
  type NewCommand,
  PgCommandStore,
  type Schedule,
  SqliteCommandStore,
} from '../commands/index.ts';
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
  /** Opens `nodes` stores on one backing (one file, or one database with a pool each). */
  open(t: After, nodes?: number): Promise<{ stores: CommandStore[]; url?: string }>;
}

const sqlite: Impl = {
  name: 'SQLite',
  async open(t) {
    const dir = await mkdtemp(join(tmpdir(), 'citypulse-commands-'));
    const store = new SqliteCommandStore(join(dir, 'commands.db'));
    t.after(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    return { stores: [store] };
  },
};

const postgres: Impl = {
  name: 'PostgreSQL',
  async open(t, nodes = 1) {
    const url = await freshDatabase(server);
    const stores: CommandStore[] = [];
    for (let i = 0; i < nodes; i++) {
      const db = new StateDb({ url, queryTimeoutMs: 5000, poolSize: 4 });
      t.after(() => db.close());
      await db.migrate(COMMANDS_COMPONENT, COMMANDS_MIGRATIONS);
      stores.push(new PgCommandStore(db, `node-${i}`));
    }
    return { stores, url };
  },
};

const T0 = Date.parse('2026-12-03T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

function batchOf(
  devices: { id: string; zone: string }[],
  action: Record<string, unknown>,
  opts: { at?: number; ttl?: number; by?: string } = {},
): NewCommand[] {
  const batch = randomUUID();
  const at = opts.at ?? T0;
  return devices.map((d) => ({
    id: randomUUID(),
    device: d.id,
    zone: d.zone,
    family: 'streetLight',
    action,
    createdAt: iso(at),
    createdBy: opts.by ?? 'ana',
    expiresAt: iso(at + (opts.ttl ?? 60_000)),
    batch,
  }));
}

const L1 = { id: 'sl-1', zone: 'centre' };
const L2 = { id: 'sl-2', zone: 'centre' };
const L3 = { id: 'sl-3', zone: 'north' };

function schedule(over: Partial<Schedule> = {}): Schedule {
  return {
    id: randomUUID(),
    name: 'Đèn đêm',
    target: { zone: 'centre' },
    from: '18:00',
    to: '06:00:30',
    action: { powerState: 'on', illuminanceLevel: 1 },
    endAction: { powerState: 'off' },
    ttlMs: null,
    enabled: true,
    timeZone: 'Asia/Ho_Chi_Minh',
    createdAt: iso(T0),
    createdBy: 'ana',
    lastEdge: null,
    ...over,
  };
}

for (const impl of [sqlite, postgres]) {
  describe(`${impl.name}: CommandStore`, () => {
    test('a batch: stored pending as given (the action keeps its key order), read by id and listed with filters', async (t) => {
      const [s] = (await impl.open(t)).stores as [CommandStore];
      const action = { powerState: 'on', illuminanceLevel: 0.4 };
      const first = batchOf([L1, L2], action);
      const made = await s.insert(first, { devices: [L1.id, L2.id] });
      assert.deepEqual(
        made.map((c) => [c.device, c.state, c.reason, c.deliveredAt, c.acknowledgedAt]),
        [
          ['sl-1', 'pending', null, null, null],
          ['sl-2', 'pending', null, null, null],
        ],
      );
      const [c1] = made as [(typeof made)[0]];
      assert.deepEqual(c1, { ...first[0], state: 'pending', reason: null, deliveredAt: null, acknowledgedAt: null });
      assert.deepEqual(Object.keys(c1.action), ['powerState', 'illuminanceLevel']);
      assert.deepEqual(await s.get(c1.id), c1);
      assert.equal(await s.get(randomUUID()), undefined);
      const second = await s.insert(batchOf([L3], { powerState: 'off' }, { at: T0 + 1000 }), { zone: 'north' });
      assert.deepEqual(
        (await s.list({ limit: 10 })).map((c) => c.device),
        ['sl-3', 'sl-2', 'sl-1'],
        'newest first',
      );
      assert.deepEqual(
        (await s.list({ device: 'sl-1', limit: 10 })).map((c) => c.id),
        [c1.id],
      );
      assert.deepEqual(
        (await s.list({ batch: second[0]?.batch as string, limit: 10 })).map((c) => c.device),
        ['sl-3'],
      );
      assert.equal((await s.list({ limit: 2 })).length, 2);
      assert.deepEqual(await s.list({ state: 'acknowledged', limit: 10 }), []);
      assert.deepEqual(await s.insert([]), []);
    });

    test('lifecycle: pending → delivered → acknowledged or failed, each change once; pending ones oldest first', async (t) => {
      const [s] = (await impl.open(t)).stores as [CommandStore];
      const a = await s.insert(batchOf([L1, L2], { powerState: 'off' }));
      const b = await s.insert(batchOf([L1], { powerState: 'on' }, { at: T0 + 1000 }));
      const [a1, a2] = a as [(typeof a)[0], (typeof a)[0]];
      const [b1] = b as [(typeof b)[0]];
      assert.deepEqual(
        (await s.pendingOf('sl-1', T0 + 2000)).map((c) => c.id),
        [a1.id, b1.id],
      );
      assert.deepEqual((await s.devicesWithPending(T0 + 2000)).sort(), ['sl-1', 'sl-2']);
      assert.deepEqual(await s.devicesWithPending(T0 + 2000, b1.batch as string), ['sl-1']);
      assert.equal(await s.markDelivered(a1.id, 'sl-2', T0 + 10), undefined, 'not its device');
      const delivered = await s.markDelivered(a1.id, 'sl-1', T0 + 10);
      assert.equal(delivered?.state, 'delivered');
      assert.equal(delivered?.deliveredAt, iso(T0 + 10));
      assert.equal(await s.markDelivered(a1.id, 'sl-1', T0 + 20), undefined, 'once');
      assert.deepEqual(
        (await s.pendingOf('sl-1', T0 + 2000)).map((c) => c.id),
        [b1.id],
      );
      const acked = await s.markAnswered(a1.id, 'sl-1', 'acknowledged', null, T0 + 30);
      assert.deepEqual([acked?.state, acked?.acknowledgedAt, acked?.deliveredAt], ['acknowledged', iso(T0 + 30), iso(T0 + 10)]);
      assert.equal(await s.markAnswered(a1.id, 'sl-1', 'failed', 'late', T0 + 40), undefined, 'the first answer stands');
      // Straight from pending (no PUBACK seen): delivered at the answer.
      const failed = await s.markAnswered(a2.id, 'sl-2', 'failed', 'lamp broken', T0 + 50);
      assert.deepEqual([failed?.state, failed?.reason, failed?.deliveredAt], ['failed', 'lamp broken', iso(T0 + 50)]);
      // Expired for sending: past its expiresAt it is neither pending to send nor deliverable.
      assert.deepEqual(await s.pendingOf('sl-1', T0 + 61_001), []);
      assert.equal(await s.markDelivered(b1.id, 'sl-1', T0 + 61_001), undefined);
    });

    test('PUBACKs and answers of many devices at once: each recorded once, the first answer stands', async (t) => {
      const [s] = (await impl.open(t)).stores as [CommandStore];
      const lights = Array.from({ length: 40 }, (_, i) => ({ id: `sl-${i}`, zone: 'centre' }));
      const made = await s.insert(batchOf(lights, { powerState: 'off' }));
      // Every PUBACK twice, at once: one of each pair changes the command.
      const delivered = await Promise.all(
        made.flatMap((c) => [s.markDelivered(c.id, c.device, T0 + 5), s.markDelivered(c.id, c.device, T0 + 6)]),
      );
      assert.equal(delivered.filter(Boolean).length, 40);
      assert.ok(delivered.every((c) => !c || c.state === 'delivered'));
      // Answers at once, each command answered ok then failed: the first (ok) stands.
      const answered = await Promise.all(
        made.flatMap((c) => [
          s.markAnswered(c.id, c.device, 'acknowledged', null, T0 + 10),
          s.markAnswered(c.id, c.device, 'failed', 'late', T0 + 11),
          s.markAnswered(c.id, 'sl-other', 'acknowledged', null, T0 + 12),
        ]),
      );
      assert.deepEqual(
        answered.map((c) => c?.state ?? null),
        made.flatMap(() => ['acknowledged', null, null]),
      );
      const [batch] = await s.batches({ limit: 1 });
      assert.deepEqual(batch?.states, { pending: 0, delivered: 0, acknowledged: 40, failed: 0, expired: 0 });
    });

    test('expiry: every open command past its expiresAt, once, oldest first, with its reason', async (t) => {
      const [s] = (await impl.open(t)).stores as [CommandStore];
      const short = await s.insert(batchOf([L1, L2], { powerState: 'off' }, { ttl: 1000 }));
      const long = await s.insert(batchOf([L3], { powerState: 'off' }, { ttl: 100_000 }));
      await s.markDelivered((short[1] as (typeof short)[0]).id, 'sl-2', T0 + 5);
      assert.deepEqual(await s.expireDue(T0 + 999), []);
      const expired = await s.expireDue(T0 + 1000);
      assert.deepEqual(
        expired.map((c) => [c.device, c.state, c.reason]),
        [
          ['sl-1', 'expired', 'not acknowledged before expiresAt'],
          ['sl-2', 'expired', 'not acknowledged before expiresAt'],
        ],
      );
      assert.deepEqual(await s.expireDue(T0 + 2000), [], 'once');
      assert.equal((await s.get((long[0] as (typeof long)[0]).id))?.state, 'pending');
      assert.equal(await s.markAnswered((short[0] as (typeof short)[0]).id, 'sl-1', 'acknowledged', null, T0 + 3000), undefined);
    });

    test('the command history: one entry per batch with its states, and every filter', async (t) => {
      const [s] = (await impl.open(t)).stores as [CommandStore];
      const on = await s.insert(batchOf([L1, L2, L3], { powerState: 'on' }, { at: T0, by: 'ana' }), { devices: ['sl-1', 'sl-2', 'sl-3'] });
      const dim = await s.insert(batchOf([L1], { illuminanceLevel: 0.3 }, { at: T0 + 1000, by: 'binh' }), { devices: ['sl-1'] });
      const off = await s.insert(batchOf([L3], { powerState: 'off', illuminanceLevel: 0 }, { at: T0 + 2000, by: 'schedule:x' }), {
        zone: 'north',
      });
      for (const c of on) await s.markAnswered(c.id, c.device, 'acknowledged', null, T0 + 100);
      await s.markAnswered((dim[0] as (typeof dim)[0]).id, 'sl-1', 'failed', 'no', T0 + 1100);
      const all = await s.batches({ limit: 10 });
      assert.deepEqual(
        all.map((b) => b.batch),
        [off[0]?.batch, dim[0]?.batch, on[0]?.batch],
      );
      const first = all[2];
      assert.deepEqual(first, {
        batch: on[0]?.batch,
        createdAt: iso(T0),
        createdBy: 'ana',
        action: { powerState: 'on' },
        target: { devices: ['sl-1', 'sl-2', 'sl-3'] },
        zones: ['centre', 'north'],
        size: 3,
        states: { pending: 0, delivered: 0, acknowledged: 3, failed: 0, expired: 0 },
        reached: 3,
        finishedAt: iso(T0 + 100),
      });
      assert.equal(all[0]?.finishedAt, null, 'still open');
      assert.deepEqual(all[0]?.target, { zone: 'north' });
      const ids = async (f: Parameters<CommandStore['batches']>[0]) => (await s.batches(f)).map((b) => b.batch);
      assert.deepEqual(await ids({ by: 'binh', limit: 10 }), [dim[0]?.batch]);
      assert.deepEqual(await ids({ zone: 'north', limit: 10 }), [off[0]?.batch, on[0]?.batch]);
      assert.deepEqual(await ids({ device: 'sl-1', limit: 10 }), [dim[0]?.batch, on[0]?.batch]);
      assert.deepEqual(await ids({ action: 'on', limit: 10 }), [on[0]?.batch]);
      assert.deepEqual(await ids({ action: 'dim', limit: 10 }), [dim[0]?.batch]);
      assert.deepEqual(await ids({ action: 'off', limit: 10 }), [off[0]?.batch]);
      assert.deepEqual(await ids({ outcome: 'open', limit: 10 }), [off[0]?.batch]);
      assert.deepEqual(await ids({ outcome: 'done', limit: 10 }), [on[0]?.batch]);
      assert.deepEqual(await ids({ outcome: 'failed', limit: 10 }), [dim[0]?.batch]);
      assert.deepEqual(await ids({ since: iso(T0 + 1000), until: iso(T0 + 1000), limit: 10 }), [dim[0]?.batch]);
      assert.deepEqual(await ids({ limit: 1, offset: 1 }), [dim[0]?.batch]);
    });

    test('schedules: kept as given, listed by creation, deleted; an edge is claimed once', async (t) => {
      const [s] = (await impl.open(t)).stores as [CommandStore];
      const one = await s.insertSchedule(schedule());
      const two = await s.insertSchedule(
        schedule({ createdAt: iso(T0 + 1000), endAction: null, ttlMs: 90_000, enabled: false, target: { devices: ['sl-1'] } }),
      );
      assert.deepEqual(one, schedule({ id: one.id }));
      assert.deepEqual(await s.getSchedule(two.id), two);
      assert.equal(two.ttlMs, 90_000);
      assert.deepEqual(
        (await s.listSchedules()).map((x) => x.id),
        [one.id, two.id],
      );
      assert.equal(await s.claimScheduleEdge(one.id, 'from', T0 + 5000), true);
      assert.equal(await s.claimScheduleEdge(one.id, 'from', T0 + 5000), false, 'the same edge once');
      assert.equal(await s.claimScheduleEdge(one.id, 'to', T0 + 4000), false, 'never an older one');
      assert.equal(await s.claimScheduleEdge(one.id, 'to', T0 + 9000), true);
      assert.deepEqual((await s.getSchedule(one.id))?.lastEdge, { edge: 'to', at: iso(T0 + 9000) });
      assert.equal(await s.deleteSchedule(one.id), true);
      assert.equal(await s.deleteSchedule(one.id), false);
      assert.equal(await s.getSchedule(one.id), undefined);
      assert.equal(await s.claimScheduleEdge(one.id, 'from', T0 + 20_000), false, 'gone');
    });
  });
}

describe('PostgreSQL: what a cluster adds', () => {
  test('two nodes expiring and claiming at once: each command expires once, each edge is claimed once', async (t) => {
    const [a, b] = (await postgres.open(t, 2)).stores as [CommandStore, CommandStore];
    const made = await a.insert(
      batchOf(
        Array.from({ length: 50 }, (_, i) => ({ id: `sl-${i}`, zone: 'centre' })),
        { powerState: 'off' },
        { ttl: 1000 },
      ),
    );
    const [ea, eb] = await Promise.all([a.expireDue(T0 + 1000), b.expireDue(T0 + 1000)]);
    assert.equal(ea.length + eb.length, 50, 'every one reported by exactly one node');
    assert.deepEqual([...ea, ...eb].map((c) => c.id).sort(), made.map((c) => c.id).sort());
    const s = await a.insertSchedule(schedule());
    for (let round = 1; round <= 5; round++) {
      const at = T0 + round * 1000;
      const won = await Promise.all([a.claimScheduleEdge(s.id, 'from', at), b.claimScheduleEdge(s.id, 'from', at)]);
      assert.equal(won.filter(Boolean).length, 1, `round ${round}: one node fires the edge`);
    }
    // What one node wrote, the other reads.
    assert.deepEqual(await b.get((made[0] as (typeof made)[0]).id), await a.get((made[0] as (typeof made)[0]).id));
  });

  test('new commands are announced to every node once committed: the node that made them and their batch', async (t) => {
    const { stores, url } = await postgres.open(t, 1);
    const [s] = stores as [CommandStore];
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    t.after(() => listener.end());
    const heard: unknown[] = [];
    listener.on('notification', (n) => heard.push(JSON.parse(n.payload as string)));
    await listener.query(`LISTEN ${COMMANDS_CHANNEL}`);
    const made = await s.insert(batchOf([L1, L2], { powerState: 'off' }));
    const until = Date.now() + 5000;
    while (heard.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(heard, [{ node: 'node-0', batch: made[0]?.batch }]);
  });
});
