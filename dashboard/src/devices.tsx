/**
 * The devices page (/devices): every device in a table, found by the server (GET /api/v1/devices with q, family,
 * zone, online, openAlarm, sort, order, limit, offset), one page at a time, so that it stays fast with tens of
 * thousands of devices. Last seen reads as an age ("3 phút trước"); each row links to the device's page; the
 * filtered list (every match, not only the page) exports as CSV from the same route (format=csv).
 */
import { useEffect, useState } from 'preact/hooks';
import { AppLink } from './alarms.tsx';
import { ApiError, apiWithTotal, download } from './api.ts';
import { useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { type Store, zoneName } from './store.ts';
import type { DeviceInfo, Family } from './types.ts';

const PAGE = 50;
type Sort = 'id' | 'name' | 'family' | 'zone' | 'lastSeen';

interface Filter {
  q: string;
  family: '' | Family;
  zone: string;
  online: '' | 'true' | 'false';
  openAlarm: '' | 'true' | 'false';
  sort: Sort;
  order: 'asc' | 'desc';
  offset: number;
}
const NONE: Filter = { q: '', family: '', zone: '', online: '', openAlarm: '', sort: 'id', order: 'asc', offset: 0 };

export const FAMILY_KEYS: Record<Family, Key> = {
  airQuality: 'familyAirQuality',
  traffic: 'familyTraffic',
  streetLight: 'familyStreetLight',
};

/** How long ago `iso` was, in words ("3 phút trước"); "never" when the device was never seen. */
export function ageText(s: Store, iso: string | undefined | null, now = Date.now()): string {
  if (!iso) return s.t('neverSeen');
  const sec = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (sec < 60) return s.t('agoSeconds', { n: sec });
  if (sec < 3600) return s.t('agoMinutes', { n: Math.floor(sec / 60) });
  if (sec < 86_400) return s.t('agoHours', { n: Math.floor(sec / 3600) });
  return s.t('agoDays', { n: Math.floor(sec / 86_400) });
}

/** The query of a filter (without paging: the CSV export takes every match). */
function filterQuery(f: Filter): URLSearchParams {
  const q = new URLSearchParams();
  if (f.q.trim()) q.set('q', f.q.trim());
  if (f.family) q.set('family', f.family);
  if (f.zone) q.set('zone', f.zone);
  if (f.online) q.set('online', f.online);
  if (f.openAlarm) q.set('openAlarm', f.openAlarm);
  q.set('sort', f.sort);
  q.set('order', f.order);
  return q;
}

export function DevicesPage() {
  const s = useStore();
  const [f, setF] = useState<Filter>(NONE);
  const [page, setPage] = useState<{ list: DeviceInfo[]; total: number; query: string }>();
  const [error, setError] = useState<string>();
  const [now, setNow] = useState(Date.now());
  const base = filterQuery(f);
  const paged = new URLSearchParams(base);
  paged.set('limit', String(PAGE));
  paged.set('offset', String(f.offset));
  const query = paged.toString();
  useEffect(() => {
    // Typing in the search box asks once the typing pauses.
    const timer = setTimeout(() => {
      apiWithTotal<DeviceInfo[]>(`/api/v1/devices?${query}`).then(
        (out) => {
          setPage({ list: out.body, total: out.total, query });
          setNow(Date.now());
          setError(undefined);
        },
        (err) => setError(s.t('actionFailed', { detail: err instanceof ApiError ? `${err.code}: ${err.message}` : String(err) })),
      );
    }, 200);
    return () => clearTimeout(timer);
  }, [query]);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 15_000);
    return () => clearInterval(t);
  }, []);
  const set = (patch: Partial<Filter>) => setF({ ...f, offset: 0, ...patch });
  const sortBy = (sort: Sort) => set({ sort, order: f.sort === sort && f.order === 'asc' ? 'desc' : 'asc' });
  const wards = s.city?.zones.filter((z) => z.shape) ?? [];
  const rows = page?.list ?? [];
  const total = page?.total ?? 0;
  const head = (sort: Sort, key: Key) => (
    <th aria-sort={f.sort === sort ? (f.order === 'asc' ? 'ascending' : 'descending') : undefined}>
      <button type="button" class="link" data-testid={`devices-sort-${sort}`} onClick={() => sortBy(sort)}>
        {s.t(key)}
        {f.sort === sort ? (f.order === 'asc' ? ' ▲' : ' ▼') : ''}
      </button>
    </th>
  );
  return (
    <section class="panel devices-page" data-testid="devices-page">
      <h1>{s.t('devicesTitle')}</h1>
      <div class="filters">
        <label class="filter search">
          {s.t('search')}
          <input
            data-testid="devices-search"
            type="search"
            placeholder={s.t('devicesSearchPlaceholder')}
            value={f.q}
            onInput={(e) => set({ q: (e.target as HTMLInputElement).value })}
          />
        </label>
        <label class="filter">
          {s.t('filterFamily')}
          <select
            data-testid="devices-family"
            value={f.family}
            onChange={(e) => set({ family: (e.target as HTMLSelectElement).value as Filter['family'] })}
          >
            <option value="">{s.t('filterAny')}</option>
            {(Object.keys(FAMILY_KEYS) as Family[]).map((fam) => (
              <option key={fam} value={fam}>
                {s.t(FAMILY_KEYS[fam])}
              </option>
            ))}
          </select>
        </label>
        <label class="filter">
          {s.t('zone')}
          <select data-testid="devices-ward" value={f.zone} onChange={(e) => set({ zone: (e.target as HTMLSelectElement).value })}>
            <option value="">{s.t('filterAny')}</option>
            {wards.map((z) => (
              <option key={z.id} value={z.id}>
                {z.name[s.lang]}
              </option>
            ))}
          </select>
        </label>
        <label class="filter">
          {s.t('devicesConnection')}
          <select
            data-testid="devices-online"
            value={f.online}
            onChange={(e) => set({ online: (e.target as HTMLSelectElement).value as Filter['online'] })}
          >
            <option value="">{s.t('filterAny')}</option>
            <option value="true">{s.t('online')}</option>
            <option value="false">{s.t('offline')}</option>
          </select>
        </label>
        <label class="filter">
          {s.t('devicesOpenAlarm')}
          <select
            data-testid="devices-alarm"
            value={f.openAlarm}
            onChange={(e) => set({ openAlarm: (e.target as HTMLSelectElement).value as Filter['openAlarm'] })}
          >
            <option value="">{s.t('filterAny')}</option>
            <option value="true">{s.t('devicesWithAlarm')}</option>
            <option value="false">{s.t('devicesWithoutAlarm')}</option>
          </select>
        </label>
        <button
          type="button"
          data-testid="devices-csv"
          onClick={() => {
            const q = filterQuery(f);
            q.set('format', 'csv');
            download(`/api/v1/devices?${q}`, 'devices.csv').catch((err) => setError(s.t('actionFailed', { detail: String(err) })));
          }}
        >
          {s.t('exportCsv')}
        </button>
      </div>
      {error && <p class="error">{error}</p>}
      <p class="muted" data-testid="devices-total" data-total={page?.total ?? ''}>
        {s.t('devicesCount', { n: s.fmt.num(total, 0) })}
      </p>
      <div class="table-wrap">
        <table data-testid="devices-table" data-query={page?.query === query ? query : ''}>
          <thead>
            <tr>
              {head('id', 'devicesColId')}
              {head('name', 'name')}
              {head('family', 'family')}
              {head('zone', 'zone')}
              <th>{s.t('devicesConnection')}</th>
              {head('lastSeen', 'lastSeen')}
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => (
              <tr key={d.id} data-testid="devices-row" data-device={d.id} data-online={String(d.online)}>
                <td>
                  <AppLink href={`/devices/${encodeURIComponent(d.id)}`} testid="devices-link">
                    {d.id}
                  </AppLink>
                </td>
                <td>{d.name ?? ''}</td>
                <td>{s.t(FAMILY_KEYS[d.family])}</td>
                <td>{zoneName(s, d.zone)}</td>
                <td class={d.online ? 'online' : 'offline'}>{s.t(d.online ? 'online' : 'offline')}</td>
                <td title={d.lastSeenAt ? s.fmt.dateTime(d.lastSeenAt) : undefined} data-testid="devices-last-seen">
                  {ageText(s, d.lastSeenAt, now)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {page && rows.length === 0 && <p class="muted">{s.t('noDevicesMatch')}</p>}
      </div>
      <div class="pager">
        <button
          type="button"
          data-testid="devices-prev"
          disabled={f.offset === 0}
          onClick={() => setF({ ...f, offset: Math.max(0, f.offset - PAGE) })}
        >
          {s.t('prevPage')}
        </button>
        <span class="muted" data-testid="devices-range">
          {total > 0 &&
            s.t('devicesRange', {
              a: s.fmt.num(f.offset + 1, 0),
              b: s.fmt.num(Math.min(total, f.offset + PAGE), 0),
              n: s.fmt.num(total, 0),
            })}
        </span>
        <button
          type="button"
          data-testid="devices-next"
          disabled={f.offset + PAGE >= total}
          onClick={() => setF({ ...f, offset: f.offset + PAGE })}
        >
          {s.t('nextPage')}
        </button>
      </div>
    </section>
  );
}
