/**
 * The device registry in PostgreSQL (cluster mode): the same DeviceStore as SqliteDeviceStore, shared by every
 * node, so a device provisioned through one node connects through any other, and a revocation or a new token
 * holds on all of them at their next check.
 *
 * Ids, tokens and their checks come from device-store.ts, so both stores answer alike. A PostgreSQL outage
 * throws CP_STATE_UNAVAILABLE (the broker answers a connecting device CONNACK 3, server unavailable). Last-seen
 * times are batched as in SQLite (SEEN_FLUSH_MS), kept while PostgreSQL is away and written when it is back; the
 * newest time wins, whichever node saw the device.
 */
import type { Logger } from '../core/logger.ts';
import { foldForSearch } from '../core/search-text.ts';
import {
  type Device,
  type DeviceFilter,
  type DeviceQuery,
  deviceOrder,
  likePattern,
  type DeviceStore,
  deviceExists,
  deviceNotFound,
  newDevice,
  newToken,
  type ProvisionRequest,
  SEEN_FLUSH_MS,
  type TokenCheck,
  judgeToken,
} from './device-store.ts';
import { changePayload, STATE_CHANNEL } from './pg-changes.ts';
import { isoOf, type StateDb } from './pg-state.ts';
import type { Family } from '../core/contract.ts';

interface Row {
  id: string;
  family: Family;
  zone: string;
  lat: number;
  lon: number;
  name: string | null;
  created_at: Date;
  revoked_at: Date | null;
  last_seen_at: Date | null;
  token_salt: Buffer;
  token_hash: Buffer;
}

const COLUMNS = 'id, family, zone, lat, lon, name, created_at, revoked_at, last_seen_at';

export class PgDeviceStore implements DeviceStore {
  /** Last-seen times not written yet (id → ISO time), newest per device. */
  private readonly seen = new Map<string, string>();
  private seenTimer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private closed = false;

  /** The schema must be migrated (REGISTRY_MIGRATIONS). `zoneExists` rejects devices placed outside the city profile. */
  constructor(
    private readonly db: StateDb,
    private readonly zoneExists: (zone: string) => boolean = () => true,
    private readonly log?: Logger,
  ) {}

  async provision(req: ProvisionRequest): Promise<{ device: Device; token: string }> {
    const n = newDevice(req, this.zoneExists);
    try {
      const r = await this.db.query<Row>(
        `INSERT INTO devices (id, family, zone, lat, lon, name, name_search, created_at, token_salt, token_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING ${COLUMNS}`,
        [
          n.id,
          req.family,
          req.zone,
          req.location.lat,
          req.location.lon,
          req.name ?? null,
          req.name ? foldForSearch(req.name) : null,
          n.createdAt,
          n.salt,
          n.hash,
        ],
      );
      return { device: this.deviceOf(r.rows[0] as Row), token: n.token };
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw deviceExists(n.id, err);
      throw err;
    }
  }

  /** The row as a Device, with a last-seen time this node has not written yet when it is newer. */
  private deviceOf(r: Omit<Row, 'token_salt' | 'token_hash'>): Device {
    const d: Device = {
      id: r.id,
      family: r.family,
      zone: r.zone,
      location: { lat: r.lat, lon: r.lon },
      createdAt: isoOf(r.created_at) as string,
    };
    if (r.name) d.name = r.name;
    const revoked = isoOf(r.revoked_at);
    if (revoked) d.revokedAt = revoked;
    const stored = isoOf(r.last_seen_at);
    const pending = this.seen.get(r.id);
    const last = pending && (!stored || pending > stored) ? pending : stored;
    if (last) d.lastSeenAt = last;
    return d;
  }

  async get(id: string): Promise<Device | undefined> {
    const r = await this.db.read<Row>(`SELECT ${COLUMNS} FROM devices WHERE id = $1`, [id]);
    const row = r.rows[0];
    return row && this.deviceOf(row);
  }

  async list(filter: DeviceFilter = {}): Promise<Device[]> {
    const r = await this.db.read<Row>(
      `SELECT ${COLUMNS} FROM devices
       WHERE ($1::text IS NULL OR family = $1) AND ($2::text IS NULL OR zone = $2) AND ($3 OR revoked_at IS NULL)
       ORDER BY id`,
      [filter.family ?? null, filter.zone ?? null, filter.includeRevoked === true],
    );
    return r.rows.map((row) => this.deviceOf(row));
  }

  async query(q: DeviceQuery): Promise<{ devices: Device[]; total: number }> {
    // This node's times not written yet would be missed by a last-seen sort; written first (kept if PostgreSQL is away).
    if (q.sort === 'lastSeen' && this.seen.size) await this.writeSeen().catch(() => undefined);
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (clause: (n: string) => string, value: unknown) => {
      params.push(value);
      where.push(clause(`$${params.length}`));
    };
    if (q.family) add((n) => `family = ${n}`, q.family);
    if (q.zone) add((n) => `zone = ${n}`, q.zone);
    if (!q.includeRevoked) where.push('revoked_at IS NULL');
    const words = q.q?.trim();
    if (words) {
      // Ids are ASCII; names are compared in their folded form (core/search-text.ts), as SQLite does.
      params.push(likePattern(words), likePattern(foldForSearch(words)));
      where.push(`(id ILIKE $${params.length - 1} OR name_search LIKE $${params.length})`);
    }
    if (q.onlyIds) add((n) => `id = ANY(${n}::text[])`, q.onlyIds);
    if (q.exceptIds?.length) add((n) => `NOT (id = ANY(${n}::text[]))`, q.exceptIds);
    const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const n = params.length;
    // count(*) OVER () gives the number of matches with the page, in one round trip.
    const r = await this.db.read<Row & { total: string }>(
      `SELECT ${COLUMNS}, count(*) OVER () AS total FROM devices ${w}
       ORDER BY ${deviceOrder(q, ' COLLATE "C"')} LIMIT $${n + 1} OFFSET $${n + 2}`,
      [...params, q.limit ?? null, q.offset ?? 0],
    );
    let total = Number(r.rows[0]?.total ?? 0);
    if (r.rows.length === 0 && (q.offset ?? 0) > 0) {
      const c = await this.db.read<{ n: string }>(`SELECT count(*) AS n FROM devices ${w}`, params);
      total = Number(c.rows[0]?.n ?? 0);
    }
    return { devices: r.rows.map((row) => this.deviceOf(row)), total };
  }

  async checkToken(id: string, token: string): Promise<TokenCheck> {
    const r = await this.db.read<Row>(`SELECT ${COLUMNS}, token_salt, token_hash FROM devices WHERE id = $1`, [id], 'check-token');
    const row = r.rows[0];
    return judgeToken(
      row && { salt: row.token_salt, hash: row.token_hash, revoked: !!row.revoked_at, device: () => this.deviceOf(row) },
      token,
    );
  }

  /** The other nodes end the device's connection when the new token is committed (pg-changes.ts). */
  async rotateToken(id: string): Promise<string> {
    const t = newToken();
    const r = await this.db.query(
      `WITH u AS (UPDATE devices SET token_salt = $1, token_hash = $2 WHERE id = $3 RETURNING id)
       SELECT pg_notify('${STATE_CHANNEL}', $4) FROM u`,
      [t.salt, t.hash, id, changePayload({ kind: 'device-credentials', id })],
    );
    if (r.rowCount === 0) throw deviceNotFound(id);
    return t.token;
  }

  /** The other nodes end the device's connection when the revocation is committed (pg-changes.ts). */
  async revoke(id: string): Promise<Device> {
    // The first revocation's time stays (as in SQLite): revoking again changes nothing.
    const r = await this.db.query<Row>(
      `WITH u AS (UPDATE devices SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2 RETURNING ${COLUMNS})
       SELECT u.*, pg_notify('${STATE_CHANNEL}', $3) FROM u`,
      [new Date().toISOString(), id, changePayload({ kind: 'device-credentials', id })],
    );
    const row = r.rows[0];
    if (!row) throw deviceNotFound(id);
    return this.deviceOf(row);
  }

  async touch(id: string, at: Date): Promise<void> {
    const iso = at.toISOString();
    const had = this.seen.get(id);
    if (!had || iso > had) this.seen.set(id, iso);
    this.schedule();
  }

  private schedule(): void {
    if (this.seenTimer || this.closed) return;
    this.seenTimer = setTimeout(() => {
      this.seenTimer = undefined;
      this.writeSeen().catch(() => undefined);
    }, SEEN_FLUSH_MS);
    this.seenTimer.unref();
  }

  /** Writes the waiting last-seen times in one statement; kept for the next try when PostgreSQL is away. */
  private writeSeen(): Promise<void> {
    this.writing ??= (async () => {
      const batch = new Map(this.seen);
      this.seen.clear();
      try {
        if (batch.size === 0) return;
        await this.db.query(
          `UPDATE devices d SET last_seen_at = v.at
           FROM unnest($1::text[], $2::timestamptz[]) AS v (id, at)
           WHERE d.id = v.id AND (d.last_seen_at IS NULL OR d.last_seen_at < v.at)`,
          [[...batch.keys()], [...batch.values()]],
        );
      } catch (err) {
        // Back in the queue unless a newer time came meanwhile; tried again at the next interval.
        for (const [id, at] of batch) {
          const now = this.seen.get(id);
          if (!now || at > now) this.seen.set(id, at);
        }
        this.log?.warn({ err: (err as Error).message, devices: batch.size }, 'last-seen times not written; retried');
        throw err;
      } finally {
        this.writing = undefined;
        if (this.seen.size) this.schedule();
      }
    })();
    return this.writing;
  }

  /** Writes pending last-seen times (bounded by the query timeout); the shared pool is closed by its owner. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.seenTimer);
    this.seenTimer = undefined;
    await this.writing?.catch(() => undefined);
    await this.writeSeen().catch(() => undefined);
  }
}
