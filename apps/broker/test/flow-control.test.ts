import mqtt from 'mqtt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MqttBroker } from '../src/mqtt-broker.js';

// Publisher flow control over real sockets: a subscriber that stops reading holds the publisher (the
// broker stops reading it, so TCP slows it down) instead of the broker buffering everything; when the
// subscriber reads again, everything arrives, in order, and nothing was dropped.

let broker: MqttBroker | undefined;
const clients: mqtt.MqttClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await broker?.shutdown();
  broker = undefined;
});

async function start(limits: ConstructorParameters<typeof MqttBroker>[0] = {}): Promise<string> {
  broker = new MqttBroker(limits);
  broker.addListener({ protocol: 'tcp', host: '127.0.0.1', port: 0 });
  await broker.startListening();
  return `mqtt://127.0.0.1:${broker.listeners[0]!.port}`;
}

async function connect(url: string, clientId: string): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, { clientId, reconnectPeriod: 0, connectTimeout: 5000 });
  clients.push(client);
  return client;
}

const wait = { timeout: 10_000, interval: 20 };
const PAYLOAD_BYTES = 64 * 1024;
const COUNT = 480; // 30 MiB: well past flowControlBytes (1 MiB here) and what loopback sockets buffer

describe('publisher flow control (real sockets)', () => {
  it('holds a fast QoS 1 publisher while a subscriber stops reading, then delivers everything in order [MQTT-4.6.0-2]', async () => {
    const url = await start({
      limits: { flowControlBytes: 1024 * 1024, flowControlMaxHoldMs: 60_000, maxInflightMessages: 1000 },
    });
    const dropped: unknown[] = [];
    broker!.on('messageDropped', (e) => {
      dropped.push(e);
    });
    const sub = await connect(url, 'sub');
    await sub.subscribeAsync('flow/t', { qos: 1 });
    const received: number[] = [];
    sub.on('message', (_topic, payload) => received.push(payload.readUInt32BE(0)));
    const pub = await connect(url, 'pub');
    const stream = (sub as unknown as { stream: { pause(): void; resume(): void } }).stream;
    stream.pause();

    let acked = 0;
    const publishes: Array<Promise<unknown>> = [];
    for (let i = 0; i < COUNT; i++) {
      const payload = Buffer.alloc(PAYLOAD_BYTES, i & 0xff);
      payload.writeUInt32BE(i, 0);
      const published = pub.publishAsync('flow/t', payload, { qos: 1 });
      published.catch(() => undefined); // a failed test closes the client with publishes pending
      publishes.push(published.then(() => acked++));
    }
    await vi.waitFor(() => expect(broker!.core.counters.publisherHolds).toBeGreaterThanOrEqual(1), wait);
    // The kernel's socket buffers take some more (each drain releases the hold once), then the
    // publisher stays held: its later messages are not read, so they are not acknowledged.
    let before = -1;
    while (acked !== before) {
      before = acked;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    expect(acked).toBeLessThan(COUNT / 2);

    stream.resume();
    await Promise.all(publishes);
    await vi.waitFor(() => expect(received).toHaveLength(COUNT), wait);
    expect(received).toEqual(Array.from({ length: COUNT }, (_, i) => i));
    expect(dropped).toEqual([]);
    expect(broker!.core.counters.slowConsumers).toBe(0);
  });

  it('a subscriber that holds publishers longer than flowControlMaxHoldMs becomes a slow consumer; the publisher goes on', async () => {
    const url = await start({
      limits: { flowControlBytes: 256 * 1024, flowControlMaxHoldMs: 200, sweepIntervalMs: 100 },
    });
    const sub = await connect(url, 'slow');
    await sub.subscribeAsync('flow/t', { qos: 0 });
    const pub = await connect(url, 'pub');
    (sub as unknown as { stream: { pause(): void } }).stream.pause();
    const publishes: Array<Promise<unknown>> = [];
    for (let i = 0; i < COUNT; i++)
      publishes.push(pub.publishAsync('flow/t', Buffer.alloc(PAYLOAD_BYTES), { qos: 1 }));
    // Every publish is acknowledged although the subscriber never reads again.
    await Promise.all(publishes);
    expect(broker!.core.counters.publisherHolds).toBeGreaterThanOrEqual(1);
    expect(broker!.core.counters.slowConsumers).toBeGreaterThanOrEqual(1);
  });
});
