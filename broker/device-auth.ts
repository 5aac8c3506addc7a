/**
 * Who may connect and what they may do, by the device rules of the contract [C-TOPIC]: the CONNECT checks
 * (protocol level, keepalive, credentials against the registry, client id = device id), which topics a device
 * may publish to (its own telemetry and acks) and subscribe to (its own errors and commands), and lab mode's
 * anonymous tools. The connections it admits as devices are recorded in `devices` for the rest of the broker.
 */
import type { AedesOptions, AedesPublishPacket, Client } from 'aedes';
import { TOPICS } from '../core/contract.ts';
import type { DeviceMeta } from '../ingest/index.ts';
import { excerpt } from '../core/log-excerpt.ts';
import type { Logger } from '../core/logger.ts';
import type { BrokerDeps, ResolvedBrokerOptions } from './types.ts';

type AuthError = Error & { returnCode: number };
const authError = (message: string, returnCode: number): AuthError => Object.assign(new Error(message), { returnCode });

export interface DeviceAuth {
  preConnect: NonNullable<AedesOptions['preConnect']>;
  authenticate: NonNullable<AedesOptions['authenticate']>;
  authorizeSubscribe: NonNullable<AedesOptions['authorizeSubscribe']>;
  /**
   * A client's publish: 'free' (the platform itself, or a lab tool), the device and which of its topics
   * ('telemetry' or 'acks'), or the error that refuses it (which closes the connection: MQTT 3.1.1 has no
   * negative PUBACK).
   */
  authorizePublish(client: Client | null, packet: Pick<AedesPublishPacket, 'topic'>): 'free' | { device: DeviceMeta; kind: string } | Error;
}

export function createDeviceAuth(
  opts: ResolvedBrokerOptions,
  deps: Pick<BrokerDeps, 'devices' | 'metrics'>,
  devices: WeakMap<Client, DeviceMeta>,
  log: Logger,
  /** The source address of a client's connection, for log lines (behind the edge proxy: the device's). */
  addressOf: (client: Client) => string | undefined = () => undefined,
): DeviceAuth {
  const metrics = deps.metrics;
  const lab = opts.labMode === true;
  const labRefused = new Set(opts.labRefusedTopics ?? []);
  /** Clients whose CONNECT had an empty client id with a persistent session [MQTT-3.1.3-8]. */
  const emptyPersistentId = new WeakSet<Client>();

  return {
    preConnect(client, packet, cb) {
      if (!packet.clientId && !packet.clean) emptyPersistentId.add(client);
      // [MQTT-3.1.2-2]: level 4 is named "MQTT" and level 3 (MQTT 3.1) "MQIsdp"; aedes checks the level alone and
      // accepts "MQTT" at level 3. An unsupported level makes aedes itself answer CONNACK 1 and close.
      const level = packet.protocolVersion;
      if (!((packet.protocolId === 'MQTT' && level === 4) || (packet.protocolId === 'MQIsdp' && level === 3))) {
        (packet as { protocolVersion: number }).protocolVersion = 0;
        return cb(null, true);
      }
      const keepalive = packet.keepalive ?? 0;
      if (keepalive > opts.maxKeepaliveSeconds) {
        // No CONNACK return code says "keepalive too long": close without one [MQTT-3.2.2-6].
        metrics?.mqttAuthFailures.inc({ reason: 'keepalive-too-long' });
        log.info({ keepalive, limit: opts.maxKeepaliveSeconds }, 'MQTT connection refused: keepalive too long');
        return cb(new Error('keepalive above broker.maxKeepaliveSeconds'), false);
      }
      // Keepalive 0 turns keep-alive off [MQTT-3.1.2-10]; the idle timeout still reclaims a silent (half-open)
      // connection. It is aedes' keepalive timer, which every packet restarts and which closes after 1.5 × keepalive.
      if (keepalive === 0) packet.keepalive = opts.idleTimeoutSeconds / 1.5;
      cb(null, true);
    },
    authenticate(client, username, password, done) {
      const id = username ?? '';
      // [MQTT-3.1.3-8]: an empty client id with CleanSession 0 gets CONNACK 2, in lab mode too.
      if (emptyPersistentId.has(client)) {
        metrics?.mqttAuthFailures.inc({ reason: 'empty-client-id' });
        return done(authError('a persistent session needs a client id', 2), null);
      }
      const reject = (reason: string, code: number, message: string) => {
        metrics?.mqttAuthFailures.inc({ reason });
        log.info({ clientId: excerpt(client.id), username: excerpt(id), address: addressOf(client), reason }, 'MQTT connection refused');
        done(authError(message, code), null);
      };
      // A lab tool (not a device) may not use a provisioned device's id without its token: as client id it would
      // take over the device's session [MQTT-3.1.4-2], and act in its name (commands, retained status).
      const admitLabTool = () => {
        const claimed = id && id !== client.id ? [id, client.id] : [client.id];
        Promise.all(claimed.map((claim) => deps.devices.checkToken(claim, ''))).then(
          (checks) =>
            checks.every((c) => c.result === 'unknown')
              ? done(null, true)
              : reject('device-id-without-token', 4, 'bad username or password'),
          (err: Error) => {
            log.error({ err: err.message }, 'registry lookup failed');
            done(authError('server unavailable', 3), null);
          },
        );
      };
      if (lab && (!id || !password)) return admitLabTool(); // anonymous lab client
      if (!id || !password) return reject('missing-credentials', 4, 'bad username or password');
      deps.devices.checkToken(id, password.toString('utf8')).then(
        (check) => {
          if (check.result === 'unknown') {
            if (lab) return admitLabTool(); // lab mode: any other username is an anonymous tool
            return reject('unknown-device', 4, 'bad username or password');
          }
          if (check.result === 'wrong') return reject('wrong-token', 4, 'bad username or password');
          if (client.id !== id) return reject('client-id-mismatch', 2, 'client id must equal the device id');
          if (check.result === 'revoked') return reject('revoked', 5, 'device revoked');
          devices.set(client, { id: check.device.id, family: check.device.family, zone: check.device.zone });
          done(null, true);
        },
        (err: Error) => {
          log.error({ err: err.message }, 'registry lookup failed');
          done(authError('server unavailable', 3), null);
        },
      );
    },
    authorizePublish(client, packet) {
      if (!client) return 'free'; // the platform itself
      const device = devices.get(client);
      if (lab && !device) return 'free'; // lab mode: tools publish anywhere
      const kind = !device
        ? undefined
        : packet.topic === TOPICS.telemetry(device.id)
          ? 'telemetry'
          : packet.topic === TOPICS.acks(device.id)
            ? 'acks'
            : undefined;
      if (!device || !kind) {
        metrics?.mqttUnauthorized.inc({ action: 'publish' });
        log.warn(
          { device: excerpt(client.id), topic: excerpt(packet.topic) },
          'publish refused: not the device’s own telemetry or acks topic',
        );
        return new Error(`publish to ${packet.topic} not allowed`);
      }
      return { device, kind };
    },
    authorizeSubscribe(client, sub, cb) {
      const device = devices.get(client);
      if (lab && !device) return cb(null, labRefused.has(sub.topic) ? null : sub); // lab mode: tools subscribe anywhere else
      if (device && (sub.topic === TOPICS.errors(device.id) || sub.topic === TOPICS.commands(device.id))) {
        return cb(null, sub);
      }
      metrics?.mqttUnauthorized.inc({ action: 'subscribe' });
      log.warn({ device: excerpt(client.id), topic: excerpt(sub.topic) }, 'subscription refused');
      cb(null, null); // SUBACK 0x80 for this topic; the connection stays
    },
  };
}
