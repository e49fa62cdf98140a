import type { QoS } from '@broker/codec';
import { describe, expect, it } from 'vitest';
import { collect, connected, flush, makeBroker } from './helpers/harness.js';

describe('SUBACK', () => {
  it('[MQTT-3.8.4-1] [MQTT-3.8.4-4] [MQTT-3.8.4-5] answers one return code per filter, in order, with the same packet id', () => {
    const { broker } = makeBroker();
    const c = connected(broker, 'c');
    c.send({
      type: 'subscribe',
      packetId: 4242,
      subscriptions: [
        { topicFilter: 'a/2', qos: 2 },
        { topicFilter: 'a/0', qos: 0 },
        { topicFilter: 'a/+/1', qos: 1 },
        { topicFilter: '#', qos: 0 },
      ],
    });
    expect(c.take()).toEqual([{ type: 'suback', packetId: 4242, returnCodes: [2, 0, 1, 0] }]);
  });

  it('[MQTT-3.8.4-6] delivers at min(published QoS, granted QoS)', () => {
    const { broker } = makeBroker();
    const subs = ([0, 1, 2] as QoS[]).map((granted) => {
      const s = connected(broker, `s${granted}`);
      s.subscribe('q', granted);
      s.take();
      return s;
    });
    const pub = connected(broker, 'pub');
    pub.publish('q', 'p0', 0);
    pub.publish('q', 'p1', 1, { packetId: 1 });
    pub.publish('q', 'p2', 2, { packetId: 2 });
    const got = subs.map((s) => s.takePublishes().map((m) => m.qos));
    expect(got).toEqual([
      [0, 0, 0],
      [0, 1, 1],
      [0, 1, 2],
    ]);
  });

  it('[MQTT-3.8.4-3] a SUBSCRIBE on an existing filter replaces its QoS and re-sends matching retained messages', () => {
    const { broker } = makeBroker();
    broker.retained.set('r/1', 'kept', 2);
    const c = connected(broker, 'c');
    c.subscribe('r/#', 0, 1);
    expect(c.take()).toMatchObject([
      { type: 'suback', returnCodes: [0] },
      { type: 'publish', topic: 'r/1', qos: 0, retain: true },
    ]);
    c.subscribe('r/#', 2, 2);
    const [suback, publish] = c.take();
    expect(suback).toEqual({ type: 'suback', packetId: 2, returnCodes: [2] });
    expect(publish).toMatchObject({ type: 'publish', topic: 'r/1', qos: 2, retain: true });
    expect(broker.sessions[0]!.subscriptions).toEqual([{ topicFilter: 'r/#', qos: 2 }]);
    const pub = connected(broker, 'pub');
    pub.publish('r/2', 'new', 2, { packetId: 5 });
    expect(c.takePublishes()).toMatchObject([{ topic: 'r/2', qos: 2 }]);
  });

  it('[MQTT-3.3.5-1] overlapping subscriptions deliver one copy, at the highest matching QoS', () => {
    const { broker } = makeBroker();
    const c = connected(broker, 'c');
    c.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [
        { topicFilter: 'a/#', qos: 0 },
        { topicFilter: 'a/+', qos: 2 },
        { topicFilter: 'a/b', qos: 1 },
      ],
    });
    c.take();
    const pub = connected(broker, 'pub');
    pub.publish('a/b', 'once', 2, { packetId: 3 });
    expect(c.takePublishes()).toMatchObject([{ topic: 'a/b', payload: 'once', qos: 2 }]);
    pub.publish('a/b/c', 'deep', 2, { packetId: 4 });
    expect(c.takePublishes()).toMatchObject([{ topic: 'a/b/c', qos: 0 }]);
  });

  it('[MQTT-4.7.2-1] topics starting with $ are not matched by # or +/...', () => {
    const { broker } = makeBroker();
    const all = connected(broker, 'all');
    all.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [
        { topicFilter: '#', qos: 0 },
        { topicFilter: '+/info', qos: 0 },
      ],
    });
    all.take();
    const sys = connected(broker, 'sys');
    sys.subscribe('$SYS/#');
    sys.take();
    broker.publish({ topic: '$SYS/info', payload: 'uptime' });
    broker.publish({ topic: 'app/info', payload: 'normal' });
    expect(all.takePublishes().map((m) => m.topic)).toEqual(['app/info']);
    expect(sys.takePublishes().map((m) => m.topic)).toEqual(['$SYS/info']);
  });
});

describe('the authorizeSubscribe hook', () => {
  it('may lower the granted QoS and refuse a filter with 0x80; a refused filter gets nothing', () => {
    const { broker } = makeBroker({
      hooks: {
        authorizeSubscribe: (r) =>
          r.topicFilter.startsWith('secret') ? 0x80 : r.topicFilter === 'capped' ? 0 : 2,
      },
    });
    const c = connected(broker, 'c');
    c.send({
      type: 'subscribe',
      packetId: 9,
      subscriptions: [
        { topicFilter: 'secret/#', qos: 1 },
        { topicFilter: 'capped', qos: 2 },
        { topicFilter: 'open', qos: 1 },
      ],
    });
    // The hook answered 2 for 'open', but cannot grant more than was asked.
    expect(c.take()).toEqual([{ type: 'suback', packetId: 9, returnCodes: [0x80, 0, 1] }]);
    const pub = connected(broker, 'pub');
    pub.publish('secret/x', 's', 1, { packetId: 1 });
    pub.publish('capped', 'c', 2, { packetId: 2 });
    pub.publish('open', 'o', 2, { packetId: 3 });
    expect(c.takePublishes().map((m) => [m.topic, m.qos])).toEqual([
      ['capped', 0],
      ['open', 1],
    ]);
    expect(broker.sessions.find((s) => s.clientId === 'c')!.subscriptions.map((s) => s.topicFilter)).toEqual([
      'capped',
      'open',
    ]);
  });

  it('async decisions are awaited and the SUBACK keeps the order of the filters', async () => {
    const { broker } = makeBroker({
      hooks: {
        authorizeSubscribe: async (r) => (r.topicFilter === 'no' ? 0x80 : 1),
      },
    });
    const subscribed = collect(broker, 'subscribed');
    const c = connected(broker, 'c');
    c.send({
      type: 'subscribe',
      packetId: 3,
      subscriptions: [
        { topicFilter: 'yes', qos: 2 },
        { topicFilter: 'no', qos: 1 },
        { topicFilter: 'also', qos: 0 },
      ],
    });
    c.send({ type: 'pingreq' });
    expect(c.take()).toEqual([]);
    await flush();
    expect(c.take()).toEqual([
      { type: 'suback', packetId: 3, returnCodes: [1, 0x80, 0] },
      { type: 'pingresp' },
    ]);
    expect(subscribed.map((e) => [e.topicFilter, e.requestedQos, e.returnCode])).toEqual([
      ['yes', 2, 1],
      ['no', 1, 0x80],
      ['also', 0, 0],
    ]);
  });

  it('a rejected async decision answers 0x80', async () => {
    const { broker } = makeBroker({
      hooks: {
        authorizeSubscribe: () => Promise.reject(new Error('no')),
      },
    });
    const c = connected(broker, 'c');
    c.subscribe('x', 1, 5);
    await flush();
    expect(c.take()).toEqual([{ type: 'suback', packetId: 5, returnCodes: [0x80] }]);
  });
});

describe('limits.maxSubscriptionsPerClient', () => {
  it('answers 0x80 to subscriptions beyond the limit; replacing an existing filter is allowed', () => {
    const { broker } = makeBroker({ limits: { maxSubscriptionsPerClient: 2 } });
    const c = connected(broker, 'c');
    c.subscribe('a', 0, 1);
    c.subscribe('b', 0, 2);
    c.subscribe('c', 0, 3);
    c.subscribe('a', 1, 4);
    expect(c.take()).toEqual([
      { type: 'suback', packetId: 1, returnCodes: [0] },
      { type: 'suback', packetId: 2, returnCodes: [0] },
      { type: 'suback', packetId: 3, returnCodes: [0x80] },
      { type: 'suback', packetId: 4, returnCodes: [1] },
    ]);
  });

  it('counts the filters granted earlier in the same SUBSCRIBE', () => {
    const { broker } = makeBroker({ limits: { maxSubscriptionsPerClient: 2 } });
    const c = connected(broker, 'c');
    c.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [
        { topicFilter: 'a', qos: 0 },
        { topicFilter: 'a', qos: 1 },
        { topicFilter: 'b', qos: 0 },
        { topicFilter: 'c', qos: 0 },
      ],
    });
    expect(c.take()).toEqual([{ type: 'suback', packetId: 1, returnCodes: [0, 1, 0, 0x80] }]);
    expect(broker.sessions[0]!.subscriptions).toHaveLength(2);
  });
});

describe('UNSUBSCRIBE', () => {
  it('[MQTT-3.10.4-4] [MQTT-3.10.4-5] answers UNSUBACK with the same packet id, also when nothing matched', () => {
    const { broker } = makeBroker();
    const c = connected(broker, 'c');
    c.send({ type: 'unsubscribe', packetId: 77, topicFilters: ['never/subscribed'] });
    expect(c.take()).toEqual([{ type: 'unsuback', packetId: 77 }]);
  });

  it('[MQTT-3.10.4-2] stops deliveries on the filter; other filters keep delivering', () => {
    const { broker } = makeBroker();
    const c = connected(broker, 'c');
    c.subscribe('a/#', 1, 1);
    c.subscribe('b', 1, 2);
    c.take();
    c.send({ type: 'unsubscribe', packetId: 3, topicFilters: ['a/#'] });
    expect(c.take()).toEqual([{ type: 'unsuback', packetId: 3 }]);
    const pub = connected(broker, 'pub');
    pub.publish('a/x', 'gone', 1, { packetId: 1 });
    pub.publish('b', 'kept', 1, { packetId: 2 });
    expect(c.takePublishes().map((m) => m.payload)).toEqual(['kept']);
  });

  it('[MQTT-3.10.4-1] compares filters character by character: a/+ does not remove a/#', () => {
    const { broker } = makeBroker();
    const c = connected(broker, 'c');
    c.subscribe('a/#');
    c.send({ type: 'unsubscribe', packetId: 2, topicFilters: ['a/+'] });
    c.take();
    broker.publish({ topic: 'a/b', payload: 'still' });
    expect(c.takePublishes()).toHaveLength(1);
  });
});

describe('subscribed and unsubscribed events', () => {
  it('are emitted per filter with the codes sent', () => {
    const { broker } = makeBroker({ limits: { maxSubscriptionsPerClient: 1 } });
    const subscribed = collect(broker, 'subscribed');
    const unsubscribed = collect(broker, 'unsubscribed');
    const c = connected(broker, 'c');
    c.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [
        { topicFilter: 'x', qos: 2 },
        { topicFilter: 'y', qos: 1 },
      ],
    });
    c.send({ type: 'unsubscribe', packetId: 2, topicFilters: ['x', 'z'] });
    expect(subscribed).toEqual([
      { connectionId: c.connectionId, clientId: 'c', topicFilter: 'x', requestedQos: 2, returnCode: 2 },
      { connectionId: c.connectionId, clientId: 'c', topicFilter: 'y', requestedQos: 1, returnCode: 0x80 },
    ]);
    expect(unsubscribed.map((e) => e.topicFilter)).toEqual(['x', 'z']);
  });
});

describe('topic limits', () => {
  it('answers 0x80 to a filter beyond limits.maxTopicLevels or limits.maxTopicBytes', () => {
    const { broker } = makeBroker({ limits: { maxTopicLevels: 3, maxTopicBytes: 10 } });
    const c = connected(broker, 'c');
    c.send({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [
        { topicFilter: 'a/b/c', qos: 1 },
        { topicFilter: 'a/b/c/d', qos: 1 },
        { topicFilter: 'abcdefghijk', qos: 1 },
      ],
    });
    expect(c.take()).toEqual([{ type: 'suback', packetId: 1, returnCodes: [1, 0x80, 0x80] }]);
  });

  it('closes a client that publishes to a topic beyond the limits, with error 601', () => {
    const { broker } = makeBroker({ limits: { maxTopicLevels: 2 } });
    const errors = collect(broker, 'error');
    const c = connected(broker, 'c');
    c.publish('a/b/c', 'x');
    expect(c.closed).toBe(true);
    expect(errors).toMatchObject([{ errorCode: 601 }]);
  });
});
