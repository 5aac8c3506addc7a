/** Public face of analytics: air-quality indices (VN_AQI, US EPA) and derived indicators of traffic and street lights. */
export { createAnalytics } from './analytics.ts';
export type { Analytics, AnalyticsDeps, AnalyticsOptions, CongestionThresholds, CurrentAqi, LocalAnalytics } from './analytics.ts';
export { createWorkerAnalytics } from './worker-host.ts';
export type { WorkerAnalytics } from './worker-host.ts';
export * from './aqi.ts';
export { AQI_MEASUREMENT, INDICATORS_MEASUREMENT, INTEGER_INDICATORS } from './points.ts';
export { createCityClock } from './city-time.ts';
export type { CityClock } from './city-time.ts';
export { isDaylight, sunTimes } from './sun.ts';
export type { ZoneResult, ZoneShare } from './zone-share.ts';
export { COUNTER_LOOKBACK_MS, createReports, REPORT_KINDS, reportCsv } from './reports.ts';
export type {
  AqiDay,
  AqiReport,
  CongestionReport,
  EnergyReport,
  LightingReport,
  Report,
  ReportKind,
  ReportPeriod,
  Reports,
} from './reports.ts';
