/**
 * Conformance over sockets, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK and PINGREQ (3.8 to 3.12): the
 * real server, hand-made bytes on raw TCP sockets.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  pingreq,
  puback,
  publishPacket,
  pubrec,
  type RawClient,
  RawPool,
  subscribePacket,
  unsubscribePacket,
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
  server.broker.on('subscribe', (e) => {
    if (e.topicFilter.startsWith('forbidden/')) e.returnCode = 0x80;
  });
});
afterEach(() => pool.closeAll());
afterAll(() => server.stop());

const client = () => pool.connected(port, { clientId: id('c') });

async function publish(topic: string, payload: string, qos = 0, retain = false): Promise<void> {
  const p = await client();
  p.send(publishPacket(topic, payload, { qos, packetId: 1, retain }));
  if (qos === 1) await p.next('puback');
  p.close();
}

async function nothingFor(c: RawClient, ms = 200): Promise<void> {
  expect(await c.staysOpen(ms)).toBe(true);
  expect(c.pending().filter((p) => p.type === 'publish')).toEqual([]);
}

describe('SUBSCRIBE and SUBACK', () => {
  it('[MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-2.3.1-7] [MQTT-3.8.4-4] [MQTT-3.8.4-5] [MQTT-3.9.3-1] one SUBACK with the SUBSCRIBE id and one return code per filter, in order', async () => {
    const c = await client();
    c.send(
      subscribePacket(0xbeef, [
        ['s/two', 2],
        ['s/zero', 0],
        ['s/one', 1],
        ['forbidden/x', 1],
        ['s/+/deep/#', 2],
      ]),
    );
    const ack = await c.next('suback');
    expect(ack.packetId).toBe(0xbeef);
    expect(ack.returnCodes).toEqual([2, 0, 1, 0x80, 2]);
    expect(ack.raw.subarray(0, 4).toString('hex')).toBe('9007beef');
    // Each filter was handled as its own subscription.
    await publish('s/zero', 'z');
    await publish('s/a/deep/b', 'd');
    expect((await c.publishes(2)).map((m) => m.topic)).toEqual(['s/zero', 's/a/deep/b']);
  });

  it('[MQTT-3.9.3-2] SUBACK return codes are only 0x00, 0x01, 0x02 or 0x80', async () => {
    const c = await client();
    const filters: Array<[string, number]> = [];
    for (let q = 0; q < 3; q++) filters.push([`codes/${q}`, q], [`forbidden/${q}`, q]);
    const ack = await c.subscribe(2, filters);
    for (const code of ack.returnCodes) expect([0x00, 0x01, 0x02, 0x80]).toContain(code);
    expect(ack.returnCodes).toEqual([0, 0x80, 1, 0x80, 2, 0x80]);
  });

  it('[MQTT-3.8.3-2] [MQTT-4.7.1-2] [MQTT-4.7.1-3] wildcard filters are supported: + matches one level, # any number including none', async () => {
    const c = await client();
    await c.subscribe(3, [
      ['wild/+/x', 0],
      ['deep/#', 0],
    ]);
    for (const t of ['wild/a/x', 'wild/a/b/x', 'deep', 'deep/1/2/3', 'wild//x']) await publish(t, t);
    const got = await c.publishes(4);
    expect(got.map((m) => m.topic).sort()).toEqual(['deep', 'deep/1/2/3', 'wild//x', 'wild/a/x']);
  });

  it('[MQTT-3.8.4-3] subscribing again to the same filter replaces the subscription (new QoS), re-sends retained messages, and delivers one copy per message', async () => {
    await publish('again/t', 'retained', 1, true);
    const c = await client();
    c.autoAck = true;
    await c.subscribe(4, [['again/t', 0]]);
    const [r1] = await c.publishes(1);
    expect(r1).toMatchObject({ retain: true, qos: 0 });
    await c.subscribe(5, [['again/t', 1]]);
    const [r2] = await c.publishes(1);
    expect(r2).toMatchObject({ retain: true, qos: 1 });
    await publish('again/t', 'live', 1);
    const [m] = await c.publishes(1);
    expect(m).toMatchObject({ qos: 1, retain: false });
    await nothingFor(c);
  });
});

describe('UNSUBSCRIBE and UNSUBACK', () => {
  it('[MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-2.3.1-7] UNSUBACK carries the UNSUBSCRIBE id, even when nothing was subscribed', async () => {
    const c = await client();
    c.send(unsubscribePacket(0x4242, ['never/subscribed']));
    const ack = await c.next('unsuback');
    expect(ack.raw.toString('hex')).toBe('b0024242');
  });

  it('[MQTT-3.10.4-1] filters are compared byte for byte: only the identical filter is removed', async () => {
    const c = await client();
    await c.subscribe(1, [
      ['u/b', 0],
      ['u/+', 0],
    ]);
    c.send(unsubscribePacket(2, ['u/B', 'u/#', 'u/b ']));
    await c.next('unsuback');
    await publish('u/b', '1');
    const got = await c.publishes(1);
    expect(got[0]!.topic).toBe('u/b');
    c.send(unsubscribePacket(3, ['u/+']));
    await c.next('unsuback');
    await publish('u/b', '2');
    await c.publishes(1); // u/b still subscribed
    c.send(unsubscribePacket(4, ['u/b']));
    await c.next('unsuback');
    await publish('u/b', '3');
    await nothingFor(c);
  });

  it('[MQTT-3.10.4-6] [MQTT-3.10.4-2] an UNSUBSCRIBE with several filters removes each, with one UNSUBACK; no new messages follow', async () => {
    const c = await client();
    await c.subscribe(1, [
      ['m/1', 0],
      ['m/2', 0],
      ['m/3', 0],
    ]);
    c.send(unsubscribePacket(9, ['m/1', 'm/3']));
    expect((await c.next('unsuback')).packetId).toBe(9);
    await publish('m/1', 'x');
    await publish('m/2', 'y');
    await publish('m/3', 'z');
    const [m] = await c.publishes(1);
    expect(m!.topic).toBe('m/2');
    await nothingFor(c);
    expect(c.pending().filter((p) => p.type === 'unsuback')).toEqual([]);
  });

  it('[MQTT-3.10.4-3] QoS 1 and QoS 2 deliveries started before UNSUBSCRIBE are completed after it', async () => {
    const c = await client();
    await c.subscribe(1, [
      ['inflight/1', 1],
      ['inflight/2', 2],
    ]);
    await publish('inflight/1', 'one', 1);
    const p = await client();
    p.send(publishPacket('inflight/2', 'two', { qos: 2, packetId: 2 }));
    await p.next('pubrec');
    p.send(Buffer.from([0x62, 0x02, 0x00, 0x02]));
    const [m1, m2] = await c.publishes(2);
    c.send(unsubscribePacket(5, ['inflight/1', 'inflight/2']));
    await c.next('unsuback');
    // The QoS 2 flow continues: PUBREC still gets its PUBREL; the PUBACK is accepted.
    c.send(puback(m1!.packetId!), pubrec(m2!.packetId!));
    const rel = await c.next('pubrel');
    expect(rel.packetId).toBe(m2!.packetId);
    c.send(Buffer.from([0x70, 0x02, m2!.packetId! >> 8, m2!.packetId! & 0xff]));
    expect(await c.staysOpen(150)).toBe(true);
  });
});

describe('PINGREQ', () => {
  it('[MQTT-3.12.4-1] PINGREQ gets PINGRESP, also several in one write', async () => {
    const c = await client();
    c.send(pingreq(), pingreq(), pingreq());
    for (let i = 0; i < 3; i++) expect((await c.next('pingresp')).raw.toString('hex')).toBe('d000');
  });
});
