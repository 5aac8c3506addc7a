/**
 * The city map: Leaflet with its canvas renderer (one <canvas> for all markers: thousands of markers stay smooth
 * where thousands of DOM markers would not). Zones are drawn from the city profile's polygons on a plain
 * background, so no tile server is needed; a tile URL in the config (api.dashboard.tileUrl) adds one.
 * Markers are restyled only for the devices that changed since the last frame (store.takeDirty).
 *
 * Read by operators all day and from across the room: each family has its own shape (device-state.ts), lamps
 * are drawn first and small so that stations and junctions stay on top at night, wards can be filled with
 * their current VN_AQI colour, every family can be hidden, a hover shows a device's last values, the view is
 * bounded to the city with a button back to it, and every map carries its legend.
 */
import L from 'leaflet';
import 'leaflet/dist/leaflet.css';
import { useEffect, useRef, useState } from 'preact/hooks';
import { loadDashboardConfig } from './api.ts';
import { CommandControls } from './commands.tsx';
import { COLOURS, lookOf, type MarkerShape, SHAPES } from './device-state.ts';
import { navigate, useStore } from './hooks.ts';
import { FIELD_UNITS, type Key } from './i18n.ts';
import { type Store, store, zoneName } from './store.ts';
import type { DeviceInfo, Family } from './types.ts';

declare global {
  interface Window {
    /** Test hooks: where a device's marker is on screen, how many markers are drawn, a ward's fill colour. */
    citypulseMap?: {
      markerCount(): number;
      pointOf(id: string): { x: number; y: number } | undefined;
      zoneFill(id: string): string | undefined;
    };
  }
}

/** Draw order, bottom to top: the many lamps under the few junctions under the fewer stations. */
const DRAW_ORDER: Family[] = ['streetLight', 'traffic', 'airQuality'];
const FAMILY_KEYS: Record<Family, Key> = {
  airQuality: 'familyAirQuality',
  traffic: 'familyTraffic',
  streetLight: 'familyStreetLight',
};
const ZONE_FILL = '#c9d8e6';

/** Marker size by family and zoom: lamps stay small until one can tell them apart. */
function radiusOf(family: Family, zoom: number): number {
  if (family === 'airQuality') return 9;
  if (family === 'traffic') return 7;
  return zoom >= 16 ? 5 : zoom >= 15 ? 4 : 3;
}

type ShapeOptions = L.CircleMarkerOptions & { shape: MarkerShape };
interface CanvasInternals {
  _drawing: boolean;
  _ctx: CanvasRenderingContext2D;
  _fillStroke(ctx: CanvasRenderingContext2D, layer: unknown): void;
}
interface MarkerInternals {
  options: ShapeOptions;
  _renderer: CanvasInternals;
  _point: L.Point;
  _radius: number;
  _empty(): boolean;
}

/** A circle marker that draws itself as a square or a diamond on the canvas (same hit area as its circle). */
const ShapeMarker = L.CircleMarker.extend({
  _updatePath(this: MarkerInternals) {
    const shape = this.options.shape;
    if (shape === 'circle') return (L.CircleMarker.prototype as unknown as { _updatePath(): void })._updatePath.call(this);
    const r = this._renderer;
    if (!r._drawing || this._empty()) return;
    const p = this._point;
    const ctx = r._ctx;
    const s = Math.max(Math.round(this._radius), 1);
    ctx.beginPath();
    if (shape === 'square') ctx.rect(p.x - s, p.y - s, 2 * s, 2 * s);
    else {
      const d = s * 1.35;
      ctx.moveTo(p.x, p.y - d);
      ctx.lineTo(p.x + d, p.y);
      ctx.lineTo(p.x, p.y + d);
      ctx.lineTo(p.x - d, p.y);
      ctx.closePath();
    }
    r._fillStroke(ctx, this);
  },
}) as unknown as new (
  latlng: L.LatLngExpression,
  options: ShapeOptions,
) => L.CircleMarker;

export interface LegendEntry {
  shape: MarkerShape;
  colour: string;
  label: string;
}

/** Every state a marker can show, with its shape and colour: the same list on the map page and the wall. */
export function legendEntries(s: Store): LegendEntry[] {
  const scale = s.t(s.scale === 'epa' ? 'aqiEpa' : 'aqiVn');
  return [
    ...(s.scales?.[s.scale].categories.map((c) => ({
      shape: SHAPES.airQuality,
      colour: c.color,
      label: `${scale} ${c.min}–${c.max} ${c.name[s.lang]}`,
    })) ?? []),
    ...COLOURS.congestion.map((c, i) => ({ shape: SHAPES.traffic, colour: c, label: s.t(`congestion${i}` as Key) })),
    { shape: SHAPES.streetLight, colour: COLOURS.lampOn, label: s.t('lampOn') },
    { shape: SHAPES.streetLight, colour: COLOURS.lampLow, label: s.t('lampLow') },
    { shape: SHAPES.streetLight, colour: COLOURS.lampOff, label: s.t('lampOff') },
    { shape: SHAPES.streetLight, colour: COLOURS.lampFault, label: s.t('lampFault') },
    { shape: 'circle', colour: COLOURS.offline, label: s.t('stateOffline') },
    { shape: 'circle', colour: COLOURS.unknown, label: s.t('unknown') },
  ];
}

export function MapLegend(props: { class?: string }) {
  const s = useStore();
  return (
    <ul class={`legend ${props.class ?? ''}`} data-testid="legend" aria-label={s.t('legend')}>
      {legendEntries(s).map((e) => (
        <li key={e.label} data-testid="legend-entry" data-shape={e.shape} data-colour={e.colour.toLowerCase()}>
          <span class={`glyph glyph-${e.shape}`} style={{ background: e.colour }} /> {e.label}
        </li>
      ))}
    </ul>
  );
}

/** The last values of a device, for its hover card. */
function hoverText(s: Store, d: DeviceInfo): string {
  const esc = (t: string) => t.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const look = lookOf(s, d);
  const label = look.label;
  const r = s.latest.get(d.id);
  const rows: string[] = [];
  for (const [k, v] of Object.entries(r?.fields ?? {}).slice(0, 6)) {
    const value = typeof v === 'number' ? s.fmt.num(v, Number.isInteger(v) ? 0 : 1) : String(v);
    rows.push(`${esc(k)}: ${esc(value)}${FIELD_UNITS[k] ? ` ${esc(FIELD_UNITS[k])}` : ''}`);
  }
  return [
    `<strong>${esc(d.name ?? d.id)}</strong>`,
    esc(`${s.t(FAMILY_KEYS[d.family])} · ${zoneName(s, d.zone)}`),
    esc(label),
    ...rows,
    r ? esc(`${s.t('updated')} ${s.fmt.time(r.time)} (${s.fmt.duration(Date.now() - r.time)})`) : esc(s.t('noData')),
  ].join('<br>');
}

export interface MapControls {
  layers: Record<Family, boolean>;
  wardFill: boolean;
}

export function CityMap(props: { interactive?: boolean; testid?: string; controls?: MapControls; resetSeq?: number }) {
  const el = useRef<HTMLDivElement>(null);
  const api = useRef<{ apply(c: MapControls): void; reset(): void } | undefined>(undefined);
  const controls = props.controls ?? { layers: { airQuality: true, traffic: true, streetLight: true }, wardFill: true };
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
      maxZoom: 18,
      // Fractional zooms let the city fill its panel instead of the nearest power of two.
      zoomSnap: 0.25,
      zoomDelta: 0.5,
    });
    const renderer = L.canvas({ padding: 0.2 });
    let disposed = false;
    void loadDashboardConfig().then((cfg) => {
      if (disposed || !cfg.tileUrl) return;
      L.tileLayer(cfg.tileUrl, { maxZoom: cfg.tileMaxZoom, attribution: cfg.tileAttribution }).addTo(map);
      if (cfg.tileAttribution) L.control.attribution({ prefix: false }).addTo(map);
    });
    const zoneLayers = new Map<string, L.Polygon>();
    for (const z of city.zones) {
      if (!z.shape) continue;
      const rings = z.shape.coordinates.map((ring) => ring.map(([lon, lat]) => L.latLng(lat as number, lon as number)));
      const poly = L.polygon(rings, {
        renderer,
        color: '#3b5b7a',
        weight: 1.5,
        fillColor: ZONE_FILL,
        fillOpacity: 0.35,
        interactive: false,
      });
      poly.bindTooltip(z.name[store.lang], { permanent: true, direction: 'center', className: 'zone-label' });
      poly.addTo(map);
      zoneLayers.set(z.id, poly);
    }
    const bounds = zoneLayers.size
      ? L.featureGroup([...zoneLayers.values()]).getBounds()
      : L.latLngBounds([[city.centre.lat, city.centre.lon]]);
    /** Ward names that would overlap an earlier one are hidden until a zoom gives them room. */
    const declutter = () => {
      const kept: DOMRect[] = [];
      for (const poly of zoneLayers.values()) {
        const el = poly.getTooltip()?.getElement();
        if (!el) continue;
        el.style.visibility = '';
        const r = el.getBoundingClientRect();
        const hit = kept.some((k) => r.left < k.right && r.right > k.left && r.top < k.bottom && r.bottom > k.top);
        if (hit) el.style.visibility = 'hidden';
        else kept.push(r);
      }
    };
    const fit = () => {
      map.fitBounds(bounds, { padding: [10, 10] });
      map.setMinZoom(Math.max(0, map.getZoom() - 1));
    };
    fit();
    map.on('zoomend moveend', declutter);
    requestAnimationFrame(declutter);
    // The container gets its size from the layout (the wall's grid, a phone's column): follow it, and keep the
    // whole city in view while nobody moved the map.
    let moved = false;
    map.on('dragstart', () => {
      moved = true;
    });
    const resize = new ResizeObserver(() => {
      if (disposed || !container.isConnected) return;
      map.invalidateSize();
      if (!moved) fit();
      declutter();
    });
    resize.observe(container);
    // Bounded to the city: one cannot lose it by panning or zooming out.
    map.setMaxBounds(bounds.pad(0.6));

    let current = controls;
    const markers = new Map<string, L.CircleMarker>();
    const families = new Map<string, Family>();
    let lang = store.lang;
    const styleOf = (d: DeviceInfo) => {
      const look = lookOf(store, d);
      return { fillColor: look.colour, color: look.kind === 'offline' ? '#5f6368' : interactive ? '#1d2733' : '#e8eef5' };
    };
    const upsert = (d: DeviceInfo) => {
      let m = markers.get(d.id);
      if (!m) {
        m = new ShapeMarker([d.location.lat, d.location.lon], {
          renderer,
          shape: SHAPES[d.family],
          radius: radiusOf(d.family, map.getZoom()),
          weight: d.family === 'streetLight' ? 0.8 : 1.5,
          fillOpacity: 0.95,
          ...styleOf(d),
        });
        if (interactive) {
          const marker = m;
          m.on('click', () => {
            // The page goes: its hover card must not follow the mouse onto a removed map.
            marker.closeTooltip();
            navigate(`/devices/${d.id}`);
          });
          m.bindTooltip(() => hoverText(store, store.devices.get(d.id) ?? d), { direction: 'top', className: 'device-hover' });
        }
        if (current.layers[d.family]) m.addTo(map);
        markers.set(d.id, m);
        families.set(d.id, d.family);
      } else {
        m.setStyle(styleOf(d));
      }
    };
    const fillZones = () => {
      for (const [id, poly] of zoneLayers) {
        const a = store.zoneAqi.get(id);
        const v = a ? (store.scale === 'epa' ? a.epa : a.vn) : null;
        const colour = current.wardFill ? store.aqiColour(v) : undefined;
        const want = colour ?? ZONE_FILL;
        if (poly.options.fillColor !== want) poly.setStyle({ fillColor: want, fillOpacity: colour ? 0.4 : 0.35 });
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
            families.delete(id);
          }
        }
        const all = [...store.devices.values()].sort((a, b) => DRAW_ORDER.indexOf(a.family) - DRAW_ORDER.indexOf(b.family));
        for (const d of all) upsert(d);
      } else {
        for (const id of dirty) {
          const d = store.devices.get(id);
          if (d) upsert(d);
        }
      }
      fillZones();
      if (lang !== store.lang) {
        lang = store.lang;
        for (const z of city.zones) zoneLayers.get(z.id)?.setTooltipContent(z.name[lang]);
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
    map.on('zoomend', () => {
      const z = map.getZoom();
      for (const [id, m] of markers) if (families.get(id) === 'streetLight') m.setRadius(radiusOf('streetLight', z));
    });
    api.current = {
      apply(c) {
        const before = current;
        current = c;
        for (const f of DRAW_ORDER) {
          if (before.layers[f] === c.layers[f]) continue;
          for (const [id, m] of markers) {
            if (families.get(id) !== f) continue;
            if (c.layers[f]) {
              m.addTo(map);
              if (f === 'streetLight') m.bringToBack();
              else if (f === 'airQuality') m.bringToFront();
            } else m.remove();
          }
        }
        fillZones();
      },
      reset: () => {
        moved = false;
        fit();
      },
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
      zoneFill: (id) => zoneLayers.get(id)?.options.fillColor,
    };
    return () => {
      disposed = true;
      resize.disconnect();
      off();
      for (const m of markers.values()) m.unbindTooltip();
      map.remove();
      api.current = undefined;
      window.citypulseMap = undefined;
    };
  }, [store.city]);
  useEffect(() => api.current?.apply(controls), [controls]);
  useEffect(() => {
    if (props.resetSeq) api.current?.reset();
  }, [props.resetSeq]);
  return <div ref={el} class="map" data-testid={props.testid ?? 'map'} data-ward-fill={String(controls.wardFill)} />;
}

export function MapPage() {
  const s = useStore();
  const wards = s.city?.zones.filter((z) => z.shape) ?? [];
  const [zone, setZone] = useState(wards[0]?.id ?? '');
  const [controls, setControls] = useState<MapControls>({
    layers: { airQuality: true, traffic: true, streetLight: true },
    wardFill: true,
  });
  const [resetSeq, setResetSeq] = useState(0);
  return (
    <div class="map-page">
      <h1 class="visually-hidden">{s.t('navMap')}</h1>
      <CityMap controls={controls} resetSeq={resetSeq} />
      <aside class="panel map-side">
        <h2>{s.t('mapLayers')}</h2>
        <div class="map-tools" data-testid="map-tools">
          {DRAW_ORDER.slice()
            .reverse()
            .map((f) => (
              <label key={f} class="toggle">
                <input
                  type="checkbox"
                  data-testid={`layer-${f}`}
                  checked={controls.layers[f]}
                  onChange={(e) =>
                    setControls({ ...controls, layers: { ...controls.layers, [f]: (e.target as HTMLInputElement).checked } })
                  }
                />
                <span class={`glyph glyph-${SHAPES[f]}`} /> {s.t(FAMILY_KEYS[f])}
              </label>
            ))}
          <label class="toggle">
            <input
              type="checkbox"
              data-testid="ward-fill"
              checked={controls.wardFill}
              onChange={(e) => setControls({ ...controls, wardFill: (e.target as HTMLInputElement).checked })}
            />
            {s.t('wardFill', { scale: s.t(s.scale === 'epa' ? 'aqiEpa' : 'aqiVn') })}
          </label>
          <button type="button" data-testid="map-reset" onClick={() => setResetSeq(resetSeq + 1)}>
            {s.t('mapReset')}
          </button>
        </div>
        <h2>{s.t('legend')}</h2>
        <p class="muted" data-testid="map-device-count">
          {s.t('mapDevices', { n: s.fmt.num(s.devices.size, 0) })}
        </p>
        <MapLegend />
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
