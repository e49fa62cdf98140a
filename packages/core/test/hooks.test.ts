import type { PublishRequest } from '@broker/core';
import { describe, expect, it } from 'vitest';
import { bytesOf, collect, connected, flush, makeBroker, TestClient } from './helpers/harness.js';

describe('authorizePublish', () => {
  it('a refused QoS 1 message still gets PUBACK, is not delivered, and is reported as not-authorized', () => {
    const requests: PublishRequest[] = [];
    const { broker } = makeBroker({
      hooks: {
        authorizePublish: (r) => {
          requests.push(r);
          return !r.topic.startsWith('forbidden');
        },
      },
    });
    const dropped = collect(broker, 'messageDropped');
    const sub = connected(broker, 'sub');
    sub.subscribe('#', 1);
    sub.take();
    const pub = connected(broker, 'pub', { username: 'bob' });
    pub.publish('forbidden/x', 'no', 1, { packetId: 7 });
    pub.publish('allowed/x', 'yes', 1, { packetId: 8 });
    expect(pub.take()).toEqual([
      { type: 'puback', packetId: 7 },
      { type: 'puback', packetId: 8 },
    ]);
    expect(sub.takePublishes().map((m) => m.topic)).toEqual(['allowed/x']);
    expect(dropped).toMatchObject([
      { clientId: 'pub', topic: 'forbidden/x', qos: 1, reason: 'not-authorized' },
    ]);
    expect(requests[0]).toMatchObject({
      clientId: 'pub',
      username: 'bob',
      topic: 'forbidden/x',
      qos: 1,
      retain: false,
    });
  });

  it('a refused QoS 2 message completes its flow (PUBREC, PUBCOMP) and is not delivered', () => {
    const { broker } = makeBroker({ hooks: { authorizePublish: () => false } });
    const sub = connected(broker, 'sub');
    sub.subscribe('#', 2);
    sub.take();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'no', 2, { packetId: 3 });
    pub.pubrel(3);
    expect(pub.take()).toEqual([
      { type: 'pubrec', packetId: 3 },
      { type: 'pubcomp', packetId: 3 },
    ]);
    expect(sub.take()).toEqual([]);
  });

  it('a refused retained message is not stored', () => {
    const { broker } = makeBroker({ hooks: { authorizePublish: () => false } });
    connected(broker, 'pub').publish('t', 'no', 0, { retain: true });
    expect(broker.retainedCount).toBe(0);
  });

  it('async decisions keep the order of messages and acknowledgements', async () => {
    const { broker } = makeBroker({
      hooks: { authorizePublish: async (r) => r.payload.length !== 3 },
    });
    const sub = connected(broker, 'sub');
    sub.subscribe('t');
    sub.take();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'first', 1, { packetId: 1 });
    pub.publish('t', 'bad', 1, { packetId: 2 });
    pub.publish('t', 'third', 0);
    pub.send({ type: 'pingreq' });
    await flush();
    expect(pub.take()).toEqual([
      { type: 'puback', packetId: 1 },
      { type: 'puback', packetId: 2 },
      { type: 'pingresp' },
    ]);
    expect(sub.takePublishes().map((m) => m.payload)).toEqual(['first', 'third']);
  });
});

describe('filterDelivery', () => {
  it('drops a delivery for one receiver only (messageDropped filtered)', () => {
    const { broker } = makeBroker({
      hooks: { filterDelivery: (r) => r.clientId !== 'muted' },
    });
    const dropped = collect(broker, 'messageDropped');
    const muted = connected(broker, 'muted');
    const open = connected(broker, 'open');
    for (const c of [muted, open]) {
      c.subscribe('t', 1);
      c.take();
    }
    connected(broker, 'pub').publish('t', 'hi', 1, { packetId: 1 });
    expect(muted.take()).toEqual([]);
    expect(open.takePublishes()).toMatchObject([{ topic: 't', payload: 'hi' }]);
    expect(dropped).toMatchObject([{ clientId: 'muted', topic: 't', reason: 'filtered' }]);
  });

  it('rewrites topic and payload for one receiver only', () => {
    const { broker } = makeBroker({
      hooks: {
        filterDelivery: (r) =>
          r.clientId === 'translated'
            ? { topic: `fr/${r.topic}`, payload: bytesOf(`bonjour (${new TextDecoder().decode(r.payload)})`) }
            : undefined,
      },
    });
    const translated = connected(broker, 'translated');
    const plain = connected(broker, 'plain');
    for (const c of [translated, plain]) {
      c.subscribe('greet', 1);
      c.take();
    }
    connected(broker, 'pub').publish('greet', 'hello', 1, { packetId: 1 });
    expect(translated.takePublishes()).toMatchObject([
      { topic: 'fr/greet', payload: 'bonjour (hello)', qos: 1 },
    ]);
    expect(plain.takePublishes()).toMatchObject([{ topic: 'greet', payload: 'hello', qos: 1 }]);
  });

  it('applies to retained messages sent on subscribe, which keep RETAIN=1', () => {
    const { broker } = makeBroker({
      hooks: { filterDelivery: (r) => (r.retain ? { payload: bytesOf('filtered') } : true) },
    });
    broker.retained.set('r', 'orig');
    const c = connected(broker, 'c');
    c.subscribe('r');
    expect(c.takePublishes()).toMatchObject([{ topic: 'r', payload: 'filtered', retain: true }]);
  });

  it('a rewrite to an invalid topic drops the delivery and reports CORE_HOOK_FAILED', () => {
    const { broker } = makeBroker({ hooks: { filterDelivery: () => ({ topic: 'bad/#' }) } });
    const errors = collect(broker, 'error');
    const dropped = collect(broker, 'messageDropped');
    const c = connected(broker, 'c');
    c.subscribe('t');
    c.take();
    broker.publish({ topic: 't', payload: 'x' });
    expect(c.take()).toEqual([]);
    expect(errors.map((e) => e.code)).toEqual(['CORE_HOOK_FAILED']);
    expect(dropped.map((d) => d.reason)).toEqual(['filtered']);
  });
});

describe('hooks that throw', () => {
  it('a throwing authorizePublish refuses (message dropped, still acknowledged) and emits CORE_HOOK_FAILED', () => {
    const { broker } = makeBroker({
      hooks: {
        authorizePublish: () => {
          throw new Error('boom');
        },
      },
    });
    const errors = collect(broker, 'error');
    const sub = connected(broker, 'sub');
    sub.subscribe('t');
    sub.take();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'x', 1, { packetId: 4 });
    expect(pub.take()).toEqual([{ type: 'puback', packetId: 4 }]);
    expect(sub.take()).toEqual([]);
    expect(errors).toMatchObject([{ connectionId: pub.connectionId, code: 'CORE_HOOK_FAILED' }]);
    expect(pub.closed).toBe(false);
  });

  it('a throwing authorizeSubscribe answers 0x80 and emits CORE_HOOK_FAILED', () => {
    const { broker } = makeBroker({
      hooks: {
        authorizeSubscribe: () => {
          throw new Error('boom');
        },
      },
    });
    const errors = collect(broker, 'error');
    const c = connected(broker, 'c');
    c.subscribe('t', 1, 2);
    expect(c.take()).toEqual([{ type: 'suback', packetId: 2, returnCodes: [0x80] }]);
    expect(errors.map((e) => e.code)).toEqual(['CORE_HOOK_FAILED']);
  });

  it('a throwing filterDelivery drops that delivery and emits CORE_HOOK_FAILED', () => {
    const { broker } = makeBroker({
      hooks: {
        filterDelivery: (r) => {
          if (r.clientId === 'a') throw new Error('boom');
          return true;
        },
      },
    });
    const errors = collect(broker, 'error');
    const a = connected(broker, 'a');
    const b = connected(broker, 'b');
    for (const c of [a, b]) {
      c.subscribe('t');
      c.take();
    }
    broker.publish({ topic: 't', payload: 'x' });
    expect(a.take()).toEqual([]);
    expect(b.takePublishes()).toHaveLength(1);
    expect(errors).toMatchObject([{ code: 'CORE_HOOK_FAILED' }]);
  });

  it('a throwing connectionRequest refuses the connection and emits CORE_HOOK_FAILED', () => {
    const { broker } = makeBroker({
      hooks: {
        connectionRequest: () => {
          throw new Error('boom');
        },
      },
    });
    const errors = collect(broker, 'error');
    const c = new TestClient(broker).connect({ clientId: 'x' });
    expect(c.closed).toBe(true);
    expect(c.take()).toEqual([]);
    expect(errors.map((e) => e.code)).toEqual(['CORE_HOOK_FAILED']);
  });

  it('an event listener that throws is reported as an error event and does not disturb the broker', () => {
    const { broker } = makeBroker();
    const errors = collect(broker, 'error');
    broker.on('connected', () => {
      throw new Error('listener bug');
    });
    const c = connected(broker, 'c');
    c.subscribe('t');
    expect(c.take()).toEqual([{ type: 'suback', packetId: 1, returnCodes: [0] }]);
    expect(errors).toMatchObject([{ code: 'CORE_HOOK_FAILED', connectionId: c.connectionId }]);
  });
});

describe('no listeners and no hooks', () => {
  it('a full session works with nothing registered', () => {
    const { broker, clock } = makeBroker();
    const sub = connected(broker, 'sub', { cleanSession: false, keepaliveSeconds: 10 });
    sub.subscribe('t/#', 2);
    sub.take();
    const pub = connected(broker, 'pub', {
      will: { topic: 't/will', payload: bytesOf('w'), qos: 2, retain: true },
    });
    pub.publish('t/0', 'a', 0);
    pub.publish('t/1', 'b', 1, { packetId: 1 });
    pub.publish('t/2', 'c', 2, { packetId: 2 });
    pub.pubrel(2);
    const got = sub.takePublishes();
    expect(got.map((m) => m.payload)).toEqual(['a', 'b', 'c']);
    sub.puback(got[1]!.packetId!);
    sub.pubrec(got[2]!.packetId!);
    sub.pubcomp(got[2]!.packetId!);
    pub.peer.close();
    expect(sub.takePublishes()).toMatchObject([{ topic: 't/will', qos: 2 }]);
    clock.advance(20_000);
    expect(sub.closed).toBe(true);
    broker.close();
  });

  it('off() removes a listener', () => {
    const { broker } = makeBroker();
    const seen: string[] = [];
    const listener = (e: { clientId: string }) => void seen.push(e.clientId);
    broker.on('connected', listener);
    connected(broker, 'one');
    broker.off('connected', listener);
    connected(broker, 'two');
    expect(seen).toEqual(['one']);
  });
});
