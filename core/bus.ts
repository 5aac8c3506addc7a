/**
 * The in-process live bus: ingest and the broker emit facts, the dashboard API streams them to sockets.
 * Typed with EventEmitter<EventMap>; listeners are removed by their owners on stop.
 */
import { EventEmitter } from 'node:events';
import type { DeviceStatus, EnrichedReading, Family } from './contract.ts';

export interface StatusEvent extends DeviceStatus {
  device: string;
  family: string;
  zone: string;
}

export interface RejectionEvent {
  device: string;
  family: string;
  zone: string;
  code: string;
  reason: string;
  index?: number;
  at: string;
}

/** One air-quality index value (VN_AQI or US EPA). */
export interface IndexValue {
  /** The index, rounded to an integer (the maximum sub-index). */
  aqi: number;
  /** Category level 1..6 (VN: Tốt, Trung bình, Kém, Xấu, Rất xấu, Nguy hại; EPA: Good .. Hazardous). */
  level: number;
  /** Category key, e.g. 'good' | 'moderate' | 'poor' | 'bad' | 'veryBad' | 'hazardous' (VN). */
  category: string;
  /** The pollutant whose sub-index is the maximum (pm25, pm10, o3, no2, so2, co). */
  dominant: string;
  /** Sub-index per pollutant (integers). */
  subIndices: Record<string, number>;
}

/** An air-quality index computed by analytics for a station or a zone (the zone's worst station). */
export interface AqiEvent {
  scope: 'station' | 'zone';
  /** Device id (station) or zone id. */
  id: string;
  zone: string;
  /** Hourly index (NowCast for PM) or daily index. */
  period: 'hour' | 'day';
  /** Start of the hour or (city-local) day the index is for, epoch ms. */
  time: number;
  /** VN_AQI (Decision 1459/QĐ-TCMT); null when PM10 and PM2.5 are both missing. */
  vn: IndexValue | null;
  /** US EPA AQI (PM2.5 2024 breakpoints), for comparison only; never mixed with vn. */
  epa: IndexValue | null;
  /**
   * Daily index only: the day's hours (of 24) with a PM2.5 or PM10 mean. A daily value needs 18 of them: with
   * fewer, vn and epa are null (the day has no daily index yet).
   */
  hours?: number;
}

/** Derived indicators of a device, a zone or the whole city (analytics). */
export interface IndicatorEvent {
  scope: 'device' | 'zone' | 'city';
  /** Device id, zone id, or 'city'. */
  id: string;
  zone?: string;
  family: Family;
  /** epoch ms */
  time: number;
  values: Record<string, number | boolean | string>;
}

export type AlarmState = 'active' | 'acknowledged' | 'cleared';
export type AlarmSeverity = 'critical' | 'major' | 'minor' | 'warning';

/** An alarm as stored and streamed (alarms/). */
export interface AlarmRecord {
  id: number;
  rule: string;
  /** Device id, or zone id for zone-scoped rules. */
  subject: string;
  scope: 'device' | 'zone';
  family?: Family;
  zone?: string;
  severity: AlarmSeverity;
  state: AlarmState;
  /** Short message (English) and the values behind it; the dashboard translates by rule id. */
  message: string;
  value?: number | boolean | string | null;
  raisedAt: string;
  acknowledgedAt?: string | null;
  acknowledgedBy?: string | null;
  clearedAt?: string | null;
  /** 'system' when the condition ended by itself, else the operator. */
  clearedBy?: string | null;
  /** The condition is over (the alarm may still wait for acknowledgement). */
  conditionClearedAt?: string | null;
}

export type CommandState = 'pending' | 'delivered' | 'acknowledged' | 'failed' | 'expired';

/** A command to a device as stored and streamed (commands/). */
export interface CommandRecord {
  id: string;
  device: string;
  zone?: string;
  family?: Family;
  /** What to do, e.g. { powerState: 'on' | 'off', illuminanceLevel: 0..1 }. */
  action: Record<string, unknown>;
  state: CommandState;
  reason?: string | null;
  createdAt: string;
  createdBy: string;
  expiresAt: string;
  deliveredAt?: string | null;
  acknowledgedAt?: string | null;
  /** Group the command was sent with (zone, list or schedule), when any. */
  batch?: string | null;
}

export interface BusEvents {
  /** A valid reading, emitted as soon as it is validated (before InfluxDB confirms it). */
  reading: [EnrichedReading];
  /** A device came online or went offline. */
  status: [StatusEvent];
  /** A message or reading was rejected (dead-lettered). */
  rejected: [RejectionEvent];
  /** An air-quality index was (re)computed. */
  aqi: [AqiEvent];
  /** Derived indicators changed. */
  indicator: [IndicatorEvent];
  /** An alarm was raised or changed state. */
  alarm: [AlarmRecord];
  /** A command was created or changed state. */
  command: [CommandRecord];
}

export type LiveBus = EventEmitter<BusEvents>;

export function createBus(): LiveBus {
  const bus = new EventEmitter<BusEvents>();
  // One listener per subsystem, not per socket: sockets join rooms; a high number here is a leak.
  bus.setMaxListeners(50);
  return bus;
}
