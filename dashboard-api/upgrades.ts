/**
 * HTTP upgrade routing on the API port. socket.io (engine.io) takes the upgrades under its own path
 * by itself and is attached with `destroyUpgrade: false`, so that it leaves the others alone; this router
 * gives each other path to the handler registered for it (MQTT over WebSocket on `broker.ws.path`) and
 * answers 404 to the rest, so that no upgrade request is left hanging.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';

export type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface UpgradeRoutes {
  /** Routes upgrades whose path (query string aside) is exactly `path`. */
  add(path: string, handler: UpgradeHandler): void;
}

/** `passThrough`: URL prefixes handled by another 'upgrade' listener (engine.io's `/socket.io/`). */
export function routeUpgrades(server: http.Server, opts: { passThrough: string[] }): UpgradeRoutes {
  const routes = new Map<string, UpgradeHandler>();
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = req.url ?? '/';
    // The same test engine.io makes (a prefix of the raw URL), so that exactly its requests are skipped.
    if (opts.passThrough.some((prefix) => url.startsWith(prefix))) return;
    const q = url.indexOf('?');
    const handler = routes.get(q === -1 ? url : url.slice(0, q));
    if (handler) return handler(req, socket, head);
    socket.on('error', () => undefined);
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  return {
    add(path, handler) {
      routes.set(path, handler);
    },
  };
}
