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
import { COLOURS, type DeviceLook, lookOf, type MarkerShape, SHAPES } from './device-state.ts';
import { navigate, useStore } from './hooks.ts';
import { FIELD_UNITS, type Key } from './i18n.ts';
import { type Store, store, zoneName } from './store.ts';
import type { DeviceInfo, Family } from './types.ts';

declare global {
  interface Window {
    /** Test hooks: where a device's marker is on screen, how many markers are drawn, a ward's fill colour. */
    citypulseMap?: {
      markerCount(): number;
      markerIds(): string[];
      view(): { lat: number; lon: number; zoom: number };
      groupCount(): number;
      mode(): 'markers' | 'groups';
      pointOf(id: string): { x: number; y: number } | undefined;
      groups(): { family: Family; count: number; colour: string; x: number; y: number }[];
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

/**
 * Up to this many devices in the shown layers are all drawn, one marker each; with more, the devices in view are
 * drawn when they are no more than this, and aggregates otherwise. Leaflet's canvas redraws every marker at each
 * pan frame: a few thousand keep a pan smooth on an operations-centre PC, 50,000 do not.
 */
export const MARKER_BUDGET = 2500;
/** Side of an aggregate's grid cell, screen pixels. */
const GROUP_CELL_PX = 80;
/** Where a family's aggregate sits from its devices' centre, pixels: the three of one cell side by side. */
const GROUP_OFFSET: Record<Family, [number, number]> = { airQuality: [0, -14], traffic: [14, 10], streetLight: [-14, 10] };
const FAMILY_OF: readonly Family[] = ['airQuality', 'traffic', 'streetLight'];

/** The devices of one cell and family at the current zoom: how many, where, their worst state and every state counted. */
interface Group {
  family: Family;
  count: number;
  /** Sums of world-pixel positions, for the centre. */
  sx: number;
  sy: number;
  worst: number;
  look: DeviceLook | undefined;
  states: Map<string, number>;
}

/**
 * Positions as Web Mercator fractions of the world (what Leaflet projects to, times 256 · 2^zoom) in typed
 * arrays: binning 50,000 devices at a zoom is then arithmetic, not 50,000 Leaflet projections. Rebuilt when the
 * store's device list is replaced (at every (re)connect).
 */
function deviceIndex(devices: Map<string, DeviceInfo>) {
  const n = devices.size;
  const ids: string[] = new Array(n);
  const mx = new Float64Array(n);
  const my = new Float64Array(n);
  const fam = new Uint8Array(n);
  let i = 0;
  for (const d of devices.values()) {
    const lat = Math.max(-85.0511, Math.min(85.0511, d.location.lat));
    const s = Math.sin((lat * Math.PI) / 180);
    ids[i] = d.id;
    mx[i] = 0.5 + d.location.lon / 360;
    my[i] = 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
    fam[i] = FAMILY_OF.indexOf(d.family);
    i++;
  }
  return { source: devices, ids, mx, my, fam };
}

/**
 * How bad a state is, for an aggregate's colour: a lamp fault, a bad AQI category or heavy congestion above
 * a device offline, offline above a state that is normal, anything known above unknown.
 */
function rankOf(s: Store, look: DeviceLook): number {
  switch (look.kind) {
    case 'unknown':
      return 0;
    case 'offline':
      return 5;
    case 'lamp':
      return look.colour === COLOURS.lampFault ? 8 : 1;
    case 'congestion':
      return [1, 3, 6, 7][COLOURS.congestion.indexOf(look.colour as (typeof COLOURS.congestion)[number])] ?? 1;
    case 'aqi': {
      const level = s.scales?.[s.scale].categories.findIndex((c) => c.color === look.colour) ?? 0;
      return [1, 3, 6, 7, 8, 9][level] ?? 1;
    }
  }
}

/** An aggregate grows with the log of its count: 1 device 9 px, 100 about 15 px, 10,000 about 21 px. */
const groupRadius = (n: number) => Math.round(9 + 3 * Math.log10(Math.max(1, n)));

/** An aggregate's hover card: the family and count, then every state with its count, worst first. */
function groupText(s: Store, g: Group): string {
  const esc = (t: string) => t.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const states = [...g.states].sort((a, b) => b[1] - a[1]).map(([label, n]) => `${esc(label)}: ${s.fmt.num(n, 0)}`);
  if (g.look) {
    const i = states.findIndex((x) => x.startsWith(`${esc(g.look?.label ?? '')}:`));
    if (i > 0) states.unshift(...states.splice(i, 1));
  }
  return [`<strong>${esc(s.t(FAMILY_KEYS[g.family]))}: ${s.fmt.num(g.count, 0)}</strong>`, ...states, esc(s.t('mapGroupZoom'))].join(
    '<br>',
  );
}

type ShapeOptions = L.CircleMarkerOptions & { shape: MarkerShape; count?: number };
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

/** An aggregate's count, written on its marker in black or white, whichever reads on its fill. */
function drawCount(ctx: CanvasRenderingContext2D, p: L.Point, o: ShapeOptions): void {
  if (o.count === undefined) return;
  const hex = String(o.fillColor ?? '#000000').replace('#', '');
  const [r, g, b] = [0, 2, 4].map((i) => Number.parseInt(hex.slice(i, i + 2), 16) || 0) as [number, number, number];
  const light = 0.299 * r + 0.587 * g + 0.114 * b > 140;
  const text = o.count >= 10_000 ? `${Math.round(o.count / 1000)}k` : String(o.count);
  ctx.save();
  ctx.font = `bold ${text.length > 3 ? 10 : 11}px system-ui, sans-serif`;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  ctx.fillStyle = light ? '#111111' : '#ffffff';
  ctx.fillText(text, p.x, p.y + 0.5);
  ctx.restore();
}

/** A circle marker that draws itself as a square or a diamond on the canvas (same hit area as its circle). */
const ShapeMarker = L.CircleMarker.extend({
  _updatePath(this: MarkerInternals) {
    const shape = this.options.shape;
    const r = this._renderer;
    if (shape === 'circle') {
      (L.CircleMarker.prototype as unknown as { _updatePath(): void })._updatePath.call(this);
      if (r._drawing && !this._empty()) drawCount(r._ctx, this._point, this.options);
      return;
    }
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
    drawCount(ctx, p, this.options);
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
    let lang = store.lang;
    /** Device markers drawn now: every device when few, those in view when zoomed in, none at city zoom. */
    const markers = new Map<string, L.CircleMarker>();
    /** Aggregate markers drawn now, by cell and family. */
    const groups = new Map<string, { marker: L.CircleMarker; group: Group }>();
    let mode: 'markers' | 'groups' = 'markers';
    let renders = 0;
    let index = deviceIndex(store.devices);
    const styleOf = (d: DeviceInfo) => {
      const look = lookOf(store, d);
      return { fillColor: look.colour, color: look.kind === 'offline' ? '#5f6368' : interactive ? '#1d2733' : '#e8eef5' };
    };
    const addMarker = (d: DeviceInfo) => {
      const m = new ShapeMarker([d.location.lat, d.location.lon], {
        renderer,
        shape: SHAPES[d.family],
        radius: radiusOf(d.family, map.getZoom()),
        weight: d.family === 'streetLight' ? 0.8 : 1.5,
        fillOpacity: 0.95,
        ...styleOf(d),
      });
      if (interactive) {
        m.on('click', () => {
          // The page goes: its hover card must not follow the mouse onto a removed map.
          m.closeTooltip();
          navigate(`/devices/${d.id}`);
        });
        m.bindTooltip(() => hoverText(store, store.devices.get(d.id) ?? d), { direction: 'top', className: 'device-hover' });
      }
      m.addTo(map);
      markers.set(d.id, m);
      return m;
    };
    const dropMarker = (id: string) => {
      const m = markers.get(id);
      if (!m) return;
      m.unbindTooltip();
      m.remove();
      markers.delete(id);
    };
    const dropGroups = () => {
      for (const { marker } of groups.values()) {
        marker.unbindTooltip();
        marker.remove();
      }
      groups.clear();
    };
    /** The view in world pixels at the current zoom, a fifth wider on every side (a short pan needs no redraw). */
    const viewBox = () => {
      const z = map.getZoom();
      const b = map.getBounds().pad(0.2);
      const nw = map.project(b.getNorthWest(), z);
      const se = map.project(b.getSouthEast(), z);
      return { z, scale: 256 * 2 ** z, x0: nw.x, y0: nw.y, x1: se.x, y1: se.y };
    };
    /**
     * Level of detail. Few devices (MARKER_BUDGET) in the shown layers: one marker each, as before. More: the
     * devices in view, if that is few enough; otherwise one aggregate per grid cell (GROUP_CELL_PX) and family,
     * sized by its count and coloured by its worst state. One pass over the position arrays (a few ms at
     * 50,000 devices) decides and bins; only what is drawn becomes a Leaflet layer.
     */
    const render = () => {
      if (index.source !== store.devices) index = deviceIndex(store.devices);
      const v = viewBox();
      const shown = (i: number) => current.layers[FAMILY_OF[index.fam[i] as number] as Family];
      let total = 0;
      let inView = 0;
      for (let i = 0; i < index.ids.length; i++) {
        if (!shown(i)) continue;
        total++;
        const x = (index.mx[i] as number) * v.scale;
        const y = (index.my[i] as number) * v.scale;
        if (x >= v.x0 && x <= v.x1 && y >= v.y0 && y <= v.y1) inView++;
      }
      const all = total <= MARKER_BUDGET;
      if (all || inView <= MARKER_BUDGET) {
        if (mode === 'groups') dropGroups();
        mode = 'markers';
        const want = new Set<string>();
        for (let i = 0; i < index.ids.length; i++) {
          if (!shown(i)) continue;
          const x = (index.mx[i] as number) * v.scale;
          const y = (index.my[i] as number) * v.scale;
          if (all || (x >= v.x0 && x <= v.x1 && y >= v.y0 && y <= v.y1)) want.add(index.ids[i] as string);
        }
        for (const id of [...markers.keys()]) if (!want.has(id)) dropMarker(id);
        // Added bottom to top (lamps, junctions, stations): the canvas draws in the order layers were added.
        const added: L.CircleMarker[] = [];
        for (const f of DRAW_ORDER)
          for (const id of want) {
            const d = store.devices.get(id);
            if (d && d.family === f && !markers.has(id)) added.push(addMarker(d));
          }
        if (added.length && markers.size > added.length) {
          // New lamps go under the markers already drawn, new stations over them.
          for (const m of added) {
            const f = (m.options as ShapeOptions).shape;
            if (f === SHAPES.streetLight) m.bringToBack();
            else if (f === SHAPES.airQuality) m.bringToFront();
          }
        }
      } else {
        for (const id of [...markers.keys()]) dropMarker(id);
        mode = 'groups';
        const cells = new Map<string, Group>();
        for (let i = 0; i < index.ids.length; i++) {
          if (!shown(i)) continue;
          const x = (index.mx[i] as number) * v.scale;
          const y = (index.my[i] as number) * v.scale;
          if (x < v.x0 || x > v.x1 || y < v.y0 || y > v.y1) continue;
          const f = index.fam[i] as number;
          const key = `${Math.floor(x / GROUP_CELL_PX)}:${Math.floor(y / GROUP_CELL_PX)}:${f}`;
          let g = cells.get(key);
          if (!g) {
            g = { family: FAMILY_OF[f] as Family, count: 0, sx: 0, sy: 0, worst: -1, look: undefined, states: new Map() };
            cells.set(key, g);
          }
          const d = store.devices.get(index.ids[i] as string);
          if (!d) continue;
          const look = lookOf(store, d);
          const rank = rankOf(store, look);
          g.count++;
          g.sx += x;
          g.sy += y;
          g.states.set(look.label, (g.states.get(look.label) ?? 0) + 1);
          if (rank > g.worst) {
            g.worst = rank;
            g.look = look;
          }
        }
        for (const [key, old] of groups)
          if (!cells.has(key)) {
            old.marker.unbindTooltip();
            old.marker.remove();
            groups.delete(key);
          }
        const byOrder = [...cells].sort((a, b) => DRAW_ORDER.indexOf(a[1].family) - DRAW_ORDER.indexOf(b[1].family));
        for (const [key, g] of byOrder) {
          const off = GROUP_OFFSET[g.family];
          const at = map.unproject([g.sx / g.count + off[0], g.sy / g.count + off[1]], v.z);
          const style = {
            radius: groupRadius(g.count),
            fillColor: g.look?.colour ?? COLOURS.unknown,
            color: g.look?.kind === 'offline' ? '#5f6368' : interactive ? '#1d2733' : '#e8eef5',
          };
          const have = groups.get(key);
          if (have) {
            have.group = g;
            (have.marker.options as ShapeOptions).count = g.count;
            have.marker.setLatLng(at);
            have.marker.setStyle(style);
            have.marker.setRadius(style.radius);
            continue;
          }
          const m = new ShapeMarker(at, { renderer, shape: SHAPES[g.family], count: g.count, weight: 1.5, fillOpacity: 0.95, ...style });
          const entry = { marker: m, group: g };
          if (interactive) {
            m.bindTooltip(() => groupText(store, entry.group), { direction: 'top', className: 'device-hover' });
            // A click zooms into the cell: two steps, towards its devices.
            m.on('click', () => {
              m.closeTooltip();
              map.setView(m.getLatLng(), Math.min(map.getMaxZoom(), map.getZoom() + 2));
            });
          }
          m.addTo(map);
          if (g.family === 'streetLight') m.bringToBack();
          else if (g.family === 'airQuality') m.bringToFront();
          groups.set(key, entry);
        }
      }
      container.dataset.mode = mode;
      container.dataset.markers = String(markers.size);
      container.dataset.groups = String(groups.size);
      container.dataset.devicesInView = String(all ? total : inView);
      container.dataset.renders = String(++renders);
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
    /** Aggregates follow live states at most once a second: a pass over every device is not for every frame. */
    let regroupTimer: ReturnType<typeof setTimeout> | undefined;
    const sync = () => {
      const dirty = store.takeDirty();
      if (dirty === 'all' || index.source !== store.devices) render();
      else if (mode === 'markers') {
        for (const id of dirty) {
          const d = store.devices.get(id);
          const m = markers.get(id);
          if (d && m) m.setStyle(styleOf(d));
        }
      } else if (dirty.size && !regroupTimer) {
        regroupTimer = setTimeout(() => {
          regroupTimer = undefined;
          if (!disposed && mode === 'groups') render();
        }, 1000);
      }
      fillZones();
      if (lang !== store.lang) {
        lang = store.lang;
        for (const z of city.zones) zoneLayers.get(z.id)?.setTooltipContent(z.name[lang]);
      }
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
      for (const [id, m] of markers) if (store.devices.get(id)?.family === 'streetLight') m.setRadius(radiusOf('streetLight', z));
    });
    map.on('moveend', () => {
      if (store.ready) render();
    });
    api.current = {
      apply(c) {
        current = c;
        render();
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
      markerIds: () => [...markers.keys()],
      view: () => ({ lat: map.getCenter().lat, lon: map.getCenter().lng, zoom: map.getZoom() }),
      groupCount: () => groups.size,
      mode: () => mode,
      pointOf: (id) => {
        const m = markers.get(id);
        if (!m) return undefined;
        const p = map.latLngToContainerPoint(m.getLatLng());
        const r = container.getBoundingClientRect();
        return { x: r.left + p.x, y: r.top + p.y };
      },
      groups: () =>
        [...groups.values()].map(({ marker, group }) => {
          const p = map.latLngToContainerPoint(marker.getLatLng());
          const r = container.getBoundingClientRect();
          return { family: group.family, count: group.count, colour: String(marker.options.fillColor), x: r.left + p.x, y: r.top + p.y };
        }),
      zoneFill: (id) => zoneLayers.get(id)?.options.fillColor,
    };
    return () => {
      disposed = true;
      resize.disconnect();
      off();
      clearTimeout(regroupTimer);
      for (const m of markers.values()) m.unbindTooltip();
      for (const { marker } of groups.values()) marker.unbindTooltip();
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
        {s.devices.size > MARKER_BUDGET && (
          <p class="muted" data-testid="map-groups-note">
            {s.t('mapGroupsNote')}
          </p>
        )}
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
