/**
 * Conformance over sockets, CONNECT and CONNACK (3.1, 3.2), sessions (4.1), wills and keep-alive:
 * the real server, hand-made bytes on raw TCP sockets.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from './helpers/clients.js';
import {
  connectPacket,
  disconnect,
  pingreq,
  publishPacket,
  pubrec,
  type RawClient,
  RawPool,
  subscribePacket,
} from './helpers/raw-mqtt.js';
import { startTestServer } from './helpers/server.js';

let server: Awaited<ReturnType<typeof startTestServer>>;
const pool = new RawPool();
let port: number;
let seq = 0;
const id = (name: string) => `${name}${++seq}`;

beforeAll(async () => {
  server = await startTestServer({ limits: { maxClientIdBytes: 64 } });
  port = server.tcpPort;
});
afterEach(() => pool.closeAll());
afterAll(() => server.stop());

/** A raw subscriber on `filter` (QoS `qos`), acknowledging automatically. */
async function subscriber(filter: string, qos = 2, clientId = id('sub')): Promise<RawClient> {
  const c = await pool.connected(port, { clientId });
  c.autoAck = true;
  expect((await c.subscribe(1, [[filter, qos]])).returnCodes).toEqual([qos]);
  return c;
}

describe('CONNECT accepted', () => {
  it('[MQTT-3.1.4-4] [MQTT-3.2.0-1] [MQTT-3.1.3-5] [MQTT-3.1.3-3] [MQTT-3.1.3-4] a 23-character alphanumeric client id is accepted: the first packet back is CONNACK 0', async () => {
    const c = await pool.open(port);
    const clientId = 'abcdefghijklmnopqrstuvW';
    expect(clientId).toHaveLength(23);
    c.send(connectPacket({ clientId }));
    const first = await c.next();
    expect(first.type).toBe('connack');
    expect(first.type === 'connack' && first.returnCode).toBe(0);
    expect(first.raw.toString('hex')).toBe('20020000');
    expect([...server.broker.connections.values()].some((x) => x.clientId === clientId)).toBe(true);
  });

  it('[MQTT-3.1.3-1] [MQTT-3.1.3-10] [MQTT-3.1.3-11] [MQTT-3.1.2-9] [MQTT-3.1.2-19] [MQTT-3.1.2-21] a CONNECT with client id, will topic, will message, user name and password, in that order, is read field by field', async () => {
    const seen: Array<{ userName: string; password: string }> = [];
    const listener = (e: { userName: string; password: string }) => {
      seen.push({ userName: e.userName, password: e.password });
    };
    server.broker.on('sessionRequest', listener);
    const watcher = await subscriber('fields/#');
    const c = await pool.open(port);
    const ack = await c.connect({
      clientId: id('fields'),
      will: { topic: 'fields/will', payload: 'gone', qos: 1 },
      username: 'ünïcode-user',
      password: 'pa55',
    });
    expect(ack.returnCode).toBe(0);
    expect(seen.at(-1)).toEqual({ userName: 'ünïcode-user', password: 'pa55' });
    c.close(); // abnormal end: the will (read from the right field) is published
    const [will] = await watcher.publishes(1);
    expect(will!.topic).toBe('fields/will');
    expect(will!.payload.toString()).toBe('gone');
  });

  it('[MQTT-3.1.3-6] a zero-length client id with CleanSession 1 is given a unique client id', async () => {
    const a = await pool.open(port);
    const b = await pool.open(port);
    expect((await a.connect({ clientId: '', cleanSession: true })).returnCode).toBe(0);
    expect((await b.connect({ clientId: '', cleanSession: true })).returnCode).toBe(0);
    const ids = [...server.broker.connections.values()]
      .filter((x) => x.remotePort === a.socket.localPort || x.remotePort === b.socket.localPort)
      .map((x) => x.clientId);
    expect(ids).toHaveLength(2);
    expect(ids[0]).not.toBe('');
    expect(ids[0]).not.toBe(ids[1]);
    // Both work independently.
    a.send(pingreq());
    b.send(pingreq());
    await a.next('pingresp');
    await b.next('pingresp');
  });
});

describe('CONNECT refused', () => {
  it('[MQTT-3.1.3-8] [MQTT-3.1.3-9] [MQTT-3.2.2-4] [MQTT-3.2.2-5] a zero-length client id with CleanSession 0 gets CONNACK 0x02, Session Present 0, then the connection is closed', async () => {
    const c = await pool.open(port);
    const ack = await c.connect({ clientId: '', cleanSession: false });
    expect(ack.returnCode).toBe(2);
    expect(ack.sessionPresent).toBe(false);
    await c.expectClosed();
  });

  it('[MQTT-3.1.3-9] [MQTT-3.2.2-5] a client id the server rejects (longer than maxClientIdBytes) gets CONNACK 0x02 and the connection is closed', async () => {
    const c = await pool.open(port);
    const ack = await c.connect({ clientId: 'x'.repeat(65) });
    expect(ack.returnCode).toBe(2);
    expect(ack.sessionPresent).toBe(false);
    await c.expectClosed();
  });

  it('[MQTT-3.1.4-5] [MQTT-3.2.2-5] after a refused CONNECT nothing the client sent behind it is processed', async () => {
    const listener = (e: { userName: string; accept: boolean; returnCode: number }) => {
      if (e.userName === 'intruder') {
        e.accept = false;
        e.returnCode = 5;
      }
    };
    server.broker.on('sessionRequest', listener as never);
    const watcher = await subscriber('refused/#');
    const c = await pool.open(port);
    // CONNECT and, in the same write, a retained PUBLISH and a SUBSCRIBE.
    c.send(
      connectPacket({ clientId: id('intruder'), username: 'intruder' }),
      publishPacket('refused/x', 'must not pass', { retain: true }),
      subscribePacket(1, [['#', 0]]),
    );
    const ack = await c.next('connack');
    expect(ack.returnCode).toBe(5);
    expect(ack.sessionPresent).toBe(false);
    await c.expectClosed();
    expect(c.pending()).toEqual([]);
    await new Promise((r) => setTimeout(r, 200));
    expect(watcher.pending().filter((p) => p.type === 'publish')).toEqual([]);
    expect(server.broker.messages.get('refused/x')).toBeUndefined();
  });
});

describe('sessions', () => {
  it('[MQTT-3.1.2-4] [MQTT-3.2.2-3] [MQTT-3.2.2-2] [MQTT-3.1.4-3] [MQTT-3.1.3-2] [MQTT-4.1.0-1] CleanSession 0: a new session (Session Present 0) is kept after disconnect and resumed (Session Present 1) with its subscriptions', async () => {
    const clientId = id('persist');
    const a = await pool.open(port);
    const first = await a.connect({ clientId, cleanSession: false });
    expect(first).toMatchObject({ returnCode: 0, sessionPresent: false });
    expect((await a.subscribe(1, [['persist/t', 1]])).returnCodes).toEqual([1]);
    a.send(disconnect());
    await a.expectClosed();

    const b = await pool.open(port);
    const again = await b.connect({ clientId, cleanSession: false });
    expect(again).toMatchObject({ returnCode: 0, sessionPresent: true });
    // The subscription came back with the session: no SUBSCRIBE on this connection.
    const pub = await pool.connected(port, { clientId: id('pp') });
    pub.send(publishPacket('persist/t', 'resumed', { qos: 1, packetId: 3 }));
    const [m] = await b.publishes(1);
    expect(m!.payload.toString()).toBe('resumed');
  });

  it('[MQTT-3.1.2-6] [MQTT-3.2.2-1] [MQTT-3.1.4-3] CleanSession 1 discards the stored session: Session Present 0, no subscription, and nothing of it is reused later', async () => {
    const clientId = id('clean');
    const a = await pool.connected(port, { clientId, cleanSession: false });
    await a.subscribe(1, [['clean/t', 1]]);
    a.send(disconnect());
    await a.expectClosed();

    const b = await pool.open(port);
    expect(await b.connect({ clientId, cleanSession: true })).toMatchObject({
      returnCode: 0,
      sessionPresent: false,
    });
    const pub = await pool.connected(port, { clientId: id('cp') });
    pub.send(publishPacket('clean/t', 'nobody', { qos: 1, packetId: 3 }));
    await pub.next('puback');
    expect(await b.staysOpen(200)).toBe(true);
    expect(b.pending().filter((p) => p.type === 'publish')).toEqual([]);
    b.send(disconnect());
    await b.expectClosed();

    const c = await pool.open(port);
    expect(await c.connect({ clientId, cleanSession: false })).toMatchObject({
      returnCode: 0,
      sessionPresent: false,
    });
  });

  it('[MQTT-3.1.2-5] [MQTT-4.5.0-1] [MQTT-4.1.0-2] QoS 1 and 2 messages for a disconnected CleanSession 0 session are stored and delivered on reconnection', async () => {
    const clientId = id('offline');
    const a = await pool.connected(port, { clientId, cleanSession: false });
    await a.subscribe(1, [['offline/#', 2]]);
    a.send(disconnect());
    await a.expectClosed();

    const pub = await pool.connected(port, { clientId: id('op') });
    pub.send(publishPacket('offline/1', 'q1', { qos: 1, packetId: 1 }));
    pub.send(publishPacket('offline/2', 'q2', { qos: 2, packetId: 2 }));
    await pub.next('puback');
    await pub.next('pubrec');

    const b = await pool.open(port);
    b.autoAck = true;
    expect(await b.connect({ clientId, cleanSession: false })).toMatchObject({ sessionPresent: true });
    const got = await b.publishes(2);
    expect(got.map((p) => [p.topic, p.qos, p.payload.toString()])).toEqual([
      ['offline/1', 1, 'q1'],
      ['offline/2', 2, 'q2'],
    ]);
  });

  it('[MQTT-4.4.0-1] [MQTT-4.6.0-1] [MQTT-3.3.1-1] [MQTT-2.3.1-4] unacknowledged QoS 1 and 2 PUBLISH and an unacknowledged PUBREL are re-sent on reconnection, in order, with their original packet ids (PUBLISH with DUP 1)', async () => {
    const clientId = id('resend');
    const a = await pool.connected(port, { clientId, cleanSession: false });
    await a.subscribe(1, [['resend/#', 2]]);
    const pub = await pool.connected(port, { clientId: id('rp') });
    pub.autoAck = true;
    for (let i = 1; i <= 3; i++) pub.send(publishPacket(`resend/${i}`, `m${i}`, { qos: 1, packetId: i }));
    pub.send(publishPacket('resend/q2', 'two', { qos: 2, packetId: 4 }));
    pub.send(publishPacket('resend/q2b', 'two-b', { qos: 2, packetId: 5 }));
    const first = await a.publishes(5);
    expect(first.map((p) => p.dup)).toEqual([false, false, false, false, false]);
    const q2b = first[4]!;
    // Only the second QoS 2 message is taken one step further: PUBREC, so the server owes a PUBREL.
    a.send(pubrec(q2b.packetId!));
    await a.next('pubrel');
    a.close(); // nothing else acknowledged

    await waitUntil(
      () => ![...server.broker.connections.values()].some((x) => x.clientId === clientId),
      3000,
      'the old connection to go',
    );
    const b = await pool.open(port);
    expect(await b.connect({ clientId, cleanSession: false })).toMatchObject({ sessionPresent: true });
    const again = [await b.next(), await b.next(), await b.next(), await b.next(), await b.next()];
    const publishes = again.filter((p) => p.type === 'publish');
    expect(publishes.map((p) => [p.topic, p.packetId, p.dup])).toEqual(
      first.slice(0, 4).map((p) => [p.topic, p.packetId, true]),
    );
    const rel = again.find((p) => p.type === 'pubrel');
    expect(rel && 'packetId' in rel ? rel.packetId : undefined).toBe(q2b.packetId);
    expect(rel?.raw[0]).toBe(0x62);
  });

  it('[MQTT-3.1.2-7] retained messages are not session state: they outlive the session that published them', async () => {
    const a = await pool.connected(port, { clientId: id('ret'), cleanSession: true });
    a.send(publishPacket('keep/retained', 'still here', { qos: 1, packetId: 1, retain: true }));
    await a.next('puback');
    a.send(disconnect());
    await a.expectClosed();
    const s = await pool.connected(port, { clientId: id('rs') });
    await s.subscribe(1, [['keep/retained', 1]]);
    const [m] = await s.publishes(1);
    expect(m).toMatchObject({ topic: 'keep/retained', retain: true });
    expect(m!.payload.toString()).toBe('still here');
  });
});

describe('wills', () => {
  it('[MQTT-3.1.2-8] [MQTT-3.1.2-16] [MQTT-3.1.2-10] a will with Will Retain 0 is published, not retained, once, when the connection ends abnormally', async () => {
    const watcher = await subscriber('will/plain');
    const c = await pool.connected(port, {
      clientId: id('w'),
      will: { topic: 'will/plain', payload: 'bye', qos: 1 },
    });
    c.close();
    const [m] = await watcher.publishes(1);
    expect(m).toMatchObject({ topic: 'will/plain', retain: false, qos: 1 });
    expect(server.broker.messages.get('will/plain')).toBeUndefined();
    expect(await watcher.staysOpen(200)).toBe(true);
    expect(watcher.pending().filter((p) => p.type === 'publish')).toEqual([]);
  });

  it('[MQTT-3.1.2-17] a will with Will Retain 1 is published as a retained message', async () => {
    const c = await pool.connected(port, {
      clientId: id('wr'),
      will: { topic: 'will/retained', payload: 'kept', qos: 0, retain: true },
    });
    c.close();
    await waitUntil(
      () => server.broker.messages.get('will/retained') !== undefined,
      3000,
      'the retained will',
    );
    const late = await pool.connected(port, { clientId: id('late') });
    await late.subscribe(1, [['will/retained', 0]]);
    const [m] = await late.publishes(1);
    expect(m).toMatchObject({ topic: 'will/retained', retain: true });
  });

  it('[MQTT-3.14.4-3] [MQTT-3.1.2-10] after DISCONNECT the will is discarded, not published', async () => {
    const watcher = await subscriber('will/discarded');
    const c = await pool.connected(port, { clientId: id('wd'), will: { topic: 'will/discarded', qos: 1 } });
    c.send(disconnect());
    await c.expectClosed();
    expect(await watcher.staysOpen(300)).toBe(true);
    expect(watcher.pending().filter((p) => p.type === 'publish')).toEqual([]);
  });

  it('[MQTT-3.1.2-12] without the Will Flag nothing is published when the connection ends abnormally', async () => {
    const watcher = await subscriber('#', 0);
    const before = watcher.pending().length;
    const c = await pool.connected(port, { clientId: id('nowill') });
    c.close();
    expect(await watcher.staysOpen(300)).toBe(true);
    expect(
      watcher
        .pending()
        .slice(before)
        .filter((p) => p.type === 'publish' && !p.topic.startsWith('$')),
    ).toEqual([]);
  });
});

describe('keep-alive', () => {
  it('[MQTT-3.1.2-24] [MQTT-3.1.2-8] a client silent for 1.5 × its keep-alive (1 s) is disconnected as if the network failed: its will is published', async () => {
    const watcher = await subscriber('ka/will');
    const c = await pool.connected(port, {
      clientId: id('ka'),
      keepAlive: 1,
      will: { topic: 'ka/will', payload: 'timeout' },
    });
    const started = Date.now();
    await c.expectClosed(4000);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(3600);
    const [m] = await watcher.publishes(1);
    expect(m!.payload.toString()).toBe('timeout');
  });

  it('[MQTT-3.12.4-1] [MQTT-3.1.2-24] a client that sends PINGREQ within its keep-alive stays connected, and each PINGREQ gets a PINGRESP', async () => {
    const c = await pool.connected(port, { clientId: id('ping'), keepAlive: 1 });
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 500));
      c.send(pingreq());
      const resp = await c.next('pingresp');
      expect(resp.raw.toString('hex')).toBe('d000');
    }
    expect(c.closed).toBe(false);
  });
});
