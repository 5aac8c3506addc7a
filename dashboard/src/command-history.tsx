/**
 * The command history (/commands): one row per batch (a request from a screen, or a schedule's edge) from
 * GET /api/v1/commands/batches: when, who, what, which ward or lights, and how it ended (how many of its
 * commands reached the light, were carried out, failed or expired). Filtered by the server: who, ward, action,
 * outcome, time. Live: every command event refreshes it (at most once a second).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { apiWithTotal, ApiError } from './api.ts';
import { describeAction } from './commands.tsx';
import { useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { type Store, zoneName } from './store.ts';
import { PRESETS, type PresetId, rangeOf } from './time-range.ts';
import type { CommandRecord } from './types.ts';

const PAGE = 50;

interface Batch {
  batch: string;
  createdAt: string;
  createdBy: string;
  action: Record<string, unknown>;
  target: { zone: string } | { devices: string[] } | null;
  zones: string[];
  size: number;
  states: Record<CommandRecord['state'], number>;
  reached: number;
  finishedAt: string | null;
}

interface Filter {
  by: string;
  zone: string;
  action: '' | 'on' | 'off' | 'dim';
  outcome: '' | 'open' | 'done' | 'failed';
  preset: PresetId;
  offset: number;
}
const NONE: Filter = { by: '', zone: '', action: '', outcome: '', preset: 'all', offset: 0 };

function targetText(s: Store, b: Batch): string {
  if (b.target && 'zone' in b.target) return zoneName(s, b.target.zone);
  const devices = b.target && 'devices' in b.target ? b.target.devices : [];
  const wards = b.zones.map((z) => zoneName(s, z)).join(', ');
  if (devices.length === 1) return `${devices[0]}${wards ? ` (${wards})` : ''}`;
  return `${s.t('lightsCount', { n: s.fmt.num(b.size, 0) })}${wards ? ` (${wards})` : ''}`;
}

function outcomeOf(b: Batch): 'open' | 'done' | 'failed' {
  if (b.states.pending + b.states.delivered > 0) return 'open';
  return b.states.failed + b.states.expired > 0 ? 'failed' : 'done';
}
const OUTCOME_KEYS: Record<'open' | 'done' | 'failed', Key> = { open: 'outcomeOpen', done: 'outcomeDone', failed: 'outcomeFailed' };

export function CommandHistory() {
  const s = useStore();
  const [f, setF] = useState<Filter>(NONE);
  const [page, setPage] = useState<{ list: Batch[]; query: string }>();
  const [error, setError] = useState<string>();
  const tz = s.city?.timezone ?? 'Asia/Ho_Chi_Minh';
  const q = new URLSearchParams({ limit: String(PAGE + 1), offset: String(f.offset) });
  if (f.by.trim()) q.set('by', f.by.trim());
  if (f.zone) q.set('zone', f.zone);
  if (f.action) q.set('action', f.action);
  if (f.outcome) q.set('outcome', f.outcome);
  const { since } = rangeOf(f.preset, '', '', tz);
  if (since) q.set('since', since);
  const query = q.toString();
  const last = useRef(0);
  useEffect(() => {
    const timer = setTimeout(
      () => {
        last.current = Date.now();
        apiWithTotal<Batch[]>(`/api/v1/commands/batches?${query}`).then(
          (out) => {
            setPage({ list: out.body, query });
            setError(undefined);
          },
          (err) => setError(s.t('actionFailed', { detail: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) })),
        );
      },
      Math.max(250, 1000 - (Date.now() - last.current)),
    );
    return () => clearTimeout(timer);
  }, [query, s.commandSeq]);
  const set = (patch: Partial<Filter>) => setF({ ...f, offset: 0, ...patch });
  const wards = s.city?.zones.filter((z) => z.shape) ?? [];
  const rows = page?.list.slice(0, PAGE) ?? [];
  const more = (page?.list.length ?? 0) > PAGE;
  return (
    <section class="panel" data-testid="command-history">
      <h1>{s.t('commandHistory')}</h1>
      <div class="filters">
        <label class="filter">
          {s.t('colWho')}
          <input data-testid="history-by" value={f.by} onInput={(e) => set({ by: (e.target as HTMLInputElement).value })} />
        </label>
        <label class="filter">
          {s.t('zone')}
          <select data-testid="history-ward" value={f.zone} onChange={(e) => set({ zone: (e.target as HTMLSelectElement).value })}>
            <option value="">{s.t('filterAny')}</option>
            {wards.map((z) => (
              <option key={z.id} value={z.id}>
                {z.name[s.lang]}
              </option>
            ))}
          </select>
        </label>
        <label class="filter">
          {s.t('colAction')}
          <select
            data-testid="history-action"
            value={f.action}
            onChange={(e) => set({ action: (e.target as HTMLSelectElement).value as Filter['action'] })}
          >
            <option value="">{s.t('filterAny')}</option>
            <option value="on">{s.t('actionOn')}</option>
            <option value="off">{s.t('actionOff')}</option>
            <option value="dim">{s.t('actionDim')}</option>
          </select>
        </label>
        <label class="filter">
          {s.t('colOutcome')}
          <select
            data-testid="history-outcome"
            value={f.outcome}
            onChange={(e) => set({ outcome: (e.target as HTMLSelectElement).value as Filter['outcome'] })}
          >
            <option value="">{s.t('filterAny')}</option>
            <option value="open">{s.t('outcomeOpen')}</option>
            <option value="done">{s.t('outcomeDone')}</option>
            <option value="failed">{s.t('outcomeFailed')}</option>
          </select>
        </label>
        <label class="filter">
          {s.t('filterTime')}
          <select
            data-testid="history-time"
            value={f.preset}
            onChange={(e) => set({ preset: (e.target as HTMLSelectElement).value as PresetId })}
          >
            {PRESETS.map((p) => (
              <option key={p.id} value={p.id}>
                {s.t(p.key)}
              </option>
            ))}
          </select>
        </label>
      </div>
      {error && <p class="error">{error}</p>}
      <div class="table-wrap">
        <table data-testid="command-history-table" data-query={page?.query === query ? query : ''}>
          <thead>
            <tr>
              <th>{s.t('colTime')}</th>
              <th>{s.t('colWho')}</th>
              <th>{s.t('colAction')}</th>
              <th>{s.t('colTarget')}</th>
              <th>{s.t('colOutcome')}</th>
              <th>{s.t('colFinished')}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((b) => {
              const outcome = outcomeOf(b);
              return (
                <tr
                  key={`${b.batch}|${b.createdAt}`}
                  data-testid="history-row"
                  data-batch={b.batch}
                  data-outcome={outcome}
                  data-size={b.size}
                  data-acknowledged={b.states.acknowledged}
                >
                  <td>{s.fmt.dateTime(b.createdAt)}</td>
                  <td data-testid="history-who">{b.createdBy}</td>
                  <td>{describeAction(s, b.action)}</td>
                  <td data-testid="history-target">{targetText(s, b)}</td>
                  <td data-testid="history-outcome-cell" class={`outcome-${outcome}`}>
                    {s.t(OUTCOME_KEYS[outcome])}: {s.t('batchReached', { k: s.fmt.num(b.reached, 0), n: s.fmt.num(b.size, 0) })} ·{' '}
                    {s.t('batchAcknowledged', { k: s.fmt.num(b.states.acknowledged, 0), n: s.fmt.num(b.size, 0) })}
                    {b.states.failed + b.states.expired > 0 &&
                      ` · ${s.t('batchFailed', { k: s.fmt.num(b.states.failed + b.states.expired, 0), n: s.fmt.num(b.size, 0) })}`}
                  </td>
                  <td>{s.fmt.dateTime(b.finishedAt)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {page && rows.length === 0 && <p class="muted">{s.t('noCommands')}</p>}
      </div>
      <div class="pager">
        <button type="button" disabled={f.offset === 0} onClick={() => setF({ ...f, offset: Math.max(0, f.offset - PAGE) })}>
          {s.t('prevPage')}
        </button>
        <button type="button" disabled={!more} onClick={() => setF({ ...f, offset: f.offset + PAGE })}>
          {s.t('nextPage')}
        </button>
      </div>
    </section>
  );
}
