/**
 * Supervision of the platform's private InfluxDB: an influxd that ends without `stop()` (killed, crashed) is
 * reported and started again on the same directory and HTTP port, with back-off, so the URL its clients hold
 * stays valid.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { type LocalInflux, startLocalInflux, type StartLocalInfluxOptions } from './influxdb-process.ts';

/** Options for {@link superviseLocalInflux}. */
export interface SuperviseLocalInfluxOptions extends StartLocalInfluxOptions {
  /** Receives, at error level, an influxd that ended without stop() and each restart that failed. */
  onError?: (detail: Record<string, unknown>, msg: string) => void;
  /** Delay before the first restart (default 500 ms); it doubles after each restart, up to `maxRestartDelayMs`. */
  restartDelayMs?: number;
  /** Longest delay between restarts (default 30000 ms). */
  maxRestartDelayMs?: number;
  /** An influxd that stayed up this long (default 60000 ms) is restarted after `restartDelayMs` again. */
  stableAfterMs?: number;
}

/** A private InfluxDB that is restarted whenever it ends without `stop()`; `pid` is the current process. */
export interface SupervisedInflux extends LocalInflux {
  /** How many times influxd was restarted after ending on its own. */
  readonly restarts: number;
}

/**
 * Starts a private InfluxDB like {@link startLocalInflux} (a failed first start throws) and keeps it running:
 * an influxd that ends without `stop()` (killed, crashed) is reported through `onError` with its exit code or
 * signal and started again on the same dir and HTTP port, so the URL given to its clients stays valid. The
 * delay before a restart doubles from `restartDelayMs` to `maxRestartDelayMs` and goes back to the start once
 * influxd has stayed up `stableAfterMs`. `stop()` ends supervision first, so stopping restarts nothing.
 */
export async function superviseLocalInflux(opts: SuperviseLocalInfluxOptions): Promise<SupervisedInflux> {
  const log = opts.log ?? (() => {});
  const onError = opts.onError ?? ((detail, msg) => log(`${msg} ${JSON.stringify(detail)}`));
  const minDelay = opts.restartDelayMs ?? 500;
  const maxDelay = opts.maxRestartDelayMs ?? 30_000;
  const stableAfter = opts.stableAfterMs ?? 60_000;

  let current = await startLocalInflux(opts);
  // A port picked free at the first start is kept: ingest, analytics and the API already use this URL.
  const again: StartLocalInfluxOptions = { ...opts, port: current.port };
  let stopped = false;
  let restarts = 0;
  const cancelWait = new AbortController();

  const supervise = async (): Promise<void> => {
    let delay = minDelay;
    while (!stopped) {
      const instance = current;
      const upSince = Date.now();
      const exit = await instance.exited;
      if (stopped) return;
      const endedAt = Date.now();
      if (endedAt - upSince >= stableAfter) delay = minDelay;
      onError(
        // influxdPid: a logger's own `pid` field is the platform's.
        {
          influxdPid: instance.pid,
          code: exit.code,
          signal: exit.signal,
          ...(exit.error ? { error: exit.error } : {}),
          restartInMs: delay,
        },
        `local InfluxDB (influxd pid ${instance.pid}) ended unexpectedly (${exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`}); restarting it in ${delay} ms`,
      );
      for (;;) {
        await sleep(delay, undefined, { signal: cancelWait.signal }).catch(() => undefined);
        if (stopped) return;
        delay = Math.min(delay * 2, maxDelay);
        try {
          const next = await startLocalInflux(again);
          current = next;
          if (stopped) return void (await next.stop());
          restarts++;
          log(`influxd restarted (pid ${next.pid}, restart ${restarts}), ${Date.now() - endedAt} ms after it ended`);
          break;
        } catch (err) {
          if (stopped) return;
          onError({ err: (err as Error).message, restartInMs: delay }, 'restarting the local InfluxDB failed; trying again');
        }
      }
    }
  };
  const supervising = supervise().catch((err: unknown) => onError({ err: (err as Error).message }, 'InfluxDB supervision failed'));

  let stopping: Promise<void> | undefined;
  const first = current;
  return {
    url: first.url,
    port: first.port,
    dir: first.dir,
    get pid() {
      return current.pid;
    },
    get restarts() {
      return restarts;
    },
    get exited() {
      return current.exited;
    },
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        cancelWait.abort();
        await current.stop();
        await supervising; // a restart in progress stops its own influxd
        await current.stop();
      })()),
  };
}
