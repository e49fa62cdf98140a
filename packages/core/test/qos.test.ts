import { MessageState } from '@broker/core';
import { describe, expect, it } from 'vitest';
import { collect, connected, makeBroker, recordEvents } from './helpers/harness.js';

describe('QoS flows from a client', () => {
  it('[MQTT-4.3.2-2] a QoS 1 PUBLISH is answered with PUBACK carrying the same packet id', () => {
    const { broker } = makeBroker();
    const c = connected(broker, 'c');
    c.publish('t', 'x', 1, { packetId: 31337 });
    expect(c.take()).toEqual([{ type: 'puback', packetId: 31337 }]);
  });

  it('[MQTT-4.3.3-2] a QoS 2 PUBLISH gets PUBREC; PUBREL gets PUBCOMP, same packet id', () => {
    const { broker } = makeBroker();
    const c = connected(broker, 'c');
    c.publish('t', 'x', 2, { packetId: 12 });
    expect(c.take()).toEqual([{ type: 'pubrec', packetId: 12 }]);
    c.pubrel(12);
    expect(c.take()).toEqual([{ type: 'pubcomp', packetId: 12 }]);
    expect(broker.sessions[0]!.incomingMessages).toBe(0);
  });

  it('[MQTT-4.3.3-2] a repeated QoS 2 PUBLISH (same id, DUP=1) before PUBREL is acknowledged but not delivered again', () => {
    const { broker } = makeBroker();
    const sub = connected(broker, 'sub');
    sub.subscribe('t', 2);
    sub.take();
    const c = connected(broker, 'c');
    c.publish('t', 'once', 2, { packetId: 5 });
    c.publish('t', 'once', 2, { packetId: 5, dup: true });
    c.publish('t', 'once', 2, { packetId: 5, dup: true });
    expect(c.take()).toEqual([
      { type: 'pubrec', packetId: 5 },
      { type: 'pubrec', packetId: 5 },
      { type: 'pubrec', packetId: 5 },
    ]);
    expect(sub.takePublishes().map((m) => m.payload)).toEqual(['once']);
    c.pubrel(5);
    expect(c.take()).toEqual([{ type: 'pubcomp', packetId: 5 }]);
    // After PUBREL the identifier is free: a new message with it is a new message.
    c.publish('t', 'again', 2, { packetId: 5 });
    expect(sub.takePublishes().map((m) => m.payload)).toEqual(['again']);
  });

  it('[MQTT-4.3.3-2] the incoming QoS 2 state survives a reconnect of a persistent session', () => {
    const { broker } = makeBroker();
    const sub = connected(broker, 'sub');
    sub.subscribe('t', 2);
    sub.take();
    const c = connected(broker, 'c', { cleanSession: false });
    c.publish('t', 'once', 2, { packetId: 5 });
    c.peer.close();
    const again = connected(broker, 'c', { cleanSession: false });
    again.publish('t', 'once', 2, { packetId: 5, dup: true });
    expect(again.take()).toEqual([{ type: 'pubrec', packetId: 5 }]);
    again.pubrel(5);
    expect(again.take()).toEqual([{ type: 'pubcomp', packetId: 5 }]);
    expect(sub.takePublishes()).toHaveLength(1);
  });

  it('[MQTT-4.3.3-2] PUBREL for an unknown packet id is still answered with PUBCOMP', () => {
    const { broker } = makeBroker();
    const c = connected(broker, 'c');
    c.pubrel(999);
    expect(c.take()).toEqual([{ type: 'pubcomp', packetId: 999 }]);
  });
});

describe('QoS flows to a client', () => {
  it('[MQTT-4.3.2-1] QoS 1: the message stays in flight until PUBACK', () => {
    const { broker } = makeBroker();
    const sub = connected(broker, 'sub');
    sub.subscribe('t', 1);
    sub.take();
    connected(broker, 'pub').publish('t', 'x', 1, { packetId: 1 });
    const [msg] = sub.takePublishes();
    expect(msg).toMatchObject({ qos: 1, dup: false });
    expect(msg!.packetId).toBeGreaterThan(0);
    expect(broker.sessions.find((s) => s.clientId === 'sub')!.outgoingMessages).toBe(1);
    sub.puback(msg!.packetId! + 1); // not ours: ignored
    expect(broker.sessions.find((s) => s.clientId === 'sub')!.outgoingMessages).toBe(1);
    sub.puback(msg!.packetId!);
    expect(broker.sessions.find((s) => s.clientId === 'sub')!.outgoingMessages).toBe(0);
  });

  it('[MQTT-4.3.3-1] QoS 2: PUBREC is answered with PUBREL, PUBCOMP completes', () => {
    const { broker } = makeBroker();
    const sub = connected(broker, 'sub');
    sub.subscribe('t', 2);
    sub.take();
    connected(broker, 'pub').publish('t', 'x', 2, { packetId: 1 });
    const [msg] = sub.takePublishes();
    expect(msg).toMatchObject({ qos: 2, dup: false });
    sub.pubcomp(msg!.packetId!); // too early: ignored
    expect(broker.sessions.find((s) => s.clientId === 'sub')!.outgoingMessages).toBe(1);
    sub.pubrec(msg!.packetId!);
    expect(sub.take()).toEqual([{ type: 'pubrel', packetId: msg!.packetId }]);
    sub.pubcomp(msg!.packetId!);
    expect(broker.sessions.find((s) => s.clientId === 'sub')!.outgoingMessages).toBe(0);
    expect(sub.take()).toEqual([]);
  });

  it('[MQTT-2.3.1-2] never reuses a packet id while it is in flight (window full, acks out of order)', () => {
    const window = 8;
    const { broker } = makeBroker({ limits: { maxInflightMessages: window, maxQueuedMessages: 10_000 } });
    const sub = connected(broker, 'sub');
    sub.subscribe('t', 1);
    sub.take();
    const pub = connected(broker, 'pub');
    const total = 600;
    for (let i = 0; i < total; i++) pub.publish('t', `m${i}`, 1, { packetId: (i % 65535) + 1 });
    pub.take();
    const unacked = new Set<number>();
    const payloads: string[] = [];
    let step = 0;
    for (;;) {
      for (const m of sub.takePublishes()) {
        expect(unacked.has(m.packetId!), `packet id ${m.packetId} reused while in flight`).toBe(false);
        unacked.add(m.packetId!);
        payloads.push(m.payload);
      }
      expect(unacked.size).toBeLessThanOrEqual(window);
      if (unacked.size === 0) break;
      // Keep one early id unacknowledged for a long time; ack the others newest-first or oldest-first.
      const ids = [...unacked];
      const pick =
        step++ % 3 === 0 ? ids[ids.length - 1]! : ids.find((id) => id !== ids[0] || ids.length === 1)!;
      unacked.delete(pick);
      sub.puback(pick);
    }
    expect(payloads).toEqual(Array.from({ length: total }, (_, i) => `m${i}`));
  });

  it('[MQTT-2.3.1-2] packet ids wrap after 65535 and skip ids still in flight', () => {
    const { broker } = makeBroker();
    broker.loadSession({
      clientId: 'sub',
      subscriptions: [{ topicFilter: 't', qos: 1 }],
      incomingMessages: [],
      outgoingMessages: [
        {
          messageId: 1,
          topic: 't',
          payload: new Uint8Array([1]),
          qos: 1,
          dup: true,
          retain: false,
          packetId: 1,
          state: 2,
        },
        {
          messageId: 2,
          topic: 't',
          payload: new Uint8Array([2]),
          qos: 1,
          dup: true,
          retain: false,
          packetId: 2,
          state: 2,
        },
        {
          messageId: 3,
          topic: 't',
          payload: new Uint8Array([3]),
          qos: 1,
          dup: true,
          retain: false,
          packetId: 65534,
          state: 2,
        },
      ],
    });
    const sub = connected(broker, 'sub', { cleanSession: false });
    expect(sub.takePublishes().map((m) => m.packetId)).toEqual([1, 2, 65534]);
    const pub = connected(broker, 'pub');
    for (let i = 0; i < 3; i++) pub.publish('t', `n${i}`, 1, { packetId: i + 1 });
    expect(sub.takePublishes().map((m) => m.packetId)).toEqual([65535, 3, 4]);
  });

  it('[MQTT-4.6.0-5] limits.maxInflightMessages: only N unacknowledged at once, the rest follow acks in order', () => {
    const { broker } = makeBroker({ limits: { maxInflightMessages: 3 } });
    const sub = connected(broker, 'sub');
    sub.subscribe('t', 2);
    sub.take();
    const pub = connected(broker, 'pub');
    for (let i = 0; i < 10; i++) pub.publish('t', `m${i}`, (1 + (i % 2)) as 1 | 2, { packetId: i + 1 });
    pub.publish('t', 'q0', 0);
    const first = sub.takePublishes();
    expect(first.map((m) => m.payload)).toEqual(['m0', 'm1', 'm2']);
    const seen = first.map((m) => m.payload);
    while (first.length > 0) {
      const m = first.shift()!;
      if (m.qos === 1) sub.puback(m.packetId!);
      else {
        sub.pubrec(m.packetId!);
        sub.takeType('pubrel');
        sub.pubcomp(m.packetId!);
      }
      const next = sub.takePublishes();
      seen.push(...next.map((n) => n.payload));
      first.push(...next.filter((n) => n.qos > 0));
      expect(first.length).toBeLessThanOrEqual(3);
    }
    // The QoS 0 message published after them keeps its place in the order.
    expect(seen).toEqual([...Array.from({ length: 10 }, (_, i) => `m${i}`), 'q0']);
  });

  it('[MQTT-4.6.0-6] order per topic is kept across the queue, in-flight messages and a reconnect', () => {
    const { broker } = makeBroker({ limits: { maxInflightMessages: 2 } });
    const sub = connected(broker, 'sub', { cleanSession: false });
    sub.subscribe('t', 1);
    sub.take();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'a', 1, { packetId: 1 });
    pub.publish('t', 'b', 1, { packetId: 2 });
    pub.publish('t', 'c', 1, { packetId: 3 });
    const firstTwo = sub.takePublishes();
    expect(firstTwo.map((m) => m.payload)).toEqual(['a', 'b']);
    sub.puback(firstTwo[1]!.packetId!); // b done, a still in flight
    expect(sub.takePublishes().map((m) => m.payload)).toEqual(['c']);
    sub.peer.close();
    pub.publish('t', 'd', 1, { packetId: 4 });
    pub.publish('t', 'e', 1, { packetId: 5 });
    const again = connected(broker, 'sub', { cleanSession: false });
    expect(again.takePublishes().map((m) => [m.payload, m.dup])).toEqual([
      ['a', true],
      ['c', true],
    ]);
    again.puback(firstTwo[0]!.packetId!);
    const rest = again.takePublishes();
    expect(rest.map((m) => [m.payload, m.dup])).toEqual([['d', false]]);
  });
});

describe('limits.maxQueuedMessages', () => {
  it('drops new messages for an offline session beyond the limit, with messageDropped queue-full', () => {
    const { broker } = makeBroker({ limits: { maxQueuedMessages: 3 } });
    const dropped = collect(broker, 'messageDropped');
    const sub = connected(broker, 'sub', { cleanSession: false });
    sub.subscribe('t', 1);
    sub.disconnect();
    const pub = connected(broker, 'pub');
    for (let i = 0; i < 5; i++) pub.publish('t', `m${i}`, 1, { packetId: i + 1 });
    expect(dropped.map((d) => [d.clientId, d.reason, d.qos, d.topic])).toEqual([
      ['sub', 'queue-full', 1, 't'],
      ['sub', 'queue-full', 1, 't'],
    ]);
    const again = connected(broker, 'sub', { cleanSession: false });
    expect(again.takePublishes().map((m) => m.payload)).toEqual(['m0', 'm1', 'm2']);
  });
});

describe('message events', () => {
  it('incomingMessageStatus: QoS 1 goes 6 -> 10, QoS 2 goes 7 -> 8 -> 9 -> 10', () => {
    const { broker } = makeBroker();
    const states = collect(broker, 'incomingMessageStatus');
    const c = connected(broker, 'c');
    c.publish('t', 'one', 1, { packetId: 1 });
    c.publish('t', 'two', 2, { packetId: 2 });
    c.pubrel(2);
    expect(states.map((s) => [s.qos, s.packetId, s.state])).toEqual([
      [1, 1, MessageState.ReceivedQos1],
      [1, 1, MessageState.Done],
      [2, 2, MessageState.ReceivedQos2],
      [2, 2, MessageState.AwaitingPubrel],
      [2, 2, MessageState.PubrelReceived],
      [2, 2, MessageState.Done],
    ]);
    expect(states.map((s) => s.state)).toEqual([6, 10, 7, 8, 9, 10]);
  });

  it('outgoingMessageStatus: QoS 1 goes 2 -> 10, QoS 2 goes 3 -> 4 -> 5 -> 10, and 1 while queued', () => {
    const { broker } = makeBroker({ limits: { maxInflightMessages: 1 } });
    const states = collect(broker, 'outgoingMessageStatus');
    const sub = connected(broker, 'sub');
    sub.subscribe('t', 2);
    sub.take();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'one', 1, { packetId: 1 });
    pub.publish('t', 'two', 2, { packetId: 2 });
    const [one] = sub.takePublishes();
    sub.puback(one!.packetId!);
    const [two] = sub.takePublishes();
    sub.pubrec(two!.packetId!);
    sub.pubcomp(two!.packetId!);
    expect(states.map((s) => [s.topic, s.qos, s.state])).toEqual([
      ['t', 1, 2],
      ['t', 2, 1],
      ['t', 1, 10],
      ['t', 2, 3],
      ['t', 2, 4],
      ['t', 2, 5],
      ['t', 2, 10],
    ]);
    const queued = states[1]!;
    expect(queued.packetId).toBe(-1);
    expect(states[3]!.packetId).toBe(two!.packetId);
  });

  it('messageReceiving/messageReceived and messageSending/messageSent, with packetId -1 for QoS 0', () => {
    const { broker } = makeBroker();
    const log = recordEvents(broker, [
      'messageReceiving',
      'messageReceived',
      'messageSending',
      'messageSent',
    ]);
    const sub = connected(broker, 'sub');
    sub.subscribe('t', 2);
    sub.take();
    const pub = connected(broker, 'pub');
    pub.publish('t', 'zero', 0);
    expect(log.map(([name, e]) => [name, e.clientId, e.qos, e.packetId])).toEqual([
      ['messageReceiving', 'pub', 0, -1],
      ['messageSending', 'sub', 0, -1],
      ['messageSent', 'sub', 0, -1],
      ['messageReceived', 'pub', 0, -1],
    ]);
    expect(sub.takePublishes()).toMatchObject([{ payload: 'zero', packetId: undefined }]);
    log.length = 0;
    pub.publish('t', 'two', 2, { packetId: 44 });
    const [m] = sub.takePublishes();
    expect(log.map(([name, e]) => [name, e.clientId, e.qos, e.packetId])).toEqual([
      ['messageReceiving', 'pub', 2, 44],
      ['messageSending', 'sub', 2, m!.packetId],
    ]);
    log.length = 0;
    pub.pubrel(44);
    expect(log.map(([name, e]) => [name, e.clientId, e.packetId])).toEqual([['messageReceived', 'pub', 44]]);
    log.length = 0;
    sub.pubrec(m!.packetId!);
    sub.pubcomp(m!.packetId!);
    expect(log.map(([name, e]) => [name, e.clientId, e.packetId, e.topic])).toEqual([
      ['messageSent', 'sub', m!.packetId, 't'],
    ]);
  });

  it('a message keeps its broker-wide message id from receipt to every delivery', () => {
    const { broker } = makeBroker();
    const received = collect(broker, 'messageReceived');
    const sent = collect(broker, 'messageSent');
    for (const id of ['a', 'b']) {
      const s = connected(broker, id);
      s.subscribe('t');
    }
    connected(broker, 'pub').publish('t', 'x');
    expect(sent.map((e) => e.messageId)).toEqual([received[0]!.messageId, received[0]!.messageId]);
  });
});
