import { describe, expect, it } from 'vitest';
import { bytesOf, connected, makeBroker } from './helpers/harness.js';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe('retained messages', () => {
  it('[MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] stores a retained message and sends it to a new subscriber with RETAIN=1', () => {
    const { broker } = makeBroker();
    const pub = connected(broker, 'pub');
    pub.publish('home/temp', '21', 1, { retain: true, packetId: 1 });
    expect(broker.retained.get('home/temp')).toMatchObject({ topic: 'home/temp', qos: 1 });
    const sub = connected(broker, 'sub');
    sub.subscribe('home/+', 2);
    const [suback, publish] = sub.take();
    expect(suback).toEqual({ type: 'suback', packetId: 1, returnCodes: [2] });
    expect(publish).toMatchObject({ type: 'publish', topic: 'home/temp', qos: 1, retain: true, dup: false });
    expect(publish?.type === 'publish' && text(publish.payload)).toBe('21');
  });

  it('[MQTT-3.3.1-6] a retained message goes to a new subscriber at min(its QoS, granted QoS)', () => {
    const { broker } = makeBroker();
    connected(broker, 'pub').publish('t', 'two', 2, { retain: true, packetId: 1 });
    const sub = connected(broker, 'sub');
    sub.subscribe('t', 1);
    expect(sub.takePublishes()).toMatchObject([{ topic: 't', qos: 1, retain: true }]);
  });

  it('[MQTT-3.3.1-9] a retained message is forwarded to existing subscribers with RETAIN=0', () => {
    const { broker } = makeBroker();
    const sub = connected(broker, 'sub');
    sub.subscribe('t/#');
    sub.take();
    connected(broker, 'pub').publish('t/x', 'live', 0, { retain: true });
    expect(sub.takePublishes()).toMatchObject([{ topic: 't/x', payload: 'live', retain: false }]);
    expect(broker.retained.get('t/x')).toBeDefined();
  });

  it('[MQTT-3.3.1-5] a new retained message replaces the old one on the topic', () => {
    const { broker } = makeBroker();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'old', 0, { retain: true });
    pub.publish('t', 'new', 0, { retain: true });
    pub.publish('t', 'not retained', 0);
    expect(broker.retainedCount).toBe(1);
    const sub = connected(broker, 'sub');
    sub.subscribe('t');
    expect(sub.takePublishes().map((m) => m.payload)).toEqual(['new']);
  });

  it('[MQTT-3.3.1-10] [MQTT-3.3.1-11] an empty retained payload deletes the retained message and is not stored', () => {
    const { broker } = makeBroker();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'keep me', 0, { retain: true });
    const current = connected(broker, 'current');
    current.subscribe('t');
    current.take();
    pub.publish('t', '', 0, { retain: true });
    // Delivered to the current subscriber as a normal message.
    expect(current.takePublishes()).toMatchObject([{ topic: 't', payload: '', retain: false }]);
    expect(broker.retained.get('t')).toBeUndefined();
    expect(broker.retainedCount).toBe(0);
    const later = connected(broker, 'later');
    later.subscribe('t');
    expect(later.take()).toEqual([{ type: 'suback', packetId: 1, returnCodes: [0] }]);
  });

  it('[MQTT-3.3.1-11] an empty retained payload on a topic without a retained message stores nothing', () => {
    const { broker } = makeBroker();
    connected(broker, 'pub').publish('never', '', 1, { retain: true, packetId: 1 });
    expect(broker.retainedCount).toBe(0);
    expect(broker.retained.list()).toEqual([]);
  });

  it('[MQTT-3.3.1-7] a retained QoS 0 message replaces the previous retained message too', () => {
    const { broker } = makeBroker();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'q1', 1, { retain: true, packetId: 1 });
    pub.publish('t', 'q0', 0, { retain: true });
    expect(broker.retained.list().map((m) => [m.topic, text(m.payload), m.qos])).toEqual([['t', 'q0', 0]]);
  });

  it('a wildcard subscription receives every matching retained message, but $ topics only from $ filters', () => {
    const { broker } = makeBroker();
    broker.retained.set('a/1', 'one');
    broker.retained.set('a/2', 'two');
    broker.retained.set('b/1', 'other');
    broker.retained.set('$SYS/x', 'sys');
    const sub = connected(broker, 'sub');
    sub.subscribe('#');
    expect(
      sub
        .takePublishes()
        .map((m) => m.topic)
        .sort(),
    ).toEqual(['a/1', 'a/2', 'b/1']);
  });
});

describe('the retained view', () => {
  it('list, get, set and delete the retained messages; set does not send to current subscribers', () => {
    const { broker } = makeBroker();
    const sub = connected(broker, 'sub');
    sub.subscribe('v/#', 2);
    sub.take();
    broker.retained.set('v/a', 'A', 1);
    broker.retained.set('v/b', bytesOf('B'));
    expect(sub.take()).toEqual([]);
    expect(
      broker.retained
        .list()
        .map((m) => [m.topic, text(m.payload), m.qos])
        .sort(),
    ).toEqual([
      ['v/a', 'A', 1],
      ['v/b', 'B', 0],
    ]);
    expect(broker.retained.get('v/a')).toMatchObject({ topic: 'v/a', qos: 1 });
    expect(broker.retained.get('v/zzz')).toBeUndefined();
    expect(broker.retained.delete('v/a')).toBe(true);
    expect(broker.retained.delete('v/a')).toBe(false);
    broker.retained.set('v/b', '');
    expect(broker.retainedCount).toBe(0);
    expect(() => broker.retained.set('v/+', 'x')).toThrow(
      expect.objectContaining({ code: 'CORE_INVALID_ARGUMENT', referenceCode: 601 }),
    );
    const late = connected(broker, 'late');
    late.subscribe('v/#');
    expect(late.takePublishes()).toEqual([]);
  });

  it('a message set through the view reaches later subscribers with RETAIN=1', () => {
    const { broker } = makeBroker();
    broker.retained.set('cfg', 'value', 1);
    const sub = connected(broker, 'sub');
    sub.subscribe('cfg', 1);
    expect(sub.takePublishes()).toMatchObject([{ topic: 'cfg', payload: 'value', qos: 1, retain: true }]);
  });
});

describe('broker.publish (server side)', () => {
  it('routes to subscribers at min(QoS, granted) and retains when asked', () => {
    const { broker } = makeBroker();
    const sub = connected(broker, 'sub');
    sub.subscribe('srv/#', 1);
    sub.take();
    broker.publish({ topic: 'srv/a', payload: 'hello', qos: 2, retain: true });
    broker.publish({ topic: 'srv/b', payload: bytesOf('plain') });
    expect(sub.takePublishes()).toMatchObject([
      { topic: 'srv/a', payload: 'hello', qos: 1, retain: false },
      { topic: 'srv/b', payload: 'plain', qos: 0, retain: false },
    ]);
    expect(broker.retained.get('srv/a')).toMatchObject({ qos: 2 });
    expect(broker.retained.get('srv/b')).toBeUndefined();
    const later = connected(broker, 'later');
    later.subscribe('srv/#', 2);
    expect(later.takePublishes()).toMatchObject([{ topic: 'srv/a', payload: 'hello', qos: 2, retain: true }]);
  });

  it('rejects an invalid topic or QoS with CORE_INVALID_ARGUMENT', () => {
    const { broker } = makeBroker();
    expect(() => broker.publish({ topic: 'a/#', payload: 'x' })).toThrow(
      expect.objectContaining({ code: 'CORE_INVALID_ARGUMENT', referenceCode: 601 }),
    );
    expect(() => broker.publish({ topic: 'a', payload: 'x', qos: 3 as 0 })).toThrow(
      expect.objectContaining({ code: 'CORE_INVALID_ARGUMENT' }),
    );
  });

  it('the payload is copied: changing the caller’s buffer later changes nothing', () => {
    const { broker } = makeBroker();
    const payload = bytesOf('orig');
    broker.publish({ topic: 'c', payload, retain: true });
    payload.fill(0x58);
    expect(text(broker.retained.get('c')!.payload)).toBe('orig');
  });
});
