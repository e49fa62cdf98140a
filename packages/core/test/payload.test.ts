import { encode } from '@broker/codec';
import { describe, expect, it } from 'vitest';
import { connected, makeBroker } from './helpers/harness.js';

describe('payload ownership', () => {
  it('delivers a large payload intact to several receivers at every QoS (sent as head + shared payload)', () => {
    const { broker } = makeBroker();
    const subs = [0, 1, 2].map((q) => {
      const c = connected(broker, `s${q}`);
      c.subscribe('big', q as 0 | 1 | 2);
      c.take();
      return c;
    });
    const payload = new Uint8Array(200_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    const pub = connected(broker, 'p');
    pub.send({ type: 'publish', topic: 'big', payload, qos: 2, retain: false, dup: false, packetId: 9 });
    subs.forEach((sub, q) => {
      const [got] = sub.take().filter((p) => p.type === 'publish');
      expect(got).toMatchObject({ topic: 'big', qos: q });
      expect(
        Buffer.compare(Buffer.from((got as { payload: Uint8Array }).payload), Buffer.from(payload)),
      ).toBe(0);
    });
  });

  it.each([
    ['a Uint8Array', (n: number) => new Uint8Array(n)],
    // A Buffer's slice() is a view, not a copy: the chunk a socket delivers is a Buffer.
    ['a Buffer', (n: number) => Buffer.alloc(n)],
  ])(
    'copies a small payload out of the received chunk (%s) before keeping it, so reusing the chunk cannot change it',
    (_, alloc) => {
      const { broker } = makeBroker();
      const pub = connected(broker, 'p');
      // One chunk holding a small retained PUBLISH followed by plenty of other bytes (a big read).
      const publish = encode({
        type: 'publish',
        topic: 'keep',
        payload: new TextEncoder().encode('abc'),
        qos: 0,
        retain: true,
        dup: false,
      });
      const padding = encode({
        type: 'publish',
        topic: 'pad',
        payload: new Uint8Array(4000),
        qos: 0,
        retain: false,
        dup: false,
      });
      const chunk = alloc(publish.length + padding.length);
      chunk.set(publish);
      chunk.set(padding, publish.length);
      pub.peer.write(chunk); // the very buffer, not a copy
      chunk.fill(0); // a misbehaving caller reuses its buffer
      expect(new TextDecoder().decode(broker.retained.get('keep')!.payload)).toBe('abc');
    },
  );
});

describe('queue bound', () => {
  it('QoS 0 messages queued behind QoS 1 ones (to keep order) count against maxQueuedMessages too', () => {
    // Flow control off: this checks the limit that applies to slow consumers.
    const { broker } = makeBroker({
      limits: { maxQueuedMessages: 5, maxInflightMessages: 1, flowControlBytes: 0 },
    });
    const dropped: string[] = [];
    broker.on('messageDropped', (e) => dropped.push(`${e.qos}:${e.reason}`));
    const sub = connected(broker, 'slow');
    sub.subscribe('q/#', 1);
    sub.take();
    const pub = connected(broker, 'p');
    // One QoS 1 in flight (never acknowledged), then the queue fills; QoS 0 must queue behind it.
    for (let i = 0; i < 3; i++) pub.publish('q/one', `a${i}`, 1, { packetId: i + 1 });
    for (let i = 0; i < 20; i++) pub.publish('q/zero', `z${i}`, 0);
    const session = broker.sessions.find((s) => s.clientId === 'slow')!;
    expect(session.outgoingMessages).toBeLessThanOrEqual(1 + 5);
    expect(dropped.filter((d) => d === '0:queue-full').length).toBe(20 - 3);
  });

  it('keeps its own copy of what broker.publish and retained.set are given (a Buffer changed afterwards changes nothing)', () => {
    const { broker } = makeBroker();
    const sub = connected(broker, 's');
    sub.subscribe('api/#', 1);
    sub.take();
    const payload = Buffer.from('original');
    broker.publish({ topic: 'api/a', payload, qos: 1 });
    broker.retained.set('api/r', payload);
    payload.fill(0x21);
    expect(sub.takePublishes().map((m) => m.payload)).toEqual(['original']);
    expect(Buffer.from(broker.retained.get('api/r')!.payload).toString()).toBe('original');
  });

  it('a large payload received over several chunks is delivered from those chunks to every QoS, and kept intact as retained', () => {
    const { broker } = makeBroker();
    const subs = [0, 1, 2].map((q) => {
      const c = connected(broker, `s${q}`);
      c.subscribe('big/#', q as 0 | 1 | 2);
      c.take();
      return c;
    });
    const payload = Buffer.alloc(300_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 17) & 0xff;
    const bytes = encode({
      type: 'publish',
      topic: 'big/r',
      payload,
      qos: 2,
      retain: true,
      dup: false,
      packetId: 3,
    });
    const pub = connected(broker, 'p');
    for (let pos = 0; pos < bytes.length; pos += 65_536) {
      pub.peer.write(Buffer.from(bytes.subarray(pos, pos + 65_536))); // as a socket delivers it
    }
    subs.forEach((sub, q) => {
      const [got] = sub.take().filter((p) => p.type === 'publish');
      expect(got).toMatchObject({ topic: 'big/r', qos: q });
      expect(Buffer.compare(Buffer.from((got as { payload: Uint8Array }).payload), payload)).toBe(0);
    });
    expect(Buffer.compare(Buffer.from(broker.retained.get('big/r')!.payload), payload)).toBe(0);
    // A later subscriber gets the retained message, whole.
    const late = connected(broker, 'late');
    late.subscribe('big/r', 1);
    const [retained] = late.take().filter((p) => p.type === 'publish');
    expect(Buffer.compare(Buffer.from((retained as { payload: Uint8Array }).payload), payload)).toBe(0);
  });
});
