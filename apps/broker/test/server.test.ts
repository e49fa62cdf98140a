import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestServer } from './helpers/server.js';

type Server = Awaited<ReturnType<typeof startTestServer>>;
let server: Server | undefined;
const clients: mqtt.MqttClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await server?.stop();
  server = undefined;
});

async function connect(url: string, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  clients.push(client);
  return client;
}

function nextMessage(
  client: mqtt.MqttClient,
): Promise<{ topic: string; payload: string; packet: mqtt.IPublishPacket }> {
  return new Promise((resolve) => {
    client.once('message', (topic, payload, packet) =>
      resolve({ topic, payload: payload.toString(), packet }),
    );
  });
}

describe('the server with MQTT.js', () => {
  it.each(['tcp', 'ws'] as const)('routes a message between two clients over %s', async (kind) => {
    server = await startTestServer();
    const url = kind === 'tcp' ? server.url : server.wsUrl;
    const sub = await connect(url, { clientId: 'sub' });
    await sub.subscribeAsync('room/+', { qos: 1 });
    const pub = await connect(url, { clientId: 'pub' });
    const received = nextMessage(sub);
    await pub.publishAsync('room/1', 'hello', { qos: 1 });
    const message = await received;
    expect(message.topic).toBe('room/1');
    expect(message.payload).toBe('hello');
    expect(message.packet.qos).toBe(1);
  });

  it('[MQTT-3.3.1-6] sends a retained message to a later subscriber with RETAIN set', async () => {
    server = await startTestServer();
    const pub = await connect(server.url);
    await pub.publishAsync('status/lamp', 'on', { qos: 1, retain: true });
    const sub = await connect(server.url);
    const received = nextMessage(sub);
    await sub.subscribeAsync('status/#');
    const message = await received;
    expect(message.payload).toBe('on');
    expect(message.packet.retain).toBe(true);
  });
});
