import { createServer } from 'node:net';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type MetricsServer, startMetricsServer } from '../src/metrics.js';
import { MqttBroker } from '../src/mqtt-broker.js';
import { BrokerStats } from '../src/stats.js';

let broker: MqttBroker | undefined;
let metrics: MetricsServer | undefined;
const clients: mqtt.MqttClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await metrics?.close();
  metrics = undefined;
  await broker?.shutdown();
  broker = undefined;
});

async function start(options: { storedMessages?: () => number | undefined } = {}) {
  const b = new MqttBroker();
  broker = b;
  b.addListener({ protocol: 'tcp', host: '127.0.0.1', port: 0 });
  await b.startListening();
  const stats = new BrokerStats(b, options);
  const m = await startMetricsServer(b, stats, { port: 0, host: '127.0.0.1' });
  metrics = m;
  return { broker: b, url: `mqtt://127.0.0.1:${b.listeners[0]!.port}`, http: `http://127.0.0.1:${m.port}` };
}

async function connect(url: string, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  clients.push(client);
  return client;
}

async function get(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(url, init);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** The value of a sample line (`name{labels} value`), or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const wait = { timeout: 4000, interval: 20 };

describe('metrics endpoint', () => {
  it('serves mqtt_broker_* and process metrics in Prometheus text format', async () => {
    const { url, http } = await start();
    const client = await connect(url);
    await client.subscribeAsync('room/#', { qos: 1 });
    await client.publishAsync('room/1', 'a', { qos: 1 });

    const first = await get(`${http}/metrics`);
    expect(first.status).toBe(200);
    expect(first.type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(first.body).toContain('\nmqtt_broker_connected_clients 1\n');
    expect(first.body).toContain('# TYPE mqtt_broker_messages_received_total counter');
    expect(sample(first.body, 'mqtt_broker_sessions')).toBe(1);
    expect(sample(first.body, 'mqtt_broker_subscriptions')).toBe(1);
    expect(sample(first.body, 'mqtt_broker_messages_received_total')).toBe(1);
    expect(sample(first.body, 'mqtt_broker_listening')).toBe(1);
    expect(sample(first.body, 'mqtt_broker_uptime_seconds')).toBeGreaterThanOrEqual(0);
    expect(sample(first.body, 'mqtt_broker_messages_dropped_total{reason="queue-full"}')).toBe(0);
    expect(sample(first.body, 'mqtt_broker_publisher_holds_total')).toBe(0);
    expect(sample(first.body, 'mqtt_broker_slow_consumers_total')).toBe(0);
    expect(first.body).toContain('process_cpu_user_seconds_total');
    // No store count given: the series is absent rather than a misleading 0.
    expect(first.body).not.toContain('mqtt_broker_stored_messages');

    // Counters keep counting across scrapes (they advance by the difference).
    await client.publishAsync('room/2', 'b', { qos: 1, retain: true });
    await client.publishAsync('room/3', 'c', { qos: 0 });
    await vi.waitFor(async () => {
      const body = (await get(`${http}/metrics`)).body;
      expect(sample(body, 'mqtt_broker_messages_received_total')).toBe(3);
      // QoS 1 deliveries count once acknowledged, so wait for all three.
      expect(sample(body, 'mqtt_broker_messages_sent_total')).toBe(3);
      expect(sample(body, 'mqtt_broker_retained_messages')).toBe(1);
    }, wait);
  });

  it('counts dropped messages by reason and shows the store count when known', async () => {
    const { broker, url, http } = await start({ storedMessages: () => 7 });
    broker.on('publishRequest', (e) => {
      e.accept = e.topic !== 'forbidden';
    });
    const client = await connect(url);
    await client.publishAsync('forbidden', 'x', { qos: 1 });
    const { body } = await get(`${http}/metrics`);
    expect(sample(body, 'mqtt_broker_messages_dropped_total{reason="not-authorized"}')).toBe(1);
    expect(sample(body, 'mqtt_broker_stored_messages')).toBe(7);
  });

  it('answers /healthz with 200 while listening and 503 after stopListening; 404 elsewhere', async () => {
    const { broker, http } = await start();
    expect(await get(`${http}/healthz`)).toMatchObject({ status: 200, body: 'ok\n' });
    expect((await get(`${http}/nothing`)).status).toBe(404);
    expect((await get(`${http}/`)).status).toBe(404);
    expect((await get(`${http}/metrics`, { method: 'POST' })).status).toBe(405);
    await broker.stopListening();
    expect((await get(`${http}/healthz`)).status).toBe(503);
    expect(sample((await get(`${http}/metrics`)).body, 'mqtt_broker_listening')).toBe(0);
  });

  it('frees its port on close(), and rejects a port in use', async () => {
    const { http } = await start();
    const port = metrics!.port;
    await get(`${http}/metrics`); // leaves a keep-alive connection open
    await metrics!.close();
    metrics = undefined;
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, '127.0.0.1', resolve);
    });
    try {
      await expect(
        startMetricsServer(broker!, new BrokerStats(broker!), { port, host: '127.0.0.1' }),
      ).rejects.toThrow(/cannot listen on 127\.0\.0\.1/);
    } finally {
      await new Promise((resolve) => probe.close(resolve));
    }
  });
});
