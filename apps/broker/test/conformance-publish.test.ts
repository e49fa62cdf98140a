/**
 * Conformance over sockets, PUBLISH and its flows (3.3, 4.3, 4.6, 4.7, 2.3.1): the real server,
 * hand-made bytes on raw TCP sockets, every flag checked on the wire.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  puback,
  pubcomp,
  publishPacket,
  pubrec,
  pubrel,
  type RawClient,
  RawPool,
  type Received,
} from './helpers/raw-mqtt.js';
import { startTestServer } from './helpers/server.js';

let server: Awaited<ReturnType<typeof startTestServer>>;
const pool = new RawPool();
let port: number;
let seq = 0;
const id = (name: string) => `${name}${++seq}`;

beforeAll(async () => {
  server = await startTestServer();
  port = server.tcpPort;
});
afterEach(() => pool.closeAll());
afterAll(() => server.stop());

async function subscriber(filters: Array<[string, number]>, autoAck = true): Promise<RawClient> {
  const c = await pool.connected(port, { clientId: id('sub') });
  c.autoAck = autoAck;
  expect((await c.subscribe(1, filters)).returnCodes).toEqual(filters.map(([, q]) => q));
  return c;
}

const publisher = () => pool.connected(port, { clientId: id('pub') });

describe('QoS flows', () => {
  it('[MQTT-3.3.4-1] [MQTT-4.3.1-1] [MQTT-3.3.1-2] [MQTT-2.3.1-5] QoS 0: no answer to the publisher; delivered with QoS 0, DUP 0 and no packet identifier', async () => {
    const s = await subscriber([['q0/t', 2]]);
    const p = await publisher();
    p.send(publishPacket('q0/t', 'zero'));
    const [m] = await s.publishes(1);
    expect(m).toMatchObject({ qos: 0, dup: false });
    expect(m!.packetId).toBeUndefined();
    // 0x30, length, topic (2 + 4), payload 4: nothing else in the packet.
    expect(m!.raw.toString('hex')).toBe(
      `300a0004${Buffer.from('q0/t').toString('hex')}${Buffer.from('zero').toString('hex')}`,
    );
    expect(await p.staysOpen(150)).toBe(true);
    expect(p.pending()).toEqual([]);
  });

  it('[MQTT-3.3.4-1] [MQTT-4.3.2-1] [MQTT-4.3.2-2] [MQTT-2.3.1-6] [MQTT-2.3.1-4] [MQTT-2.3.1-1] QoS 1: PUBACK with the PUBLISH id; delivered with a non-zero id and DUP 0; the same id after PUBACK is a new message', async () => {
    const s = await subscriber([['q1/t', 1]], false);
    const p = await publisher();
    p.send(publishPacket('q1/t', 'one', { qos: 1, packetId: 0x1234 }));
    const ack = await p.next('puback');
    expect(ack.raw.toString('hex')).toBe('40021234');
    const [m] = await s.publishes(1);
    expect(m).toMatchObject({ qos: 1, dup: false });
    expect(m!.packetId).toBeGreaterThan(0);
    // Unacknowledged: the next message gets a different id.
    p.send(publishPacket('q1/t', 'again', { qos: 1, packetId: 0x1234 }));
    expect((await p.next('puback')).packetId).toBe(0x1234);
    const [m2] = await s.publishes(1);
    expect(m2!.payload.toString()).toBe('again');
    expect(m2!.packetId).not.toBe(m!.packetId);
    s.send(puback(m!.packetId!), puback(m2!.packetId!));
  });

  it('[MQTT-4.3.3-2] [MQTT-2.3.1-6] [MQTT-3.3.4-1] QoS 2 from a client: PUBREC with its id; a re-sent PUBLISH gets PUBREC and is not delivered again; PUBREL gets PUBCOMP; after PUBCOMP the id is new', async () => {
    const s = await subscriber([['q2/in', 2]]);
    const p = await publisher();
    p.send(publishPacket('q2/in', 'once', { qos: 2, packetId: 77 }));
    expect((await p.next('pubrec')).raw.toString('hex')).toBe('5002004d');
    p.send(publishPacket('q2/in', 'once', { qos: 2, packetId: 77, dup: true }));
    expect((await p.next('pubrec')).packetId).toBe(77);
    p.send(pubrel(77));
    expect((await p.next('pubcomp')).raw.toString('hex')).toBe('7002004d');
    await new Promise((r) => setTimeout(r, 150));
    expect(s.drain().filter((x) => x.type === 'publish')).toHaveLength(1);
    p.send(publishPacket('q2/in', 'new', { qos: 2, packetId: 77 }));
    await p.next('pubrec');
    p.send(pubrel(77));
    await p.next('pubcomp');
    const [m] = await s.publishes(1);
    expect(m!.payload.toString()).toBe('new');
  });

  it('[MQTT-4.3.3-1] [MQTT-2.3.1-4] QoS 2 to a client: PUBLISH QoS 2 DUP 0 with an id; PUBREC gets PUBREL (flags 0010) with that id; PUBCOMP ends it, and the PUBLISH is not re-sent', async () => {
    const s = await subscriber([['q2/out', 2]], false);
    const p = await publisher();
    p.send(publishPacket('q2/out', 'x', { qos: 2, packetId: 1 }));
    await p.next('pubrec');
    p.send(pubrel(1));
    const [m] = await s.publishes(1);
    expect(m).toMatchObject({ qos: 2, dup: false });
    expect(m!.packetId).toBeGreaterThan(0);
    s.send(pubrec(m!.packetId!));
    const rel = await s.next('pubrel');
    expect(rel.packetId).toBe(m!.packetId);
    expect(rel.raw[0]).toBe(0x62);
    s.send(pubcomp(m!.packetId!));
    expect(await s.staysOpen(200)).toBe(true);
    expect(s.pending()).toEqual([]);
  });

  it('[MQTT-3.3.1-3] the DUP flag of an incoming PUBLISH is not forwarded', async () => {
    const s = await subscriber([['dup/t', 1]]);
    const p = await publisher();
    p.send(publishPacket('dup/t', 'dup', { qos: 1, packetId: 5, dup: true }));
    await p.next('puback');
    const [m] = await s.publishes(1);
    expect(m!.dup).toBe(false);
  });

  it('[MQTT-3.8.4-6] delivery QoS is the lower of the published QoS and the granted QoS', async () => {
    const s0 = await subscriber([['min/t', 0]]);
    const s1 = await subscriber([['min/t', 1]]);
    const s2 = await subscriber([['min/t', 2]]);
    const p = await publisher();
    p.send(publishPacket('min/t', 'a', { qos: 2, packetId: 1 }));
    await p.next('pubrec');
    p.send(pubrel(1));
    p.send(publishPacket('min/t', 'b', { qos: 1, packetId: 2 }));
    expect((await s0.publishes(2)).map((m) => m.qos)).toEqual([0, 0]);
    expect((await s1.publishes(2)).map((m) => m.qos)).toEqual([1, 1]);
    expect((await s2.publishes(2)).map((m) => m.qos)).toEqual([2, 1]);
  });

  it('[MQTT-3.3.5-1] overlapping subscriptions of one client: the message is delivered respecting the highest granted QoS', async () => {
    const s = await subscriber([
      ['over/#', 0],
      ['over/+', 2],
      ['over/t', 1],
    ]);
    const p = await publisher();
    p.send(publishPacket('over/t', 'x', { qos: 2, packetId: 9 }));
    await p.next('pubrec');
    p.send(pubrel(9));
    const got = await s.publishes(1);
    expect(await s.staysOpen(200)).toBe(true);
    const all = [...got, ...s.drain().filter((x) => x.type === 'publish')];
    expect(Math.max(...all.map((m) => ('qos' in m ? m.qos : 0)))).toBe(2);
  });

  it('[MQTT-3.3.5-2] a PUBLISH the server does not authorise is acknowledged as usual (or the connection closed) and not delivered', async () => {
    const deny = (e: { topic: string; accept: boolean }) => {
      if (e.topic === 'deny/t') e.accept = false;
    };
    server.broker.on('publishRequest', deny as never);
    const s = await subscriber([['deny/t', 1]]);
    const p = await publisher();
    p.send(publishPacket('deny/t', 'no', { qos: 1, packetId: 4 }));
    const answer = await p.next().catch(() => undefined);
    if (answer !== undefined) expect(answer).toMatchObject({ type: 'puback', packetId: 4 });
    else expect(p.closed).toBe(true);
    expect(await s.staysOpen(200)).toBe(true);
    expect(s.pending()).toEqual([]);
  });
});

describe('retained messages', () => {
  it('[MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] a retained PUBLISH is stored with its QoS and sent to a new subscription with RETAIN 1', async () => {
    const p = await publisher();
    p.send(publishPacket('ret/a', 'stored', { qos: 1, packetId: 1, retain: true }));
    await p.next('puback');
    const s = await subscriber([['ret/+', 2]]);
    const [m] = await s.publishes(1);
    expect(m).toMatchObject({ topic: 'ret/a', retain: true, qos: 1 });
  });

  it('[MQTT-3.3.1-9] a message matching an established subscription is forwarded with RETAIN 0 even if published retained', async () => {
    const s = await subscriber([['ret9/t', 0]]);
    const p = await publisher();
    p.send(publishPacket('ret9/t', 'live', { retain: true }));
    const [m] = await s.publishes(1);
    expect(m!.retain).toBe(false);
  });

  it('[MQTT-3.3.1-7] a retained QoS 0 message replaces the one retained before', async () => {
    const p = await publisher();
    p.send(publishPacket('ret7/t', 'old', { qos: 1, packetId: 1, retain: true }));
    await p.next('puback');
    p.send(publishPacket('ret7/t', 'new', { qos: 0, retain: true }));
    const s = await subscriber([['ret7/t', 1]]);
    const [m] = await s.publishes(1);
    expect(m).toMatchObject({ qos: 0, retain: true });
    expect(m!.payload.toString()).toBe('new');
    expect(await s.staysOpen(150)).toBe(true);
    expect(s.pending()).toEqual([]);
  });

  it('[MQTT-3.3.1-10] [MQTT-3.3.1-11] an empty retained PUBLISH is forwarded to subscribers, removes the retained message and is not stored itself', async () => {
    const p = await publisher();
    p.send(publishPacket('ret10/t', 'something', { qos: 1, packetId: 1, retain: true }));
    await p.next('puback');
    const live = await subscriber([['ret10/t', 1]]);
    await live.publishes(1); // the retained one
    p.send(publishPacket('ret10/t', '', { qos: 1, packetId: 2, retain: true }));
    await p.next('puback');
    const [m] = await live.publishes(1);
    expect(m!.payload).toHaveLength(0);
    const late = await subscriber([['ret10/t', 1]]);
    expect(await late.staysOpen(200)).toBe(true);
    expect(late.pending()).toEqual([]);
    expect(server.broker.messages.get('ret10/t')).toBeUndefined();
  });

  it('[MQTT-3.3.1-12] a PUBLISH with RETAIN 0 is not stored and leaves the retained message alone', async () => {
    const p = await publisher();
    p.send(publishPacket('ret12/t', 'retained', { qos: 1, packetId: 1, retain: true }));
    await p.next('puback');
    p.send(publishPacket('ret12/t', 'not retained', { qos: 1, packetId: 2 }));
    await p.next('puback');
    p.send(publishPacket('ret12/u', 'not retained either', { qos: 1, packetId: 3 }));
    await p.next('puback');
    const s = await subscriber([['ret12/+', 1]]);
    const [m] = await s.publishes(1);
    expect(m!.payload.toString()).toBe('retained');
    expect(await s.staysOpen(150)).toBe(true);
    expect(s.pending()).toEqual([]);
  });
});

describe('ordering', () => {
  it('[MQTT-4.6.0-2] [MQTT-4.6.0-3] PUBACKs and PUBRECs are sent in the order the PUBLISH packets arrived', async () => {
    const p = await publisher();
    const ids = Array.from({ length: 40 }, (_, i) => 1000 + i);
    p.send(...ids.map((n, i) => publishPacket(`ord/${i}`, 'x', { qos: (i % 2) + 1, packetId: n })));
    const acks: Received[] = [];
    for (const _ of ids) acks.push(await p.next());
    expect(acks.map((a) => ('packetId' in a ? a.packetId : -1))).toEqual(ids);
    expect(acks.map((a) => a.type)).toEqual(ids.map((_, i) => (i % 2 === 0 ? 'puback' : 'pubrec')));
  });

  it('[MQTT-4.6.0-4] PUBRELs are sent in the order the PUBRECs arrived', async () => {
    const s = await subscriber([['rel/#', 2]], false);
    const p = await publisher();
    for (let i = 1; i <= 5; i++) p.send(publishPacket(`rel/${i}`, 'x', { qos: 2, packetId: i }), pubrel(i));
    const got = await s.publishes(5);
    const reversed = got.map((m) => m.packetId!).reverse();
    s.send(...reversed.map((n) => pubrec(n)));
    const rels: Array<{ packetId: number }> = [];
    for (const _ of reversed) rels.push(await s.next('pubrel'));
    expect(rels.map((r) => r.packetId)).toEqual(reversed);
    s.send(...reversed.map((n) => pubcomp(n)));
  });

  it('[MQTT-4.6.0-5] [MQTT-4.6.0-6] messages of one topic from one client reach each subscriber in the order they were published', async () => {
    const a = await subscriber([['order/t', 1]]);
    const b = await subscriber([['order/#', 0]]);
    const p = await publisher();
    p.autoAck = true;
    for (let i = 0; i < 100; i++) p.send(publishPacket('order/t', String(i), { qos: 1, packetId: i + 1 }));
    const expected = Array.from({ length: 100 }, (_, i) => String(i));
    expect((await a.publishes(100)).map((m) => m.payload.toString())).toEqual(expected);
    expect((await b.publishes(100)).map((m) => m.payload.toString())).toEqual(expected);
  });
});

describe('topic names', () => {
  it('[MQTT-3.3.2-3] [MQTT-3.3.2-1] the topic name sent to a wildcard subscriber is the published name, which matches the filter', async () => {
    const s = await subscriber([['names/+/x', 0]]);
    const p = await publisher();
    p.send(
      publishPacket('names/abc/x', '1'),
      publishPacket('names/abc/y', '2'),
      publishPacket('names/q/x', '3'),
    );
    const got = await s.publishes(2);
    expect(got.map((m) => m.topic)).toEqual(['names/abc/x', 'names/q/x']);
  });

  it('[MQTT-1.5.3-3] [MQTT-4.7.3-4] a U+FEFF (EF BB BF) in a topic is kept, not stripped, and no normalisation is applied when matching', async () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const topic = Buffer.concat([Buffer.from('bom/'), bom, Buffer.from('x')]);
    const exact = await subscriber([[topic.toString('utf8'), 0]]);
    const stripped = await subscriber([['bom/x', 0]]);
    const composed = await subscriber([['nfc/\u00e9', 0]]);
    const p = await publisher();
    p.send(publishPacket(topic, 'feff'), publishPacket('nfc/e\u0301', 'decomposed'));
    const [m] = await exact.publishes(1);
    expect(m!.topicBytes.equals(topic)).toBe(true);
    expect(await stripped.staysOpen(200)).toBe(true);
    expect(stripped.pending()).toEqual([]);
    expect(composed.pending()).toEqual([]);
  });

  it('[MQTT-4.7.3-3] a topic name of 65,535 bytes (the most a length prefix allows) is accepted and delivered', async () => {
    const s = await subscriber([['long/#', 0]]);
    const topic = `long/${'a'.repeat(65_535 - 5)}`;
    const p = await publisher();
    p.send(publishPacket(topic, 'big name', { qos: 1, packetId: 1 }));
    await p.next('puback');
    const [m] = await s.publishes(1);
    expect(m!.topicBytes).toHaveLength(65_535);
  });
});
