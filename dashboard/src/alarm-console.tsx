/**
 * The alarm console (/alarms, /alarms/:id): a table of alarms read from the alarm API with its filters (state,
 * severity, ward, device type, rule, time range, text), its sorts (a click on a column's head) and pages, so a
 * city with thousands of alarms is filtered by the server, not the browser. Two views: open alarms (active +
 * acknowledged, the same count as the header badge and the overview) and the history of cleared ones with a
 * search. A row opens the alarm's detail: what raised it, who acknowledged and cleared it, when and why (its
 * timeline of notes). The table follows live: every alarm event refreshes it (at most once a second).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { AlarmActions, AlarmDevice, alarmWard, AppLink, severityLabel, stateLabel } from './alarms.tsx';
import { api, ApiError, apiWithTotal } from './api.ts';
import { navigate, useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { ruleName, type Store } from './store.ts';
import { PRESETS, type PresetId, rangeOf } from './time-range.ts';
import type { AlarmRecord, Family } from './types.ts';
import { alarmValue } from './values.ts';

const PAGE = 50;
const SEVERITIES = ['critical', 'major', 'minor', 'warning'] as const;
const FAMILIES: { id: Family; key: Key }[] = [
  { id: 'streetLight', key: 'familyStreetLight' },
  { id: 'traffic', key: 'familyTraffic' },
  { id: 'airQuality', key: 'familyAirQuality' },
];
type SortKey = 'default' | 'raisedAt' | 'severity' | 'state' | 'rule' | 'subject' | 'zone' | 'clearedAt' | 'duration';

interface ConsoleFilter {
  state: 'open' | 'active' | 'acknowledged' | 'cleared' | 'all';
  severity: string;
  zone: string;
  family: string;
  rule: string;
  preset: PresetId | 'custom';
  from: string;
  to: string;
  q: string;
  sort: SortKey;
  order: 'asc' | 'desc';
  offset: number;
}

const OPEN_VIEW: ConsoleFilter = {
  state: 'open',
  severity: '',
  zone: '',
  family: '',
  rule: '',
  preset: 'all',
  from: '',
  to: '',
  q: '',
  sort: 'default',
  order: 'desc',
  offset: 0,
};
const HISTORY_VIEW: ConsoleFilter = { ...OPEN_VIEW, state: 'cleared', sort: 'clearedAt' };

/** The filter survives a visit to an alarm's detail or another page (not a reload). */
let remembered: ConsoleFilter = OPEN_VIEW;

function queryOf(f: ConsoleFilter, timeZone: string): string {
  const q = new URLSearchParams({ limit: String(PAGE), offset: String(f.offset) });
  if (f.state !== 'all') q.set('state', f.state);
  for (const k of ['severity', 'zone', 'family', 'rule'] as const) if (f[k]) q.set(k, f[k]);
  const { since, until } = rangeOf(f.preset, f.from, f.to, timeZone);
  if (since) q.set('since', since);
  if (until) q.set('until', until);
  if (f.q.trim()) q.set('q', f.q.trim());
  if (f.sort !== 'default') {
    q.set('sort', f.sort);
    q.set('order', f.order);
  }
  return q.toString();
}

/** Re-runs `load` when `key` changes (after 250 ms: typing) or `tick` does (at most once a second: live events). */
function useThrottledLoad(key: string, tick: number, load: () => Promise<void>): void {
  const last = useRef(0);
  useEffect(() => {
    const wait = Math.max(250, 1000 - (Date.now() - last.current));
    const timer = setTimeout(() => {
      last.current = Date.now();
      void load();
    }, wait);
    return () => clearTimeout(timer);
  }, [key, tick]);
}

export function AlarmConsole(props: { id?: number }) {
  const s = useStore();
  const [f, setFilter] = useState<ConsoleFilter>(remembered);
  const [page, setPage] = useState<{ list: AlarmRecord[]; total: number; query: string }>();
  const [error, setError] = useState<string>();
  const tz = s.city?.timezone ?? 'Asia/Ho_Chi_Minh';
  const query = queryOf(f, tz);
  const set = (patch: Partial<ConsoleFilter>) => {
    const next = { ...f, offset: 0, ...patch };
    remembered = next;
    setFilter(next);
  };
  useThrottledLoad(query, s.alarmSeq, async () => {
    try {
      const out = await apiWithTotal<AlarmRecord[]>(`/api/v1/alarms?${query}`);
      setPage({ list: out.body, total: out.total, query });
      setError(undefined);
    } catch (err) {
      setError(s.t('actionFailed', { detail: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) }));
    }
  });
  const counts = s.openCounts();
  const wards = s.city?.zones.filter((z) => z.shape) ?? [];
  const history = f.state === 'cleared';
  const sortBy = (key: SortKey) => {
    if (f.sort === key) set({ order: f.order === 'asc' ? 'desc' : 'asc' });
    else set({ sort: key, order: key === 'rule' || key === 'subject' || key === 'zone' ? 'asc' : 'desc' });
  };
  const head = (key: SortKey | undefined, label: Key) => (
    <th aria-sort={key && f.sort === key ? (f.order === 'asc' ? 'ascending' : 'descending') : undefined}>
      {key ? (
        <button type="button" class="link sort" data-testid={`sort-${key}`} onClick={() => sortBy(key)}>
          {s.t(label)}
          {f.sort === key ? (f.order === 'asc' ? ' ▲' : ' ▼') : ''}
        </button>
      ) : (
        s.t(label)
      )}
    </th>
  );
  const select = (testid: string, label: Key, value: string, options: [string, string][], on: (v: string) => void) => (
    <label class="filter">
      {s.t(label)}
      <select data-testid={testid} value={value} onChange={(e) => on((e.target as HTMLSelectElement).value)}>
        {options.map(([v, text]) => (
          <option key={v} value={v}>
            {text}
          </option>
        ))}
      </select>
    </label>
  );
  const shown = page?.query === query ? page : page && { ...page, stale: true };
  return (
    <div class={`console ${props.id ? 'with-detail' : ''}`} data-testid="alarm-console">
      <section class="panel console-main">
        <div class="console-head">
          <h1>{s.t('alarmConsole')}</h1>
          <span class="open-summary" data-testid="console-open-count" data-count={counts.open} title={s.t('openAlarmsHint')}>
            {s.t('openSummary', {
              n: s.fmt.num(counts.open, 0),
              active: s.fmt.num(counts.active, 0),
              acknowledged: s.fmt.num(counts.acknowledged, 0),
            })}
          </span>
        </div>
        <div class="tabs" role="tablist">
          <button
            type="button"
            role="tab"
            data-testid="view-open"
            aria-selected={f.state === 'open'}
            class={f.state === 'open' ? 'active' : ''}
            onClick={() => set({ ...OPEN_VIEW })}
          >
            {s.t('tabOpen')}
          </button>
          <button
            type="button"
            role="tab"
            data-testid="view-history"
            aria-selected={history}
            class={history ? 'active' : ''}
            onClick={() => set({ ...HISTORY_VIEW })}
          >
            {s.t('tabHistory')}
          </button>
          <span class="muted hint">{s.t('openAlarmsHint')}</span>
        </div>
        <div class="filters" data-testid="alarm-filters">
          {select(
            'filter-state',
            'state',
            f.state,
            [
              ['open', s.t('tabOpen')],
              ['active', stateLabel(s, 'active')],
              ['acknowledged', stateLabel(s, 'acknowledged')],
              ['cleared', stateLabel(s, 'cleared')],
              ['all', s.t('tabAll')],
            ],
            (v) => set({ state: v as ConsoleFilter['state'] }),
          )}
          {select(
            'filter-severity',
            'colSeverity',
            f.severity,
            [['', s.t('filterAny')], ...SEVERITIES.map((v): [string, string] => [v, severityLabel(s, v)])],
            (v) => set({ severity: v }),
          )}
          {select(
            'filter-ward',
            'zone',
            f.zone,
            [['', s.t('filterAny')], ...wards.map((z): [string, string] => [z.id, z.name[s.lang]])],
            (v) => set({ zone: v }),
          )}
          {select(
            'filter-family',
            'filterFamily',
            f.family,
            [['', s.t('filterAny')], ...FAMILIES.map((x): [string, string] => [x.id, s.t(x.key)])],
            (v) => set({ family: v }),
          )}
          {select(
            'filter-rule',
            'colRule',
            f.rule,
            [['', s.t('filterAny')], ...s.rules.map((r): [string, string] => [r.id, ruleName(s, r.id)])],
            (v) => set({ rule: v }),
          )}
          {select(
            'filter-time',
            'filterTime',
            f.preset,
            [...PRESETS.map((p): [string, string] => [p.id, s.t(p.key)]), ['custom', `${s.t('timeFrom')} … ${s.t('timeTo')}`]],
            (v) => set({ preset: v as ConsoleFilter['preset'] }),
          )}
          {f.preset === 'custom' && (
            <>
              <label class="filter">
                {s.t('timeFrom')}
                <input
                  type="date"
                  data-testid="filter-from"
                  value={f.from}
                  onChange={(e) => set({ from: (e.target as HTMLInputElement).value })}
                />
              </label>
              <label class="filter">
                {s.t('timeTo')}
                <input
                  type="date"
                  data-testid="filter-to"
                  value={f.to}
                  onChange={(e) => set({ to: (e.target as HTMLInputElement).value })}
                />
              </label>
            </>
          )}
          <label class="filter search">
            {s.t('search')}
            <input
              type="search"
              data-testid="alarm-search"
              placeholder={s.t('searchPlaceholder')}
              value={f.q}
              onInput={(e) => set({ q: (e.target as HTMLInputElement).value })}
            />
          </label>
          <button type="button" data-testid="filter-reset" onClick={() => set(history ? { ...HISTORY_VIEW } : { ...OPEN_VIEW })}>
            {s.t('resetFilters')}
          </button>
        </div>
        {error && (
          <p class="error" data-testid="console-error">
            {error}
          </p>
        )}
        <div class="table-wrap">
          <table
            class="alarm-table"
            data-testid="alarm-table"
            data-total={shown?.total ?? ''}
            data-query={shown && !('stale' in shown) ? shown.query : ''}
          >
            <thead>
              <tr>
                {head('severity', 'colSeverity')}
                {head('rule', 'colRule')}
                {head('subject', 'colDevice')}
                {head('zone', 'zone')}
                {head(undefined, 'colValue')}
                {head('raisedAt', 'colRaisedAt')}
                {head('duration', 'colDuration')}
                {head('state', 'state')}
                {head(undefined, 'colAcknowledged')}
                {head('clearedAt', 'colCleared')}
                {head(undefined, 'colActions')}
              </tr>
            </thead>
            <tbody>
              {shown?.list.map((a) => (
                <AlarmRow key={a.id} a={a} selected={a.id === props.id} />
              ))}
            </tbody>
          </table>
          {shown && shown.list.length === 0 && <p class="muted">{s.t('noMatch')}</p>}
        </div>
        {shown && shown.total > 0 && (
          <div class="pager">
            <span data-testid="console-page">
              {s.t('pageInfo', {
                from: s.fmt.num(f.offset + 1, 0),
                to: s.fmt.num(Math.min(f.offset + PAGE, shown.total), 0),
                total: s.fmt.num(shown.total, 0),
              })}
            </span>
            <button type="button" disabled={f.offset === 0} onClick={() => set({ offset: Math.max(0, f.offset - PAGE) })}>
              {s.t('prevPage')}
            </button>
            <button type="button" disabled={f.offset + PAGE >= shown.total} onClick={() => set({ offset: f.offset + PAGE })}>
              {s.t('nextPage')}
            </button>
          </div>
        )}
      </section>
      {props.id !== undefined && <AlarmDetail id={props.id} />}
    </div>
  );
}

function who(s: Store, by: string | null | undefined): string {
  return by === 'system' ? s.t('actorSystem') : (by ?? '');
}

function AlarmRow(props: { a: AlarmRecord; selected: boolean }) {
  const s = useStore();
  const { a } = props;
  const end = a.clearedAt ? Date.parse(a.clearedAt) : Date.now();
  return (
    <tr
      class={`sev-${a.severity} st-${a.state} ${props.selected ? 'selected' : ''}`}
      data-testid="alarm-row"
      data-alarm-id={a.id}
      data-state={a.state}
      data-severity={a.severity}
      data-rule={a.rule}
      data-subject={a.subject}
      onClick={(e) => {
        if ((e.target as HTMLElement).closest('a, button, .dialog-backdrop')) return;
        navigate(`/alarms/${a.id}`);
      }}
    >
      <td>
        <span class={`sev sev-${a.severity}`}>{severityLabel(s, a.severity)}</span>
      </td>
      <td>
        <AppLink href={`/alarms/${a.id}`} testid="alarm-open">
          {ruleName(s, a.rule)}
        </AppLink>
      </td>
      <td>
        <AlarmDevice a={a} />
      </td>
      <td data-testid="alarm-ward">{alarmWard(s, a)}</td>
      <td data-testid="alarm-value">{alarmValue(s, a)}</td>
      <td>{s.fmt.dateTime(a.raisedAt)}</td>
      <td>{s.fmt.duration(end - Date.parse(a.raisedAt))}</td>
      <td data-testid="alarm-state">{stateLabel(s, a.state)}</td>
      <td data-testid="alarm-acknowledged">
        {a.acknowledgedBy ? s.t('byAt', { who: who(s, a.acknowledgedBy), at: s.fmt.dateTime(a.acknowledgedAt) }) : '–'}
      </td>
      <td data-testid="alarm-cleared">{a.clearedBy ? s.t('byAt', { who: who(s, a.clearedBy), at: s.fmt.dateTime(a.clearedAt) }) : '–'}</td>
      <td>
        <AlarmActions a={a} />
      </td>
    </tr>
  );
}

interface Note {
  at: string;
  actor: string;
  action: 'raise' | 'acknowledge' | 'clear' | 'condition-cleared';
  note: string | null;
}
const NOTE_KEYS: Record<Note['action'], Key> = {
  raise: 'noteRaise',
  acknowledge: 'noteAcknowledge',
  clear: 'noteClear',
  'condition-cleared': 'noteConditionCleared',
};

/** One alarm: what raised it, where, its state and its timeline (who did what, when, with which note). */
function AlarmDetail(props: { id: number }) {
  const s = useStore();
  const [a, setAlarm] = useState<AlarmRecord & { notes: Note[] }>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    let cancelled = false;
    api<AlarmRecord & { notes: Note[] }>(`/api/v1/alarms/${props.id}`).then(
      (x) => {
        if (cancelled) return;
        setAlarm(x);
        setError(undefined);
      },
      (err) => {
        if (!cancelled) setError(err instanceof ApiError && err.status === 404 ? s.t('noMatch') : String(err));
      },
    );
    return () => {
      cancelled = true;
    };
  }, [props.id, s.alarmSeq]);
  return (
    <aside class="panel alarm-detail" data-testid="alarm-detail" data-alarm-id={props.id} data-state={a?.state}>
      <div class="console-head">
        <h2>{s.t('alarmDetail')}</h2>
        <AppLink href="/alarms" class="close">
          {s.t('closeDetail')} ✕
        </AppLink>
      </div>
      {error && <p class="error">{error}</p>}
      {a && (
        <>
          <p>
            <span class={`sev sev-${a.severity}`}>{severityLabel(s, a.severity)}</span> <strong>{ruleName(s, a.rule)}</strong> ·{' '}
            <span data-testid="detail-state">{stateLabel(s, a.state)}</span>
          </p>
          <dl class="kv">
            <dt>{s.t('zone')}</dt>
            <dd>{alarmWard(s, a)}</dd>
            <dt>{s.t('colDevice')}</dt>
            <dd>
              <AlarmDevice a={a} />
            </dd>
            <dt>{s.t('colValue')}</dt>
            <dd>{alarmValue(s, a)}</dd>
            <dt>{s.t('colRaisedAt')}</dt>
            <dd>{s.fmt.dateTime(a.raisedAt)}</dd>
            <dt>{s.t('colDuration')}</dt>
            <dd>{s.fmt.duration((a.clearedAt ? Date.parse(a.clearedAt) : Date.now()) - Date.parse(a.raisedAt))}</dd>
            <dt>{s.t('state')}</dt>
            <dd data-testid="detail-condition">
              {a.conditionClearedAt ? s.t('conditionEndedAt', { at: s.fmt.dateTime(a.conditionClearedAt) }) : s.t('conditionHolds')}
            </dd>
          </dl>
          <AlarmActions a={a} />
          <h2>{s.t('timeline')}</h2>
          <ol class="timeline" data-testid="alarm-timeline">
            {a.notes.map((n, i) => (
              <li key={i} data-testid="timeline-item" data-action={n.action}>
                <time>{s.fmt.dateTime(n.at)}</time> <strong>{s.t(NOTE_KEYS[n.action] ?? 'noteRaise')}</strong> · {who(s, n.actor)}
                {n.note && <blockquote data-testid="timeline-note">{n.note}</blockquote>}
              </li>
            ))}
          </ol>
        </>
      )}
    </aside>
  );
}
