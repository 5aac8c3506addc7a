/**
 * Run a private InfluxDB 1.x server (`influxd`) as a child process, for the platform (influx.url empty), dev
 * mode and tests.
 *
 * The Debian package's own service config listens on all interfaces and shares one data
 * directory, so instead each instance gets its own directory, its own config bound to one
 * host, and free ports for both the HTTP API and the RPC (backup) listener, which lets
 * several instances (parallel test files) run side by side.
 *
 * influxd gets SIGTERM when its parent process dies; one still running on the same directory at the next start
 * is ended first. superviseLocalInflux restarts an influxd that ended on its own, with back-off.
 *
 * This file is where callers import it from: installing in influxdb-install.ts, start and stop of one
 * process in influxdb-process.ts, supervision in influxdb-supervise.ts.
 */
export { ensureInfluxInstalled } from './influxdb-install.ts';
export {
  freePort,
  type InfluxExit,
  type LocalInflux,
  startLocalInflux,
  type StartLocalInfluxOptions,
  withParentDeathSignal,
} from './influxdb-process.ts';
export { type SupervisedInflux, superviseLocalInflux, type SuperviseLocalInfluxOptions } from './influxdb-supervise.ts';
