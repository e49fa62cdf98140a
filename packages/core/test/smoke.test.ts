import { describe, expect, it } from 'vitest';
import { connected, makeBroker, TestClient } from './helpers/harness.js';

describe('engine smoke', () => {
  it('[MQTT-3.2.2-1] CONNECT is answered with CONNACK 0, session present 0 for clean session', () => {
    const { broker } = makeBroker();
    const c = new TestClient(broker).connect({ clientId: 'a' });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
  });

  it('routes QoS 0/1/2 publishes to a wildcard subscriber at min(published, granted)', () => {
    const { broker } = makeBroker();
    const sub = connected(broker, 'sub');
    sub.subscribe('a/+', 1);
    expect(sub.take()).toEqual([{ type: 'suback', packetId: 1, returnCodes: [1] }]);
    const pub = connected(broker, 'pub');
    pub.publish('a/b', 'zero', 0);
    pub.publish('a/b', 'one', 1, { packetId: 5 });
    pub.publish('a/b', 'two', 2, { packetId: 6 });
    expect(pub.take()).toEqual([
      { type: 'puback', packetId: 5 },
      { type: 'pubrec', packetId: 6 },
    ]);
    const got = sub.takePublishes();
    expect(got.map((m) => [m.payload, m.qos])).toEqual([
      ['zero', 0],
      ['one', 1],
      ['two', 1],
    ]);
  });

  it('[MQTT-3.1.2-24] closes a client silent for 1.5 x keep-alive and publishes its will', () => {
    const { broker, clock } = makeBroker();
    const watcher = connected(broker, 'w');
    watcher.subscribe('will/#');
    watcher.take();
    const c = connected(broker, 'k', {
      keepaliveSeconds: 10,
      will: { topic: 'will/k', payload: new TextEncoder().encode('gone'), qos: 0, retain: false },
    });
    clock.advance(14_000);
    expect(c.closed).toBe(false);
    clock.advance(2_000);
    expect(c.closed).toBe(true);
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/k', payload: 'gone' }]);
  });
});
