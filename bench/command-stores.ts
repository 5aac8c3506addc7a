/**
 * The command stores on SQLite (one node) and on PostgreSQL (cluster mode), side by side on this machine:
 *
 *   node --import tsx bench/command-stores.ts [--batch=500] [--rounds=20] [--answers=2000]
 *
 * - a ward batch: one request for `batch` street lights, stored in one transaction (PostgreSQL: one statement
 *   and the NOTIFY that tells the other nodes);
 * - what another node does on that notification: hears it and reads the batch's pending devices (PostgreSQL only:
 *   from the start of the insert on one pool to the device list on another, through LISTEN);
 * - a device's pending commands (read at each connect), PUBACKs (pending → delivered) one at a time and answers
 *   (delivered → acknowledged) 32 in flight, as many devices send them at once;
 * - a page of the command history (50 batches) and an expiry pass over the open commands.
 *
 * PostgreSQL is a private server (platform/engines/postgres.ts) with its default durable settings (fsync on,
 * synchronous_commit on), over TCP on loopback; SQLite is a file in a temp folder (WAL). Prints a markdown
 * table for docs/cluster-state.md. Figures from a busy machine are noisy: compare the two columns of one run.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  COMMANDS_CHANNEL,
  COMMANDS_COMPONENT,
  COMMANDS_MIGRATIONS,
  type CommandStore,
  type NewCommand,
  PgCommandStore,
  SqliteCommandStore,
} from '../commands/index.ts';
import { startLocalPostgres } from '../platform/engines/postgres.ts';
import { StateDb } from '../registry/index.ts';

const { values } = parseArgs({
  options: {
    batch: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '20' },
    answers: { type: 'string', default: '2000' },
  },
});
const BATCH = Math.min(5000, Math.max(1, Number(values.batch)));
const ROUNDS = Math.min(200, Math.max(1, Number(values.rounds)));
const ANSWERS = Math.min(20_000, Math.max(1, Number(values.answers)));

const rows: [string, string, string][] = [];
const record = (what: string, a: string | undefined, b: string | undefined) => {
  const [sqlite, pgCol] = [a ?? '-', b ?? '-'];
  rows.push([what, sqlite, pgCol]);
  console.log(`${what.padEnd(62)} ${sqlite.padStart(22)} ${pgCol.padStart(22)}`);
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};
const ms = (x: number) => (x < 1 ? `${(x * 1000).toFixed(0)} µs` : `${x.toFixed(1)} ms`);
const latency = (xs: number[]) => `${ms(pct(xs, 50))} / ${ms(pct(xs, 99))}`;
const rate = (n: number, tookMs: number) => `${Math.round((n / tookMs) * 1000).toLocaleString('en')}/s`;

function wardBatch(round: number): NewCommand[] {
  const batch = randomUUID();
  const at = Date.now();
  return Array.from({ length: BATCH }, (_, i) => ({
    id: randomUUID(),
    device: `sl-${String(i).padStart(5, '0')}`,
    zone: `ward-${round % 8}`,
    family: 'streetLight',
    action: { powerState: 'on', illuminanceLevel: 0.6 },
    createdAt: new Date(at).toISOString(),
    createdBy: 'bench',
    expiresAt: new Date(at + 3_600_000).toISOString(),
    batch,
  }));
}

interface Figures {
  insert: number[];
  heard?: number[];
  pendingOf: number[];
  answers: { delivered: number; acknowledged: number };
  history: number[];
  expire: number[];
}

async function measure(store: CommandStore, other?: { store: CommandStore; url: string }): Promise<Figures> {
  const insert: number[] = [];
  const heard: number[] = [];
  let listener: pg.Client | undefined;
  let waiting: ((batch: string) => void) | undefined;
  if (other) {
    // Another node: hears the NOTIFY and reads the batch's pending devices, as commands/cluster.ts does.
    listener = new pg.Client({ connectionString: other.url });
    await listener.connect();
    listener.on('notification', (n) => waiting?.((JSON.parse(n.payload as string) as { batch: string }).batch));
    await listener.query(`LISTEN ${COMMANDS_CHANNEL}`);
  }
  const ids: string[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const commands = wardBatch(r);
    const t = performance.now();
    const done = other
      ? new Promise<void>((resolve) => {
          waiting = (batch) => {
            void other.store.devicesWithPending(Date.now(), batch).then((devices) => {
              if (devices.length === BATCH) heard.push(performance.now() - t);
              resolve();
            });
          };
        })
      : undefined;
    await store.insert(commands, { zone: `ward-${r % 8}` });
    insert.push(performance.now() - t);
    await done;
    ids.push(...commands.map((c) => c.id));
  }
  await listener?.end();

  const pendingOf: number[] = [];
  for (let i = 0; i < Math.min(BATCH, 200); i++) {
    const t = performance.now();
    await store.pendingOf(`sl-${String(i).padStart(5, '0')}`, Date.now());
    pendingOf.push(performance.now() - t);
  }
  const picked = ids.slice(0, ANSWERS);
  const device = async (id: string) => (await store.get(id))?.device as string;
  const devices = await Promise.all(picked.map(device));
  let t = performance.now();
  for (const [i, id] of picked.entries()) await store.markDelivered(id, devices[i] as string, Date.now());
  const delivered = performance.now() - t;
  // Answers come from many devices at once: 32 in flight.
  t = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < picked.length) {
        const i = next++;
        await store.markAnswered(picked[i] as string, devices[i] as string, 'acknowledged', null, Date.now());
      }
    }),
  );
  const acknowledged = performance.now() - t;

  const history: number[] = [];
  for (let i = 0; i < 20; i++) {
    const s = performance.now();
    await store.batches({ limit: 50 });
    history.push(performance.now() - s);
  }
  const expire: number[] = [];
  for (let i = 0; i < 20; i++) {
    const s = performance.now();
    await store.expireDue(Date.now());
    expire.push(performance.now() - s);
  }
  return { insert, heard: other ? heard : undefined, pendingOf, answers: { delivered, acknowledged }, history, expire };
}

async function main(): Promise<void> {
  console.log(`command stores: batch ${BATCH} lights, ${ROUNDS} rounds, ${ANSWERS} PUBACKs and answers one at a time`);
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-bench-commands-'));
  const pgDir = await mkdtemp(join(tmpdir(), 'citypulse-bench-pg-'));
  const server = await startLocalPostgres({ dir: pgDir });
  try {
    const sqlite = new SqliteCommandStore(join(dir, 'commands.db'));
    const s = await measure(sqlite);
    await sqlite.close();

    const url = await server.createDatabase('bench_commands');
    const dbA = new StateDb({ url, queryTimeoutMs: 30_000, poolSize: 10 });
    const dbB = new StateDb({ url, queryTimeoutMs: 30_000, poolSize: 4 });
    await dbA.migrate(COMMANDS_COMPONENT, COMMANDS_MIGRATIONS);
    const p = await measure(new PgCommandStore(dbA, 'a'), { store: new PgCommandStore(dbB, 'b'), url });
    await dbA.close();
    await dbB.close();

    console.log(`${''.padEnd(62)} ${'SQLite'.padStart(22)} ${'PostgreSQL'.padStart(22)}`);
    record(`a ward batch of ${BATCH} stored, p50 / p99 (${ROUNDS})`, latency(s.insert), latency(p.insert));
    record('  insert on node A → node B heard it and read its devices, p50 / p99', undefined, p.heard && latency(p.heard));
    record('a device’s pending commands (at connect), p50 / p99', latency(s.pendingOf), latency(p.pendingOf));
    record(`PUBACKs recorded one at a time (${ANSWERS})`, rate(ANSWERS, s.answers.delivered), rate(ANSWERS, p.answers.delivered));
    record(`answers recorded, 32 in flight (${ANSWERS})`, rate(ANSWERS, s.answers.acknowledged), rate(ANSWERS, p.answers.acknowledged));
    record(`a page of the command history (50 of ${ROUNDS} batches), p50 / p99`, latency(s.history), latency(p.history));
    record(
      `an expiry pass over ${(BATCH * ROUNDS - ANSWERS).toLocaleString('en')} open commands, p50 / p99`,
      latency(s.expire),
      latency(p.expire),
    );
    console.log('\n| | SQLite | PostgreSQL |\n|---|---|---|');
    for (const [what, a, b] of rows) console.log(`| ${what.trim()} | ${a} | ${b} |`);
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(pgDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
