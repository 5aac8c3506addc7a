/**
 * The Reports page (/reports, "Báo cáo"): a city day or month of the four operator reports from
 * GET /api/v1/reports (energy per ward, lamp burning hours and faults, days per AQI category, congestion hours),
 * each as a table with its total, a bar chart (uPlot) and "Xuất CSV" (the API's own CSV of that report), and a
 * printable view (styles.css `@media print`: no navigation, no controls; "In báo cáo" calls window.print()).
 * Dates are typed and shown as operators write them (03/12/2026, 12/2026); numbers in the language's format.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api, ApiError, download } from './api.ts';
import { useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { type Store, zoneName } from './store.ts';

type Names = { vi: string; en: string };
type Counts = Record<string, number>;
interface Series {
  time: number;
  label: string;
  [k: string]: number | string;
}
interface Report {
  period: { period: 'day' | 'month'; key: string; from: string; to: string; timezone: string };
  energy: {
    wards: { zone: string; name: Names; lamps: number; energyKWh: number }[];
    lamps: { id: string; name: string; zone: string; energyKWh: number }[];
    series: Series[];
    total: { lamps: number; energyKWh: number };
  };
  lighting: {
    wards: { zone: string; name: Names; lamps: number; burningHours: number; faultyLamps: number; faultHours: number }[];
    lamps: { id: string; name: string; zone: string; burningHours: number; faultHours: number; faulty: boolean }[];
    series: Series[];
    total: { lamps: number; burningHours: number; faultyLamps: number; faultHours: number };
  };
  aqi: {
    days: number;
    categories: { vn: string[]; epa: string[] };
    stations: { id: string; name: string; zone: string; vn: Counts; epa: Counts }[];
    wards: { zone: string; name: Names; stations: number; vn: Counts; epa: Counts }[];
    total: { stations: number; vn: Counts; epa: Counts };
  };
  congestion: {
    junctions: { id: string; name: string; zone: string; congestedHours: number }[];
    wards: { zone: string; name: Names; junctions: number; congestedHours: number }[];
    series: Series[];
    total: { junctions: number; congestedHours: number };
  };
}

type Kind = 'energy' | 'lighting' | 'aqi' | 'congestion';
const pad = (n: number) => String(n).padStart(2, '0');

/** Today's city date as [year, month, day] (the city's time zone, not the browser's). */
function cityToday(tz: string): [number, number, number] {
  const p: Record<string, string> = {};
  for (const x of new Intl.DateTimeFormat('en-GB', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(
    new Date(),
  ))
    p[x.type] = x.value;
  return [Number(p.year), Number(p.month), Number(p.day)];
}

/** dd/mm/yyyy → YYYY-MM-DD, mm/yyyy → YYYY-MM; undefined when the text is not one (the server checks the calendar). */
function parsePeriod(kind: 'day' | 'month', text: string): string | undefined {
  const t = text.trim();
  if (kind === 'day') {
    const m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(t);
    return m ? `${m[3]}-${pad(Number(m[2]))}-${pad(Number(m[1]))}` : undefined;
  }
  const m = /^(\d{1,2})\/(\d{4})$/.exec(t);
  return m ? `${m[2]}-${pad(Number(m[1]))}` : undefined;
}

/** YYYY-MM-DD → dd/mm/yyyy, YYYY-MM → mm/yyyy. */
const showPeriod = (key: string) => key.split('-').reverse().join('/');

/** Bars over the period's hours or days, or over categories (x = 1..n with labels). */
function Bars(props: { x: number[]; labels: string[]; series: { label: string; values: number[]; color: string }[]; testid: string }) {
  const s = useStore();
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.textContent = '';
    const bars = uPlot.paths.bars?.({ size: [0.7, 40], gap: 1 });
    const plot = new uPlot(
      {
        width: Math.max(280, Math.min(720, el.clientWidth || 600)),
        height: 180,
        legend: { show: props.series.length > 1 },
        scales: { x: { time: false, range: () => [0.5, props.x.length + 0.5] } },
        axes: [
          { values: (_u, splits) => splits.map((v) => props.labels[Math.round(v) - 1] ?? ''), space: 30 },
          { values: (_u, splits) => splits.map((v) => s.fmt.num(v, 2)), size: 60 },
        ],
        series: [
          {},
          ...props.series.map((x) => ({ label: x.label, fill: x.color, stroke: x.color, paths: bars, points: { show: false } })),
        ],
      },
      [props.x.map((_, i) => i + 1), ...props.series.map((x) => x.values)],
      el,
    );
    el.dataset.points = String(props.x.length);
    return () => plot.destroy();
  }, [props.x, props.series, s.lang]);
  return <div class="chart report-chart" data-testid={props.testid} ref={ref} />;
}

export function ReportsPage() {
  const s = useStore();
  const tz = s.city?.timezone ?? 'Asia/Ho_Chi_Minh';
  const [y, m, d] = cityToday(tz);
  const [kind, setKind] = useState<'day' | 'month'>('day');
  const [dayText, setDayText] = useState(`${pad(d)}/${pad(m)}/${y}`);
  const [monthText, setMonthText] = useState(`${pad(m)}/${y}`);
  const [report, setReport] = useState<Report | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const key = parsePeriod(kind, kind === 'day' ? dayText : monthText);
  const query = key ? `${kind}=${key}` : undefined;

  useEffect(() => {
    if (!query) {
      setError(s.t(kind === 'day' ? 'reportBadDay' : 'reportBadMonth'));
      return;
    }
    let live = true;
    setBusy(true);
    setError(undefined);
    api<Report>(`/api/v1/reports?${query}`)
      .then((r) => live && setReport(r))
      .catch((e: unknown) => live && setError(e instanceof ApiError ? `${e.message} (${e.code})` : String(e)))
      .finally(() => live && setBusy(false));
    return () => {
      live = false;
    };
  }, [query]);

  const csv = (k: Kind) => {
    if (!report) return;
    const q = `${report.period.period}=${report.period.key}`;
    void download(`/api/v1/reports/${k}?${q}&format=csv`, `citypulse-${k}-${report.period.key}.csv`).catch((e: unknown) =>
      setError(String(e)),
    );
  };

  return (
    <div class="reports" data-testid="reports" data-busy={busy ? 'yes' : 'no'} data-period={report?.period.key ?? ''}>
      <div class="report-head">
        <h1>{s.t('reportsTitle')}</h1>
        <p class="report-period" data-testid="report-period">
          {report &&
            s.t(report.period.period === 'day' ? 'reportOfDay' : 'reportOfMonth', {
              period: showPeriod(report.period.key),
              city: s.city?.name[s.lang] ?? '',
            })}
        </p>
      </div>
      <form class="report-controls no-print" data-testid="report-controls" onSubmit={(e) => e.preventDefault()}>
        <label>
          <input type="radio" name="period" data-testid="report-kind-day" checked={kind === 'day'} onChange={() => setKind('day')} />{' '}
          {s.t('reportDay')}
        </label>
        <label>
          <input type="radio" name="period" data-testid="report-kind-month" checked={kind === 'month'} onChange={() => setKind('month')} />{' '}
          {s.t('reportMonth')}
        </label>
        {kind === 'day' ? (
          <label>
            {s.t('reportDayLabel')}{' '}
            <input
              data-testid="report-day"
              placeholder="dd/mm/yyyy"
              value={dayText}
              onChange={(e) => setDayText((e.target as HTMLInputElement).value)}
            />
          </label>
        ) : (
          <label>
            {s.t('reportMonthLabel')}{' '}
            <input
              data-testid="report-month"
              placeholder="mm/yyyy"
              value={monthText}
              onChange={(e) => setMonthText((e.target as HTMLInputElement).value)}
            />
          </label>
        )}
        <button type="button" data-testid="report-print" onClick={() => window.print()}>
          {s.t('reportPrint')}
        </button>
        {busy && <span class="muted">{s.t('loading')}</span>}
      </form>
      {error && (
        <p class="error" data-testid="report-error">
          {error}
        </p>
      )}
      {report && (
        <>
          <EnergySection s={s} r={report} csv={() => csv('energy')} />
          <LightingSection s={s} r={report} csv={() => csv('lighting')} />
          <AqiSection s={s} r={report} csv={() => csv('aqi')} />
          <CongestionSection s={s} r={report} csv={() => csv('congestion')} />
        </>
      )}
    </div>
  );
}

function SectionHead(props: { s: Store; title: Key; kind: Kind; csv: () => void }) {
  return (
    <div class="report-section-head">
      <h2>{props.s.t(props.title)}</h2>
      <button type="button" class="no-print" data-testid={`csv-${props.kind}`} onClick={props.csv}>
        {props.s.t('reportCsv')}
      </button>
    </div>
  );
}

/** A number cell: the figure in the language's format, the raw value in data-value (for the tests). */
function Num(props: { s: Store; v: number; digits?: number; testid?: string }) {
  return (
    <td class="num" data-value={props.v} data-testid={props.testid}>
      {props.s.fmt.num(props.v, props.digits ?? 2)}
    </td>
  );
}

const wardLabel = (s: Store, w: { zone: string; name: Names }) => w.name[s.lang] ?? zoneName(s, w.zone);

function EnergySection(props: { s: Store; r: Report; csv: () => void }) {
  const { s, r } = props;
  const e = r.energy;
  return (
    <section class="panel report" data-testid="report-energy">
      <SectionHead s={s} title="reportEnergyTitle" kind="energy" csv={props.csv} />
      <Bars
        testid="chart-energy"
        x={e.series.map((x) => x.time)}
        labels={e.series.map((x) => (r.period.period === 'day' ? x.label : x.label.slice(8)))}
        series={[{ label: 'kWh', values: e.series.map((x) => x.energyKWh as number), color: '#1565c0' }]}
      />
      <table>
        <thead>
          <tr>
            <th>{s.t('zone')}</th>
            <th class="num">{s.t('reportLamps')}</th>
            <th class="num">{s.t('reportEnergyKWh')}</th>
          </tr>
        </thead>
        <tbody>
          {e.wards.map((w) => (
            <tr key={w.zone} data-testid="report-energy-ward" data-zone={w.zone}>
              <td>{wardLabel(s, w)}</td>
              <Num s={s} v={w.lamps} digits={0} />
              <Num s={s} v={w.energyKWh} digits={3} />
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th>{s.t('reportTotal')}</th>
            <Num s={s} v={e.total.lamps} digits={0} />
            <Num s={s} v={e.total.energyKWh} digits={3} testid="report-energy-total" />
          </tr>
        </tfoot>
      </table>
    </section>
  );
}

function LightingSection(props: { s: Store; r: Report; csv: () => void }) {
  const { s, r } = props;
  const g = r.lighting;
  const faulty = g.lamps.filter((l) => l.faulty);
  return (
    <section class="panel report" data-testid="report-lighting">
      <SectionHead s={s} title="reportBurningTitle" kind="lighting" csv={props.csv} />
      <Bars
        testid="chart-lighting"
        x={g.series.map((x) => x.time)}
        labels={g.series.map((x) => (r.period.period === 'day' ? x.label : x.label.slice(8)))}
        series={[
          { label: s.t('reportBurningHours'), values: g.series.map((x) => x.burningHours as number), color: '#f9a825' },
          { label: s.t('reportFaultHours'), values: g.series.map((x) => x.faultHours as number), color: '#c62828' },
        ]}
      />
      <table>
        <thead>
          <tr>
            <th>{s.t('zone')}</th>
            <th class="num">{s.t('reportLamps')}</th>
            <th class="num">{s.t('reportBurningHours')}</th>
            <th class="num">{s.t('reportFaultyLamps')}</th>
            <th class="num">{s.t('reportFaultHours')}</th>
          </tr>
        </thead>
        <tbody>
          {g.wards.map((w) => (
            <tr key={w.zone} data-testid="report-lighting-ward" data-zone={w.zone}>
              <td>{wardLabel(s, w)}</td>
              <Num s={s} v={w.lamps} digits={0} />
              <Num s={s} v={w.burningHours} />
              <Num s={s} v={w.faultyLamps} digits={0} />
              <Num s={s} v={w.faultHours} />
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th>{s.t('reportTotal')}</th>
            <Num s={s} v={g.total.lamps} digits={0} />
            <Num s={s} v={g.total.burningHours} testid="report-lighting-total" />
            <Num s={s} v={g.total.faultyLamps} digits={0} testid="report-lighting-faulty" />
            <Num s={s} v={g.total.faultHours} />
          </tr>
        </tfoot>
      </table>
      {faulty.length > 0 && (
        <>
          <h3>{s.t('reportFaultyList')}</h3>
          <table>
            <tbody>
              {faulty.map((l) => (
                <tr key={l.id} data-testid="report-faulty-lamp" data-id={l.id}>
                  <td>{l.name}</td>
                  <td>{zoneName(s, l.zone)}</td>
                  <Num s={s} v={l.faultHours} />
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

function AqiSection(props: { s: Store; r: Report; csv: () => void }) {
  const { s, r } = props;
  const a = r.aqi;
  const scale = s.scale;
  const keys = [...a.categories[scale], 'noData'];
  const cats = s.scales?.[scale].categories ?? [];
  const head = (k: string) => cats.find((c) => c.key === k)?.name[s.lang] ?? s.t('reportNoData');
  const color = (k: string) => cats.find((c) => c.key === k)?.color ?? '#9e9e9e';
  const row = (c: Counts) => keys.map((k) => <Num key={k} s={s} v={c[k] ?? 0} digits={0} />);
  return (
    <section class="panel report" data-testid="report-aqi" data-scale={scale}>
      <SectionHead s={s} title="reportAqiTitle" kind="aqi" csv={props.csv} />
      <p class="muted">{s.t(scale === 'vn' ? 'aqiVn' : 'aqiEpa')}</p>
      <Bars
        testid="chart-aqi"
        x={keys.map((_, i) => i)}
        labels={keys.map(head)}
        series={[{ label: s.t('reportDays'), values: keys.map((k) => a.total[scale][k] ?? 0), color: '#ef6c00' }]}
      />
      <table>
        <thead>
          <tr>
            <th>{s.t('reportSubject')}</th>
            {keys.map((k) => (
              <th key={k} class="num">
                <span class="swatch" style={{ background: color(k) }} />
                {head(k)}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {a.wards.map((w) => (
            <tr key={`w${w.zone}`} data-testid="report-aqi-ward" data-zone={w.zone}>
              <td>{wardLabel(s, w)}</td>
              {row(w[scale])}
            </tr>
          ))}
          {a.stations.map((st) => (
            <tr key={`s${st.id}`} data-testid="report-aqi-station" data-id={st.id}>
              <td>{st.name}</td>
              {row(st[scale])}
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr data-testid="report-aqi-total">
            <th>{s.t('reportTotal')}</th>
            {row(a.total[scale])}
          </tr>
        </tfoot>
      </table>
    </section>
  );
}

function CongestionSection(props: { s: Store; r: Report; csv: () => void }) {
  const { s, r } = props;
  const c = r.congestion;
  return (
    <section class="panel report" data-testid="report-congestion">
      <SectionHead s={s} title="reportCongestionTitle" kind="congestion" csv={props.csv} />
      <Bars
        testid="chart-congestion"
        x={c.series.map((x) => x.time)}
        labels={c.series.map((x) => (r.period.period === 'day' ? x.label : x.label.slice(8)))}
        series={[{ label: s.t('reportCongestedHours'), values: c.series.map((x) => x.congestedHours as number), color: '#c62828' }]}
      />
      <table>
        <thead>
          <tr>
            <th>{s.t('reportJunction')}</th>
            <th>{s.t('zone')}</th>
            <th class="num">{s.t('reportCongestedHours')}</th>
          </tr>
        </thead>
        <tbody>
          {c.junctions.map((j) => (
            <tr key={j.id} data-testid="report-congestion-junction" data-id={j.id}>
              <td>{j.name}</td>
              <td>{zoneName(s, j.zone)}</td>
              <Num s={s} v={j.congestedHours} digits={0} />
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th>{s.t('reportTotal')}</th>
            <td />
            <Num s={s} v={c.total.congestedHours} digits={0} testid="report-congestion-total" />
          </tr>
        </tfoot>
      </table>
    </section>
  );
}
