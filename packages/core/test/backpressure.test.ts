import type { QoS } from '@broker/codec';
import { describe, expect, it } from 'vitest';
import { collect, connected, makeBroker, TestClient } from './helpers/harness.js';

const PAYLOAD = 'x'.repeat(40); // a PUBLISH on topic 't' at QoS 0 is 45 bytes

// Publisher flow control is off here: these tests check the limits a slow consumer meets (see
// flow-control.test.ts for the holds that come first).
function setup() {
  const { broker, clock } = makeBroker({
    limits: { maxOutgoingBufferBytes: 200, maxQueuedMessages: 5, drainTimeoutMs: 5000, flowControlBytes: 0 },
  });
  const dropped = collect(broker, 'messageDropped');
  const slow = new TestClient(broker, { highWaterMarkBytes: 100 }).connect({ clientId: 'slow' });
  slow.take();
  slow.subscribe('t', 1);
  slow.take();
  const fast = connected(broker, 'fast');
  fast.subscribe('t', 1);
  fast.take();
  const pub = connected(broker, 'pub');
  return { broker, clock, dropped, slow, fast, pub };
}

function flood(pub: TestClient, prefix: string, count: number, qos: QoS): string[] {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}${i}`;
    names.push(name);
    pub.publish('t', `${name}:${PAYLOAD}`, qos, { packetId: qos > 0 ? i + 1 : undefined });
  }
  pub.take();
  return names;
}

const names = (client: TestClient) => client.takePublishes().map((m) => m.payload.split(':')[0]);

describe('a subscriber that stops reading', () => {
  it('drops its QoS 0 messages beyond limits.maxOutgoingBufferBytes (backpressure); others receive everything', () => {
    const { dropped, slow, fast, pub } = setup();
    slow.peer.stopReading();
    const sent = flood(pub, 'a', 12, 0);
    expect(names(fast)).toEqual(sent);
    const backpressure = dropped.filter((d) => d.reason === 'backpressure');
    expect(backpressure.length).toBeGreaterThan(0);
    expect(backpressure.every((d) => d.clientId === 'slow' && d.qos === 0)).toBe(true);
    slow.peer.startReading();
    const got = names(slow);
    // What reached it is the first messages, in order; the rest were dropped.
    expect(got).toEqual(sent.slice(0, got.length));
    expect(got.length + backpressure.length).toBe(sent.length);
    // At most the buffer limit (plus the message that crossed it) was held for it.
    expect(got.length * 45).toBeLessThanOrEqual(200 + 45);
  });

  it('queues its QoS 1 messages, bounded by limits.maxQueuedMessages (queue-full), and sends them in order on drain', () => {
    const { broker, dropped, slow, fast, pub } = setup();
    slow.peer.stopReading();
    const zeros = flood(pub, 'z', 3, 0); // 135 bytes: above the 100-byte high-water mark
    const ones = flood(pub, 'o', 9, 1);
    expect(names(fast)).toEqual([...zeros, ...ones]);
    const queueFull = dropped.filter((d) => d.reason === 'queue-full');
    expect(queueFull.map((d) => [d.clientId, d.qos])).toEqual(Array(4).fill(['slow', 1]));
    expect(broker.sessions.find((s) => s.clientId === 'slow')!.outgoingMessages).toBe(5);
    // Reading again: the buffered bytes arrive, then onDrain lets the queue flow.
    slow.peer.startReading();
    const packets = slow.takePublishes();
    expect(packets.map((p) => p.payload.split(':')[0])).toEqual([...zeros, ...ones.slice(0, 5)]);
    expect(packets.slice(3).every((p) => p.qos === 1 && p.packetId !== undefined)).toBe(true);
    for (const p of packets.slice(3)) slow.puback(p.packetId!);
    expect(broker.sessions.find((s) => s.clientId === 'slow')!.outgoingMessages).toBe(0);
    expect(slow.closed).toBe(false);
  });

  it('keeps the order of later messages behind the queue (QoS 0 waits behind queued QoS 1)', () => {
    const { slow, pub } = setup();
    slow.peer.stopReading();
    const zeros = flood(pub, 'z', 3, 0);
    const ones = flood(pub, 'o', 2, 1);
    const tail = flood(pub, 'tail', 1, 0);
    slow.peer.startReading();
    expect(names(slow)).toEqual([...zeros, ...ones, ...tail]);
  });

  it('a client blocked longer than limits.drainTimeoutMs is disconnected (CORE_DRAIN_TIMEOUT), not before', () => {
    const { broker, clock, slow, fast, pub } = setup();
    const errors = collect(broker, 'error');
    slow.peer.stopReading();
    flood(pub, 'z', 3, 0);
    clock.advance(5000);
    expect(slow.closed).toBe(false);
    clock.advance(1000);
    expect(slow.closed).toBe(true);
    expect(errors).toMatchObject([{ connectionId: slow.connectionId, code: 'CORE_DRAIN_TIMEOUT' }]);
    expect(fast.closed).toBe(false);
  });

  it('a client that drains in time is not disconnected', () => {
    const { clock, slow, pub } = setup();
    slow.peer.stopReading();
    flood(pub, 'z', 3, 0);
    clock.advance(4000);
    slow.peer.startReading();
    slow.take();
    clock.advance(10_000);
    expect(slow.closed).toBe(false);
  });

  it('a persistent subscriber disconnected for blocking keeps its queued QoS 1 messages', () => {
    const { broker, clock, pub } = setup();
    const slowP = new TestClient(broker, { highWaterMarkBytes: 100 }).connect({
      clientId: 'slowp',
      cleanSession: false,
    });
    slowP.subscribe('t', 1);
    slowP.take();
    slowP.peer.stopReading();
    flood(pub, 'z', 3, 0);
    const ones = flood(pub, 'o', 3, 1);
    clock.advance(7000);
    expect(slowP.closed).toBe(true);
    const back = connected(broker, 'slowp', { cleanSession: false });
    expect(names(back)).toEqual(ones);
  });
});
