/**
 * The live overview: per family online/offline counts and the city indicators (street lights, traffic), air
 * quality per zone and station with the category colour (VN_AQI, or US EPA on the switch), and a feed of
 * recent events. Everything comes from the store, which socket.io keeps current.
 */
import { navigate, useStore } from './hooks.ts';
import type { Key } from './i18n.ts';
import { describeAction } from './commands.tsx';
import { type AqiNow, type FeedItem, ruleName, type Store, zoneName } from './store.ts';
import type { Family } from './types.ts';

const FAMILIES: { id: Family; key: Key }[] = [
  { id: 'streetLight', key: 'familyStreetLight' },
  { id: 'traffic', key: 'familyTraffic' },
  { id: 'airQuality', key: 'familyAirQuality' },
];

function counts(s: Store): Record<Family, { online: number; offline: number }> {
  const c = {
    airQuality: { online: 0, offline: 0 },
    traffic: { online: 0, offline: 0 },
    streetLight: { online: 0, offline: 0 },
  };
  for (const d of s.devices.values()) c[d.family][d.online ? 'online' : 'offline']++;
  return c;
}

/** A figure older than this is greyed out and says so: the data behind it stopped coming. */
export const STALE_MS = 10 * 60_000;
/** Stations listed on the overview at most (the worst first when there are more). */
const STATIONS_SHOWN = 100;

/** "2 phút trước", or "–" when there is no time. */
export function ageText(s: Store, at: number | undefined, now = Date.now()): string {
  if (!at) return '–';
  if (now - at < 60_000) return s.t('justNow');
  return s.t('ago', { age: s.fmt.duration(Math.max(0, Math.floor((now - at) / 1000) * 1000)) });
}

function Figure(props: { label: string; value: string; testid: string; tone?: string; at?: number; note?: string }) {
  const s = useStore();
  const stale = props.at !== undefined && Date.now() - props.at > STALE_MS;
  return (
    <div class={`figure ${props.tone ?? ''} ${stale ? 'stale' : ''}`} data-stale={String(stale)}>
      <div class="figure-value" data-testid={props.testid}>
        {props.value}
      </div>
      <div class="figure-label">{props.label}</div>
      {props.note && <div class="figure-note">{props.note}</div>}
      {props.at !== undefined && (
        <div class="figure-age" data-testid={`${props.testid}-age`}>
          {stale ? `${s.t('stale')} · ` : ''}
          {ageText(s, props.at)}
        </div>
      )}
    </div>
  );
}

export function FamilyCards() {
  const s = useStore();
  const c = counts(s);
  const f = s.fmt;
  const lights = s.cityIndicators.streetLight ?? {};
  const traffic = s.cityIndicators.traffic ?? {};
  const n = (v: unknown, d = 0) => f.num(typeof v === 'number' ? v : undefined, d);
  // The platform counts a dimmed lamp as on; the overview shows the two apart and says what the total is.
  const lit = typeof lights.lampsOn === 'number' ? lights.lampsOn : undefined;
  const dimmed = typeof lights.lampsDimmed === 'number' ? lights.lampsDimmed : 0;
  const full = lit === undefined ? undefined : Math.max(0, lit - dimmed);
  const lightsAt = s.cityIndicatorTime.streetLight;
  const trafficAt = s.cityIndicatorTime.traffic;
  return (
    <div class="cards">
      {FAMILIES.map(({ id, key }) => (
        <section key={id} class={`panel card fam-${id}`} data-testid={`family-${id}`}>
          <h2>{s.t(key)}</h2>
          <div class="figures">
            <Figure label={s.t('online')} value={f.num(c[id].online, 0)} testid={`count-online-${id}`} tone="ok" />
            <Figure label={s.t('offline')} value={f.num(c[id].offline, 0)} testid={`count-offline-${id}`} tone="muted" />
            {id === 'streetLight' && (
              <>
                <Figure
                  label={s.t('lampsFull')}
                  value={n(full)}
                  testid="lamps-on"
                  at={lightsAt}
                  note={lit === undefined ? undefined : s.t('lampsLitNote', { n: n(lit), d: n(dimmed) })}
                />
                <Figure label={s.t('lampsDimmed')} value={n(lights.lampsDimmed)} testid="lamps-dimmed" at={lightsAt} />
                <Figure label={s.t('lampsFaulty')} value={n(lights.lampsFaulty)} testid="lamps-faulty" tone="warn" at={lightsAt} />
                <Figure
                  label={s.t('powerNow')}
                  value={`${n(typeof lights.powerNowW === 'number' ? lights.powerNowW / 1000 : undefined, 2)} kW`}
                  testid="power-now"
                  at={lightsAt}
                />
                <Figure label={s.t('energyToday')} value={`${n(lights.energyTodayKWh, 1)} kWh`} testid="energy-today" at={lightsAt} />
              </>
            )}
            {id === 'traffic' && (
              <>
                <Figure
                  label={s.t('vehiclesPerHour')}
                  value={`${n(traffic.vehiclesPerHour)} ${s.t('unitVehiclesPerHour')}`}
                  testid="vehicles-per-hour"
                  at={trafficAt}
                />
                <Figure label={s.t('averageSpeed')} value={`${n(traffic.averageSpeed, 1)} km/h`} testid="average-speed" at={trafficAt} />
                <Figure
                  label={s.t('congestedJunctions')}
                  value={n(traffic.congestedJunctions)}
                  testid="congested-junctions"
                  tone="warn"
                  at={trafficAt}
                />
              </>
            )}
          </div>
        </section>
      ))}
    </div>
  );
}

function AqiCell(props: { a: AqiNow | undefined }) {
  const s = useStore();
  const v = props.a ? (s.scale === 'epa' ? props.a.epa : props.a.vn) : null;
  const colour = s.aqiColour(v);
  if (!v) return <td class="muted">–</td>;
  return (
    <td data-testid="aqi-value" data-level={v.level}>
      <span class="swatch" style={{ background: colour }} />
      <strong>{s.fmt.num(v.aqi, 0)}</strong> <span class="muted">{s.aqiName(v)}</span>
    </td>
  );
}

export function AirTables(props: { compact?: boolean; stationsOnly?: boolean }) {
  const s = useStore();
  // The worst air first: the ward an operator must look at heads the table.
  const aqiOf = (id: string) => {
    const a = s.zoneAqi.get(id);
    return (s.scale === 'epa' ? a?.epa : a?.vn)?.aqi ?? -1;
  };
  const wards = (s.city?.zones.filter((z) => z.shape) ?? []).sort((a, b) => aqiOf(b.id) - aqiOf(a.id));
  const allStations = [...s.devices.values()].filter((d) => d.family === 'airQuality');
  const stationAqi = (id: string) => {
    const a = s.stationAqi.get(id);
    return (s.scale === 'epa' ? a?.epa : a?.vn)?.aqi ?? -1;
  };
  // A city of tens of stations lists them all by id; a fleet of thousands (a table of thousands of rows would
  // hold the page for seconds) lists the worst STATIONS_SHOWN, and the devices page has the rest.
  const stations =
    allStations.length > STATIONS_SHOWN
      ? allStations.sort((a, b) => stationAqi(b.id) - stationAqi(a.id) || a.id.localeCompare(b.id)).slice(0, STATIONS_SHOWN)
      : allStations.sort((a, b) => a.id.localeCompare(b.id));
  const scaleLabel = s.t(s.scale === 'epa' ? 'aqiEpa' : 'aqiVn');
  return (
    <section class="panel air" data-testid="air-panel">
      <h2>
        {s.t('familyAirQuality')} <span class="scale-tag">{scaleLabel}</span>
      </h2>
      <div class="air-tables">
        <table data-testid="aqi-zones" hidden={props.stationsOnly}>
          <thead>
            <tr>
              <th>{s.t('zone')}</th>
              <th>{scaleLabel}</th>
            </tr>
          </thead>
          <tbody>
            {wards.map((z) => (
              <tr key={z.id} data-testid="zone-row" data-zone={z.id}>
                <td>{z.name[s.lang]}</td>
                <AqiCell a={s.zoneAqi.get(z.id)} />
              </tr>
            ))}
          </tbody>
        </table>
        <table data-testid="aqi-stations">
          <thead>
            <tr>
              <th>{s.t('station')}</th>
              {!props.compact && <th>{s.t('zone')}</th>}
              <th>{scaleLabel}</th>
              <th>PM2.5</th>
              <th>{s.t('updated')}</th>
            </tr>
          </thead>
          <tbody>
            {stations.map((d) => {
              const r = s.latest.get(d.id);
              const pm25 = r?.fields.pm25;
              return (
                <tr key={d.id} data-testid="station-row" data-device={d.id} class={d.online ? '' : 'is-offline'}>
                  <td>
                    <a
                      href={`/devices/${d.id}`}
                      onClick={(e) => {
                        e.preventDefault();
                        navigate(`/devices/${d.id}`);
                      }}
                    >
                      {d.name ?? d.id}
                    </a>
                  </td>
                  {!props.compact && <td>{zoneName(s, d.zone)}</td>}
                  <AqiCell a={s.stationAqi.get(d.id)} />
                  <td data-testid="station-pm25">{typeof pm25 === 'number' ? `${s.fmt.num(pm25, 1)} µg/m³` : '–'}</td>
                  <td class={r && Date.now() - r.time > STALE_MS ? 'stale' : 'muted'} data-testid="station-age">
                    {r ? `${s.fmt.time(r.time)} · ${ageText(s, r.time)}` : '–'}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {allStations.length > STATIONS_SHOWN && (
        <p class="muted" data-testid="stations-more">
          {s.t('stationsMore', { shown: STATIONS_SHOWN, n: s.fmt.num(allStations.length, 0) })}
        </p>
      )}
    </section>
  );
}

/** What a feed item says, in the language shown (rule, ward and action names are translated when shown). */
function feedText(s: Store, e: FeedItem): string {
  if (e.kind === 'alarm') return s.t(e.key, { ...e.vars, rule: ruleName(s, e.vars.rule ?? '') });
  if (e.kind === 'command') {
    const v = e.vars;
    let action = '';
    try {
      action = describeAction(s, JSON.parse(v.action ?? '{}') as Record<string, unknown>);
    } catch {
      action = v.action ?? '';
    }
    const zones = (v.zones ?? '').split(',').filter(Boolean);
    const target = v.device ? v.device : zones.length === 1 ? zoneName(s, zones[0] as string) : zones.map((z) => zoneName(s, z)).join(', ');
    return s.t(e.key, { ...v, action, target });
  }
  return s.t(e.key, e.vars);
}

export function EventFeed(props: { max?: number }) {
  const s = useStore();
  return (
    <section class="panel feed" data-testid="event-feed">
      <h2>{s.t('recentEvents')}</h2>
      {s.feed.length === 0 && (
        <p class="muted empty" data-testid="feed-empty">
          {s.t(s.feedLoaded ? 'feedEmpty' : 'loading')}
        </p>
      )}
      <ol class="feed-list">
        {s.feed.slice(0, props.max ?? 60).map((e) => (
          <li key={e.id} class={`feed-${e.kind}`} data-testid="feed-item" data-kind={e.kind} data-key={e.key}>
            <time title={s.fmt.dateTime(e.at)}>{Date.now() - e.at > 86_400_000 ? s.fmt.dateTime(e.at) : s.fmt.time(e.at)}</time>{' '}
            {feedText(s, e)}
          </li>
        ))}
      </ol>
    </section>
  );
}

// --- Wards ranked by what is wrong ---------------------------------------------------------------------------

interface WardState {
  id: string;
  aqi: AqiNow | undefined;
  aqiLevel: number;
  lampsFull: number | undefined;
  lampsDimmed: number | undefined;
  lampsFaulty: number | undefined;
  congested: number | undefined;
  offline: number;
  openAlarms: number;
  /** Larger = worse: alarms, then air, faults, congestion, offline devices. */
  score: number;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

function wardStates(s: Store): WardState[] {
  const wards = s.city?.zones.filter((z) => z.shape) ?? [];
  const offline = new Map<string, number>();
  for (const d of s.devices.values()) if (!d.online) offline.set(d.zone, (offline.get(d.zone) ?? 0) + 1);
  const alarms = new Map<string, number>();
  for (const a of s.alarms.values()) if (a.state !== 'cleared' && a.zone) alarms.set(a.zone, (alarms.get(a.zone) ?? 0) + 1);
  return wards
    .map((z) => {
      const aqi = s.zoneAqi.get(z.id);
      const v = aqi ? (s.scale === 'epa' ? aqi.epa : aqi.vn) : null;
      const ind = s.zoneIndicators.get(z.id) ?? {};
      const lit = num(ind.streetLight?.lampsOn);
      const dimmed = num(ind.streetLight?.lampsDimmed);
      const w: WardState = {
        id: z.id,
        aqi,
        aqiLevel: v?.level ?? 0,
        lampsFull: lit === undefined ? undefined : Math.max(0, lit - (dimmed ?? 0)),
        lampsDimmed: dimmed,
        lampsFaulty: num(ind.streetLight?.lampsFaulty),
        congested: num(ind.traffic?.congestedJunctions),
        offline: offline.get(z.id) ?? 0,
        openAlarms: alarms.get(z.id) ?? 0,
        score: 0,
      };
      w.score =
        w.openAlarms * 1e6 + w.aqiLevel * 1e5 + (w.lampsFaulty ?? 0) * 1e3 + (w.congested ?? 0) * 1e2 + w.offline + (v?.aqi ?? 0) / 1e3;
      return w;
    })
    .sort((a, b) => b.score - a.score || a.id.localeCompare(b.id));
}

/** One row per ward, the worst first: open alarms, VN_AQI, lamps full/dimmed/faulty, congested junctions, offline. */
export function WardRanking(props: { compact?: boolean }) {
  const s = useStore();
  const n = (v: number | undefined) => s.fmt.num(v, 0);
  const scaleLabel = s.t(s.scale === 'epa' ? 'aqiEpa' : 'aqiVn');
  return (
    <section class="panel wards" data-testid="ward-ranking">
      <h2>{s.t('wardRanking')}</h2>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th>{s.t('zone')}</th>
              <th>{scaleLabel}</th>
              <th>{s.t('openAlarmsShort')}</th>
              {!props.compact && <th>{s.t('lampsFull')}</th>}
              {!props.compact && <th>{s.t('lampsDimmed')}</th>}
              <th>{s.t('lampsFaulty')}</th>
              <th>{s.t(props.compact ? 'congestedShort' : 'congestedJunctions')}</th>
              {!props.compact && <th>{s.t('offline')}</th>}
            </tr>
          </thead>
          <tbody>
            {wardStates(s).map((w) => (
              <tr key={w.id} data-testid="ward-row" data-zone={w.id} data-score={String(w.score)}>
                <td>{zoneName(s, w.id)}</td>
                <AqiCell a={w.aqi} />
                <td class={w.openAlarms ? 'bad' : ''}>{n(w.openAlarms)}</td>
                {!props.compact && <td>{n(w.lampsFull)}</td>}
                {!props.compact && <td>{n(w.lampsDimmed)}</td>}
                <td class={w.lampsFaulty ? 'bad' : ''}>{n(w.lampsFaulty)}</td>
                <td class={w.congested ? 'bad' : ''}>{n(w.congested)}</td>
                {!props.compact && <td>{n(w.offline)}</td>}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
