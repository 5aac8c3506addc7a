/**
 * Schedules at work: at the local time `from` (city time zone) a schedule creates one command per target
 * device with `action`, at `to` one with `endAction` (when given), all with the schedule's id as batch. A tick
 * looks for the latest edge passed since the schedule's last one (or its creation), so after a restart the edge
 * missed while the platform was down fires once: the latest only, the state the lights should be in.
 */
import type { Logger } from '../core/logger.ts';
import type { Device } from '../registry/index.ts';
import type { CommandChecks } from './targets.ts';
import type { CommandDelivery } from './delivery.ts';
import type { CommandStore, Schedule } from './store.ts';
import { latestEdge, parseTimeOfDay } from './time-of-day.ts';
import type { CommandsDeps } from './types.ts';

/** Runs one schedule check at `now`; a tick still running makes the next one return at once. */
export function createScheduleTicker(
  store: CommandStore,
  parts: { resolveTarget: CommandChecks['resolveTarget']; insertAndSend: CommandDelivery['insertAndSend'] },
  deps: Pick<CommandsDeps, 'audit'>,
  defaultTtlMs: number,
  log: Logger,
): (now?: number) => Promise<void> {
  const { resolveTarget, insertAndSend } = parts;
  async function fire(s: Schedule, edge: 'from' | 'to', at: number): Promise<void> {
    // First: an edge fires once, even if sending fails below, and once in a cluster whoever else tried it.
    if (!(await store.claimScheduleEdge(s.id, edge, at))) return;
    const action = edge === 'from' ? s.action : s.endAction;
    if (!action) return;
    const devices = await resolveTarget(s.target, false).catch((err: Error) => {
      log.warn({ err: err.message, schedule: s.id }, 'schedule target cannot be resolved');
      return [] as Device[];
    });
    if (devices.length === 0) return;
    const ttl = s.ttlMs ?? defaultTtlMs;
    const created = await insertAndSend(devices, action, ttl, `schedule:${s.id}`, s.id, s.target);
    log.info({ schedule: s.id, edge, commands: created.length }, 'schedule edge');
    deps
      .audit?.({ actor: '(system)', role: null, action: 'command.create', target: s.id, address: null, outcome: 'ok' })
      .catch((err: Error) => log.error({ err: err.message }, 'audit record failed'));
  }

  let ticking = false;
  /** The last failure logged: while the shared database is away, one line, not one a tick. */
  let failure = '';
  async function tick(now = Date.now()): Promise<void> {
    if (ticking) return; // a slow tick (many devices) is not overlapped by the next one
    ticking = true;
    try {
      for (const s of await store.listSchedules()) {
        if (!s.enabled) continue;
        const since = Math.max(Date.parse(s.createdAt), s.lastEdge ? Date.parse(s.lastEdge.at) : 0);
        const edges = { from: parseTimeOfDay(s.from), to: parseTimeOfDay(s.to) };
        const e = latestEdge(edges, since, now, s.timeZone);
        if (e) await fire(s, e.edge, e.at);
      }
      failure = '';
    } catch (err) {
      const what = (err as Error).message;
      if (what !== failure) log.error({ err }, 'schedule tick failed; tried again at the next tick');
      failure = what;
    } finally {
      ticking = false;
    }
  }

  return tick;
}
