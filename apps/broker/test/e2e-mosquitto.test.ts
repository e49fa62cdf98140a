/**
 * End to end: Debian's mosquitto_pub and mosquitto_sub (libmosquitto, an independent MQTT client
 * implementation) against the real server over TCP and TLS.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/server.js';
import { createE2eCerts, type E2eCerts } from './helpers/certs.js';
import { ChildPool, portOf, skipWithout, waitUntil } from './helpers/clients.js';
import { startTestServer } from './helpers/server.js';

const PUB = '/usr/bin/mosquitto_pub';
const SUB = '/usr/bin/mosquitto_sub';
const missing = skipWithout(PUB) || skipWithout(SUB);

let certs: E2eCerts | undefined;
let server: RunningServer | undefined;
const children = new ChildPool();

afterEach(() => children.killAll());

afterAll(async () => {
  await children.killAll();
  await server?.stop();
  certs?.cleanup();
});

describe.skipIf(missing)('mosquitto_pub and mosquitto_sub', () => {
  beforeAll(async () => {
    certs = createE2eCerts();
    server = await startTestServer({
      listeners: [
        { protocol: 'tcp', host: '127.0.0.1', port: 0 },
        {
          protocol: 'tls',
          host: '127.0.0.1',
          port: 0,
          certificate: { certFile: certs.serverCert, keyFile: certs.serverKey },
        },
      ],
    });
  });

  let seq = 0;

  /** Connection flags for mosquitto_* over a transport: TLS verifies the server against the test CA. */
  function target(transport: 'tcp' | 'tls'): string[] {
    const args = ['-h', '127.0.0.1', '-p', String(portOf(server!, transport))];
    return transport === 'tls' ? [...args, '--cafile', certs!.caCert] : args;
  }

  /** Starts mosquitto_sub and waits until the broker holds its subscription. */
  async function subscribe(
    transport: 'tcp' | 'tls',
    topic: string,
    qos: number,
    count: number,
    extra: string[] = [],
    wait = true,
  ) {
    const clientId = `msub-${transport}-${++seq}`;
    const child = children.spawn(SUB, [
      ...target(transport),
      '-i',
      clientId,
      '-t',
      topic,
      '-q',
      String(qos),
      '-C',
      String(count),
      '-W',
      '10',
      // retain flag, QoS, topic, payload
      '-F',
      '%r %q %t %p',
      ...extra,
    ]);
    if (!wait) return child;
    await waitUntil(
      () =>
        server!.broker.sessions.some((s) => s.clientId === clientId && s.subTopicFilters.includes(topic)) ||
        !child.isRunning,
      8000,
      `mosquitto_sub ${clientId} to subscribe`,
    );
    if (!child.isRunning) {
      const result = await child.exited;
      throw new Error(`mosquitto_sub exited early (${result.code}): ${result.stderr}`);
    }
    return child;
  }

  async function publish(
    transport: 'tcp' | 'tls',
    topic: string,
    message: string,
    args: string[] = [],
  ): Promise<void> {
    const result = await children
      .spawn(PUB, [...target(transport), '-t', topic, '-m', message, ...args])
      .wait(10_000);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  }

  describe.each(['tcp', 'tls'] as const)('over %s', (transport) => {
    it.each([
      ['[MQTT-3.3.5-1]', 0],
      ['[MQTT-4.3.2-1]', 1],
      ['[MQTT-4.3.3-1]', 2],
    ])('%s mosquitto_sub receives what mosquitto_pub sends at QoS %i', async (_cite, qos) => {
      const topic = `mosq/${transport}/qos${qos}`;
      const sub = await subscribe(transport, topic, qos, 2);
      await publish(transport, topic, 'first message', ['-q', String(qos)]);
      await publish(transport, topic, 'zweite Nachricht – ü € 😀', ['-q', String(qos)]);
      const result = await sub.wait(10_000);
      expect(result.code).toBe(0);
      expect(result.stdout.split('\n').filter(Boolean)).toEqual([
        `0 ${qos} ${topic} first message`,
        `0 ${qos} ${topic} zweite Nachricht – ü € 😀`,
      ]);
    });

    it('[MQTT-3.3.1-6] a retained message (-r) reaches a later mosquitto_sub with the retain flag', async () => {
      const topic = `mosq/${transport}/retained`;
      await publish(transport, topic, 'kept', ['-q', '1', '-r']);
      await waitUntil(() => server!.broker.messages.get(topic) !== undefined, 3000, 'the retained message');
      // It may get the retained message and exit before a subscription could be observed.
      const sub = await subscribe(transport, topic, 1, 1, [], false);
      const result = await sub.wait(10_000);
      expect(result.code).toBe(0);
      expect(result.stdout.trim()).toBe(`1 1 ${topic} kept`);
    });

    it('[MQTT-3.1.2-2] MQTT 3.1 clients ("MQIsdp", -V mqttv31) publish and subscribe too', async () => {
      const topic = `mosq/${transport}/v31`;
      const sub = await subscribe(transport, topic, 2, 1, ['-V', 'mqttv31']);
      await publish(transport, topic, 'old protocol', ['-q', '2', '-V', 'mqttv31']);
      const result = await sub.wait(10_000);
      expect(result.code).toBe(0);
      expect(result.stdout.trim()).toBe(`0 2 ${topic} old protocol`);
    });
  });
});
