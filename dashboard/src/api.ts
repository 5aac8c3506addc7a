/**
 * REST calls to the platform (same origin: the dashboard is served by dashboard-api). Bearer session token;
 * a 401 ends the session on this screen (the store goes back to the login form).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    detail: string,
  ) {
    super(detail);
  }
}

let token: string | undefined;
let onUnauthorized: (() => void) | undefined;

export function setToken(t: string | undefined, unauthorized?: () => void): void {
  token = t;
  onUnauthorized = unauthorized;
}

export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  return (await call<T>(path, init)).body;
}

/** A list and the number of matches the server has in all (its X-Total-Count header; the list's length without it). */
export async function apiWithTotal<T extends unknown[]>(path: string): Promise<{ body: T; total: number }> {
  const out = await call<T>(path, {});
  const total = Number(out.headers.get('x-total-count'));
  return { body: out.body, total: Number.isFinite(total) && out.headers.has('x-total-count') ? total : out.body.length };
}

async function call<T>(path: string, init: { method?: string; body?: unknown }): Promise<{ body: T; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  if (res.status === 204) return { body: undefined as T, headers: res.headers };
  const body = (await res.json().catch(() => ({}))) as { code?: string; detail?: string };
  if (!res.ok) {
    if (res.status === 401 && token) onUnauthorized?.();
    throw new ApiError(res.status, body.code ?? 'CP_API_INTERNAL', body.detail ?? res.statusText);
  }
  return { body: body as T, headers: res.headers };
}

/** What dashboard-api serves at /dashboard-config.json (api.dashboard.* options; no secrets). */
export interface DashboardConfig {
  tileUrl: string;
  tileAttribution: string;
  tileMaxZoom: number;
}

const NO_TILES: DashboardConfig = { tileUrl: '', tileAttribution: '', tileMaxZoom: 19 };

/** Never rejects: while the server is unreachable (a restart) the map simply draws without tiles. */
export async function loadDashboardConfig(): Promise<DashboardConfig> {
  try {
    const res = await fetch('/dashboard-config.json');
    if (!res.ok) return NO_TILES;
    return (await res.json()) as DashboardConfig;
  } catch {
    return NO_TILES;
  }
}

/** A file from the API (CSV exports), with the session's token, saved by the browser under `filename`. */
export async function download(path: string, filename: string): Promise<void> {
  const res = await fetch(path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { code?: string; detail?: string };
    if (res.status === 401 && token) onUnauthorized?.();
    throw new ApiError(res.status, body.code ?? 'CP_API_INTERNAL', body.detail ?? res.statusText);
  }
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
