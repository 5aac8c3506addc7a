/**
 * The MQTT per-address attempt limit counts failed attempts only (broker/connection-guard.ts): devices that log in
 * correctly behind one NAT address are never refused for their number, and a flood of failed logins from that
 * address holds back only connections that have not authenticated: a device with its token still gets in at once.
 *
 * Run: node --import tsx --test test/mqtt-failed-attempts.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestPlatform } from './helpers/platform.ts';
import { connectPacket, rawConnect, type RawConnection } from './helpers/raw-mqtt.ts';

const refusedCount = async (api: (p: string) => Promise<Response>) => {
  const m = /citypulse_mqtt_connections_refused_total\{reason="too-many-attempts"\} (\d+)/.exec(await (await api('/metrics')).text());
  return Number(m?.[1] ?? 0);
};

/** One CONNECT on a raw connection: the CONNACK return code, or 'closed' when the broker closed it without one. */
async function attempt(url: string, id: string, token: string): Promise<number | 'closed'> {
  let raw: RawConnection;
  try {
    raw = await rawConnect(url);
  } catch {
    return 'closed';
  }
  raw.send(connectPacket(id, token));
  const connack = (await raw.next('connack', 3000)) as { returnCode: number } | undefined;
  raw.socket.destroy();
  return connack ? connack.returnCode : 'closed';
}

test('a flood of failed MQTT logins from 127.0.0.1: a device with its token logs in from the same address at once; successful logins never count', async (t) => {
  const limit = 50;
  const p = await startTestPlatform(t, { broker: { maxConnectionAttemptsPerAddress: limit, connectionAttemptWindowMs: 60_000 } });
  const dev = await p.provision('airQuality');
  const other = await p.provision('traffic');

  // Devices behind one NAT reconnecting: four times the limit in logins, none refused.
  for (let i = 0; i < 4 * limit; i++) assert.equal(await attempt(p.addr.mqtt, dev.id, dev.token), 0, `login ${i + 1}`);
  assert.equal(await refusedCount(p.api), 0);

  // The flood: 1,000 failed attempts, 20 at a time (wrong tokens, unknown devices, connections that send nothing).
  const outcomes = new Map<string, number>();
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < 1000) {
        const i = next++;
        let outcome: number | 'closed' | 'silent';
        if (i % 3 === 2) {
          const raw = await rawConnect(p.addr.mqtt).catch(() => undefined);
          outcome = raw ? ((await raw.closed(20)) ? 'closed' : 'silent') : 'closed';
          raw?.socket.destroy();
        } else {
          outcome = await attempt(p.addr.mqtt, i % 3 ? `aq-nobody-${i}` : other.id, 'wrong-token');
        }
        outcomes.set(String(outcome), (outcomes.get(String(outcome)) ?? 0) + 1);
      }
    }),
  );
  assert.ok(Date.now() - started < 60_000, 'the flood ran within the window');
  assert.ok((outcomes.get('4') ?? 0) >= limit, `wrong credentials answered CONNACK 4 until the limit: ${JSON.stringify([...outcomes])}`);
  assert.ok((await refusedCount(p.api)) > 0, 'past the limit, the flood is held back (too-many-attempts)');

  // Right after it, from the same address: the device gets in at once, again and again.
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    const client = await p.connect(dev.id, dev.token, { connectTimeout: 2000 });
    assert.equal(client.connected, true);
    assert.ok(Date.now() - t0 < 1000, `login ${i + 1} took ${Date.now() - t0} ms`);
    await client.endAsync();
  }

  // Still held back for failures: more silent connections than the few allowed are closed at once.
  const silent = await Promise.all(Array.from({ length: 8 }, () => rawConnect(p.addr.mqtt)));
  const closed = await Promise.all(silent.map((r) => r.closed(500)));
  assert.ok(closed.filter(Boolean).length >= 4, `of 8 silent connections, ${closed.filter(Boolean).length} closed`);
  for (const r of silent) r.socket.destroy();
});
