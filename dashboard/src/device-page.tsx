/**
 * One device: identity, zone, state, last reading, charts of each numeric field over 1 h, 24 h, 7 d or 30 d
 * (GET /api/v1/devices/:id/readings with window=auto: the server aggregates, so 30 days are a few hundred
 * points, and says which window and storage tier it read), extended live by the readings that arrive while
 * the page is open. Street lights also get their commands.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api, ApiError } from './api.ts';
import { CommandControls } from './commands.tsx';
import { lookOf } from './device-state.ts';
import { navigate, useStore } from './hooks.ts';
import { FIELD_UNITS, type Key } from './i18n.ts';
import { store, zoneName } from './store.ts';
import { fieldLabel as fieldLabelOf, formatValue as formatValueOf } from './values.ts';
import type { DeviceInfo, EnrichedReading, History } from './types.ts';

const RANGES = [
  { id: '1h', ms: 3600_000, key: 'range1h' },
  { id: '24h', ms: 86_400_000, key: 'range24h' },
  { id: '7d', ms: 7 * 86_400_000, key: 'range7d' },
  { id: '30d', ms: 30 * 86_400_000, key: 'range30d' },
] as const;
type RangeId = (typeof RANGES)[number]['id'];

const fieldLabel = (f: string) => fieldLabelOf(store, f);
const formatValue = (field: string, v: unknown) => formatValueOf(store, field, v);

type SchemaNode = { type?: string | string[]; properties?: Record<string, SchemaNode> };
let contract: Promise<Record<string, SchemaNode>> | undefined;

/** The numeric fields of a family from the device contract (GET /api/v1/contract), nested objects flattened as x_k. */
async function numericFields(family: string): Promise<string[]> {
  contract ??= api<{ families: Record<string, SchemaNode> }>('/api/v1/contract').then((c) => c.families);
  const families = await contract.catch(() => {
    contract = undefined; // not cached: asked again next time (the server may be restarting)
    return {} as Record<string, SchemaNode>;
  });
  const props = families[family]?.properties ?? {};
  const numeric = (n: SchemaNode) => [n.type].flat().some((t) => t === 'number' || t === 'integer');
  const out: string[] = [];
  for (const [k, n] of Object.entries(props)) {
    if (k === 'laneId' || k.startsWith('dateObserved')) continue;
    if (numeric(n)) out.push(k);
    else if (n.properties) for (const [sub, m] of Object.entries(n.properties)) if (numeric(m)) out.push(`${k}_${sub}`);
  }
  return out;
}

export function DevicePage(props: { id: string }) {
  const s = useStore();
  const [info, setInfo] = useState<(DeviceInfo & { lastReading: EnrichedReading | null }) | null>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    setInfo(undefined);
    setError(undefined);
    api<DeviceInfo & { lastReading: EnrichedReading | null }>(`/api/v1/devices/${encodeURIComponent(props.id)}`).then(setInfo, (err) =>
      setError(err instanceof ApiError && err.status === 404 ? s.t('notFound') : String(err)),
    );
  }, [props.id]);
  if (error)
    return (
      <p class="error" data-testid="device-error">
        {error}
      </p>
    );
  if (!info) return <p class="muted">{s.t('loading')}</p>;
  const live = s.devices.get(info.id) ?? info;
  const reading = s.latest.get(info.id) ?? info.lastReading ?? undefined;
  const look = lookOf(s, live);
  return (
    <div class="device-page" data-testid="device-page" data-device={info.id}>
      <div class="device-head">
        <button type="button" class="link" onClick={() => (history.length > 1 ? history.back() : navigate('/'))}>
          ← {s.t('back')}
        </button>
        <h1>
          <span class="swatch big" style={{ background: look.colour }} /> {info.name ?? info.id}
        </h1>
        <span class="state-label" data-testid="device-state">
          {look.label}
        </span>
      </div>
      <div class="device-grid">
        <section class="panel">
          <h2>{s.t('identity')}</h2>
          <dl class="kv">
            <dt>ID</dt>
            <dd data-testid="device-id">{info.id}</dd>
            <dt>{s.t('family')}</dt>
            <dd>{s.t(`family${info.family.charAt(0).toUpperCase()}${info.family.slice(1)}` as Key)}</dd>
            <dt>{s.t('zone')}</dt>
            <dd data-testid="device-zone">{zoneName(s, info.zone)}</dd>
            <dt>{s.t('location')}</dt>
            <dd>
              {s.fmt.num(info.location.lat, 5)}, {s.fmt.num(info.location.lon, 5)}
            </dd>
            <dt>{s.t('state')}</dt>
            <dd data-testid="device-online">{s.t(live.online ? 'stateOnline' : 'stateOffline')}</dd>
          </dl>
        </section>
        <section class="panel">
          <h2>{s.t('lastReading')}</h2>
          {reading ? (
            <>
              <p class="muted">
                {s.t('observedAt')}: <span data-testid="last-reading-time">{s.fmt.dateTime(reading.time)}</span>
              </p>
              <table class="reading" data-testid="last-reading">
                <tbody>
                  {Object.entries(reading.fields).map(([k, v]) => (
                    <tr key={k} data-field={k}>
                      <th>{fieldLabel(k)}</th>
                      <td data-testid={`reading-${k}`}>{formatValue(k, v)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          ) : (
            <p class="muted">{s.t('noData')}</p>
          )}
        </section>
        {info.family === 'streetLight' && (
          <section class="panel">
            <h2>{s.t('commands')}</h2>
            <CommandControls target={{ devices: [info.id] }} />
          </section>
        )}
      </div>
      <Charts id={info.id} family={info.family} />
    </div>
  );
}

function Charts(props: { id: string; family: string }) {
  const s = useStore();
  const [range, setRange] = useState<RangeId>('1h');
  const [hist, setHist] = useState<History & { range: RangeId; fields: string[] }>();
  const [error, setError] = useState<string>();
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    let cancelled = false;
    setError(undefined);
    const r = RANGES.find((x) => x.id === range) ?? RANGES[0];
    const to = Date.now();
    const q = new URLSearchParams({ from: new Date(to - r.ms).toISOString(), to: new Date(to).toISOString(), window: 'auto' });
    Promise.all([api<History>(`/api/v1/devices/${encodeURIComponent(props.id)}/readings?${q}`), numericFields(props.family)]).then(
      ([h, fields]) => !cancelled && setHist({ ...h, range, fields }),
      () => !cancelled && setError(s.t('historyError')),
    );
    return () => {
      cancelled = true;
    };
  }, [props.id, range]);

  useEffect(() => {
    const el = box.current;
    if (!el || !hist) return;
    el.replaceChildren();
    // A chart per numeric field the device sends (in its history or its last reading); a device that sent
    // nothing yet gets one per numeric field of its family, so that its first live readings show.
    const inHistory = hist.points.flatMap((p) => Object.keys(p).filter((k) => k !== 'time' && typeof p[k] === 'number'));
    const last = store.latest.get(props.id)?.fields ?? {};
    const sent = [...inHistory, ...Object.keys(last).filter((k) => typeof last[k] === 'number' && hist.fields.includes(k))];
    const fields = sent.length
      ? hist.fields.filter((f) => sent.includes(f)).concat([...new Set(sent)].filter((f) => !hist.fields.includes(f)))
      : hist.fields;
    const tz = s.city?.timezone ?? 'Asia/Ho_Chi_Minh';
    const span = (hist.points.at(-1)?.time ?? 0) - (hist.points[0]?.time ?? 0);
    // Ticks as operators write them: 03/12 over days, 14:30 within a day, in the city's time zone.
    const byDay = span > 2 * 86_400_000 || hist.range === '7d' || hist.range === '30d';
    const tick = (ms: number) => (byDay ? store.fmt.dayMonth(ms) : store.fmt.hourMinute(ms));
    const series = new Map<string, { x: number[]; y: (number | null)[]; plot: uPlot }>();
    const width = Math.max(280, Math.min(560, el.clientWidth / 2 - 24));
    for (const f of fields) {
      const x = hist.points.map((p) => p.time / 1000);
      const y = hist.points.map((p) => (typeof p[f] === 'number' ? (p[f] as number) : null));
      const holder = document.createElement('div');
      holder.className = 'chart';
      holder.dataset.testid = 'chart';
      holder.dataset.field = f;
      el.append(holder);
      const plot = new uPlot(
        {
          title: `${fieldLabel(f)}${FIELD_UNITS[f] ? ` (${FIELD_UNITS[f]})` : ''}`,
          width,
          height: 170,
          tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
          legend: { show: false },
          // Axis labels as dd/MM or HH:mm in the city's time zone (uPlot's own are US-style).
          axes: [
            { values: (_u, splits) => splits.map((v) => tick(v * 1000)) },
            { values: (_u, splits) => splits.map((v) => store.fmt.num(v, 2)), size: 60 },
          ],
          series: [{}, { label: fieldLabel(f), stroke: '#1565c0', width: 1.5, points: { show: hist.points.length < 60 } }],
        },
        [x, y],
        holder,
      );
      holder.dataset.points = String(x.length);
      series.set(f, { x, y, plot });
    }
    // Extended live: each new reading of this device is appended to the open charts.
    const off = store.onReading((r) => {
      if (r.device !== props.id) return;
      for (const [f, c] of series) {
        const v = r.fields[f];
        if (typeof v !== 'number') continue;
        const t = r.time / 1000;
        if (c.x.length && t <= (c.x[c.x.length - 1] as number)) continue;
        c.x.push(t);
        c.y.push(v);
        c.plot.setData([c.x, c.y]);
        (c.plot.root.parentElement as HTMLElement).dataset.points = String(c.x.length);
      }
    });
    return () => {
      off();
      for (const c of series.values()) c.plot.destroy();
    };
  }, [hist, s.lang]);

  return (
    <section class="panel charts" data-testid="history">
      <h2>{s.t('history')}</h2>
      <div class="ranges" role="tablist">
        {RANGES.map((r) => (
          <button
            key={r.id}
            type="button"
            role="tab"
            aria-selected={range === r.id}
            class={range === r.id ? 'active' : ''}
            data-testid={`range-${r.id}`}
            onClick={() => setRange(r.id)}
          >
            {s.t(r.key)}
          </button>
        ))}
      </div>
      {error && <p class="error">{error}</p>}
      {hist && (
        <p
          class="muted"
          data-testid="history-info"
          data-range={hist.range}
          data-window={hist.window}
          data-tier={hist.tier}
          data-points={hist.points.length}
        >
          {s.t('historyInfo', { points: s.fmt.num(hist.points.length, 0), window: hist.window, tier: hist.tier })}
        </p>
      )}
      {hist && hist.points.length === 0 && <p class="muted">{s.t('noData')}</p>}
      <div ref={box} class="chart-grid" />
    </section>
  );
}
