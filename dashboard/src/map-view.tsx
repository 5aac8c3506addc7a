/**
 * The city map: Leaflet with its canvas renderer (one <canvas> for all markers: thousands of circle markers
 * stay smooth where thousands of DOM markers would not). Zones are drawn from the city profile's polygons on a
 * plain background, so no tile server is needed; a tile URL in the config (api.dashboard.tileUrl) adds one.
 * Markers are restyled only for the devices that changed since the last frame (store.takeDirty).
 */
import L from 'leaflet';
import 'leaflet/dist/leaflet.css';
import { useEffect, useRef, useState } from 'preact/hooks';
import { loadDashboardConfig } from './api.ts';
import { CommandControls } from './commands.tsx';
import { COLOURS, lookOf } from './device-state.ts';
import { navigate, useStore } from './hooks.ts';
import { store, zoneName } from './store.ts';
import type { DeviceInfo } from './types.ts';

declare global {
  interface Window {
    /** Test hooks: where a device's marker is on screen, and how many markers are drawn. */
    citypulseMap?: { markerCount(): number; pointOf(id: string): { x: number; y: number } | undefined };
  }
}

export function CityMap(props: { interactive?: boolean; testid?: string }) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const container = el.current;
    const city = store.city;
    if (!container || !city) return;
    const interactive = props.interactive !== false;
    const map = L.map(container, {
      preferCanvas: true,
      zoomControl: interactive,
      dragging: interactive,
      scrollWheelZoom: interactive,
      doubleClickZoom: interactive,
      boxZoom: interactive,
      keyboard: interactive,
      attributionControl: false,
    });
    const renderer = L.canvas({ padding: 0.2 });
    let disposed = false;
    void loadDashboardConfig().then((cfg) => {
      if (disposed || !cfg.tileUrl) return;
      L.tileLayer(cfg.tileUrl, { maxZoom: cfg.tileMaxZoom, attribution: cfg.tileAttribution }).addTo(map);
      if (cfg.tileAttribution) L.control.attribution({ prefix: false }).addTo(map);
    });
    const zoneLayers: L.Polygon[] = [];
    for (const z of city.zones) {
      if (!z.shape) continue;
      const rings = z.shape.coordinates.map((ring) => ring.map(([lon, lat]) => L.latLng(lat as number, lon as number)));
      const poly = L.polygon(rings, {
        renderer,
        color: '#3b5b7a',
        weight: 1.5,
        fillColor: '#c9d8e6',
        fillOpacity: 0.35,
        interactive: false,
      });
      poly.bindTooltip(z.name[store.lang], { permanent: true, direction: 'center', className: 'zone-label' });
      poly.addTo(map);
      zoneLayers.push(poly);
    }
    const bounds = zoneLayers.length ? L.featureGroup(zoneLayers).getBounds() : L.latLngBounds([[city.centre.lat, city.centre.lon]]);
    map.fitBounds(bounds, { padding: [10, 10] });

    const markers = new Map<string, L.CircleMarker>();
    let lang = store.lang;
    const styleOf = (d: DeviceInfo) => {
      const look = lookOf(store, d);
      return { fillColor: look.colour, color: look.kind === 'offline' ? '#5f6368' : '#1d2733' };
    };
    const upsert = (d: DeviceInfo) => {
      let m = markers.get(d.id);
      if (!m) {
        m = L.circleMarker([d.location.lat, d.location.lon], {
          renderer,
          radius: d.family === 'streetLight' ? 4 : 6,
          weight: 1,
          fillOpacity: 0.9,
          ...styleOf(d),
        });
        if (interactive) m.on('click', () => navigate(`/devices/${d.id}`));
        m.addTo(map);
        markers.set(d.id, m);
      } else {
        m.setStyle(styleOf(d));
      }
    };
    let firstRender = false;
    const sync = () => {
      const dirty = store.takeDirty();
      if (dirty === 'all') {
        for (const [id, m] of markers) {
          if (!store.devices.has(id)) {
            m.remove();
            markers.delete(id);
          }
        }
        for (const d of store.devices.values()) upsert(d);
      } else {
        for (const id of dirty) {
          const d = store.devices.get(id);
          if (d) upsert(d);
        }
      }
      if (lang !== store.lang) {
        lang = store.lang;
        city.zones
          .filter((z) => z.shape)
          .forEach((z, i) => {
            zoneLayers[i]?.setTooltipContent(z.name[lang]);
          });
      }
      container.dataset.markers = String(markers.size);
      if (!firstRender && store.ready) {
        firstRender = true;
        // The canvas renderer draws on the next animation frame: that is when the markers are on screen.
        requestAnimationFrame(() => {
          container.dataset.firstRenderMs = String(Math.round(performance.now()));
        });
      }
    };
    // A new map (page change) must draw every marker, not only the ones changed since the last map.
    store.markAllDirty();
    sync();
    const off = store.subscribe(sync);
    window.citypulseMap = {
      markerCount: () => markers.size,
      pointOf: (id) => {
        const m = markers.get(id);
        if (!m) return undefined;
        const p = map.latLngToContainerPoint(m.getLatLng());
        const r = container.getBoundingClientRect();
        return { x: r.left + p.x, y: r.top + p.y };
      },
    };
    return () => {
      disposed = true;
      off();
      map.remove();
      window.citypulseMap = undefined;
    };
  }, [store.city]);
  return <div ref={el} class="map" data-testid={props.testid ?? 'map'} />;
}

export function MapPage() {
  const s = useStore();
  const wards = s.city?.zones.filter((z) => z.shape) ?? [];
  const [zone, setZone] = useState(wards[0]?.id ?? '');
  const legend: [string, string][] = [
    [COLOURS.offline, s.t('stateOffline')],
    [COLOURS.lampOn, s.t('lampOn')],
    [COLOURS.lampLow, s.t('lampLow')],
    [COLOURS.lampOff, s.t('lampOff')],
    [COLOURS.lampFault, s.t('lampFault')],
    ...COLOURS.congestion.map((c, i): [string, string] => [c, s.t(`congestion${i}` as 'congestion0')]),
    ...(s.scales?.[s.scale].categories.map((c): [string, string] => [
      c.color,
      `${s.t(s.scale === 'epa' ? 'aqiEpa' : 'aqiVn')} ${c.min}–${c.max} ${c.name[s.lang]}`,
    ]) ?? []),
    [COLOURS.unknown, s.t('unknown')],
  ];
  return (
    <div class="map-page">
      <CityMap />
      <aside class="panel map-side">
        <h2>{s.t('legend')}</h2>
        <p class="muted" data-testid="map-device-count">
          {s.t('mapDevices', { n: s.fmt.num(s.devices.size, 0) })}
        </p>
        <ul class="legend" data-testid="legend">
          {legend.map(([c, label]) => (
            <li key={label}>
              <span class="swatch" style={{ background: c }} /> {label}
            </li>
          ))}
        </ul>
        <h2>{s.t('commandsZone')}</h2>
        <select value={zone} data-testid="zone-select" onChange={(e) => setZone((e.target as HTMLSelectElement).value)}>
          {wards.map((z) => (
            <option key={z.id} value={z.id}>
              {zoneName(s, z.id)}
            </option>
          ))}
        </select>
        {/* One panel per ward (keyed): another ward chosen starts clean, without the previous ward's batch. */}
        {zone && <CommandControls key={zone} target={{ zone }} testid="zone-commands" />}
      </aside>
    </div>
  );
}
