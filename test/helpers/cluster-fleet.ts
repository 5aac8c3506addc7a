/**
 * Test and benchmark helper: a fleet of real MQTT.js devices sending QoS 1 traffic readings through a cluster's
 * edge, and the checker that compares every reading a device got a PUBACK for with what InfluxDB stored.
 *
 * Device d's reading n has `intensity = n` and its own observation time (the device's base + n ms), so each
 * reading is one point of its own and loss and duplicates can be counted exactly: a reading acknowledged and not
 * stored is lost; two points with the same `intensity` of one device are a duplicate (a resend stored under
 * another time). The devices keep every PUBACK and every connection loss with its time, for failover figures.
 */
import mqtt, { type MqttClient } from 'mqtt';

export interface FleetOptions {
  /** HAProxy's (or a node's) MQTT address. */
  mqttUrl: string;
  /** HAProxy's (or a node's) API address, for provisioning. */
  apiUrl: string;
  /** The service token (role admin) to provision with. */
  adminToken: string;
  devices: number;
  /** A zone of the city profile the devices are provisioned in. */
  zone: string;
  /** Id prefix of the devices (default `fleet`). */
  prefix?: string;
}

export interface LoadOptions {
  /** Messages a second, all devices together. */
  messagesPerSecond: number;
  readingsPerMessage: number;
  /** Unacknowledged messages a device has at most (default 8). */
  window?: number;
}

/** One device of the fleet: its connection, what it sent, and when it was acknowledged or cut off. */
export class FleetDevice {
  client: MqttClient | undefined;
  /** Next reading number. */
  next = 0;
  /** Readings acknowledged (their numbers). */
  readonly acked = new Set<number>();
  /** When each PUBACK arrived (ms epoch), in order. */
  readonly ackTimes: number[] = [];
  /** When the connection was lost (ms epoch), in order. */
  readonly closeTimes: number[] = [];
  inFlight = 0;
  credit = 0;
  /** Observation time of reading 0: an hour back, so that a run of minutes stays in the past. */
  readonly base = Date.now() - 3_600_000;

  constructor(
    readonly id: string,
    readonly token: string,
  ) {}

  /** First PUBACK at or after `t`, ms epoch (undefined: none yet). */
  firstAckAfter(t: number): number | undefined {
    for (let i = this.ackTimes.length - 1; i >= 0; i--) {
      if ((this.ackTimes[i] as number) < t) return this.ackTimes[i + 1];
    }
    return this.ackTimes[0];
  }

  /** First connection loss at or after `t` (undefined: none). */
  firstCloseAfter(t: number): number | undefined {
    return this.closeTimes.find((c) => c >= t);
  }
}

async function provision(o: FleetOptions, id: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(`${o.apiUrl}/api/v1/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id, family: 'traffic', zone: o.zone, location: { lat: 21.27, lon: 106.19 } }),
    });
    const text = await res.text();
    if (res.status === 201) return (JSON.parse(text) as { token: string }).token;
    if (attempt >= 5 || res.status < 500) throw new Error(`provisioning ${id} failed: ${res.status} ${text}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Devices provisioned through the API and connected through `mqttUrl`, with a steady QoS 1 load on demand. */
export class CheckedFleet {
  readonly devices: FleetDevice[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lastTick = 0;
  private settles = new Set<Promise<void>>();

  private constructor(private readonly opts: FleetOptions) {}

  /** Provisions `devices` traffic counters (10 at a time) and connects them (MQTT.js, reconnecting every 500 ms). */
  static async start(opts: FleetOptions): Promise<CheckedFleet> {
    const fleet = new CheckedFleet(opts);
    const prefix = opts.prefix ?? 'fleet';
    const ids = Array.from({ length: opts.devices }, (_, i) => `${prefix}-${i}`);
    for (let i = 0; i < ids.length; i += 10) {
      const chunk = ids.slice(i, i + 10);
      const tokens = await Promise.all(chunk.map((id) => provision(opts, id)));
      for (const [k, id] of chunk.entries()) fleet.devices.push(new FleetDevice(id, tokens[k] as string));
    }
    await Promise.all(fleet.devices.map((d) => fleet.connect(d)));
    return fleet;
  }

  private async connect(d: FleetDevice): Promise<void> {
    const client = await mqtt.connectAsync(this.opts.mqttUrl, {
      clientId: d.id,
      username: d.id,
      password: d.token,
      protocolVersion: 4,
      reconnectPeriod: 500,
      connectTimeout: 5000,
      keepalive: 30,
    });
    client.on('error', () => undefined); // refusals while a node is away: MQTT.js reconnects by itself
    client.on('close', () => d.closeTimes.push(Date.now()));
    d.client = client;
  }

  /** Starts (or changes) the load: messages spread evenly over the devices, sent every 50 ms. */
  load(o: LoadOptions): void {
    clearInterval(this.timer);
    const window = o.window ?? 8;
    const perDevice = o.messagesPerSecond / this.devices.length;
    this.lastTick = Date.now();
    this.timer = setInterval(() => {
      const now = Date.now();
      const dt = (now - this.lastTick) / 1000;
      this.lastTick = now;
      for (const d of this.devices) {
        // Credit is capped: a device cut off does not flood once back (it sends at its rate again).
        d.credit = Math.min(d.credit + perDevice * dt, window);
        while (d.credit >= 1 && d.inFlight < window && d.client?.connected) {
          d.credit -= 1;
          this.send(d, o.readingsPerMessage);
        }
      }
    }, 50);
  }

  private send(d: FleetDevice, n: number): void {
    const first = d.next;
    d.next += n;
    const payload = Array.from({ length: n }, (_, k) => ({ dateObserved: d.base + first + k, intensity: first + k }));
    d.inFlight++;
    const settled = new Promise<void>((resolve) => {
      (d.client as MqttClient).publish(`devices/${d.id}/telemetry`, JSON.stringify(payload), { qos: 1 }, (err) => {
        d.inFlight--;
        if (!err) {
          for (let k = 0; k < n; k++) d.acked.add(first + k);
          d.ackTimes.push(Date.now());
        }
        resolve();
      });
    });
    this.settles.add(settled);
    void settled.then(() => this.settles.delete(settled));
  }

  /** The longest time without any PUBACK in the whole fleet between `from` and `to` (ms epoch), ms. */
  longestPause(from: number, to: number): number {
    const times: number[] = [];
    for (const d of this.devices) for (const t of d.ackTimes) if (t >= from && t <= to) times.push(t);
    times.sort((a, b) => a - b);
    let longest = 0;
    let prev = from;
    for (const t of [...times, to]) {
      longest = Math.max(longest, t - prev);
      prev = t;
    }
    return longest;
  }

  /** Readings acknowledged so far, all devices. */
  acked(): number {
    let n = 0;
    for (const d of this.devices) n += d.acked.size;
    return n;
  }

  /** Readings sent so far, all devices. */
  sent(): number {
    let n = 0;
    for (const d of this.devices) n += d.next;
    return n;
  }

  /** Stops sending; waits (at most `ms`) until every message sent was acknowledged or failed. */
  async stopLoad(ms = 60_000): Promise<boolean> {
    clearInterval(this.timer);
    this.timer = undefined;
    const until = Date.now() + ms;
    while (this.devices.some((d) => d.inFlight > 0)) {
      if (Date.now() > until) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
    return true;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(this.devices.map((d) => d.client?.endAsync(true).catch(() => undefined)));
  }
}

/** An InfluxQL query against InfluxDB's v1 API; the first statement's series. */
export async function influxSeries(
  influxUrl: string,
  database: string,
  q: string,
): Promise<{ name: string; tags?: Record<string, string>; values: unknown[][] }[]> {
  const url = `${influxUrl}/query?db=${encodeURIComponent(database)}&epoch=ms&q=${encodeURIComponent(q)}`;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`InfluxDB query failed: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as {
    results?: { series?: { name: string; tags?: Record<string, string>; values: unknown[][] }[]; error?: string }[];
  };
  const r = body.results?.[0];
  if (r?.error) throw new Error(`InfluxDB: ${r.error}`);
  return r?.series ?? [];
}

/** Points stored per device (traffic). */
export async function storedCounts(influxUrl: string, database: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const s of await influxSeries(influxUrl, database, 'SELECT count("intensity") FROM "traffic" GROUP BY "device"'))
    out.set(s.tags?.device as string, Number(s.values[0]?.[1] ?? 0));
  return out;
}

export interface CheckResult {
  acked: number;
  stored: number;
  /** Acknowledged readings InfluxDB does not hold. */
  lost: number;
  /** Points beyond one per reading. */
  duplicated: number;
  /** A few lost readings, `device:n`, for the failure message. */
  lostExamples: string[];
}

/**
 * Waits (at most `ms`) until InfluxDB holds at least as many points per device as the device got PUBACKs for,
 * then compares reading by reading. Resolves with the figures whether or not the wait ran out.
 */
export async function checkStored(fleet: CheckedFleet, influxUrl: string, database: string, ms: number): Promise<CheckResult> {
  const until = Date.now() + ms;
  for (;;) {
    const counts = await storedCounts(influxUrl, database).catch(() => new Map<string, number>());
    if (fleet.devices.every((d) => (counts.get(d.id) ?? 0) >= d.acked.size) || Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const result: CheckResult = { acked: 0, stored: 0, lost: 0, duplicated: 0, lostExamples: [] };
  for (const d of fleet.devices) {
    const series = await influxSeries(influxUrl, database, `SELECT "intensity" FROM "traffic" WHERE "device" = '${d.id}'`);
    const values = (series[0]?.values ?? []).map((v) => Number(v[1]));
    const seen = new Set(values);
    result.acked += d.acked.size;
    result.stored += values.length;
    result.duplicated += values.length - seen.size;
    for (const n of d.acked) {
      if (seen.has(n)) continue;
      result.lost++;
      if (result.lostExamples.length < 10) result.lostExamples.push(`${d.id}:${n}`);
    }
  }
  return result;
}
