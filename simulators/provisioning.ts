/**
 * Provisioning and credentials of the simulated devices: a new token from the registry (provisioned, or
 * rotated when the device exists but its token was lost), and the credentials file that keeps the tokens
 * between runs, since the registry shows a token only once. The file holds live device secrets: it is written
 * atomically (temp file + rename), privately (0600), one save at a time.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ProvisionRequest } from '../registry/index.ts';
import type { DevicePlan } from './fleet-plan.ts';

export const errorCode = (err: unknown): unknown => (err as { code?: unknown } | null)?.code;

/** New token for a device: provision it, or rotate when it already exists (we lost its token). */
export async function obtainToken(
  plan: DevicePlan,
  registry: { provision: (req: ProvisionRequest) => Promise<{ token: string }>; rotateToken: (id: string) => Promise<string> },
): Promise<string> {
  const { id, family, zone, location, laneId, index } = plan;
  const name = plan.name ?? `Simulated ${family} ${index}${laneId ? ` (lane ${laneId})` : ''}`;
  try {
    return (await registry.provision({ id, family, zone, location, name })).token;
  } catch (err) {
    if (errorCode(err) !== 'CP_REGISTRY_DEVICE_EXISTS') throw err;
    return registry.rotateToken(id);
  }
}

export interface CredentialStore {
  get(id: string): string | undefined;
  /** Remembers a token; the next save writes it. */
  set(id: string, token: string): void;
  /** Reads the file (none yet: nothing known). Throws when it is not a JSON object: overwriting it would lose tokens. */
  load(): Promise<void>;
  /** Serialised, atomic (temp file + rename) and private: the file holds live device secrets. */
  save(): Promise<void>;
  /** Resolves once the saves started so far have settled, failed or not. */
  settled(): Promise<void>;
}

/** Without a file, tokens live in memory only. */
export function createCredentialStore(file: string | undefined): CredentialStore {
  const credentials = new Map<string, string>();
  let credentialsDirty = false;
  let writeChain: Promise<void> = Promise.resolve();

  return {
    get: (id) => credentials.get(id),
    set(id, token) {
      credentials.set(id, token);
      credentialsDirty = true;
    },
    async load() {
      if (!file) return;
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        if (errorCode(err) === 'ENOENT') return;
        throw err;
      }
      let data: unknown;
      try {
        data = JSON.parse(text);
      } catch (err) {
        // Overwriting it would throw away tokens that cannot be recovered: make the operator look.
        throw new Error(`credentials file ${file} is not valid JSON`, { cause: err });
      }
      if (!data || typeof data !== 'object' || Array.isArray(data)) {
        throw new Error(`credentials file ${file} must hold an object {deviceId: token}`);
      }
      for (const [id, token] of Object.entries(data)) if (typeof token === 'string' && token) credentials.set(id, token);
    },
    save() {
      if (!file) return Promise.resolve();
      // A failed write must not poison the chain: the next save retries with everything known by then.
      writeChain = writeChain
        .catch(() => undefined)
        .then(async () => {
          if (!credentialsDirty) return;
          credentialsDirty = false;
          const body = `${JSON.stringify(Object.fromEntries([...credentials].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))), null, 2)}\n`;
          await mkdir(dirname(file), { recursive: true, mode: 0o700 });
          const tmp = `${file}.${process.pid}.tmp`;
          try {
            await writeFile(tmp, body, { mode: 0o600 });
            await rename(tmp, file);
          } catch (err) {
            credentialsDirty = true;
            await rm(tmp, { force: true });
            throw err;
          }
        });
      return writeChain;
    },
    settled: () => writeChain.catch(() => undefined),
  };
}

/**
 * The registry of a running platform over its REST API (`POST /api/v1/devices`, `POST /api/v1/devices/{id}/token`)
 * with a service token: how a fleet outside the platform's process provisions its devices (`citypulse simulate`,
 * a cluster's simulated city through the edge).
 */
export function restRegistry(
  apiUrl: string,
  token: string,
): { provision: (req: ProvisionRequest) => Promise<{ token: string }>; rotateToken: (id: string) => Promise<string> } {
  const api = apiUrl.replace(/\/$/, '');
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  return {
    async provision(req) {
      const res = await fetch(`${api}/api/v1/devices`, { method: 'POST', headers, body: JSON.stringify(req) });
      const body = (await res.json()) as { token: string; code?: string; detail?: string };
      if (res.status !== 201) throw Object.assign(new Error(body.detail ?? `HTTP ${res.status}`), { code: body.code });
      return body;
    },
    async rotateToken(id) {
      const res = await fetch(`${api}/api/v1/devices/${encodeURIComponent(id)}/token`, { method: 'POST', headers });
      const body = (await res.json()) as { token: string; detail?: string };
      if (res.status !== 200) throw new Error(body.detail ?? `HTTP ${res.status}`);
      return body.token;
    },
  };
}
