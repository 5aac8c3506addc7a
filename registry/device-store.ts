/**
 * Device registry: identity, family, zone, location and a salted hash of the device token.
 *
 * `DeviceStore` is what the platform uses; `SqliteDeviceStore` keeps devices in an embedded SQLite file
 * (better-sqlite3, synchronous, microseconds a query: one node), `PgDeviceStore` (pg-device-store.ts) in the
 * PostgreSQL database the nodes of a cluster share. Both make ids and tokens and check them with the helpers
 * below, so they answer alike.
 *
 * Tokens are 192 random bits, shown once. The platform keeps salt + SHA-256(salt ‖ token) only. A fast hash
 * is enough for a random secret of that length (no dictionary to search) and keeps a reconnect storm of
 * thousands of devices cheap; a memory-hard function is for human passwords (operators).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import Database from 'better-sqlite3';
import { DEVICE_ID_PATTERN, FAMILIES, type Family } from '../core/contract.ts';
import { PlatformError } from '../core/errors.ts';
import { foldForSearch } from '../core/search-text.ts';
import type { GeoPoint } from './city-profile.ts';

export interface Device {
  id: string;
  family: Family;
  zone: string;
  location: GeoPoint;
  name?: string;
  /** ISO 8601 */
  createdAt: string;
  /** ISO 8601; set once the device is revoked (it can never connect again). */
  revokedAt?: string;
  /** ISO 8601 of the last connect or disconnect seen. */
  lastSeenAt?: string;
}

export interface ProvisionRequest {
  /** Generated (`<family prefix>-<8 chars>`) when absent. */
  id?: string;
  family: Family;
  zone: string;
  location: GeoPoint;
  name?: string;
}

export type TokenCheck =
  | { result: 'ok'; device: Device }
  | { result: 'unknown' }
  | { result: 'wrong' }
  | { result: 'revoked'; device: Device };

export interface DeviceFilter {
  family?: Family;
  zone?: string;
  includeRevoked?: boolean;
}

/** How a page of devices is ordered: by id, name, family, ward or last-seen time (ties by id). */
export type DeviceSort = 'id' | 'name' | 'family' | 'zone' | 'lastSeen';
export const DEVICE_SORTS: readonly DeviceSort[] = ['id', 'name', 'family', 'zone', 'lastSeen'];

/**
 * One page of the devices list. Online state and open alarms live outside the registry (broker, alarm engine):
 * the API turns them into `onlyIds` / `exceptIds`, sets the store joins in SQL, so paging and counting stay in
 * one query whatever the filter.
 */
export interface DeviceQuery extends DeviceFilter {
  /**
   * Words found in the id or the name, in any case and with or without diacritics ("tran phu" finds "Trần
   * Phú", "đèn" finds "Đèn"): compared with the name's folded form (core/search-text.ts), kept at write time.
   */
  q?: string;
  /** Only these devices. */
  onlyIds?: readonly string[];
  /** None of these devices. */
  exceptIds?: readonly string[];
  sort?: DeviceSort;
  order?: 'asc' | 'desc';
  limit?: number;
  offset?: number;
}

/**
 * The SQL ordering of a sort (same column names in SQLite and PostgreSQL); never-seen and unnamed devices last.
 * `collate` makes PostgreSQL order names by bytes, as SQLite does, whatever the server's collation.
 */
export function deviceOrder(q: Pick<DeviceQuery, 'sort' | 'order'>, collate = ''): string {
  const dir = q.order === 'desc' ? 'DESC' : 'ASC';
  const col = { id: 'id', name: `name${collate}`, family: 'family', zone: 'zone', lastSeen: 'last_seen_at' }[q.sort ?? 'id'];
  return col === 'id' ? `id ${dir}` : `${col} ${dir} NULLS LAST, id ${dir}`;
}

/** A LIKE pattern finding `q` anywhere, its wildcards escaped (ESCAPE '\\'). */
export const likePattern = (q: string) => `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export interface DeviceStore {
  /** Adds a device and returns its token, which is never stored in clear and cannot be shown again. */
  provision(req: ProvisionRequest): Promise<{ device: Device; token: string }>;
  get(id: string): Promise<Device | undefined>;
  list(filter?: DeviceFilter): Promise<Device[]>;
  /** One page of the devices that match, in the order asked for, and how many match in all. */
  query(q: DeviceQuery): Promise<{ devices: Device[]; total: number }>;
  checkToken(id: string, token: string): Promise<TokenCheck>;
  /** Issues a new token; the old one stops working. */
  rotateToken(id: string): Promise<string>;
  revoke(id: string): Promise<Device>;
  /** Records when a device was last seen (connected or disconnected); reads show it at once. */
  touch(id: string, at: Date): Promise<void>;
  close(): Promise<void>;
}

const ID_RE = new RegExp(DEVICE_ID_PATTERN);
const PREFIX: Record<Family, string> = { airQuality: 'aq', traffic: 'tf', streetLight: 'sl' };
/**
 * Last-seen times are written together at most this often, ms. One UPDATE transaction per connect and per
 * disconnect cost ~80 µs of the broker's thread each: after an outage, 10,000 devices dropping at once held the
 * thread ~0.8 s, and the same again as they came back (`npm run bench -- storm` profile; see docs/benchmarks.md). A
 * crash loses at most the last second's times; a device's next connect or disconnect sets its time again.
 */
export const SEEN_FLUSH_MS = 1000;

interface Row {
  id: string;
  family: Family;
  zone: string;
  lat: number;
  lon: number;
  name: string | null;
  created_at: string;
  revoked_at: string | null;
  last_seen_at: string | null;
  token_salt: Buffer;
  token_hash: Buffer;
}

export class SqliteDeviceStore implements DeviceStore {
  private readonly db: Database.Database;
  private readonly stmt;
  /** Last-seen times not written yet (id → ISO time), newest per device. */
  private readonly seen = new Map<string, string>();
  private seenTimer: NodeJS.Timeout | undefined;

  /** `file` may be ':memory:'. `zoneExists` rejects devices placed outside the city profile. */
  constructor(
    file: string,
    private readonly zoneExists: (zone: string) => boolean = () => true,
  ) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS devices (
      id TEXT PRIMARY KEY, family TEXT NOT NULL, zone TEXT NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
      name TEXT, created_at TEXT NOT NULL, revoked_at TEXT, last_seen_at TEXT,
      token_salt BLOB NOT NULL, token_hash BLOB NOT NULL)`);
    // The devices page sorts and filters tens of thousands of devices by these.
    this.db.exec(`CREATE INDEX IF NOT EXISTS devices_family_zone ON devices (family, zone);
      CREATE INDEX IF NOT EXISTS devices_zone ON devices (zone);
      CREATE INDEX IF NOT EXISTS devices_name ON devices (name);
      CREATE INDEX IF NOT EXISTS devices_last_seen ON devices (last_seen_at)`);
    // The name's folded form, for searches; added to a file written before it and filled for its rows.
    const columns = this.db.prepare<[], { name: string }>('PRAGMA table_info(devices)').all();
    if (!columns.some((c) => c.name === 'name_search')) {
      this.db.exec('ALTER TABLE devices ADD COLUMN name_search TEXT');
      const fill = this.db.prepare('UPDATE devices SET name_search = ? WHERE id = ?');
      this.db.transaction(() => {
        const named = this.db.prepare<[], { id: string; name: string }>('SELECT id, name FROM devices WHERE name IS NOT NULL').all();
        for (const r of named) fill.run(foldForSearch(r.name), r.id);
      })();
    }
    this.stmt = {
      insert: this.db.prepare(
        `INSERT INTO devices (id, family, zone, lat, lon, name, name_search, created_at, token_salt, token_hash)
         VALUES (@id, @family, @zone, @lat, @lon, @name, @name_search, @created_at, @token_salt, @token_hash)`,
      ),
      get: this.db.prepare<[string], Row>('SELECT * FROM devices WHERE id = ?'),
      all: this.db.prepare<[], Row>('SELECT * FROM devices ORDER BY id'),
      setToken: this.db.prepare('UPDATE devices SET token_salt = ?, token_hash = ? WHERE id = ?'),
      revoke: this.db.prepare('UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
      touch: this.db.prepare('UPDATE devices SET last_seen_at = ? WHERE id = ?'),
    };
  }

  async provision(req: ProvisionRequest): Promise<{ device: Device; token: string }> {
    const n = newDevice(req, this.zoneExists);
    try {
      this.stmt.insert.run({
        id: n.id,
        family: req.family,
        zone: req.zone,
        lat: req.location.lat,
        lon: req.location.lon,
        name: req.name ?? null,
        name_search: req.name ? foldForSearch(req.name) : null,
        created_at: n.createdAt,
        token_salt: n.salt,
        token_hash: n.hash,
      });
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw deviceExists(n.id, err);
      throw err;
    }
    return { device: (await this.get(n.id)) as Device, token: n.token };
  }

  /** The row as a Device, with a last-seen time not written yet. */
  private deviceOf(row: Row): Device {
    const d = toDevice(row);
    const seen = this.seen.get(row.id);
    if (seen) d.lastSeenAt = seen;
    return d;
  }

  async get(id: string): Promise<Device | undefined> {
    const row = this.stmt.get.get(id);
    return row && this.deviceOf(row);
  }

  async list(filter: DeviceFilter = {}): Promise<Device[]> {
    return this.stmt.all
      .all()
      .filter(
        (r) =>
          (!filter.family || r.family === filter.family) &&
          (!filter.zone || r.zone === filter.zone) &&
          (filter.includeRevoked || !r.revoked_at),
      )
      .map((r) => this.deviceOf(r));
  }

  async query(q: DeviceQuery): Promise<{ devices: Device[]; total: number }> {
    // Times not written yet would be missed by a last-seen sort; they are at most SEEN_FLUSH_MS old.
    if (q.sort === 'lastSeen') this.writeSeen();
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    if (q.family) {
      where.push('family = @family');
      params.family = q.family;
    }
    if (q.zone) {
      where.push('zone = @zone');
      params.zone = q.zone;
    }
    if (!q.includeRevoked) where.push('revoked_at IS NULL');
    const words = q.q?.trim();
    if (words) {
      // Ids are ASCII (LIKE folds their case); names are compared in their folded form.
      where.push(`(id LIKE @q ESCAPE '\\' OR name_search LIKE @qf ESCAPE '\\')`);
      params.q = likePattern(words);
      params.qf = likePattern(foldForSearch(words));
    }
    if (q.onlyIds) {
      where.push('id IN (SELECT value FROM json_each(@only))');
      params.only = JSON.stringify(q.onlyIds);
    }
    if (q.exceptIds?.length) {
      where.push('id NOT IN (SELECT value FROM json_each(@except))');
      params.except = JSON.stringify(q.exceptIds);
    }
    const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = (this.db.prepare(`SELECT count(*) AS n FROM devices ${w}`).get(params) as { n: number }).n;
    params.limit = q.limit ?? -1;
    params.offset = q.offset ?? 0;
    const rows = this.db
      .prepare<Record<string, unknown>, Row>(`SELECT * FROM devices ${w} ORDER BY ${deviceOrder(q)} LIMIT @limit OFFSET @offset`)
      .all(params);
    return { devices: rows.map((r) => this.deviceOf(r)), total };
  }

  async checkToken(id: string, token: string): Promise<TokenCheck> {
    const row = this.stmt.get.get(id);
    return judgeToken(
      row && { salt: row.token_salt, hash: row.token_hash, revoked: !!row.revoked_at, device: () => this.deviceOf(row) },
      token,
    );
  }

  async rotateToken(id: string): Promise<string> {
    const t = newToken();
    const r = this.stmt.setToken.run(t.salt, t.hash, id);
    if (r.changes === 0) throw deviceNotFound(id);
    return t.token;
  }

  async revoke(id: string): Promise<Device> {
    this.stmt.revoke.run(new Date().toISOString(), id);
    const d = await this.get(id);
    if (!d) throw deviceNotFound(id);
    return d;
  }

  async touch(id: string, at: Date): Promise<void> {
    this.seen.set(id, at.toISOString());
    if (!this.seenTimer) {
      this.seenTimer = setTimeout(() => this.writeSeen(), SEEN_FLUSH_MS);
      this.seenTimer.unref();
    }
  }

  /** Writes the waiting last-seen times in one transaction. */
  private writeSeen(): void {
    clearTimeout(this.seenTimer);
    this.seenTimer = undefined;
    if (this.seen.size === 0 || !this.db.open) return;
    this.db.transaction(() => {
      for (const [id, at] of this.seen) this.stmt.touch.run(at, id);
    })();
    this.seen.clear();
  }

  async close(): Promise<void> {
    this.writeSeen();
    if (this.db.open) this.db.close();
  }
}

function hashToken(salt: Buffer, token: string): Buffer {
  return createHash('sha256').update(salt).update(token, 'utf8').digest();
}

/** A new device token (192 random bits, base64url) with its salt and salted hash: what every store keeps. */
export function newToken(): { token: string; salt: Buffer; hash: Buffer } {
  const token = randomBytes(24).toString('base64url');
  const salt = randomBytes(16);
  return { token, salt, hash: hashToken(salt, token) };
}

/** True when `token` hashes to `hash` with `salt` (compared in constant time). */
export function tokenMatches(salt: Buffer, hash: Buffer, token: string): boolean {
  return timingSafeEqual(hash, hashToken(salt, token));
}

/** The verdict on a device's login as every store gives it: a wrong token is judged before revocation. */
export function judgeToken(
  found: { salt: Buffer; hash: Buffer; revoked: boolean; device: () => Device } | undefined,
  token: string,
): TokenCheck {
  if (!found) return { result: 'unknown' };
  if (!tokenMatches(found.salt, found.hash, token)) return { result: 'wrong' };
  return { result: found.revoked ? 'revoked' : 'ok', device: found.device() };
}

/**
 * Checks a provisioning request as every store does (family, zone in the city profile, id pattern) and makes
 * the new device's id (generated when absent), token and creation time.
 */
export function newDevice(
  req: ProvisionRequest,
  zoneExists: (zone: string) => boolean,
): { id: string; token: string; salt: Buffer; hash: Buffer; createdAt: string } {
  if (!FAMILIES.includes(req.family)) throw new TypeError(`unknown family ${req.family}`);
  if (!zoneExists(req.zone)) {
    throw new PlatformError('CP_REGISTRY_UNKNOWN_ZONE', `zone ${req.zone} is not in the city profile`);
  }
  const id = req.id ?? `${PREFIX[req.family]}-${randomBytes(5).toString('hex')}`;
  if (!ID_RE.test(id)) throw new TypeError(`device id must match ${DEVICE_ID_PATTERN}`);
  return { id, ...newToken(), createdAt: new Date().toISOString() };
}

export const deviceExists = (id: string, cause?: unknown) =>
  new PlatformError('CP_REGISTRY_DEVICE_EXISTS', `device ${id} already exists`, { cause });
export const deviceNotFound = (id: string) => new PlatformError('CP_REGISTRY_DEVICE_NOT_FOUND', `no device ${id}`);

function toDevice(r: Row): Device {
  const d: Device = { id: r.id, family: r.family, zone: r.zone, location: { lat: r.lat, lon: r.lon }, createdAt: r.created_at };
  if (r.name) d.name = r.name;
  if (r.revoked_at) d.revokedAt = r.revoked_at;
  if (r.last_seen_at) d.lastSeenAt = r.last_seen_at;
  return d;
}
