/** Options of the simulated city `citypulse start` runs (`simulate.*`): fleet sizes, pace, seed and QoS. */
import { section } from '../core/options.ts';

export const SIMULATE_OPTIONS = section({
  enabled: { type: 'boolean', default: true, description: '`citypulse start` also runs a simulated city' },
  airQuality: { type: 'integer', minimum: -1, default: -1, description: 'Simulated air stations (-1 = city profile fleet)' },
  traffic: { type: 'integer', minimum: -1, default: -1, description: 'Simulated traffic counters (-1 = city profile fleet)' },
  streetLight: { type: 'integer', minimum: -1, default: -1, description: 'Simulated street lights (-1 = city profile fleet)' },
  intervalScale: {
    type: 'number',
    exclusiveMinimum: 0,
    default: 1,
    description: 'Multiplies every device report interval (0.1 = ten times faster)',
  },
  seed: { type: 'integer', default: 1, description: 'Random seed: the same seed gives the same fleet and values' },
  qos: { type: 'integer', enum: [0, 1], default: 1, description: 'MQTT QoS of simulated telemetry' },
  backfillHours: {
    type: 'number',
    minimum: 0,
    maximum: 168,
    default: 24,
    description:
      'Hours of history each simulated device sends (with their observation times) when it first connects, so indices, energy and charts show at once (0 = none)',
  },
});
