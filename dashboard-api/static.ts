/**
 * Serves the operations dashboard: the Vite build in dashboard/dist, and index.html for every
 * dashboard path (/, /map, /alarms, /alarms/:id, /commands, /wall, /devices, /devices/:id, /operators, /audit, /reports) so that client-side routes
 * survive a reload. Any other path a browser asks for as a page (Accept: text/html) gets index.html too, with
 * status 404: the app shows its own "page not found" in the operator's language, not a JSON problem document.
 * Paths of the API (/api, /socket.io, /metrics, MQTT over WebSocket) never get the page: they are routed first,
 * and an unknown API path keeps its problem+json 404. /favicon.ico is the build's icon (dashboard/public).
 *
 * A Content-Security-Policy of 'self' (plus the configured tile server's origin for images) makes the rule "no
 * CDN, no external request at run time" hold in the browser, not only in the build. Hashed assets are cached
 * for a year; index.html is never cached, so a new build shows at the next load.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import express, { type Request, type Response, type Router } from 'express';
import { PROJECT_ROOT } from '../core/paths.ts';

export interface DashboardOptions {
  /** Serve the dashboard at all (default true). */
  enabled?: boolean;
  /** Built app folder (default: dashboard/dist of this checkout). */
  dir?: string;
  /** Map tile URL template ({z}/{x}/{y}); empty = zones only, no tile server. */
  tileUrl?: string;
  tileAttribution?: string;
  tileMaxZoom?: number;
}

/** The project's dashboard build, the same folder whether the platform runs from its sources or from dist/. */
export const DEFAULT_DASHBOARD_DIR = path.join(PROJECT_ROOT, 'dashboard', 'dist');

/** Paths the dashboard answers with index.html. */
const APP_PATHS = /^\/(?:|map|alarms|alarms\/\d+|commands|wall|devices|devices\/[^/]+|operators|audit|reports)\/?$/;
/** Paths that are never a page of the app, whatever the browser accepts. */
const NOT_PAGES = /^\/(?:api|socket\.io|metrics|mqtt|assets)(?:\/|$)/;

function originOf(template: string): string | undefined {
  try {
    return new URL(template.replace(/\{[a-z]\}/g, 'a').replace(/\{[a-z]+\}/g, '0')).origin;
  } catch {
    return undefined;
  }
}

export function serveDashboard(opts: DashboardOptions = {}): Router {
  const router = express.Router();
  if (opts.enabled === false) return router;
  const dir = opts.dir ?? DEFAULT_DASHBOARD_DIR;
  const tileUrl = opts.tileUrl ?? '';
  const tileOrigin = tileUrl ? originOf(tileUrl) : undefined;
  const csp = [
    "default-src 'self'",
    `img-src 'self' data:${tileOrigin ? ` ${tileOrigin}` : ''}`,
    // Leaflet and uPlot set inline styles on elements; no inline scripts are allowed.
    "style-src 'self' 'unsafe-inline'",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
  ].join('; ');
  const config = JSON.stringify({ tileUrl, tileAttribution: opts.tileAttribution ?? '', tileMaxZoom: opts.tileMaxZoom ?? 19 });

  router.get('/dashboard-config.json', (_req, res) => {
    res.set('cache-control', 'no-cache').type('application/json').send(config);
  });
  router.use(
    '/assets',
    express.static(`${dir}/assets`, {
      immutable: true,
      maxAge: '365d',
      fallthrough: true,
      setHeaders: (res) => res.set('content-security-policy', csp),
    }),
  );
  // index.html is read once per build (the file changes only when the app is rebuilt; mtime tells).
  let cached: { mtimeMs: number; html: string } | undefined;
  const indexHtml = (): string | undefined => {
    const file = `${dir}/index.html`;
    if (!existsSync(file)) return undefined;
    const { mtimeMs } = statSync(file);
    if (!cached || cached.mtimeMs !== mtimeMs) cached = { mtimeMs, html: readFileSync(file, 'utf8') };
    return cached.html;
  };
  const page = (status: number) => (_req: Request, res: Response) => {
    const html = indexHtml();
    res.set({ 'content-security-policy': csp, 'cache-control': 'no-cache' });
    if (!html) {
      return void res
        .status(503)
        .type('text/plain')
        .send('The dashboard is not built: run `npm run build:dashboard` (npm start and npm test build it when missing).');
    }
    res.status(status).type('html').send(html);
  };
  router.get(APP_PATHS, page(200));
  router.get('/favicon.ico', (_req, res, next) => {
    const file = `${dir}/favicon.ico`;
    if (!existsSync(file)) return next();
    res.set('cache-control', 'public, max-age=86400').type('image/x-icon').sendFile(file);
  });
  // The app's own 404 page for any other page a browser asks for.
  router.get(/.*/, (req, res, next) => {
    if (NOT_PAGES.test(req.path) || !req.accepts('html') || req.accepts(['json', 'html']) === 'json') return next();
    page(404)(req, res);
  });
  return router;
}
