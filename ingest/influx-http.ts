/**
 * The InfluxDB v1 write endpoint (`POST /write?db=&rp=&precision=ms`) as the writer sees it: one request per
 * batch over a keep-alive agent, credentials in a header (never in the path, which ends up in error texts and
 * proxies' logs), and every answer reduced to an outcome: stored, unavailable (retry later) or rejected (400,
 * with InfluxDB's reason, cut to a bounded length and marked so).
 */
import http from 'node:http';
import https from 'node:https';

/** Where points are written: an InfluxDB server, database and retention policy. */
export interface InfluxTarget {
  /** Base URL, e.g. http://127.0.0.1:8086 */
  url: string;
  database: string;
  retentionPolicy: string;
  username?: string;
  password?: string;
}

/** InfluxDB's error text kept with a dead letter, characters; longer ones end with CUT. */
const MAX_REASON = 2000;
export const CUT = ' …[cut]';

export type Outcome = { kind: 'ok' } | { kind: 'unavailable'; reason: string; missingDb?: boolean } | { kind: 'rejected'; reason: string };

export class InfluxWriteEndpoint {
  private readonly agent: http.Agent;
  private readonly writePath: string;
  private readonly authorization: string | undefined;

  constructor(
    private readonly target: InfluxTarget,
    private readonly opts: { writeConcurrency: number; requestTimeoutMs?: number },
  ) {
    const u = new URL(target.url);
    const params = new URLSearchParams({ db: target.database, rp: target.retentionPolicy, precision: 'ms' });
    this.writePath = `${u.pathname.replace(/\/$/, '')}/write?${params}`;
    // Credentials go in a header, never in the path (`u=`/`p=`), which ends up in error texts and proxies' logs.
    if (target.username) {
      this.authorization = `Basic ${Buffer.from(`${target.username}:${target.password ?? ''}`).toString('base64')}`;
    }
    const Agent = u.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: opts.writeConcurrency + 1 });
  }

  /** Sends one batch of lines; never rejects. */
  post(body: string): Promise<Outcome> {
    const u = new URL(this.target.url);
    const mod = u.protocol === 'https:' ? https : http;
    return new Promise<Outcome>((resolve) => {
      const req = mod.request(
        {
          host: u.hostname,
          port: u.port || (u.protocol === 'https:' ? 443 : 80),
          method: 'POST',
          path: this.writePath,
          agent: this.agent,
          headers: {
            'content-type': 'text/plain; charset=utf-8',
            'content-length': Buffer.byteLength(body),
            ...(this.authorization ? { authorization: this.authorization } : {}),
          },
          timeout: this.opts.requestTimeoutMs ?? 10000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) return resolve({ kind: 'ok' });
            const text = Buffer.concat(chunks).toString('utf8');
            let reason = text;
            try {
              reason = (JSON.parse(text) as { error?: string }).error ?? text;
            } catch {
              /* plain-text body */
            }
            reason = `HTTP ${status}: ${reason}`;
            // A long message is cut, and marked so: the points it named past the cut are then not known.
            if (reason.length > MAX_REASON) reason = `${reason.slice(0, MAX_REASON)}${CUT}`;
            if (status === 400) resolve({ kind: 'rejected', reason });
            else resolve({ kind: 'unavailable', reason, missingDb: status === 404 && /database not found/.test(reason) });
          });
          res.on('error', (err) => resolve({ kind: 'unavailable', reason: err.message }));
        },
      );
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', (err) => resolve({ kind: 'unavailable', reason: (err as NodeJS.ErrnoException).code ?? err.message }));
      req.end(body);
    });
  }

  /** Closes the agent's sockets. */
  destroy(): void {
    this.agent.destroy();
  }
}
