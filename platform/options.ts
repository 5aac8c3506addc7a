/**
 * The platform's own options: where its files live (`dataDir`), which city it serves (`cityProfile`) and how
 * it logs (`log.*`: a default level and one per component).
 */
import { componentLevel, LOG_LEVELS, section } from '../core/options.ts';

export const PLATFORM_OPTIONS = {
  dataDir: {
    type: 'string',
    default: 'data',
    description: 'Folder for the device registry (SQLite), dead letters and the local InfluxDB; relative to the working directory',
  },
  cityProfile: {
    type: 'string',
    default: 'cities/bac-giang.json',
    description: 'City profile (zones with names, shapes, centre; demo fleet sizes), relative to the working directory',
  },
} as const;

export const LOG_OPTIONS = section({
  level: { type: 'string', enum: LOG_LEVELS, default: 'info', description: 'Default log level' },
  broker: componentLevel('broker'),
  ingest: componentLevel('ingest'),
  api: componentLevel('dashboard-api'),
  registry: componentLevel('registry'),
  influx: componentLevel('the InfluxDB writer and local server'),
  alarms: componentLevel('the alarm engine'),
});
