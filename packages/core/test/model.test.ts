import type { QoS } from '@broker/codec';
import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { collect, connected, makeBroker, TestClient } from './helpers/harness.js';

/**
 * A model-based test of delivery guarantees for one persistent subscriber, driven by random
 * sequences of connects (clean 0/1, takeovers), disconnects (DISCONNECT or socket close),
 * subscriptions, publishes at QoS 0/1/2 from another client, and the subscriber processing what it
 * received (with or without acknowledging). The subscriber behaves as a correct client: it keeps
 * the packet ids of QoS 2 messages until PUBREL, so a re-sent QoS 2 PUBLISH reaches its application
 * once [MQTT-4.3.3-2] (method B of the standard).
 *
 * Checked against a simple model:
 * - [MQTT-3.1.2-4] [MQTT-4.4.0-1] no QoS 1/2 message routed to a live session is lost;
 * - [MQTT-4.3.3-2] no QoS 2 (and no QoS 0) message reaches the application twice;
 * - [MQTT-4.6.0-6] per topic, messages reach the application in the order they were published;
 * - [MQTT-3.8.4-6] each arrives at min(published QoS, granted QoS);
 * - [MQTT-3.2.2-2] [MQTT-3.2.2-3] session present is 1 exactly when a session was stored.
 */

type Action =
  | { kind: 'connect'; clean: boolean; takeover: boolean }
  | { kind: 'disconnect'; graceful: boolean }
  | { kind: 'subscribe'; qos: QoS }
  | { kind: 'publish'; topic: 't/a' | 't/b'; qos: QoS }
  | { kind: 'process'; acks: boolean };

const qosArb = fc.constantFrom<QoS>(0, 1, 2);
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('connect' as const),
      clean: fc.boolean(),
      takeover: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('disconnect' as const), graceful: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('subscribe' as const), qos: qosArb }) },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('publish' as const),
      topic: fc.constantFrom('t/a', 't/b'),
      qos: qosArb,
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('process' as const), acks: fc.boolean() }) },
);

interface Routed {
  topic: string;
  qos: QoS;
}

function run(actions: Action[], maxInflightMessages: number): void {
  const { broker } = makeBroker({ limits: { maxInflightMessages } });
  const dropped = collect(broker, 'messageDropped');
  const publisher = connected(broker, 'P');
  let publisherPacketId = 0;

  // The subscriber client: its connection and its own QoS 2 state, which outlives connections.
  let conn: TestClient | undefined;
  let qos2Held = new Set<number>();
  // Acknowledgements the client has delayed (lost if the connection ends first).
  let owed: Array<{ type: 'puback' | 'pubrec' | 'pubcomp'; packetId: number }> = [];
  const app: Array<{ seq: number; topic: string; qos: QoS }> = [];

  // The model of the broker's session for client S.
  let sessionExists = false;
  let sessionClean = false;
  let granted: QoS | undefined;
  let mustDeliver = new Map<number, Routed>();
  const routed = new Map<number, Routed>();
  let seq = 0;

  const discardSession = () => {
    sessionExists = false;
    granted = undefined;
    mustDeliver = new Map();
  };

  const connect = (clean: boolean) => {
    if (clean) {
      discardSession();
      qos2Held = new Set(); // the client discards its session state too [MQTT-3.1.2-6]
    }
    const expectPresent = !clean && sessionExists;
    conn = new TestClient(broker).connect({ clientId: 'S', cleanSession: clean });
    const [connack] = conn.received.splice(0, 1);
    expect(connack).toEqual({ type: 'connack', sessionPresent: expectPresent, returnCode: 0 });
    sessionExists = true;
    sessionClean = clean;
  };

  const endConnection = (graceful: boolean) => {
    if (conn === undefined) return;
    if (graceful) conn.disconnect();
    else conn.peer.close();
    expect(conn.closed).toBe(true);
    conn = undefined; // what it had not processed, and the acknowledgements it owed, are lost with it
    owed = [];
    if (sessionClean) discardSession();
  };

  const process = (acks: boolean) => {
    if (conn === undefined) return;
    const c = conn;
    const ack = (type: 'puback' | 'pubrec' | 'pubcomp', packetId: number) => {
      if (acks) c.send({ type, packetId });
      else owed.push({ type, packetId });
    };
    if (acks) {
      for (const a of owed) c.send(a);
      owed = [];
    }
    for (const packet of c.take()) {
      if (packet.type === 'publish') {
        const n = Number(new TextDecoder().decode(packet.payload));
        if (packet.qos === 2) {
          if (!qos2Held.has(packet.packetId!)) {
            qos2Held.add(packet.packetId!);
            app.push({ seq: n, topic: packet.topic, qos: 2 });
          }
          ack('pubrec', packet.packetId!);
        } else {
          app.push({ seq: n, topic: packet.topic, qos: packet.qos });
          if (packet.qos === 1) ack('puback', packet.packetId!);
        }
      } else if (packet.type === 'pubrel') {
        qos2Held.delete(packet.packetId);
        ack('pubcomp', packet.packetId);
      } else {
        expect(packet.type).toBe('suback');
      }
    }
  };

  const drain = () => {
    for (let i = 0; i < 10_000 && conn !== undefined && (conn.received.length > 0 || owed.length > 0); i++) {
      process(true);
    }
    expect(conn?.received ?? []).toEqual([]);
  };

  for (const action of actions) {
    switch (action.kind) {
      case 'connect':
        if (conn !== undefined && !action.takeover) endConnection(true);
        if (conn !== undefined) {
          // Takeover [MQTT-3.1.4-2]: the old connection is closed by the broker.
          const old = conn;
          conn = undefined;
          owed = [];
          if (sessionClean) discardSession(); // a clean session ends with its connection [MQTT-3.1.2-6]
          connect(action.clean);
          expect(old.closed).toBe(true);
        } else connect(action.clean);
        break;
      case 'disconnect':
        endConnection(action.graceful);
        break;
      case 'subscribe':
        if (conn === undefined) break;
        conn.subscribe('t/#', action.qos, 1);
        granted = action.qos;
        break;
      case 'publish': {
        const n = ++seq;
        publisherPacketId = (publisherPacketId % 65535) + 1;
        publisher.publish(action.topic, String(n), action.qos, {
          packetId: action.qos > 0 ? publisherPacketId : undefined,
        });
        if (action.qos === 2) publisher.pubrel(publisherPacketId);
        publisher.take();
        if (sessionExists && granted !== undefined) {
          const qos = Math.min(action.qos, granted) as QoS;
          routed.set(n, { topic: action.topic, qos });
          if (qos > 0) mustDeliver.set(n, { topic: action.topic, qos });
        }
        break;
      }
      case 'process':
        process(action.acks);
        break;
    }
  }

  // The end: take everything still on its way; for a persistent session, also reconnect once so
  // unacknowledged messages are re-sent [MQTT-4.4.0-1].
  drain();
  if (sessionExists && !sessionClean) {
    endConnection(false);
    connect(false);
    drain();
  }

  expect(dropped).toEqual([]);
  const delivered = new Map<number, number>();
  for (const { seq: n, topic, qos } of app) {
    const expected = routed.get(n);
    expect(expected, `message ${n} was never routed to this session`).toBeDefined();
    expect([topic, qos]).toEqual([expected!.topic, expected!.qos]);
    delivered.set(n, (delivered.get(n) ?? 0) + 1);
  }
  for (const [n, { qos }] of routed) {
    if (qos !== 1)
      expect(delivered.get(n) ?? 0, `QoS ${qos} message ${n} delivered twice`).toBeLessThanOrEqual(1);
  }
  for (const n of mustDeliver.keys()) {
    expect(delivered.get(n) ?? 0, `QoS ${mustDeliver.get(n)!.qos} message ${n} lost`).toBeGreaterThanOrEqual(
      1,
    );
  }
  for (const topic of ['t/a', 't/b']) {
    const firsts: number[] = [];
    const seen = new Set<number>();
    for (const d of app) {
      if (d.topic !== topic || seen.has(d.seq)) continue;
      seen.add(d.seq);
      firsts.push(d.seq);
    }
    expect(firsts, `order on ${topic}`).toEqual([...firsts].sort((a, b) => a - b));
  }
}

describe('model: one persistent subscriber', () => {
  test.prop([fc.array(actionArb, { maxLength: 40 }), fc.constantFrom(1, 2, 64)], {
    numRuns: 250,
    seed: 0x5eed,
  })(
    '[MQTT-4.4.0-1] [MQTT-4.3.3-2] [MQTT-4.6.0-6] no QoS 1/2 loss, no QoS 2 duplicate, order per topic kept',
    (actions, maxInflight) => {
      run(actions, maxInflight);
    },
  );

  test.prop([fc.array(actionArb, { minLength: 60, maxLength: 120 })], { numRuns: 40, seed: 0x1e57 })(
    '[MQTT-4.4.0-1] [MQTT-4.3.3-2] [MQTT-4.6.0-6] the same over longer sequences with a window of 1',
    (actions) => {
      run(actions, 1);
    },
  );
});
