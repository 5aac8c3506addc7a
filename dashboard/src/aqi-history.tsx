/**
 * An air station's index history on its device page: hourly or daily VN_AQI and, beside it, the US EPA AQI over
 * the range chosen for the page's charts (GET /api/v1/aqi/history: the worst value per window, a few hundred
 * points at most). The plot's background carries the six category bands in their colours (both scales use the
 * same index bands), each point is a dot in its category's colour, and the pointer reads out the time and both
 * indices with their category names.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api } from './api.ts';
import { useStore } from './hooks.ts';
import { store } from './store.ts';
import type { IndexValue } from './types.ts';

type Shown = Pick<IndexValue, 'aqi' | 'level' | 'category'> & { name: { vi: string; en: string }; color: string };
interface AqiPoint {
  time: number;
  date?: string;
  vn: Shown | null;
  epa: Shown | null;
}
interface AqiHistoryAnswer {
  period: 'hour' | 'day';
  window: string;
  from: string;
  to: string;
  points: AqiPoint[];
}

/** The upper index of each category band, from Tốt (50) to Nguy hại (500). */
const BANDS = [50, 100, 150, 200, 300, 500];
const EPA_STROKE = '#6d4c41';
const VN_STROKE = '#1d2733';

export function AqiHistory(props: { id: string; from: string; to: string }) {
  const s = useStore();
  const [period, setPeriod] = useState<'hour' | 'day'>('hour');
  const [data, setData] = useState<AqiHistoryAnswer>();
  const [failed, setFailed] = useState(false);
  const [at, setAt] = useState<AqiPoint>();
  const box = useRef<HTMLDivElement>(null);
  const tz = s.city?.timezone ?? 'Asia/Ho_Chi_Minh';

  useEffect(() => {
    let cancelled = false;
    setFailed(false);
    const q = new URLSearchParams({ scope: 'station', id: props.id, period, from: props.from, to: props.to });
    api<AqiHistoryAnswer>(`/api/v1/aqi/history?${q}`).then(
      (h) => {
        if (cancelled) return;
        setData(h);
        setAt(undefined);
      },
      () => !cancelled && setFailed(true),
    );
    return () => {
      cancelled = true;
    };
  }, [props.id, props.from, props.to, period]);

  useEffect(() => {
    const el = box.current;
    if (!el || !data || data.points.length === 0) return;
    el.replaceChildren();
    const pts = data.points;
    const fromS = new Date(data.from).getTime() / 1000;
    const toS = new Date(data.to).getTime() / 1000;
    const byDay = data.period === 'day' || toS - fromS > 2 * 86_400;
    const tick = (ms: number) => (byDay ? store.fmt.dayMonth(ms) : store.fmt.hourMinute(ms));
    const top = Math.max(...pts.flatMap((p) => [p.vn?.aqi ?? 0, p.epa?.aqi ?? 0]));
    const yMax = BANDS.find((b) => b >= top + 10) ?? 500;
    const bandColours = store.scales?.vn.categories.map((c) => c.color) ?? [];
    const x = pts.map((p) => p.time / 1000);
    const vn = pts.map((p) => p.vn?.aqi ?? null);
    const epa = pts.map((p) => p.epa?.aqi ?? null);
    const width = Math.max(320, Math.min(1100, el.clientWidth - 8));
    const plot = new uPlot(
      {
        width,
        height: 220,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
        legend: { show: false },
        scales: { x: { time: true, range: () => [fromS, Math.max(toS, fromS + 1)] }, y: { range: () => [0, yMax] } },
        axes: [
          { values: (_u, splits) => splits.map((v) => tick(v * 1000)) },
          { values: (_u, splits) => splits.map((v) => store.fmt.num(v, 0)), size: 50 },
        ],
        series: [
          {},
          { label: store.t('aqiVn'), stroke: VN_STROKE, width: 2, points: { show: false } },
          { label: store.t('aqiEpa'), stroke: EPA_STROKE, width: 1.5, dash: [6, 4], points: { show: false } },
        ],
        hooks: {
          // The category bands behind the lines, faint, in the colours of the scale.
          drawClear: [
            (u) => {
              const ctx = u.ctx;
              const { left, width: w } = u.bbox;
              let lo = 0;
              ctx.save();
              ctx.globalAlpha = 0.18;
              BANDS.forEach((hi, i) => {
                if (lo >= yMax) return;
                const y0 = u.valToPos(Math.min(hi, yMax), 'y', true);
                const y1 = u.valToPos(lo, 'y', true);
                ctx.fillStyle = bandColours[i] ?? '#ffffff';
                ctx.fillRect(left, y0, w, y1 - y0);
                lo = hi;
              });
              ctx.restore();
            },
          ],
          // Every point a dot in its category's colour: VN_AQI round, EPA square.
          draw: [
            (u) => {
              const ctx = u.ctx;
              const r = Math.max(2.5, 3 * uPlot.pxRatio);
              ctx.save();
              ctx.lineWidth = 1;
              ctx.strokeStyle = VN_STROKE;
              pts.forEach((p, i) => {
                const cx = u.valToPos(x[i] as number, 'x', true);
                if (p.vn) {
                  ctx.beginPath();
                  ctx.arc(cx, u.valToPos(p.vn.aqi, 'y', true), r, 0, 2 * Math.PI);
                  ctx.fillStyle = p.vn.color;
                  ctx.fill();
                  ctx.stroke();
                }
                if (p.epa) {
                  ctx.fillStyle = p.epa.color;
                  const cy = u.valToPos(p.epa.aqi, 'y', true);
                  ctx.fillRect(cx - r, cy - r, 2 * r, 2 * r);
                  ctx.strokeRect(cx - r, cy - r, 2 * r, 2 * r);
                }
              });
              ctx.restore();
            },
          ],
          setCursor: [
            (u) => {
              const i = u.cursor.idx;
              if (i !== null && i !== undefined && pts[i]) setAt(pts[i]);
            },
          ],
        },
      },
      [x, vn, epa],
      el,
    );
    return () => plot.destroy();
  }, [data, s.lang, s.scales]);

  const name = (v: Shown | null) => (v ? `${v.aqi} – ${v.name[s.lang]}` : '–');
  const when = (p: AqiPoint) => (p.date && data?.period === 'day' ? s.fmt.date(p.time) : s.fmt.dateTime(p.time));
  return (
    <div
      class="aqi-history"
      data-testid="aqi-history"
      data-period={data?.period}
      data-points={data?.points.length}
      data-window={data?.window}
    >
      <h3>{s.t('aqiHistoryTitle')}</h3>
      <div class="ranges" role="tablist">
        {(['hour', 'day'] as const).map((p) => (
          <button
            key={p}
            type="button"
            role="tab"
            aria-selected={period === p}
            class={period === p ? 'active' : ''}
            data-testid={`aqi-period-${p}`}
            onClick={() => setPeriod(p)}
          >
            {s.t(p === 'hour' ? 'aqiHourly' : 'aqiDaily')}
          </button>
        ))}
        <span class="aqi-key muted">
          <span class="aqi-key-line" style={{ borderColor: VN_STROKE }} /> ● {s.t('aqiVn')}
          <span class="aqi-key-line dashed" style={{ borderColor: EPA_STROKE }} /> ■ {s.t('aqiEpa')}
        </span>
      </div>
      {failed && <p class="error">{s.t('historyError')}</p>}
      {data && data.points.length === 0 && (
        <p class="muted" data-testid="aqi-history-none">
          {s.t('aqiHistoryNone')}
        </p>
      )}
      <div ref={box} class="chart aqi-chart" hidden={!data || data.points.length === 0} />
      <p
        class="chart-readout muted"
        data-testid="aqi-readout"
        data-time={at?.time}
        data-vn={at?.vn?.aqi ?? ''}
        data-epa={at?.epa?.aqi ?? ''}
        data-vn-colour={at?.vn?.color ?? ''}
      >
        {at ? (
          <>
            {when(at)}: <span class="swatch" style={{ background: at.vn?.color }} /> {s.t('aqiVn')} {name(at.vn)} ·{' '}
            <span class="swatch" style={{ background: at.epa?.color }} /> {s.t('aqiEpa')} {name(at.epa)}
          </>
        ) : (
          '\u00a0'
        )}
      </p>
      <ul class="aqi-bands">
        {s.scales?.vn.categories.map((c) => (
          <li key={c.key} data-testid="aqi-band" data-colour={c.color.toLowerCase()}>
            <span class="swatch" style={{ background: c.color }} /> {c.min}–{c.max} {c.name[s.lang]}
          </li>
        ))}
      </ul>
    </div>
  );
}
