/**
 * Values as an operator reads them: a field's name in the language shown, a number with its unit (µg/m³, W,
 * km/h …) or as a percentage, an enum in words, and the value behind an alarm (the index and its category for
 * bad air, the power of a faulty lamp, the occupancy of a congested junction).
 */
import { FIELD_UNITS, type Key } from './i18n.ts';
import type { Store } from './store.ts';
import type { AlarmRecord } from './types.ts';

const PERCENT_FIELDS = new Set(['relativeHumidity', 'occupancy', 'illuminanceLevel']);

export function fieldLabel(s: Store, f: string): string {
  const key = `field_${f}` as Key;
  const t = s.t(key);
  return t === key ? f : t;
}

export function formatValue(s: Store, field: string | undefined, v: unknown): string {
  if (typeof v === 'boolean') return s.t(v ? 'yes' : 'no');
  if (typeof v === 'number') {
    if (field && PERCENT_FIELDS.has(field)) return s.fmt.percent(v);
    const unit = field ? FIELD_UNITS[field] : undefined;
    return unit ? `${s.fmt.num(v, 2)} ${unit}` : s.fmt.num(v, 2);
  }
  if (typeof v === 'string' && field) {
    // An enum in words (powerState low → "Giảm sáng", status defectiveLamp → "Hỏng bóng"); unknown values as sent.
    const key = `enum_${field}_${v}` as Key;
    const t = s.t(key);
    if (t !== key) return t;
  }
  return String(v ?? '–');
}

/** Fields shown as a percentage (values 0..1): charts draw them ×100 in %, as the reading table shows them. */
export const isPercentField = (field: string) => PERCENT_FIELDS.has(field);

/** The value that raised an alarm, in words and units. */
export function alarmValue(s: Store, a: AlarmRecord): string {
  const v = a.value;
  if (v === null || v === undefined) return '–';
  if (a.rule === 'aqi-category') {
    const aqi = /VN_AQI (\d+)/.exec(a.message)?.[1];
    const category = s.scales?.vn.categories.find((c) => c.level === v)?.name[s.lang];
    return `${s.t('aqiVn')} ${aqi ?? '–'}${category ? ` – ${category}` : ''}`;
  }
  if (a.rule === 'device-offline') return s.t('stateOffline');
  if (a.rule === 'lamp-on-in-daylight') return s.t(v === 'low' ? 'lampLow' : 'lampOn');
  const rule = s.rules.find((r) => r.id === a.rule);
  if (rule?.kind === 'noData' && typeof v === 'number') return s.t('silentFor', { s: s.fmt.duration(v * 1000) });
  if (rule?.kind === 'rateOfChange' && typeof v === 'number') {
    const unit = rule.field ? FIELD_UNITS[rule.field] : undefined;
    return `${s.fmt.num(v, 1)}${unit ? ` ${unit}` : ''}${s.t('unitPerMinute')}`;
  }
  return formatValue(s, rule?.field, v);
}
