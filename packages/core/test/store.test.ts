import type { QoS } from '@broker/codec';
import type { Broker, Store } from '@broker/core';
import { MemoryStore } from '@broker/core';
import { describe, expect, it } from 'vitest';
import { connected, makeBroker, type TestClient } from './helpers/harness.js';

/** A MemoryStore whose commits complete only when the test says so. */
class GatedStore extends MemoryStore {
  private gates: Array<() => void> = [];
  private pending: Promise<void> | undefined;
  override flush(): Promise<void> {
    if (this.pending === undefined) {
      this.pending = new Promise<void>((resolve) => this.gates.push(resolve)).then(() => {
        this.pending = undefined;
      });
    }
    return this.pending;
  }
  async commit(): Promise<void> {
    const gates = this.gates.splice(0);
    for (const open of gates) open();
    await new Promise((r) => setImmediate(r));
  }
}

/** A broker on a GatedStore, restored and ready. */
async function gatedBroker(): Promise<{ store: GatedStore; broker: Broker }> {
  const store = new GatedStore();
  const { broker } = makeBroker({ store });
  await broker.restore();
  return { store, broker };
}

/** A client with a persistent session (clean session 0), subscribed to `filter`, SUBACK taken. */
function persistentSubscriber(broker: Broker, clientId: string, filter: string, qos: QoS): TestClient {
  const sub = connected(broker, clientId, { cleanSession: false });
  sub.subscribe(filter, qos);
  sub.take();
  return sub;
}

describe('durability through the Store port', () => {
  it('holds PUBACK for a message that reached a persistent session until the store commits, keeping ack order [MQTT-4.6.0-2]', async () => {
    const { store, broker } = await gatedBroker();
    const sub = persistentSubscriber(broker, 'durable-sub', 'd/#', 1);
    sub.peer.close(); // offline: messages to it are stored
    const pub = connected(broker, 'pub');
    pub.publish('d/1', 'one', 1, { packetId: 1 });
    pub.publish('other', 'not stored', 1, { packetId: 2 });
    expect(pub.take()).toEqual([]); // both wait: the second must not overtake the first
    await store.commit();
    expect(pub.take()).toEqual([
      { type: 'puback', packetId: 1 },
      { type: 'puback', packetId: 2 },
    ]);
  });

  it('[MQTT-4.3.2-2] sends PUBACK before the commit once every persistent subscriber acknowledged the message', async () => {
    const { store, broker } = await gatedBroker();
    const subs = ['s1', 's2'].map((id) => persistentSubscriber(broker, id, 'd/#', 1));
    const pub = connected(broker, 'pub');
    pub.publish('d/1', 'one', 1, { packetId: 1 });
    expect(pub.take()).toEqual([]); // recorded for two persistent sessions: held
    const [first, second] = subs.map((sub) => sub.takePublishes()[0]!);
    subs[0]!.puback(first!.packetId!);
    expect(pub.take()).toEqual([]); // one delivery still pending
    subs[1]!.puback(second!.packetId!);
    // Delivered and acknowledged everywhere: nothing a crash could lose, no commit to wait for.
    expect(pub.take()).toEqual([{ type: 'puback', packetId: 1 }]);
    await store.commit();
    expect(pub.take()).toEqual([]);
  });

  it("[MQTT-4.6.0-2] a settled message's PUBACK does not overtake an earlier one that still waits for the commit", async () => {
    const { store, broker } = await gatedBroker();
    const sub = persistentSubscriber(broker, 'sub', 'd/#', 1);
    const pub = connected(broker, 'pub');
    pub.publish('d/1', 'one', 1, { packetId: 1 });
    pub.publish('d/2', 'two', 1, { packetId: 2 });
    pub.publish('d/3', 'three', 1, { packetId: 3 });
    const deliveries = sub.takePublishes();
    expect(deliveries.map((d) => d.payload)).toEqual(['one', 'two', 'three']);
    sub.puback(deliveries[1]!.packetId!); // the second is settled, the first is not
    expect(pub.take()).toEqual([]);
    sub.puback(deliveries[0]!.packetId!); // now both are, in order; the third still waits
    expect(pub.take()).toEqual([
      { type: 'puback', packetId: 1 },
      { type: 'puback', packetId: 2 },
    ]);
    await store.commit();
    expect(pub.take()).toEqual([{ type: 'puback', packetId: 3 }]);
  });

  it('[MQTT-3.3.1-5] holds the PUBACK of a retained message until the commit, even when every subscriber acknowledged it', async () => {
    const { store, broker } = await gatedBroker();
    const sub = persistentSubscriber(broker, 'sub', 'r/#', 1);
    const pub = connected(broker, 'pub');
    pub.publish('r/1', 'kept', 1, { packetId: 4, retain: true });
    sub.puback(sub.takePublishes()[0]!.packetId!);
    expect(pub.take()).toEqual([]); // the retained message itself must be stored
    await store.commit();
    expect(pub.take()).toEqual([{ type: 'puback', packetId: 4 }]);
  });

  it('[MQTT-4.3.3-2] sends PUBREC before the commit once the persistent subscriber completed its QoS 2 delivery', async () => {
    const { store, broker } = await gatedBroker();
    const sub = persistentSubscriber(broker, 'sub', 'q/#', 2);
    const pub = connected(broker, 'pub', { cleanSession: false });
    pub.publish('q/1', 'once', 2, { packetId: 5 });
    expect(pub.take()).toEqual([]);
    const delivery = sub.takePublishes()[0]!;
    sub.pubrec(delivery.packetId!);
    expect(sub.take()).toEqual([{ type: 'pubrel', packetId: delivery.packetId }]);
    expect(pub.take()).toEqual([]); // awaiting PUBCOMP: not settled
    sub.pubcomp(delivery.packetId!);
    expect(pub.take()).toEqual([{ type: 'pubrec', packetId: 5 }]);
    pub.pubrel(5);
    expect(pub.take()).toEqual([]); // a persistent publisher's PUBCOMP waits for the commit (see below)
    await store.commit();
    expect(pub.take()).toEqual([{ type: 'pubcomp', packetId: 5 }]);
  });

  it('[MQTT-4.3.3-2] a persistent session gets PUBCOMP only once the store has forgotten the packet identifier', async () => {
    const { store, broker } = await gatedBroker();
    const pub = connected(broker, 'pub', { cleanSession: false });
    pub.publish('nobody/persistent', 'x', 2, { packetId: 7 });
    // Recorded (the identifier is held) but owed to no persistent session: PUBREC need not wait.
    expect(pub.take()).toEqual([{ type: 'pubrec', packetId: 7 }]);
    pub.pubrel(7);
    expect(pub.take()).toEqual([]); // PUBCOMP frees the identifier: not before that is stored
    await store.commit();
    expect(pub.take()).toEqual([{ type: 'pubcomp', packetId: 7 }]);
  });

  it('releases a held PUBACK when the persistent session it waited for is discarded (clean session)', async () => {
    const { store, broker } = await gatedBroker();
    const sub = persistentSubscriber(broker, 'sub', 'd/#', 1);
    sub.peer.close(); // offline: the message is queued for it
    const pub = connected(broker, 'pub');
    pub.publish('d/1', 'one', 1, { packetId: 6 });
    expect(pub.take()).toEqual([]);
    // The session is discarded: the message is owed to no one any more.
    connected(broker, 'sub', { cleanSession: true });
    expect(pub.take()).toEqual([{ type: 'puback', packetId: 6 }]);
    await store.commit();
  });

  it('acknowledges at once when nothing durable was recorded', () => {
    const { broker } = makeBroker({ store: new GatedStore() });
    const pub = connected(broker, 'pub');
    pub.publish('nobody/listens', 'x', 1, { packetId: 9 });
    expect(pub.take()).toEqual([{ type: 'puback', packetId: 9 }]);
  });

  it('[MQTT-4.8.0-2] closes the publisher without acknowledging when the store fails to commit', async () => {
    const failing: Store = Object.assign(new MemoryStore(), {
      flush: () => Promise.reject(new Error('disk full')),
    });
    const { broker } = makeBroker({ store: failing });
    const errors: string[] = [];
    broker.on('error', (e) => errors.push(e.code));
    const sub = connected(broker, 's', { cleanSession: false });
    sub.subscribe('t', 1);
    sub.peer.close();
    const pub = connected(broker, 'p');
    pub.publish('t', 'x', 1, { packetId: 3 });
    await new Promise((r) => setImmediate(r));
    expect(pub.take()).toEqual([]);
    expect(pub.closed).toBe(true);
    expect(errors).toContain('CORE_STORE_FAILED');
  });

  it('restores persistent sessions, queued messages and retained messages into a new broker [MQTT-3.1.2-4]', async () => {
    const store = new MemoryStore();
    const first = makeBroker({ store }).broker;
    await first.restore();
    const sub = connected(first, 'keeper', { cleanSession: false });
    sub.subscribe('keep/#', 2);
    sub.peer.close();
    const pub = connected(first, 'pub');
    pub.publish('keep/a', 'q1', 1, { packetId: 1 });
    pub.publish('keep/b', 'q2', 2, { packetId: 2 });
    pub.publish('keep/r', 'retained', 0, { retain: true });
    await first.close();

    const second = makeBroker({ store }).broker;
    await second.restore();
    expect(second.sessions.map((s) => s.clientId)).toEqual(['keeper']);
    expect(second.retained.get('keep/r')).toBeDefined();
    const back = connected(second, 'keeper', { cleanSession: false });
    expect(back.takePublishes().map((m) => [m.topic, m.payload, m.qos])).toEqual([
      ['keep/a', 'q1', 1],
      ['keep/b', 'q2', 2],
    ]);
  });

  it('stores a message once however many persistent sessions it goes to', async () => {
    const store = new MemoryStore();
    const { broker } = makeBroker({ store });
    for (const id of ['a', 'b', 'c']) {
      const c = connected(broker, id, { cleanSession: false });
      c.subscribe('fan', 1);
      c.peer.close();
    }
    connected(broker, 'p').publish('fan', 'x', 1, { packetId: 1 });
    expect(store.messageCount).toBe(1);
    expect(store.load().sessions.every((s) => s.outgoingMessages.length === 1)).toBe(true);
  });
});

describe('store references', () => {
  it('[MQTT-3.8.4-3] a repeated SUBSCRIBE re-sends a retained message as a new delivery, so the session snapshot stays loadable', async () => {
    const store = new MemoryStore();
    const { broker } = makeBroker({ store });
    await broker.restore();
    broker.retained.set('r/t', 'kept', 1);
    const c = connected(broker, 'twice', { cleanSession: false });
    c.subscribe('r/#', 1, 1);
    c.subscribe('r/#', 1, 2); // the first retained copy is still unacknowledged
    const copies = c.takePublishes();
    expect(copies.map((m) => [m.topic, m.retain])).toEqual([
      ['r/t', true],
      ['r/t', true],
    ]);
    const snapshot = broker.saveSession('twice');
    const ids = snapshot.outgoingMessages.map((m) => m.messageId);
    expect(new Set(ids).size).toBe(2);
    c.peer.close();
    broker.loadSession(snapshot); // no duplicate MessageId
    expect(store.load().sessions[0]!.outgoingMessages).toHaveLength(2);
  });

  it('records a retained message again for a persistent session after a restart', async () => {
    const store = new MemoryStore();
    const first = makeBroker({ store }).broker;
    await first.restore();
    first.retained.set('r/x', 'stays', 1);
    await first.close();
    const second = makeBroker({ store }).broker;
    await second.restore();
    const c = connected(second, 'late', { cleanSession: false });
    c.subscribe('r/#', 1);
    c.peer.close(); // delivered, not acknowledged
    const third = makeBroker({ store }).broker;
    await third.restore();
    const back = connected(third, 'late', { cleanSession: false });
    expect(back.takePublishes().map((m) => [m.topic, m.payload, m.dup])).toEqual([['r/x', 'stays', true]]);
  });
});
