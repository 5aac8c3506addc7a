/**
 * Test helper: polling for a condition with a deadline, and whether a process is alive. Every test that waits
 * for something outside its control (a process, a port, a stored point) waits through this, so a timeout always
 * names what was awaited and how long.
 */

export interface WaitOptions {
  /** Poll interval, ms (default 50). */
  every?: number;
  /** Appended to the timeout's message: state that helps explain why the condition never held. */
  detail?: () => string;
}

/**
 * Polls `fn` until it returns a truthy value and resolves with it; rejects after `ms` naming `what`.
 * `fn` may be synchronous or return a promise.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  ms: number,
  what: string,
  opts: WaitOptions = {},
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) {
      const detail = opts.detail ? `\n${opts.detail()}` : '';
      throw new Error(`timed out after ${ms} ms waiting for ${what}${detail}`);
    }
    await new Promise((r) => setTimeout(r, opts.every ?? 50));
  }
}

/** Whether a process with this pid exists (signal 0); a pid of another user's process counts as alive. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
