import type { SessionSnapshot } from '@broker/core';
import { describe, expect, it } from 'vitest';
import { bytesOf, collect, connected, makeBroker, TestClient } from './helpers/harness.js';

const decoder = new TextDecoder();

describe('clean session', () => {
  it('[MQTT-3.1.2-6] clean session 1 discards a stored session at connect (sessionRemoved)', () => {
    const { broker } = makeBroker();
    const removed = collect(broker, 'sessionRemoved');
    const a = connected(broker, 'a', { cleanSession: false });
    a.subscribe('t/#', 1);
    a.disconnect();
    expect(removed).toEqual([]);
    expect(broker.sessions).toMatchObject([{ clientId: 'a', isConnected: false, isClean: false }]);
    const pub = connected(broker, 'pub');
    pub.publish('t/1', 'queued', 1, { packetId: 1 });
    const b = new TestClient(broker).connect({ clientId: 'a', cleanSession: true });
    expect(b.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
    expect(removed).toEqual([{ clientId: 'a' }]);
    // Neither the subscription nor the queued message survived.
    pub.publish('t/2', 'after', 1, { packetId: 2 });
    expect(b.take()).toEqual([]);
    expect(broker.sessions.find((s) => s.clientId === 'a')).toMatchObject({
      isClean: true,
      subscriptions: [],
      outgoingMessages: 0,
    });
  });

  it('[MQTT-3.1.2-6] clean session 1 discards the session when the connection ends', () => {
    const { broker } = makeBroker();
    const removed = collect(broker, 'sessionRemoved');
    const a = connected(broker, 'a', { cleanSession: true });
    a.subscribe('t/#', 1);
    a.disconnect();
    expect(removed).toEqual([{ clientId: 'a' }]);
    expect(broker.sessions).toEqual([]);
    const again = new TestClient(broker).connect({ clientId: 'a', cleanSession: false });
    // [MQTT-3.2.2-3] nothing stored: session present 0.
    expect(again.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
  });

  it('[MQTT-3.1.2-6] clean session 1 also ends on a socket close without DISCONNECT', () => {
    const { broker } = makeBroker();
    const removed = collect(broker, 'sessionRemoved');
    const a = connected(broker, 'a', { cleanSession: true });
    a.peer.close();
    expect(removed).toEqual([{ clientId: 'a' }]);
    expect(broker.sessions).toEqual([]);
  });

  it('[MQTT-3.2.2-1] clean session 1 is answered with session present 0 even when a session was stored', () => {
    const { broker } = makeBroker();
    connected(broker, 'a', { cleanSession: false }).disconnect();
    const c = new TestClient(broker).connect({ clientId: 'a', cleanSession: true });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
  });
});

describe('persistent sessions', () => {
  it('[MQTT-3.1.2-4] [MQTT-3.2.2-2] clean session 0 resumes subscriptions, with session present 1', () => {
    const { broker } = makeBroker();
    const connectedEvents = collect(broker, 'connected');
    const a = connected(broker, 'a', { cleanSession: false });
    a.subscribe('t/+', 2);
    a.take();
    a.disconnect();
    const again = new TestClient(broker).connect({ clientId: 'a', cleanSession: false });
    expect(again.take()).toEqual([{ type: 'connack', sessionPresent: true, returnCode: 0 }]);
    expect(connectedEvents.map((e) => e.sessionPresent)).toEqual([false, true]);
    const pub = connected(broker, 'pub');
    pub.publish('t/x', 'hello', 0);
    expect(again.takePublishes()).toMatchObject([{ topic: 't/x', payload: 'hello', qos: 0 }]);
    expect(broker.sessions.find((s) => s.clientId === 'a')!.subscriptions).toEqual([
      { topicFilter: 't/+', qos: 2 },
    ]);
  });

  it('[MQTT-3.2.2-3] clean session 0 without a stored session: session present 0', () => {
    const { broker } = makeBroker();
    const c = new TestClient(broker).connect({ clientId: 'fresh', cleanSession: false });
    expect(c.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
  });

  it('[MQTT-3.1.2-5] queues QoS 1 and 2 messages for an offline session and delivers them on reconnect; QoS 0 is not queued', () => {
    const { broker } = makeBroker();
    const a = connected(broker, 'a', { cleanSession: false });
    a.subscribe('t/#', 2);
    a.take();
    a.disconnect();
    const pub = connected(broker, 'pub');
    pub.publish('t/1', 'q0', 0);
    pub.publish('t/1', 'q1', 1, { packetId: 1 });
    pub.publish('t/1', 'q2', 2, { packetId: 2 });
    pub.pubrel(2);
    expect(broker.sessions.find((s) => s.clientId === 'a')!.outgoingMessages).toBe(2);
    const again = new TestClient(broker).connect({ clientId: 'a', cleanSession: false });
    const [connack, ...rest] = again.take();
    expect(connack).toEqual({ type: 'connack', sessionPresent: true, returnCode: 0 });
    expect(
      rest.map((p) => (p.type === 'publish' ? [decoder.decode(p.payload), p.qos, p.dup] : p.type)),
    ).toEqual([
      ['q1', 1, false],
      ['q2', 2, false],
    ]);
  });

  it('[MQTT-4.4.0-1] re-sends unacknowledged QoS 1 and 2 PUBLISH on reconnect with DUP=1 and the same packet id', () => {
    const { broker } = makeBroker();
    const a = connected(broker, 'a', { cleanSession: false });
    a.subscribe('t/#', 2);
    a.take();
    const pub = connected(broker, 'pub');
    pub.publish('t/1', 'one', 1, { packetId: 1 });
    pub.publish('t/1', 'two', 2, { packetId: 2 });
    const first = a.takePublishes();
    expect(first).toMatchObject([
      { payload: 'one', qos: 1, dup: false },
      { payload: 'two', qos: 2, dup: false },
    ]);
    a.peer.close(); // no acknowledgement
    const again = new TestClient(broker).connect({ clientId: 'a', cleanSession: false });
    again.takeType('connack');
    const resent = again.takePublishes();
    expect(resent).toEqual([
      { ...first[0]!, dup: true },
      { ...first[1]!, dup: true },
    ]);
  });

  it('[MQTT-4.4.0-1] re-sends PUBREL for a QoS 2 message whose PUBREC was received', () => {
    const { broker } = makeBroker();
    const a = connected(broker, 'a', { cleanSession: false });
    a.subscribe('t/#', 2);
    a.take();
    const pub = connected(broker, 'pub');
    pub.publish('t/1', 'two', 2, { packetId: 9 });
    const [msg] = a.takePublishes();
    a.pubrec(msg!.packetId!);
    expect(a.take()).toEqual([{ type: 'pubrel', packetId: msg!.packetId }]);
    a.disconnect();
    const again = new TestClient(broker).connect({ clientId: 'a', cleanSession: false });
    expect(again.take()).toEqual([
      { type: 'connack', sessionPresent: true, returnCode: 0 },
      { type: 'pubrel', packetId: msg!.packetId },
    ]);
    again.pubcomp(msg!.packetId!);
    expect(broker.sessions.find((s) => s.clientId === 'a')!.outgoingMessages).toBe(0);
    // Completed: nothing is re-sent on the next reconnect.
    again.disconnect();
    const third = new TestClient(broker).connect({ clientId: 'a', cleanSession: false });
    expect(third.take()).toEqual([{ type: 'connack', sessionPresent: true, returnCode: 0 }]);
  });
});

describe('session takeover [MQTT-3.1.4-2]', () => {
  it('[MQTT-3.1.4-2] a second connection with the same client id closes the first and publishes its will', () => {
    const { broker } = makeBroker();
    const watcher = connected(broker, 'watcher');
    watcher.subscribe('will/#');
    watcher.take();
    const disconnected = collect(broker, 'disconnected');
    const first = connected(broker, 'dup', {
      cleanSession: false,
      will: { topic: 'will/dup', payload: bytesOf('first gone'), qos: 0, retain: false },
    });
    first.subscribe('t/#', 1);
    first.take();
    const second = new TestClient(broker).connect({ clientId: 'dup', cleanSession: false });
    expect(first.closed).toBe(true);
    expect(second.take()).toEqual([{ type: 'connack', sessionPresent: true, returnCode: 0 }]);
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/dup', payload: 'first gone' }]);
    expect(disconnected).toMatchObject([
      { connectionId: first.connectionId, clientId: 'dup', willPublished: true },
    ]);
    // The session (and its subscription) carried over to the new connection.
    watcher.publish('t/x', 'for second');
    expect(second.takePublishes()).toMatchObject([{ topic: 't/x', payload: 'for second' }]);
    expect(first.take()).toEqual([]);
    expect(broker.connections.filter((c) => c.clientId === 'dup')).toHaveLength(1);
  });

  it('[MQTT-3.1.4-2] a takeover with clean session 1 closes the first and starts a new session', () => {
    const { broker } = makeBroker();
    const first = connected(broker, 'dup', { cleanSession: false });
    first.subscribe('t/#', 1);
    const second = new TestClient(broker).connect({ clientId: 'dup', cleanSession: true });
    expect(first.closed).toBe(true);
    expect(second.take()).toEqual([{ type: 'connack', sessionPresent: false, returnCode: 0 }]);
    expect(broker.sessions.find((s) => s.clientId === 'dup')!.subscriptions).toEqual([]);
  });
});

function snapshotFixture(): SessionSnapshot {
  const payload = (text: string) => bytesOf(text);
  return {
    clientId: 'restored',
    subscriptions: [
      { topicFilter: 'a/#', qos: 2 },
      { topicFilter: 'b/+', qos: 1 },
    ],
    incomingMessages: [
      {
        messageId: 50,
        topic: 'in/q2',
        payload: payload('in'),
        qos: 2,
        dup: false,
        retain: false,
        packetId: 77,
        state: 8,
      },
    ],
    outgoingMessages: [
      {
        messageId: 40,
        topic: 'a/1',
        payload: payload('s2'),
        qos: 1,
        dup: true,
        retain: false,
        packetId: 10,
        state: 2,
      },
      {
        messageId: 41,
        topic: 'a/2',
        payload: payload('s3'),
        qos: 2,
        dup: true,
        retain: false,
        packetId: 11,
        state: 3,
      },
      {
        messageId: 42,
        topic: 'a/3',
        payload: payload('s4'),
        qos: 2,
        dup: true,
        retain: false,
        packetId: 12,
        state: 4,
      },
      {
        messageId: 43,
        topic: 'a/4',
        payload: payload('s5'),
        qos: 2,
        dup: true,
        retain: false,
        packetId: 13,
        state: 5,
      },
      {
        messageId: 44,
        topic: 'a/5',
        payload: payload('s1'),
        qos: 1,
        dup: false,
        retain: false,
        packetId: -1,
        state: 1,
      },
    ],
  };
}

describe('saveSession / loadSession', () => {
  it('round-trips subscriptions, in-flight messages in states 2–5, queued (1) and incoming QoS 2 (8)', () => {
    const { broker } = makeBroker();
    const snapshot = snapshotFixture();
    broker.loadSession(snapshot);
    expect(broker.sessions).toEqual([
      {
        clientId: 'restored',
        isConnected: false,
        isClean: false,
        subscriptions: snapshot.subscriptions,
        incomingMessages: 1,
        outgoingMessages: 5,
      },
    ]);
    const saved = broker.saveSession('restored');
    expect(saved).toEqual(snapshot);

    // A second broker loading the saved snapshot behaves the same on reconnect.
    const { broker: other } = makeBroker();
    other.loadSession(saved);
    const c = new TestClient(other).connect({ clientId: 'restored', cleanSession: false });
    const packets = c.take();
    const describe = (p: (typeof packets)[number]) =>
      p.type === 'publish'
        ? `publish ${p.packetId} dup=${p.dup} ${decoder.decode(p.payload)}`
        : p.type === 'pubrel'
          ? `pubrel ${p.packetId}`
          : p.type;
    expect(packets.map(describe)).toEqual([
      'connack',
      'publish 10 dup=true s2',
      'publish 11 dup=true s3',
      'pubrel 12',
      'pubrel 13',
      'publish 14 dup=false s1',
    ]);
    // Incoming QoS 2 state 8: a re-sent PUBLISH with that id is not delivered again, PUBREL completes it.
    const sub = connected(other, 'watcher');
    sub.subscribe('in/#');
    sub.take();
    c.publish('in/q2', 'in', 2, { packetId: 77, dup: true });
    expect(c.take()).toEqual([{ type: 'pubrec', packetId: 77 }]);
    expect(sub.take()).toEqual([]);
    c.pubrel(77);
    expect(c.take()).toEqual([{ type: 'pubcomp', packetId: 77 }]);
    // Restored subscriptions route.
    sub.publish('b/x', 'to restored', 1, { packetId: 3 });
    expect(c.takePublishes()).toMatchObject([{ topic: 'b/x', payload: 'to restored', qos: 1 }]);
  });

  it('saveSession of a live session lists in-flight then queued messages', () => {
    const { broker } = makeBroker({ limits: { maxInflightMessages: 1 } });
    const a = connected(broker, 'a', { cleanSession: false });
    a.subscribe('t', 1);
    a.take();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'm1', 1, { packetId: 1 });
    pub.publish('t', 'm2', 1, { packetId: 2 });
    const saved = broker.saveSession('a');
    expect(saved.outgoingMessages.map((m) => [decoder.decode(m.payload), m.state, m.packetId])).toEqual([
      ['m1', 2, 1],
      ['m2', 1, -1],
    ]);
    expect(() => broker.saveSession('nobody')).toThrow(
      expect.objectContaining({ code: 'CORE_SESSION_NOT_FOUND' }),
    );
  });

  it('refuses (CORE_INVALID_ARGUMENT) to load over a connected client, changing nothing', () => {
    const { broker } = makeBroker();
    const a = connected(broker, 'restored', { cleanSession: false });
    a.subscribe('keep/#', 1);
    a.take();
    const before = broker.sessions;
    expect(() => broker.loadSession(snapshotFixture())).toThrow(
      expect.objectContaining({ code: 'CORE_INVALID_ARGUMENT' }),
    );
    expect(broker.sessions).toEqual(before);
    expect(a.closed).toBe(false);
  });

  const badSnapshots: Array<[string, (s: SessionSnapshot) => void]> = [
    [
      'an incoming state on an outgoing message',
      (s) => {
        s.outgoingMessages[0]!.state = 8;
      },
    ],
    [
      'an outgoing state on an incoming message',
      (s) => {
        s.incomingMessages[0]!.state = 3;
      },
    ],
    [
      'packet id 0 on an in-flight message',
      (s) => {
        s.outgoingMessages[1]!.packetId = 0;
      },
    ],
    [
      'packet id 0 on an incoming message',
      (s) => {
        s.incomingMessages[0]!.packetId = 0;
      },
    ],
    [
      'a duplicate message id',
      (s) => {
        s.outgoingMessages[2]!.messageId = 40;
      },
    ],
    [
      'a duplicate message id across directions',
      (s) => {
        s.outgoingMessages[0]!.messageId = 50;
      },
    ],
    [
      'a duplicate packet id in flight',
      (s) => {
        s.outgoingMessages[1]!.packetId = 10;
      },
    ],
    [
      'a QoS 2 state on a QoS 1 message',
      (s) => {
        s.outgoingMessages[0]!.state = 3;
      },
    ],
    [
      'an invalid topic filter',
      (s) => {
        s.subscriptions[0]!.topicFilter = 'a/#/b';
      },
    ],
    [
      'a wildcard in a message topic',
      (s) => {
        s.outgoingMessages[0]!.topic = 'a/+';
      },
    ],
  ];

  for (const [what, spoil] of badSnapshots) {
    it(`refuses (CORE_INVALID_ARGUMENT) a snapshot with ${what}, changing nothing`, () => {
      const { broker } = makeBroker();
      const stored = connected(broker, 'restored', { cleanSession: false });
      stored.subscribe('old/#', 1);
      stored.disconnect();
      const before = broker.saveSession('restored');
      const snapshot = snapshotFixture();
      spoil(snapshot);
      expect(() => broker.loadSession(snapshot)).toThrow(
        expect.objectContaining({ code: 'CORE_INVALID_ARGUMENT' }),
      );
      expect(broker.saveSession('restored')).toEqual(before);
      expect(broker.sessions).toHaveLength(1);
    });
  }

  it('loading over a stored session replaces it (sessionRemoved for the old one)', () => {
    const { broker } = makeBroker();
    const removed = collect(broker, 'sessionRemoved');
    connected(broker, 'restored', { cleanSession: false }).subscribe('old/#').disconnect();
    broker.loadSession(snapshotFixture());
    expect(removed).toEqual([{ clientId: 'restored' }]);
    expect(broker.sessions[0]!.subscriptions.map((s) => s.topicFilter)).toEqual(['a/#', 'b/+']);
    const pub = connected(broker, 'pub');
    pub.publish('old/x', 'nobody');
    expect(broker.sessions.find((s) => s.clientId === 'restored')!.outgoingMessages).toBe(5);
  });

  it('message ids of new messages never collide with restored ones', () => {
    const { broker } = makeBroker();
    broker.loadSession(snapshotFixture());
    const ids = collect(broker, 'messageReceived');
    const pub = connected(broker, 'pub');
    pub.publish('x', 'new', 0);
    expect(ids[0]!.messageId).toBeGreaterThan(50);
  });
});

describe('server-side disconnect', () => {
  function setup() {
    const { broker } = makeBroker();
    const watcher = connected(broker, 'watcher');
    watcher.subscribe('will/#');
    watcher.take();
    const victim = connected(broker, 'victim', {
      will: { topic: 'will/victim', payload: bytesOf('kicked'), qos: 1, retain: false },
    });
    return { broker, watcher, victim };
  }

  it('[MQTT-3.1.2-8] broker.disconnect(connectionId) closes the client and publishes its will', () => {
    const { broker, watcher, victim } = setup();
    expect(broker.disconnect(victim.connectionId)).toBe(true);
    expect(victim.closed).toBe(true);
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/victim', payload: 'kicked', qos: 0 }]);
  });

  it('[MQTT-3.1.2-8] broker.disconnect(clientId) closes the client and publishes its will', () => {
    const { broker, watcher, victim } = setup();
    expect(broker.disconnect('victim')).toBe(true);
    expect(victim.closed).toBe(true);
    expect(watcher.takePublishes()).toMatchObject([{ topic: 'will/victim', payload: 'kicked' }]);
    expect(broker.disconnect('victim')).toBe(false);
    expect(broker.disconnect('nobody')).toBe(false);
  });
});
