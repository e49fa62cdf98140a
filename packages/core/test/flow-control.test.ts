import { describe, expect, it } from 'vitest';
import { collect, connected, makeBroker, TestClient } from './helpers/harness.js';

// Publisher flow control: a subscriber with a backlog holds the publishers feeding it (they are not
// read) until the backlog halves, so the broker neither buffers nor drops what a subscriber that
// keeps up on average cannot take at once. A subscriber that holds publishers past
// flowControlMaxHoldMs is a slow consumer and falls back to the queue limits.

const PAYLOAD = 'x'.repeat(90); // with "name:" and topic 't', a QoS 1 PUBLISH of about 100 bytes

function setup(limits: Record<string, number> = {}) {
  const { broker, clock } = makeBroker({
    limits: {
      flowControlBytes: 1000,
      flowControlMaxHoldMs: 3000,
      maxQueuedMessages: 1000,
      maxOutgoingBufferBytes: 1024 * 1024,
      sweepIntervalMs: 1000,
      ...limits,
    },
  });
  const dropped = collect(broker, 'messageDropped');
  // A small high-water mark, so the subscriber's connection reports backpressure early.
  const sub = new TestClient(broker, { highWaterMarkBytes: 300 }).connect({ clientId: 'sub' });
  sub.subscribe('t', 1);
  sub.take();
  const pub = connected(broker, 'pub');
  return { broker, clock, dropped, sub, pub };
}

/** Publishes `count` QoS 1 messages named prefix0..; returns the names. */
function publishMany(pub: TestClient, prefix: string, count: number): string[] {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    names.push(`${prefix}${i}`);
    pub.publish('t', `${prefix}${i}:${PAYLOAD}`, 1, { packetId: i + 1 });
  }
  return names;
}

const namesOf = (client: TestClient) => client.takePublishes().map((m) => m.payload.split(':')[0]);

/** Reads everything the subscriber has been sent, acknowledging each QoS 1 PUBLISH, until quiet. */
function drainSubscriber(sub: TestClient): string[] {
  const names: string[] = [];
  sub.peer.startReading();
  for (;;) {
    const publishes = sub.takePublishes();
    if (publishes.length === 0) return names;
    for (const p of publishes) {
      names.push(p.payload.split(':')[0]!);
      if (p.packetId !== undefined) sub.puback(p.packetId);
    }
  }
}

describe('publisher flow control', () => {
  it('holds a publisher while a subscriber it feeds has more than flowControlBytes waiting, and reads it again once that halves; nothing is lost or reordered [MQTT-4.6.0-2]', () => {
    const { broker, dropped, sub, pub } = setup();
    sub.peer.stopReading();
    const sent = publishMany(pub, 'm', 40);
    // The publisher was acknowledged for what was read before the hold, and not for the rest.
    const acked = pub.takeType('puback').length;
    expect(acked).toBeGreaterThan(5);
    expect(acked).toBeLessThan(40);
    expect(broker.counters.publisherHolds).toBe(1);
    // Reading again: the backlog drains, the publisher is released, and everything arrives in order.
    const received = drainSubscriber(sub);
    expect(received).toEqual(sent);
    expect(pub.takeType('puback').map((a) => a.packetId)).toEqual(
      Array.from({ length: 40 - acked }, (_, i) => acked + i + 1),
    );
    expect(dropped).toEqual([]);
  });

  it('holds the publisher for its QoS 0 messages too, before maxOutgoingBufferBytes would drop them', () => {
    const { broker, dropped, sub, pub } = setup({
      flowControlBytes: 1024 * 1024,
      maxOutgoingBufferBytes: 1000,
    });
    sub.peer.stopReading();
    const sent: string[] = [];
    for (let i = 0; i < 40; i++) {
      sent.push(`z${i}`);
      pub.publish('t', `z${i}:${PAYLOAD}`, 0);
    }
    expect(broker.counters.publisherHolds).toBe(1);
    expect(drainSubscriber(sub)).toEqual(sent);
    expect(dropped).toEqual([]);
  });

  it('other subscribers of a held publisher receive everything too, in order', () => {
    const { sub, pub, broker } = setup();
    const other = connected(broker, 'other');
    other.subscribe('t', 0);
    other.take();
    sub.peer.stopReading();
    const sent = publishMany(pub, 'm', 30);
    const early = namesOf(other);
    expect(early.length).toBeLessThan(30);
    drainSubscriber(sub);
    expect([...early, ...namesOf(other)]).toEqual(sent);
  });

  it('a client is never held by its own subscription', () => {
    const { broker } = setup();
    const self = connected(broker, 'self');
    self.subscribe('t', 1);
    self.take();
    self.peer.stopReading();
    publishMany(self, 'own', 40);
    expect(broker.counters.publisherHolds).toBe(0);
    // All 40 were read and routed (none wait unread), so draining yields them all.
    expect(drainSubscriber(self)).toHaveLength(40);
  });

  it('a subscriber that disconnects releases the publishers it held', () => {
    const { sub, pub } = setup();
    sub.peer.stopReading();
    publishMany(pub, 'm', 40);
    const acked = pub.takeType('puback').length;
    expect(acked).toBeLessThan(40);
    sub.peer.close();
    expect(pub.takeType('puback')).toHaveLength(40 - acked);
  });

  it('a subscriber holding publishers longer than flowControlMaxHoldMs becomes a slow consumer: the publisher is read again and the queue limits apply', () => {
    const { broker, clock, dropped, sub, pub } = setup({ maxQueuedMessages: 50 });
    const logs = collect(broker, 'log');
    const other = connected(broker, 'other');
    other.subscribe('t', 0);
    other.take();
    sub.peer.stopReading();
    const sent = publishMany(pub, 'm', 100);
    const acked = pub.takeType('puback').length;
    expect(acked).toBeLessThan(100);
    clock.advance(2000);
    expect(pub.takeType('puback')).toHaveLength(0); // still held within flowControlMaxHoldMs
    clock.advance(2000);
    // Released: the rest is read and acknowledged; the slow subscriber's queue limit drops the excess.
    expect(pub.takeType('puback')).toHaveLength(100 - acked);
    expect(broker.counters.slowConsumers).toBe(1);
    expect(logs.some((l) => l.message.includes('slow consumer'))).toBe(true);
    expect(namesOf(other)).toEqual(sent);
    expect(dropped.filter((d) => d.reason === 'queue-full' && d.clientId === 'sub').length).toBeGreaterThan(
      0,
    );
    // A slow consumer holds nobody until its backlog has drained...
    publishMany(pub, 'n', 10);
    expect(pub.takeType('puback')).toHaveLength(10);
    // ...and once drained it takes part in flow control again.
    drainSubscriber(sub);
    sub.peer.stopReading();
    publishMany(pub, 'k', 40);
    expect(pub.takeType('puback').length).toBeLessThan(40);
    expect(broker.counters.publisherHolds).toBe(2);
  });

  it('flowControlBytes: 0 turns flow control off', () => {
    const { broker, sub, pub } = setup({ flowControlBytes: 0 });
    sub.peer.stopReading();
    publishMany(pub, 'm', 40);
    expect(pub.takeType('puback')).toHaveLength(40);
    expect(broker.counters.publisherHolds).toBe(0);
  });

  it('a held publisher whose hook decision is pending stays paused until both end', async () => {
    const { broker, sub, pub } = setup();
    let allow: (value: boolean) => void = () => {};
    sub.peer.stopReading();
    publishMany(pub, 'm', 40);
    const acked = pub.takeType('puback').length;
    broker.hooks = {
      authorizePublish: () =>
        new Promise<boolean>((resolve) => {
          allow = resolve;
        }),
    };
    // Draining releases the hold; the next PUBLISH then waits for its decision.
    const received = drainSubscriber(sub);
    expect(received.length).toBe(acked);
    expect(pub.takeType('puback')).toHaveLength(0);
    allow(true);
    await new Promise((resolve) => setImmediate(resolve));
    expect(pub.takeType('puback').length).toBeGreaterThan(0);
  });

  it('[MQTT-3.1.2-24] a held publisher is not disconnected for keep-alive: its silence is the broker not reading; the keep-alive counts from the release', () => {
    const { broker, clock } = makeBroker({
      limits: { flowControlBytes: 1000, flowControlMaxHoldMs: 60_000, sweepIntervalMs: 1000 },
    });
    const sub = new TestClient(broker, { highWaterMarkBytes: 300 }).connect({ clientId: 'sub' });
    sub.subscribe('t', 1);
    sub.take();
    const pub = connected(broker, 'pub', { keepaliveSeconds: 1 });
    sub.peer.stopReading();
    publishMany(pub, 'm', 40);
    expect(broker.counters.publisherHolds).toBe(1);
    pub.send({ type: 'pingreq' }); // waits unread while held
    clock.advance(5000);
    expect(pub.closed).toBe(false);
    drainSubscriber(sub);
    expect(pub.takeType('pingresp')).toHaveLength(1);
    // Released: the keep-alive applies again, from the release.
    clock.advance(1000);
    expect(pub.closed).toBe(false);
    clock.advance(1000);
    expect(pub.closed).toBe(true);
  });
});
