import type { QoS } from '@broker/codec';
import { describe, expect, it } from 'vitest';
import { bytesOf, collect, connected, makeBroker, TestClient } from './helpers/harness.js';

function setup(willQos: QoS = 0, retain = false) {
  const { broker, clock } = makeBroker();
  const watcher = connected(broker, 'watcher');
  watcher.subscribe('will/#', 2);
  watcher.take();
  const disconnected = collect(broker, 'disconnected');
  const client = connected(broker, 'mortal', {
    keepaliveSeconds: 5,
    will: { topic: 'will/mortal', payload: bytesOf('last words'), qos: willQos, retain },
  });
  return { broker, clock, watcher, client, disconnected };
}

describe('the will message is published on an abnormal end [MQTT-3.1.2-8]', () => {
  it('[MQTT-3.1.2-8] on a keep-alive timeout', () => {
    const { clock, watcher, client, disconnected } = setup();
    clock.advance(7_500);
    expect(watcher.take()).toEqual([]);
    clock.advance(1_000);
    expect(client.closed).toBe(true);
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/mortal', payload: 'last words' }]);
    expect(disconnected).toMatchObject([{ clientId: 'mortal', willPublished: true }]);
  });

  it('[MQTT-3.1.2-8] when the client closes the socket without DISCONNECT', () => {
    const { watcher, client, disconnected } = setup();
    client.peer.close();
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/mortal', payload: 'last words' }]);
    expect(disconnected).toMatchObject([{ clientId: 'mortal', willPublished: true }]);
  });

  it('[MQTT-3.1.2-8] on a protocol error', () => {
    const { watcher, client } = setup();
    client.connect({ clientId: 'mortal' }); // a second CONNECT [MQTT-3.1.0-2]
    expect(client.closed).toBe(true);
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/mortal' }]);
  });

  it('[MQTT-3.1.2-8] [MQTT-3.1.4-2] on a takeover by another connection with the same client id', () => {
    const { broker, watcher, client } = setup();
    const successor = new TestClient(broker).connect({ clientId: 'mortal' });
    expect(client.closed).toBe(true);
    expect(successor.closed).toBe(false);
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/mortal' }]);
  });

  it('[MQTT-3.1.2-8] on a server-side disconnect', () => {
    const { broker, watcher, client } = setup();
    broker.disconnect('mortal');
    expect(client.closed).toBe(true);
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/mortal' }]);
  });

  it('is published once, even when several ends follow each other', () => {
    const { broker, watcher, client } = setup();
    client.peer.close();
    broker.disconnect(client.connectionId);
    expect(watcher.takePublishes()).toHaveLength(1);
  });
});

describe('the will message is not published after DISCONNECT', () => {
  it('[MQTT-3.1.2-10] [MQTT-3.14.4-3] DISCONNECT discards the will', () => {
    const { clock, watcher, client, disconnected } = setup();
    client.disconnect();
    expect(client.closed).toBe(true);
    clock.advance(60_000);
    expect(watcher.take()).toEqual([]);
    expect(disconnected).toMatchObject([{ clientId: 'mortal', statusCode: 0, willPublished: false }]);
  });

  it('[MQTT-3.14.4-1] the server closes the connection after DISCONNECT and ignores anything after it', () => {
    const { watcher, client } = setup();
    client.disconnect().publish('will/late', 'too late');
    expect(client.closed).toBe(true);
    expect(watcher.take()).toEqual([]);
  });
});

describe('will QoS and retain', () => {
  it('[MQTT-3.1.2-14] [MQTT-3.1.2-15] the will is published with its QoS', () => {
    const { watcher, client } = setup(2);
    client.peer.close();
    const [will] = watcher.takePublishes();
    expect(will).toMatchObject({ topic: 'will/mortal', qos: 2, retain: false });
  });

  it('[MQTT-3.1.2-17] a will with retain 1 is published as retained: a later subscriber gets it with RETAIN=1', () => {
    const { broker, watcher, client } = setup(1, true);
    client.peer.close();
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/mortal', qos: 1, retain: false }]);
    expect(broker.retained.get('will/mortal')).toMatchObject({ qos: 1 });
    const later = connected(broker, 'later');
    later.subscribe('will/+', 2);
    expect(later.takePublishes()).toMatchObject([
      { topic: 'will/mortal', payload: 'last words', qos: 1, retain: true },
    ]);
  });

  it('[MQTT-3.1.2-16] a will with retain 0 is not retained', () => {
    const { broker, client } = setup(1, false);
    client.peer.close();
    expect(broker.retained.get('will/mortal')).toBeUndefined();
  });

  it('a will of QoS 1 is queued for an offline persistent subscriber', () => {
    const { broker, client } = setup(1);
    const offline = connected(broker, 'offline', { cleanSession: false });
    offline.subscribe('will/#', 1);
    offline.disconnect();
    client.peer.close();
    const back = connected(broker, 'offline', { cleanSession: false });
    expect(back.takePublishes()).toMatchObject([{ topic: 'will/mortal', qos: 1 }]);
  });
});

describe('broker.close()', () => {
  it('disconnects everyone without publishing wills, and accepts no new connection', () => {
    const { broker, watcher, client, disconnected } = setup(1, true);
    broker.close();
    expect(client.closed).toBe(true);
    expect(watcher.closed).toBe(true);
    expect(watcher.take()).toEqual([]);
    expect(broker.retained.get('will/mortal')).toBeUndefined();
    expect(disconnected.every((e) => !e.willPublished)).toBe(true);
    expect(disconnected).toHaveLength(2);
    expect(broker.connections).toEqual([]);
    expect(new TestClient(broker).closed).toBe(true);
  });

  it('stops the timeout sweep: no timers are left on the clock', () => {
    const { broker, clock } = setup();
    broker.close();
    expect(clock.pendingTimers).toBe(0);
  });
});
