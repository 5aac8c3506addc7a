/**
 * One device, for operators: identity, zone, state and last seen (as an age), the last reading in words and
 * units, its open alarms (links to the console) and last commands, charts of each numeric field over 1 h, 24 h,
 * 7 d, 30 d, 1 year or days picked (GET /api/v1/devices/:id/readings with window=auto: the server aggregates,
 * so a year is a few hundred points; the window and storage tier it read are in a tooltip), a value read out
 * under the pointer, extended live by the readings that arrive while the page is open, and the shown range as
 * CSV (the API's points as they came). Street lights also get their commands; air stations their hourly and
 * daily indices over the same range (aqi-history.tsx).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { AppLink, severityLabel, stateLabel } from './alarms.tsx';
import { api, ApiError } from './api.ts';
import { AqiHistory } from './aqi-history.tsx';
import { describeAction } from './commands.tsx';
import { ageText } from './devices.tsx';
import { CommandControls } from './commands.tsx';
import { lookOf } from './device-state.ts';
import { navigate, useStore } from './hooks.ts';
import { FIELD_UNITS, type Key } from './i18n.ts';
import { ruleName, store, zoneName } from './store.ts';
import { cityDay } from './time-range.ts';
import { fieldLabel as fieldLabelOf, formatValue as formatValueOf, isPercentField } from './values.ts';
import type { CommandRecord, DeviceInfo, EnrichedReading, History } from './types.ts';

const RANGES = [
  { id: '1h', ms: 3600_000, key: 'range1h' },
  { id: '24h', ms: 86_400_000, key: 'range24h' },
  { id: '7d', ms: 7 * 86_400_000, key: 'range7d' },
  { id: '30d', ms: 30 * 86_400_000, key: 'range30d' },
  { id: '1y', ms: 365 * 86_400_000, key: 'range1y' },
] as const;
type RangeId = (typeof RANGES)[number]['id'] | 'custom';

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
    // Identifiers and times are numbers but not measures: no chart for them.
    if (k === 'laneId' || k.startsWith('dateObserved') || k.endsWith('Id')) continue;
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
            <dt>{s.t('lastSeen')}</dt>
            <dd data-testid="device-last-seen" title={live.lastSeenAt ? s.fmt.dateTime(live.lastSeenAt) : undefined}>
              {ageText(s, live.lastSeenAt)}
            </dd>
          </dl>
        </section>
        <DeviceAlarms id={info.id} />
        <LastCommands id={info.id} />
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
  const [custom, setCustom] = useState({ from: '', to: '', asked: 0 });
  const [hist, setHist] = useState<History & { range: RangeId; fields: string[] }>();
  const [error, setError] = useState<string>();
  const box = useRef<HTMLDivElement>(null);
  const tz = s.city?.timezone ?? 'Asia/Ho_Chi_Minh';
  useEffect(() => {
    let cancelled = false;
    setError(undefined);
    let fromIso: string;
    let toIso: string;
    if (range === 'custom') {
      const f = cityDay(custom.from, tz);
      const t = cityDay(custom.to, tz, true);
      if (!f || !t || f >= t) return;
      fromIso = f;
      toIso = new Date(Math.min(Date.now(), new Date(t).getTime() + 1)).toISOString();
    } else {
      const r = RANGES.find((x) => x.id === range) ?? RANGES[0];
      const to = Date.now();
      fromIso = new Date(to - r.ms).toISOString();
      toIso = new Date(to).toISOString();
    }
    const q = new URLSearchParams({ from: fromIso, to: toIso, window: 'auto' });
    Promise.all([api<History>(`/api/v1/devices/${encodeURIComponent(props.id)}/readings?${q}`), numericFields(props.family)]).then(
      ([h, fields]) => !cancelled && setHist({ ...h, range, fields }),
      () => !cancelled && setError(s.t('historyError')),
    );
    return () => {
      cancelled = true;
    };
  }, [props.id, range, custom.asked]);

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
    // The x axis spans the range asked for, whatever the points: one point, or ten thousand, sit in their time.
    const fromS = new Date(hist.from).getTime() / 1000;
    const toS = new Date(hist.to).getTime() / 1000;
    const span = (toS - fromS) * 1000;
    // Ticks as operators write them: 03/12 over days, 14:30 within a day, in the city's time zone.
    const byDay = span > 2 * 86_400_000;
    const tick = (ms: number) => (byDay ? store.fmt.dayMonth(ms) : store.fmt.hourMinute(ms));
    const series = new Map<string, { x: number[]; y: (number | null)[]; plot: uPlot }>();
    const width = Math.max(280, Math.min(560, el.clientWidth / 2 - 24));
    for (const f of fields) {
      // Percentages (humidity, light level, occupancy) are drawn ×100 in %, as the reading table shows them.
      const k = isPercentField(f) ? 100 : 1;
      const unit = k === 100 ? '%' : FIELD_UNITS[f];
      const x = hist.points.map((p) => p.time / 1000);
      const y = hist.points.map((p) => (typeof p[f] === 'number' ? (p[f] as number) * k : null));
      const holder = document.createElement('div');
      holder.className = 'chart';
      holder.dataset.testid = 'chart';
      holder.dataset.field = f;
      el.append(holder);
      const readout = document.createElement('div');
      readout.className = 'chart-readout muted';
      readout.dataset.testid = 'chart-readout';
      readout.textContent = '\u00a0';
      const valueText = (v: number | null | undefined) =>
        v === null || v === undefined ? '–' : `${store.fmt.num(v, 2)}${unit ? ` ${unit}` : ''}`;
      const plot = new uPlot(
        {
          title: `${fieldLabel(f)}${unit ? ` (${unit})` : ''}`,
          width,
          height: 170,
          tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
          legend: { show: false },
          scales: { x: { time: true, range: () => [fromS, Math.max(toS, fromS + 1)] } },
          // Axis labels as dd/MM or HH:mm in the city's time zone (uPlot's own are US-style).
          axes: [
            {
              values: (_u, splits) => {
                const labels = splits.map((v) => tick(v * 1000));
                holder.dataset.ticks = JSON.stringify(labels); // the labels drawn on the canvas, for tests
                return labels;
              },
            },
            { values: (_u, splits) => splits.map((v) => store.fmt.num(v, 2)), size: 60 },
          ],
          series: [{}, { label: fieldLabel(f), stroke: '#1565c0', width: 1.5, points: { show: hist.points.length < 60 } }],
          // The value under the pointer: its time and value with the unit, below the chart.
          hooks: {
            setCursor: [
              (u) => {
                const i = u.cursor.idx;
                if (i === null || i === undefined) return;
                const t = u.data[0][i] as number;
                readout.textContent = `${store.fmt.dateTime(t * 1000)}: ${valueText(u.data[1]?.[i])}`;
                readout.dataset.value = String(u.data[1]?.[i] ?? '');
              },
            ],
          },
        },
        [x, y],
        holder,
      );
      holder.append(readout);

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
        c.y.push(isPercentField(f) ? v * 100 : v);
        c.plot.setData([c.x, c.y]);
        (c.plot.root.parentElement as HTMLElement).dataset.points = String(c.x.length);
      }
    });
    return () => {
      off();
      for (const c of series.values()) c.plot.destroy();
    };
  }, [hist, s.lang]);

  /** The shown range as CSV: the API's points as they came (time as ISO 8601, the values unconverted). */
  const csv = () => {
    if (!hist) return;
    const cols = [...new Set(hist.points.flatMap((p) => Object.keys(p).filter((k) => k !== 'time')))];
    const cell = (v: unknown) => {
      const t = v === null || v === undefined ? '' : String(v);
      return /[",\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
    };
    const lines = [
      ['time', ...cols].join(','),
      ...hist.points.map((p) => [new Date(p.time).toISOString(), ...cols.map((c) => cell(p[c]))].join(',')),
    ];
    const url = URL.createObjectURL(new Blob([`\ufeff${lines.join('\r\n')}\r\n`], { type: 'text/csv;charset=utf-8' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `${props.id}-${hist.from.slice(0, 10)}-${hist.to.slice(0, 10)}.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };

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
        <button
          type="button"
          role="tab"
          aria-selected={range === 'custom'}
          class={range === 'custom' ? 'active' : ''}
          data-testid="range-custom"
          onClick={() => setRange('custom')}
        >
          {s.t('rangeCustom')}
        </button>
        {range === 'custom' && (
          <form
            class="custom-range"
            onSubmit={(e) => {
              e.preventDefault();
              const form = e.currentTarget as HTMLFormElement;
              const from = (form.elements.namedItem('from') as HTMLInputElement).value;
              const to = (form.elements.namedItem('to') as HTMLInputElement).value;
              setCustom({ from, to, asked: custom.asked + 1 });
            }}
          >
            <label>
              {s.t('rangeFrom')} <input type="date" name="from" data-testid="range-from" defaultValue={custom.from} />
            </label>
            <label>
              {s.t('rangeTo')} <input type="date" name="to" data-testid="range-to" defaultValue={custom.to} />
            </label>
            <button type="submit" data-testid="range-apply">
              {s.t('rangeShow')}
            </button>
          </form>
        )}
        {hist && (
          <button type="button" data-testid="history-csv" onClick={csv}>
            {s.t('exportCsv')}
          </button>
        )}
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
          data-from={hist.from}
          data-to={hist.to}
          title={s.t('historyInfo', { points: s.fmt.num(hist.points.length, 0), window: hist.window, tier: hist.tier })}
        >
          {s.fmt.dateTime(hist.from)} – {s.fmt.dateTime(hist.to)} · {s.t('chartHint')}
        </p>
      )}
      {hist && props.family === 'airQuality' && <AqiHistory id={props.id} from={hist.from} to={hist.to} />}
      {hist && hist.points.length === 0 && <p class="muted">{s.t('noData')}</p>}
      <div ref={box} class="chart-grid" />
    </section>
  );
}

/** The device's open alarms (active or acknowledged), each a link to the alarm console. */
function DeviceAlarms(props: { id: string }) {
  const s = useStore();
  const open = [...s.alarms.values()].filter((a) => a.scope === 'device' && a.subject === props.id && a.state !== 'cleared');
  return (
    <section class="panel" data-testid="device-alarms">
      <h2>{s.t('deviceOpenAlarms')}</h2>
      {open.length === 0 && <p class="muted">{s.t('deviceNoOpenAlarms')}</p>}
      <ul class="plain">
        {open.map((a) => (
          <li key={a.id} data-testid="device-alarm" data-alarm-id={a.id}>
            <span class={`sev sev-${a.severity}`}>{severityLabel(s, a.severity)}</span>{' '}
            <AppLink href={`/alarms/${a.id}`}>{ruleName(s, a.rule)}</AppLink> · {stateLabel(s, a.state)} ·{' '}
            <span class="muted">{s.fmt.dateTime(a.raisedAt)}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

const cap = (x: string) => x.charAt(0).toUpperCase() + x.slice(1);

/** The device's last commands (GET /api/v1/commands?device=), refreshed by every command event. */
function LastCommands(props: { id: string }) {
  const s = useStore();
  const [list, setList] = useState<CommandRecord[]>();
  useEffect(() => {
    api<CommandRecord[]>(`/api/v1/commands?device=${encodeURIComponent(props.id)}&limit=5`).then(setList, () => setList([]));
  }, [props.id, s.commandSeq]);
  return (
    <section class="panel" data-testid="device-commands">
      <h2>{s.t('deviceLastCommands')}</h2>
      {list && list.length === 0 && <p class="muted">{s.t('deviceNoCommands')}</p>}
      <ul class="plain">
        {list?.map((c) => (
          <li key={c.id} data-testid="device-command" data-state={c.state}>
            {describeAction(s, c.action)} · {s.t(`commandState${cap(c.state)}` as Key)} ·{' '}
            <span class="muted">
              {s.fmt.dateTime(c.createdAt)} · {c.createdBy}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}
