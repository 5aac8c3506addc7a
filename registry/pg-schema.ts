/**
 * The registry's tables in PostgreSQL (cluster mode), as versioned migrations (pg-state.ts applies them once,
 * in order, under the cluster-wide migration lock). Released versions are never edited: a change is a new one.
 *
 * The columns follow the SQLite stores' (device-store.ts, operators.ts), with PostgreSQL's types: times are
 * timestamptz, hashes and salts bytea, flags boolean. Ids and usernames sort as bytes (COLLATE "C" where
 * listed), as in SQLite, whatever the database's default collation.
 */
import { foldTranslation } from '../core/search-text.ts';
import type { Migration } from './pg-state.ts';

const fold = foldTranslation();

export const REGISTRY_COMPONENT = 'registry';

export const REGISTRY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'devices',
    sql: `
      CREATE TABLE devices (
        id text COLLATE "C" PRIMARY KEY, family text NOT NULL, zone text NOT NULL,
        lat double precision NOT NULL, lon double precision NOT NULL, name text,
        created_at timestamptz NOT NULL, revoked_at timestamptz, last_seen_at timestamptz,
        token_salt bytea NOT NULL, token_hash bytea NOT NULL);
      CREATE INDEX devices_family_zone ON devices (family, zone);`,
  },
  {
    version: 2,
    name: 'operators, sessions and audit',
    sql: `
      CREATE TABLE operators (
        username text COLLATE "C" PRIMARY KEY,
        role text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        password_hash text NOT NULL, disabled boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL, last_login_at timestamptz);
      CREATE TABLE sessions (
        id bytea PRIMARY KEY, username text COLLATE "C" NOT NULL REFERENCES operators (username) ON DELETE CASCADE,
        created_at timestamptz NOT NULL, expires_at timestamptz NOT NULL);
      CREATE INDEX sessions_username ON sessions (username);
      CREATE INDEX sessions_expires_at ON sessions (expires_at);
      -- kind 'refusal': refused attempts, aggregated under agg_key (one record per window) and capped apart.
      CREATE TABLE audit (
        id bigserial PRIMARY KEY, at timestamptz NOT NULL, actor text NOT NULL, role text, action text NOT NULL,
        target text, address text, outcome text NOT NULL, kind text NOT NULL DEFAULT 'action',
        count integer NOT NULL DEFAULT 1, last_at timestamptz, agg_key text UNIQUE);
      CREATE INDEX audit_actor ON audit (actor, id);
      CREATE INDEX audit_kind ON audit (kind, id);`,
  },
  {
    version: 3,
    name: 'device list indexes',
    sql: `
      CREATE INDEX devices_zone ON devices (zone);
      CREATE INDEX devices_name ON devices (name);
      CREATE INDEX devices_last_seen ON devices (last_seen_at);`,
  },
  {
    version: 4,
    name: 'device names folded for search',
    // Written by the stores from now on (core/search-text.ts); the rows already there are folded here: every
    // Vietnamese letter to its base, then lower() of what is ASCII.
    sql: `
      ALTER TABLE devices ADD COLUMN name_search text;
      UPDATE devices SET name_search = lower(translate(name, '${fold.from}', '${fold.to}')) WHERE name IS NOT NULL;`,
  },
];
