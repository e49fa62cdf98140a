import mqtt from 'mqtt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MqttBroker } from '../src/mqtt-broker.js';
import { BrokerStats } from '../src/stats.js';
import { type SysTopics, startSysTopics } from '../src/sys-topics.js';

let broker: MqttBroker | undefined;
let sys: SysTopics | undefined;
const clients: mqtt.MqttClient[] = [];

afterEach(async () => {
  sys?.stop();
  sys = undefined;
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await broker?.shutdown();
  broker = undefined;
});

async function startBroker(): Promise<{ broker: MqttBroker; url: string }> {
  const b = new MqttBroker();
  broker = b;
  b.addListener({ protocol: 'tcp', host: '127.0.0.1', port: 0 });
  await b.startListening();
  return { broker: b, url: `mqtt://127.0.0.1:${b.listeners[0]!.port}` };
}

async function connect(url: string, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  clients.push(client);
  return client;
}

/** Every message a client gets, in order. */
function record(client: mqtt.MqttClient): Array<{ topic: string; payload: string }> {
  const seen: Array<{ topic: string; payload: string }> = [];
  client.on('message', (topic, payload) => seen.push({ topic, payload: payload.toString() }));
  return seen;
}

/** The last payload received on a topic. */
function latest(seen: Array<{ topic: string; payload: string }>, topic: string): string | undefined {
  let payload: string | undefined;
  for (const m of seen) if (m.topic === topic) payload = m.payload;
  return payload;
}

const wait = { timeout: 4000, interval: 20 };

describe('$SYS topics', () => {
  it('publishes version, uptime, client and message counts, and follows changes', async () => {
    const { broker, url } = await startBroker();
    const stats = new BrokerStats(broker);
    sys = startSysTopics(broker, stats, { intervalSeconds: 1, version: 'mqtt-broker 9.9.9' });

    const watcher = await connect(url, { clientId: 'watcher' });
    const seen = record(watcher);
    await watcher.subscribeAsync('$SYS/#');
    // The retained values of the first round arrive at once.
    await vi.waitFor(() => expect(latest(seen, '$SYS/broker/version')).toBe('mqtt-broker 9.9.9'), wait);
    expect(latest(seen, '$SYS/broker/uptime')).toMatch(/^\d+ seconds$/);
    // A later round counts the watcher itself.
    await vi.waitFor(() => expect(latest(seen, '$SYS/broker/clients/connected')).toBe('1'), wait);

    const other = await connect(url, { clientId: 'other', clean: false });
    for (let i = 0; i < 3; i++) await other.publishAsync('room/1', `m${i}`, { qos: 1 });
    await vi.waitFor(() => {
      expect(latest(seen, '$SYS/broker/clients/connected')).toBe('2');
      expect(latest(seen, '$SYS/broker/clients/maximum')).toBe('2');
      expect(latest(seen, '$SYS/broker/messages/received')).toBe('3');
    }, wait);

    // A persistent session that goes offline stays in total and shows in disconnected.
    await other.endAsync();
    await vi.waitFor(() => {
      expect(latest(seen, '$SYS/broker/clients/connected')).toBe('1');
      expect(latest(seen, '$SYS/broker/clients/total')).toBe('2');
      expect(latest(seen, '$SYS/broker/clients/disconnected')).toBe('1');
      expect(latest(seen, '$SYS/broker/clients/maximum')).toBe('2');
    }, wait);
    expect(latest(seen, '$SYS/broker/subscriptions/count')).toBe('1');
    // Rounds after the first send only what changed: the version came once, with the retained set.
    expect(seen.filter((m) => m.topic === '$SYS/broker/version')).toHaveLength(1);
    expect(seen.filter((m) => m.topic === '$SYS/broker/uptime').length).toBeGreaterThan(1);
  });

  it('[MQTT-4.7.2-1] does not send $SYS topics to a client subscribed to #', async () => {
    const { broker, url } = await startBroker();
    sys = startSysTopics(broker, new BrokerStats(broker), { intervalSeconds: 1, version: 'v' });
    const everything = await connect(url);
    const seenAll = record(everything);
    await everything.subscribeAsync(['#', '+/broker/#']);
    const watcher = await connect(url);
    const seenSys = record(watcher);
    await watcher.subscribeAsync('$SYS/broker/uptime');
    await watcher.publishAsync('plain/topic', 'x', { qos: 1 });
    // Wait for a live round (the first message is the retained one) and the plain message.
    await vi.waitFor(() => {
      expect(seenSys.length).toBeGreaterThanOrEqual(2);
      expect(seenAll.some((m) => m.topic === 'plain/topic')).toBe(true);
    }, wait);
    expect(seenAll.filter((m) => m.topic.startsWith('$'))).toEqual([]);
  });

  it('stops publishing after stop()', async () => {
    const { broker, url } = await startBroker();
    sys = startSysTopics(broker, new BrokerStats(broker), { intervalSeconds: 1, version: 'v' });
    const watcher = await connect(url);
    const seen = record(watcher);
    await watcher.subscribeAsync('$SYS/broker/uptime');
    await vi.waitFor(() => expect(seen.length).toBeGreaterThanOrEqual(2), wait);
    sys.stop();
    const count = seen.length;
    await new Promise((resolve) => setTimeout(resolve, 1300));
    expect(seen.length).toBe(count);
  });

  it('publishes the first round at once, retained, and the store count only when known', async () => {
    const { broker } = await startBroker();
    const stats = new BrokerStats(broker, { storedMessages: () => 42 });
    sys = startSysTopics(broker, stats, { intervalSeconds: 60, version: 'v1' });
    const text = (topic: string) => {
      const m = broker.messages.get(topic);
      return m === undefined ? undefined : Buffer.from(m.payload).toString();
    };
    expect(text('$SYS/broker/version')).toBe('v1');
    expect(text('$SYS/broker/clients/connected')).toBe('0');
    expect(text('$SYS/broker/retained messages/count')).toBe('0');
    expect(text('$SYS/broker/store/messages/count')).toBe('42');
    expect(text('$SYS/broker/bytes/received')).toBe('0');
    expect(text('$SYS/broker/flow-control/holds')).toBe('0');
    expect(text('$SYS/broker/flow-control/slow-consumers')).toBe('0');
  });

  it('is off with intervalSeconds 0, removing stale values, and refuses intervals setInterval cannot hold', async () => {
    const { broker } = await startBroker();
    const stats = new BrokerStats(broker);
    // As restored from the store after an earlier run with $SYS on.
    broker.messages.set('$SYS/broker/clients/connected', '5');
    startSysTopics(broker, stats, { intervalSeconds: 0, version: 'v' }).stop();
    expect(broker.messages.list()).toEqual([]);
    expect(() => startSysTopics(broker, stats, { intervalSeconds: -1, version: 'v' })).toThrow(RangeError);
    expect(() => startSysTopics(broker, stats, { intervalSeconds: 3_000_000, version: 'v' })).toThrow(
      RangeError,
    );
    expect(broker.messages.list()).toEqual([]);
  });
});
