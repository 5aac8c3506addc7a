/**
 * Test helper: a steady QoS 1 load from one device, recording which readings the platform acknowledged.
 * Reading n has `intensity = n` and its own observation time (base + n ms), so InfluxDB holds one point per
 * reading and loss and duplicates can be counted exactly.
 */
import type { MqttClient } from 'mqtt';

export interface Load {
  /** Readings whose PUBACK arrived. */
  readonly acked: Set<number>;
  /** Readings sent (acknowledged or not). */
  sent(): number;
  /** Stops sending and waits for the in-flight publishes to settle (bounded). */
  stop(): Promise<void>;
}

/**
 * Publishes traffic readings at about `perSecond`, at most `window` unacknowledged at once.
 * Errors (a killed platform) are swallowed: an unacknowledged reading simply is not in `acked`.
 */
export function startLoad(client: MqttClient, deviceId: string, opts: { perSecond: number; window?: number; base?: number }): Load {
  const acked = new Set<number>();
  const base = opts.base ?? Date.now() - 3_600_000;
  const window = opts.window ?? 20;
  let n = 0;
  let inFlight = 0;
  let stopped = false;
  const settles: Promise<void>[] = [];
  const tick = () => {
    if (stopped) return;
    const due = Math.max(1, Math.round(opts.perSecond / 50));
    for (let i = 0; i < due && inFlight < window && client.connected; i++) {
      const seq = n++;
      inFlight++;
      const p = client
        .publishAsync(`devices/${deviceId}/telemetry`, JSON.stringify({ dateObserved: base + seq, intensity: seq }), { qos: 1 })
        .then(
          () => {
            acked.add(seq);
          },
          () => undefined,
        )
        .finally(() => {
          inFlight--;
        });
      settles.push(p);
    }
  };
  const timer = setInterval(tick, 20);
  return {
    acked,
    sent: () => n,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await Promise.race([Promise.allSettled(settles), new Promise((r) => setTimeout(r, 3000))]);
    },
  };
}

/** Compares acknowledged readings with the `intensity` values stored: missing ones and duplicates. */
export function compare(acked: Set<number>, stored: number[]): { missing: number[]; duplicates: number } {
  const seen = new Set(stored);
  return { missing: [...acked].filter((n) => !seen.has(n)).sort((a, b) => a - b), duplicates: stored.length - seen.size };
}
