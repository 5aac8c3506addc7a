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

function Figure(props: { label: string; value: string; testid: string; tone?: string }) {
  return (
    <div class={`figure ${props.tone ?? ''}`}>
      <div class="figure-value" data-testid={props.testid}>
        {props.value}
      </div>
      <div class="figure-label">{props.label}</div>
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
                <Figure label={s.t('lampsOn')} value={n(lights.lampsOn)} testid="lamps-on" />
                <Figure label={s.t('lampsDimmed')} value={n(lights.lampsDimmed)} testid="lamps-dimmed" />
                <Figure label={s.t('lampsFaulty')} value={n(lights.lampsFaulty)} testid="lamps-faulty" tone="warn" />
                <Figure
                  label={s.t('powerNow')}
                  value={`${n(typeof lights.powerNowW === 'number' ? lights.powerNowW / 1000 : undefined, 2)} kW`}
                  testid="power-now"
                />
                <Figure label={s.t('energyToday')} value={`${n(lights.energyTodayKWh, 1)} kWh`} testid="energy-today" />
              </>
            )}
            {id === 'traffic' && (
              <>
                <Figure
                  label={s.t('vehiclesPerHour')}
                  value={`${n(traffic.vehiclesPerHour)} ${s.t('unitVehiclesPerHour')}`}
                  testid="vehicles-per-hour"
                />
                <Figure label={s.t('averageSpeed')} value={`${n(traffic.averageSpeed, 1)} km/h`} testid="average-speed" />
                <Figure label={s.t('congestedJunctions')} value={n(traffic.congestedJunctions)} testid="congested-junctions" tone="warn" />
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

export function AirTables(props: { compact?: boolean }) {
  const s = useStore();
  const wards = s.city?.zones.filter((z) => z.shape) ?? [];
  const stations = [...s.devices.values()].filter((d) => d.family === 'airQuality').sort((a, b) => a.id.localeCompare(b.id));
  const scaleLabel = s.t(s.scale === 'epa' ? 'aqiEpa' : 'aqiVn');
  return (
    <section class="panel air" data-testid="air-panel">
      <h2>
        {s.t('familyAirQuality')} <span class="scale-tag">{scaleLabel}</span>
      </h2>
      <div class="air-tables">
        <table data-testid="aqi-zones">
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
                  <td class="muted">{r ? s.fmt.time(r.time) : '–'}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
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
      <ol class="feed-list">
        {s.feed.slice(0, props.max ?? 60).map((e) => (
          <li key={e.id} class={`feed-${e.kind}`} data-testid="feed-item" data-kind={e.kind} data-key={e.key}>
            <time>{s.fmt.time(e.at)}</time> {feedText(s, e)}
          </li>
        ))}
      </ol>
    </section>
  );
}
