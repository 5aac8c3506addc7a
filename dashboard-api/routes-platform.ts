/** Routes of the platform itself: its health, the city profile it serves and the device contract it speaks. */
import { COMMAND_SCHEMAS, commandAckSchema, deviceCommandSchema, READING_SCHEMAS, TOPICS } from '../ingest/index.ts';
import type { ApiDeps, RouteDef } from './route-kit.ts';

export function platformRoutes(d: ApiDeps): RouteDef[] {
  return [
    {
      method: 'get',
      path: '/api/v1/health',
      summary: 'State of broker, InfluxDB and ingest',
      tag: 'platform',
      responses: { 200: { description: 'status ok or degraded, with each part' } },
      handler: (_req, res) => res.json(d.health()),
    },
    {
      method: 'get',
      path: '/api/v1/city',
      summary: 'The city profile: zones with names, shapes and centres',
      tag: 'platform',
      role: 'viewer',
      responses: { 200: { description: 'city profile' } },
      handler: (_req, res) => res.json(d.profile),
    },
    {
      method: 'get',
      path: '/api/v1/contract',
      summary: 'The device contract, machine-readable: topics and the JSON Schema of each family’s reading',
      tag: 'platform',
      role: 'viewer',
      responses: { 200: { description: 'topics and schemas' } },
      handler: (_req, res) =>
        res.json({
          topics: {
            telemetry: TOPICS.telemetry('{id}'),
            status: TOPICS.status('{id}'),
            errors: TOPICS.errors('{id}'),
            commands: TOPICS.commands('{id}'),
            acks: TOPICS.acks('{id}'),
          },
          payload: 'One reading object, or an array of them (a device flushing its backlog)',
          families: READING_SCHEMAS,
          commands: { command: deviceCommandSchema, ack: commandAckSchema, actions: COMMAND_SCHEMAS },
        }),
    },
  ];
}
