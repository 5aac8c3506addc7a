/**
 * The REST API as one table of routes, assembled from one file per resource (routes-<resource>.ts, sharing
 * route-kit.ts). Each route's params, query and body schemas both validate the request (ajv, compiled once
 * in app.ts) and describe it in the OpenAPI document (openapi.ts).
 */
import type { ApiDeps, RouteDef } from './route-kit.ts';
import { accessRoutes } from './routes-access.ts';
import { alarmRoutes } from './routes-alarms.ts';
import { analyticsRoutes } from './routes-analytics.ts';
import { commandRoutes } from './routes-commands.ts';
import { deviceRoutes } from './routes-devices.ts';
import { platformRoutes } from './routes-platform.ts';
import { readingRoutes } from './routes-readings.ts';
import { reportRoutes } from './routes-reports.ts';

export function createRoutes(d: ApiDeps): RouteDef[] {
  return [
    ...platformRoutes(d),
    ...deviceRoutes(d),
    ...readingRoutes(d),
    ...accessRoutes(d),
    ...alarmRoutes(d.alarms),
    ...commandRoutes(d.commands),
    ...analyticsRoutes(d.analytics, d.history),
    ...reportRoutes(d.analytics, d.devices),
  ];
}
