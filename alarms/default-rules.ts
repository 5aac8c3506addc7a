/**
 * The built-in alarm rules (lamp faults, lamps on in daylight, congestion, bad air, devices offline): fixed ids,
 * since the dashboard translates alarms by rule id; tunable by `alarms.defaults`, switched off by `alarms.disabled`.
 */
import type { RuleInput } from './rule-schema.ts';

const FAULTS = ['defectiveLamp', 'columnIssue', 'brokenLantern'];

/** The built-in rules. Their ids are fixed (the dashboard translates alarms by rule id). */
export const DEFAULT_RULES: readonly RuleInput[] = [
  {
    id: 'lamp-fault',
    kind: 'state',
    source: 'reading',
    family: 'streetLight',
    severity: 'major',
    description:
      'A street light reports a fault (status not ok), or is on/low but draws under 1 W; cleared once status is ok and the lamp is off or draws at least 5 W',
    message: 'Lamp fault: status {status}, power state {powerState}, {powerConsumption} W',
    field: 'powerConsumption',
    when: {
      any: [
        { field: 'status', op: 'in', value: FAULTS },
        {
          all: [
            { field: 'powerState', op: 'in', value: ['on', 'low'] },
            { field: 'powerConsumption', op: '<', value: 1 },
          ],
        },
      ],
    },
    clearWhen: {
      all: [
        { field: 'status', op: 'notIn', value: FAULTS },
        {
          any: [
            { field: 'powerState', op: 'in', value: ['off', 'bootingUp'] },
            { field: 'powerConsumption', op: '>=', value: 5 },
          ],
        },
      ],
    },
    forMs: 120_000,
    clearForMs: 60_000,
  },
  {
    id: 'lamp-on-in-daylight',
    kind: 'state',
    source: 'reading',
    family: 'streetLight',
    severity: 'minor',
    description: 'A street light is on or low while the sun is up at its location; cleared once it is off or night falls',
    message: 'Lamp {powerState} in daylight',
    field: 'powerState',
    when: {
      all: [
        { field: 'powerState', op: 'in', value: ['on', 'low'] },
        { field: 'daylight', op: '==', value: true },
      ],
    },
    clearWhen: {
      any: [
        { field: 'powerState', op: '==', value: 'off' },
        { field: 'daylight', op: '==', value: false },
      ],
    },
    forMs: 900_000,
    clearForMs: 60_000,
  },
  {
    id: 'congestion',
    kind: 'state',
    source: 'reading',
    family: 'traffic',
    severity: 'major',
    description: 'A junction has occupancy ≥ 0.35 or reports congested; cleared once occupancy < 0.2 and it is not congested',
    message: 'Congestion: occupancy {occupancy}, congested {congested}',
    field: 'occupancy',
    when: {
      any: [
        { field: 'occupancy', op: '>=', value: 0.35 },
        { field: 'congested', op: '==', value: true },
      ],
    },
    clearWhen: {
      all: [
        {
          any: [
            { field: 'occupancy', op: '<', value: 0.2 },
            { field: 'occupancy', op: 'missing' },
          ],
        },
        { field: 'congested', op: '!=', value: true },
      ],
    },
    forMs: 600_000,
    clearForMs: 120_000,
  },
  {
    id: 'aqi-category',
    kind: 'threshold',
    source: 'aqi',
    scope: 'station',
    severity: 'major',
    description: "A station's hourly VN_AQI category is at or above level 4 (Xấu, bad); cleared once it is below (≤ 3)",
    message: 'VN_AQI {vn.aqi} ({vn.category}, level {vn.level})',
    where: { field: 'period', op: '==', value: 'hour' },
    field: 'vn.level',
    op: '>=',
    value: 4,
    forMs: 300_000,
    clearForMs: 600_000,
  },
  {
    id: 'device-offline',
    kind: 'state',
    source: 'status',
    severity: 'warning',
    description: 'A device has been offline (disconnected) for 5 minutes; cleared once it has been online for 1 minute',
    message: 'Device offline since {at}',
    field: 'state',
    when: { field: 'state', op: '==', value: 'offline' },
    clearWhen: { field: 'state', op: '==', value: 'online' },
    forMs: 300_000,
    clearForMs: 60_000,
  },
];

export const DEFAULT_RULE_IDS = ['lamp-fault', 'lamp-on-in-daylight', 'congestion', 'aqi-category', 'device-offline'] as const;
export type DefaultRuleId = (typeof DEFAULT_RULE_IDS)[number];
