/**
 * What a device's marker says: offline first, then per family the air-quality category (colour of the chosen
 * scale), the junction's congestion level, or the lamp's on / dimmed / off / fault state.
 */
import type { Key } from './i18n.ts';
import type { Store } from './store.ts';
import type { DeviceInfo } from './types.ts';

export interface DeviceLook {
  colour: string;
  /** Dictionary key of the state, or an already translated text (AQI category names come from the API). */
  label: string;
  kind: 'offline' | 'aqi' | 'congestion' | 'lamp' | 'unknown';
}

/**
 * One palette for the three families, read together on one map: each family has its own shape (stations
 * circles, junctions diamonds, lamps squares) and colours that the others do not use, so no state can be taken
 * for another: the AQI categories keep the colours of Decision 1459, congestion runs teal → violet → crimson →
 * black-red (no yellow, orange or red of the AQI), lamps are lit white, dimmed sky blue, off slate, faulty magenta.
 */
export const COLOURS = {
  offline: '#8a8f98',
  unknown: '#5b8def',
  congestion: ['#00897b', '#5e35b1', '#ad1457', '#3e0012'],
  lampOn: '#fffbe6',
  lampLow: '#4fc3f7',
  lampOff: '#37474f',
  lampFault: '#e040fb',
} as const;

export type MarkerShape = 'circle' | 'diamond' | 'square';
export const SHAPES: Record<DeviceInfo['family'], MarkerShape> = { airQuality: 'circle', traffic: 'diamond', streetLight: 'square' };

export function lookOf(s: Store, d: DeviceInfo): DeviceLook {
  if (!d.online) return { colour: COLOURS.offline, label: s.t('stateOffline'), kind: 'offline' };
  const r = s.latest.get(d.id)?.fields;
  const ind = s.deviceIndicators.get(d.id);
  switch (d.family) {
    case 'airQuality': {
      const a = s.stationAqi.get(d.id);
      const v = a ? (s.scale === 'epa' ? a.epa : a.vn) : null;
      const colour = s.aqiColour(v);
      if (!v || !colour) return { colour: COLOURS.unknown, label: s.t('unknown'), kind: 'unknown' };
      return { colour, label: `${s.t(s.scale === 'epa' ? 'aqiEpa' : 'aqiVn')} ${v.aqi} – ${s.aqiName(v)}`, kind: 'aqi' };
    }
    case 'traffic': {
      let level = typeof ind?.congestionLevel === 'number' ? ind.congestionLevel : undefined;
      if (level === undefined && r?.congested !== undefined) level = r.congested === true ? 3 : 0;
      if (level === undefined) return { colour: COLOURS.unknown, label: s.t('unknown'), kind: 'unknown' };
      const l = Math.max(0, Math.min(3, Math.round(level)));
      return { colour: COLOURS.congestion[l] as string, label: s.t(`congestion${l}` as Key), kind: 'congestion' };
    }
    case 'streetLight': {
      const fault = ind?.fault === true || (r?.status !== undefined && r.status !== 'ok');
      if (fault) return { colour: COLOURS.lampFault, label: s.t('lampFault'), kind: 'lamp' };
      const state = r?.powerState;
      if (state === undefined && ind?.on === undefined) return { colour: COLOURS.unknown, label: s.t('unknown'), kind: 'unknown' };
      if (state === 'low' || (state === undefined && ind?.dimmed === true))
        return { colour: COLOURS.lampLow, label: s.t('lampLow'), kind: 'lamp' };
      if (state === 'on' || state === 'bootingUp' || (state === undefined && ind?.on === true))
        return { colour: COLOURS.lampOn, label: s.t('lampOn'), kind: 'lamp' };
      return { colour: COLOURS.lampOff, label: s.t('lampOff'), kind: 'lamp' };
    }
  }
}
