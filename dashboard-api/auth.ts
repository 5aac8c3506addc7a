/**
 * Who is calling. A bearer token is either an operator's session token (from `POST
 * /api/v1/auth/login`) or the service token (`api.adminToken`), which acts with the admin role for
 * automation. The same check guards REST routes (app.ts) and socket.io connections (live.ts).
 *
 * Logins are rate-limited per source address and per username: failures are counted in a sliding window;
 * past the limit every attempt (a correct password too) is refused with 429 and Retry-After until the oldest
 * failure leaves the window. The counters live in this process's memory.
 */
import { timingSafeEqual } from 'node:crypto';
import { PlatformError } from '../core/errors.ts';
import type { Operator, OperatorStore, Role } from '../registry/index.ts';

export interface Principal {
  username: string;
  role: Role;
  kind: 'session' | 'service';
  /** Sessions only. */
  sessionId?: string;
  /** Sessions only, ISO 8601. */
  expiresAt?: string;
}

/** The actor name of the service token in the audit log (not a valid username). */
export const SERVICE_ACTOR = '(service token)';

export interface AuthOptions {
  /** Default 12 h. */
  sessionTtlMs?: number;
  /** Failed logins per username within the window before 429 (default 5). */
  loginMaxFailuresPerUser?: number;
  /** Failed logins per source address within the window before 429 (default 20). */
  loginMaxFailuresPerAddress?: number;
  /** Default 15 min. */
  loginWindowMs?: number;
}

/** Sessions that ended: sockets opened with them are closed. */
export type SessionsEnded = { sessionId: string } | { username: string };

export interface Auth {
  readonly operators: OperatorStore;
  readonly sessionTtlMs: number;
  /** The principal of a bearer token, or undefined (unknown, expired, ended, disabled operator). */
  resolve(token: string | undefined): Promise<Principal | undefined>;
  /**
   * Checks the rate limit, then the password; audits the attempt. Throws CP_API_RATE_LIMITED (with
   * `details.retryAfterSeconds`) or CP_API_UNAUTHORIZED.
   */
  login(username: string, password: string, address: string): Promise<{ token: string; expiresAt: string; operator: Operator }>;
  logout(p: Principal): Promise<void>;
  /** Tells listeners (live sockets) that sessions ended. */
  ended(e: SessionsEnded): void;
  onEnded(listener: (e: SessionsEnded) => void): () => void;
}

export function createAuth(operators: OperatorStore, serviceToken: string, opts: AuthOptions = {}): Auth {
  const ttl = opts.sessionTtlMs ?? 12 * 3600_000;
  const windowMs = opts.loginWindowMs ?? 15 * 60_000;
  const byUser = new FailureCounter(windowMs, opts.loginMaxFailuresPerUser ?? 5);
  const byAddress = new FailureCounter(windowMs, opts.loginMaxFailuresPerAddress ?? 20);
  const service = Buffer.from(serviceToken);
  const listeners = new Set<(e: SessionsEnded) => void>();

  const auth: Auth = {
    operators,
    sessionTtlMs: ttl,
    async resolve(token) {
      if (!token) return undefined;
      const given = Buffer.from(token);
      if (service.length > 0 && given.length === service.length && timingSafeEqual(given, service)) {
        return { username: SERVICE_ACTOR, role: 'admin', kind: 'service' };
      }
      const s = await operators.findSession(token);
      return s && { username: s.operator.username, role: s.operator.role, kind: 'session', sessionId: s.id, expiresAt: s.expiresAt };
    },
    async login(username, password, address) {
      const now = Date.now();
      const wait = Math.max(byUser.retryAfterMs(username, now), byAddress.retryAfterMs(address, now));
      const audit = (outcome: string, role: Role | null = null) =>
        operators.audit({ actor: username, role, action: 'login', target: username, address, outcome });
      if (wait > 0) {
        await audit('rate-limited');
        const retryAfterSeconds = Math.ceil(wait / 1000);
        throw new PlatformError('CP_API_RATE_LIMITED', `too many failed logins; retry in ${retryAfterSeconds} s`, {
          details: { retryAfterSeconds },
        });
      }
      const check = await operators.checkPassword(username, password);
      if (check.result !== 'ok') {
        byUser.fail(username, Date.now());
        byAddress.fail(address, Date.now());
        await audit(check.result, check.result === 'unknown-user' ? null : check.operator.role);
        // One answer for every cause: no hint whether the username exists or is disabled.
        throw new PlatformError('CP_API_UNAUTHORIZED', 'wrong username or password');
      }
      byUser.clear(username);
      const { token, session } = await operators.createSession(username, ttl);
      await audit('ok', session.operator.role);
      return { token, expiresAt: session.expiresAt, operator: session.operator };
    },
    async logout(p) {
      if (p.kind !== 'session' || !p.sessionId) return;
      await operators.endSession(p.sessionId);
      auth.ended({ sessionId: p.sessionId });
    },
    ended(e) {
      for (const l of listeners) l(e);
    },
    onEnded(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return auth;
}

/** Failure times per key within a sliding window. Memory is bounded by sweeping stale keys. */
class FailureCounter {
  private readonly failures = new Map<string, number[]>();
  constructor(
    private readonly windowMs: number,
    private readonly max: number,
  ) {}

  private recent(key: string, now: number): number[] {
    const list = (this.failures.get(key) ?? []).filter((t) => t > now - this.windowMs);
    if (list.length) this.failures.set(key, list);
    else this.failures.delete(key);
    return list;
  }

  /** 0 when an attempt may go ahead; else how long until it may, ms. */
  retryAfterMs(key: string, now: number): number {
    const list = this.recent(key, now);
    if (list.length < this.max) return 0;
    // The attempt may go ahead when enough failures have left the window to be under the limit again.
    return (list[list.length - this.max] as number) + this.windowMs - now;
  }

  fail(key: string, now: number): void {
    const list = this.recent(key, now);
    list.push(now);
    this.failures.set(key, list.slice(-this.max));
    if (this.failures.size > 10_000) for (const k of [...this.failures.keys()]) this.recent(k, now);
  }

  clear(key: string): void {
    this.failures.delete(key);
  }
}
