/**
 * Hostile input, part 1: malformed frames on raw sockets against the real server. Each attack is
 * answered as the standard requires (nearly always: the connection closed without a reply), named
 * in the broker's `error` event with its connection id and a reason, and leaves the broker serving:
 * a fresh client connects and a subscriber connected before keeps receiving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from './helpers/clients.js';
import { HostileHarness } from './helpers/hostile.js';
import { connectPacket, packet, str, u16, varint } from './helpers/raw-mqtt.js';

const h = new HostileHarness();

beforeAll(() => h.start());
afterAll(() => h.stop());

/** Sends `bytes` (after CONNECT unless `beforeConnect`), expects a close with no reply, returns the reason. */
async function attack(bytes: Buffer, o: { beforeConnect?: boolean } = {}) {
  const { client, connectionId } = o.beforeConnect ? await h.open() : await h.openConnected();
  const before = client.received.length;
  client.send(bytes);
  await client.expectClosed(3000);
  expect(client.received.slice(before).map((p) => p.type)).toEqual([]);
  return h.reasonFor(connectionId);
}

// A well-formed body for each packet type, and the flags table 2.2 requires.
const TYPES: Array<{ name: string; type: number; flags: number; body: Buffer }> = [
  { name: 'CONNECT', type: 1, flags: 0, body: connectPacket({ clientId: 'f' }).subarray(2) },
  { name: 'CONNACK', type: 2, flags: 0, body: Buffer.from([0, 0]) },
  { name: 'PUBACK', type: 4, flags: 0, body: u16(1) },
  { name: 'PUBREC', type: 5, flags: 0, body: u16(1) },
  { name: 'PUBREL', type: 6, flags: 2, body: u16(1) },
  { name: 'PUBCOMP', type: 7, flags: 0, body: u16(1) },
  {
    name: 'SUBSCRIBE',
    type: 8,
    flags: 2,
    body: Buffer.concat([u16(1), str('a'), Buffer.from([0])]),
  },
  { name: 'SUBACK', type: 9, flags: 0, body: Buffer.concat([u16(1), Buffer.from([0])]) },
  {
    name: 'UNSUBSCRIBE',
    type: 10,
    flags: 2,
    body: Buffer.concat([u16(1), str('a')]),
  },
  { name: 'UNSUBACK', type: 11, flags: 0, body: u16(1) },
  { name: 'PINGREQ', type: 12, flags: 0, body: Buffer.alloc(0) },
  { name: 'PINGRESP', type: 13, flags: 0, body: Buffer.alloc(0) },
  { name: 'DISCONNECT', type: 14, flags: 0, body: Buffer.alloc(0) },
];

/** Every invalid flag value of one type, each on its own connection, then the health checks. */
async function everyInvalidFlag(name: string): Promise<void> {
  const t = TYPES.find((x) => x.name === name)!;
  const invalid = Array.from({ length: 16 }, (_, i) => i).filter((f) => f !== t.flags);
  const reasons = await Promise.all(
    invalid.map((flags) =>
      attack(packet((t.type << 4) | flags, t.body), { beforeConnect: t.type === 1 }).then(
        (r) => ({ flags, ...r }),
        (error: Error) => ({ flags, code: 'FAILED', description: error.message }),
      ),
    ),
  );
  expect(reasons.filter((r) => r.code === 'FAILED')).toEqual([]);
  await h.expectHealthy();
}

describe('invalid fixed-header flags, every type × every invalid value', () => {
  it.each(['CONNECT', 'CONNACK', 'PUBACK', 'PUBREC', 'PUBCOMP', 'SUBACK', 'UNSUBACK', 'PINGREQ', 'PINGRESP'])(
    '[MQTT-2.2.2-1] [MQTT-2.2.2-2] %s with each of its 15 invalid flag values is closed without a reply',
    (name) => everyInvalidFlag(name),
  );

  it('[MQTT-2.2.2-1] [MQTT-2.2.2-2] [MQTT-3.6.1-1] PUBREL with each of its 15 invalid flag values (not 0010) is closed without a PUBCOMP', () =>
    everyInvalidFlag('PUBREL'));

  it('[MQTT-2.2.2-1] [MQTT-2.2.2-2] [MQTT-3.8.1-1] SUBSCRIBE with each of its 15 invalid flag values (not 0010) is closed without a SUBACK', () =>
    everyInvalidFlag('SUBSCRIBE'));

  it('[MQTT-2.2.2-1] [MQTT-2.2.2-2] [MQTT-3.10.1-1] UNSUBSCRIBE with each of its 15 invalid flag values (not 0010) is closed without an UNSUBACK', () =>
    everyInvalidFlag('UNSUBSCRIBE'));

  it('[MQTT-2.2.2-1] [MQTT-2.2.2-2] [MQTT-3.14.1-1] DISCONNECT with each of its 15 invalid flag values is closed', () =>
    everyInvalidFlag('DISCONNECT'));

  it('[MQTT-2.2.2-2] [MQTT-3.3.1-4] PUBLISH with both QoS bits set (flags 0110, 0111, 1110, 1111) is closed without a reply', async () => {
    const body = Buffer.concat([str('watch/q3'), u16(1), Buffer.from('x')]);
    for (const flags of [0b0110, 0b0111, 0b1110, 0b1111]) {
      const r = await attack(packet(0x30 | flags, body));
      expect(r.description).not.toBe('');
    }
    await h.expectHealthy();
  });
});

describe('Remaining Length', () => {
  it('[MQTT-4.8.0-1] a Remaining Length with a fifth continuation byte closes the connection', async () => {
    const r = await attack(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]));
    expect(r.code).toMatch(/REMAINING|LENGTH|MALFORMED/i);
    await h.expectHealthy();
  });

  it('[MQTT-4.8.0-1] a declared length of 268,435,455 with a few bytes sent is refused at once by the packet size limit, allocating nothing', async () => {
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    const { client, connectionId } = await h.openConnected();
    const started = Date.now();
    client.send(
      Buffer.concat([Buffer.from([0x30]), varint(268_435_455), str('watch/big'), Buffer.from('abc')]),
    );
    await client.expectClosed(2000);
    // Closed as soon as the header is read, not after a timeout.
    expect(Date.now() - started).toBeLessThan(1000);
    const r = await h.reasonFor(connectionId);
    expect(r.code).toMatch(/TOO_LARGE|SIZE/i);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(50 * 1024 * 1024);
    await h.expectHealthy();
  });

  it('[MQTT-4.8.0-1] the same huge declared length before CONNECT is refused at once as well', async () => {
    const rssBefore = process.memoryUsage().rss;
    const r = await attack(Buffer.concat([Buffer.from([0x10]), varint(268_435_455), Buffer.from('MQTT')]), {
      beforeConnect: true,
    });
    expect(r.description).not.toBe('');
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(50 * 1024 * 1024);
    await h.expectHealthy();
  });
});

describe('packet order and reserved types', () => {
  it.each([
    ['PINGREQ', Buffer.from([0xc0, 0x00])],
    ['PUBLISH', packet(0x30, str('watch/early'), Buffer.from('x'))],
    ['SUBSCRIBE', packet(0x82, u16(1), str('#'), Buffer.from([0]))],
    ['DISCONNECT', Buffer.from([0xe0, 0x00])],
  ])('[MQTT-3.1.0-1] %s before CONNECT is closed without a reply', async (_name, bytes) => {
    await attack(bytes, { beforeConnect: true });
    await h.expectHealthy();
  });

  it('[MQTT-3.1.0-2] a second CONNECT is a protocol violation: closed, no second CONNACK', async () => {
    const r = await attack(connectPacket({ clientId: 'second' }));
    expect(r.code).toMatch(/PROTOCOL|CONNECT/i);
    await h.expectHealthy();
  });

  it.each([
    [0, 'before CONNECT'],
    [15, 'before CONNECT'],
    [0, 'after CONNECT'],
    [15, 'after CONNECT'],
  ])('[MQTT-4.8.0-1] reserved packet type %i %s is closed without a reply', async (type, when) => {
    await attack(Buffer.from([type << 4, 0x00]), { beforeConnect: when === 'before CONNECT' });
    await h.expectHealthy();
  });

  it.each([
    ['CONNACK', Buffer.from([0x20, 0x02, 0x00, 0x00])],
    ['SUBACK', Buffer.from([0x90, 0x03, 0x00, 0x01, 0x00])],
    ['UNSUBACK', Buffer.from([0xb0, 0x02, 0x00, 0x01])],
    ['PINGRESP', Buffer.from([0xd0, 0x00])],
  ])(
    '[MQTT-4.8.0-1] a %s (a packet only servers send) from a client is closed without a reply',
    async (_n, bytes) => {
      await attack(bytes);
      await h.expectHealthy();
    },
  );
});

describe('CONNECT fields', () => {
  it.each([
    ['"MQTX"', 'MQTX'],
    ['"mqtt"', 'mqtt'],
    ['empty', ''],
    ['"MQTTT"', 'MQTTT'],
  ])('[MQTT-3.1.2-1] [MQTT-3.1.4-1] protocol name %s: closed without a CONNACK', async (_n, name) => {
    await attack(connectPacket({ clientId: 'pn', protocolName: name }), { beforeConnect: true });
    await h.expectHealthy();
  });

  it.each([
    ['"MQTT" level 3', 'MQTT', 3],
    ['"MQTT" level 5', 'MQTT', 5],
    ['"MQTT" level 0', 'MQTT', 0],
    ['"MQTT" level 255', 'MQTT', 255],
    ['"MQIsdp" level 4', 'MQIsdp', 4],
  ])(
    '[MQTT-3.1.2-2] [MQTT-3.2.2-4] [MQTT-3.2.2-5] %s gets CONNACK 0x01 with Session Present 0, then the connection is closed',
    async (_n, name, level) => {
      const { client, connectionId } = await h.open();
      client.send(connectPacket({ clientId: 'pl', protocolName: name, protocolLevel: level }));
      const ack = await client.next('connack');
      expect(ack.returnCode).toBe(0x01);
      expect(ack.sessionPresent).toBe(false);
      await client.expectClosed();
      expect(client.received).toHaveLength(1);
      await h.reasonFor(connectionId);
      await h.expectHealthy();
    },
  );

  it('[MQTT-3.1.2-3] [MQTT-3.1.4-1] the reserved CONNECT flag set: closed without a CONNACK', async () => {
    await attack(connectPacket({ clientId: 'rf', extraFlags: 0x01 }), { beforeConnect: true });
    await h.expectHealthy();
  });

  it('[MQTT-3.1.2-22] [MQTT-3.1.4-1] a password without a user name: closed without a CONNACK', async () => {
    await attack(connectPacket({ clientId: 'pw', password: 'secret' }), { beforeConnect: true });
    await h.expectHealthy();
  });

  it.each([
    ['[MQTT-3.1.2-13] Will QoS 1 without the Will Flag', 0x02 | 0x08],
    ['[MQTT-3.1.2-13] [MQTT-3.1.2-11] Will QoS 2 without the Will Flag', 0x02 | 0x10],
    ['[MQTT-3.1.2-15] [MQTT-3.1.2-11] Will Retain without the Will Flag', 0x02 | 0x20],
  ])('[MQTT-3.1.4-1] %s: closed without a CONNACK', async (_n, flags) => {
    await attack(connectPacket({ clientId: 'wf', flags }), { beforeConnect: true });
    await h.expectHealthy();
  });

  it('[MQTT-3.1.2-14] [MQTT-3.1.4-1] Will QoS 3: closed without a CONNACK', async () => {
    await attack(connectPacket({ clientId: 'w3', will: { topic: 'watch/w', qos: 3 } }), {
      beforeConnect: true,
    });
    await h.expectHealthy();
  });

  it.each([
    ['[MQTT-3.1.2-9] the Will Flag set but no will topic or message', 0x06, Buffer.alloc(0)],
    ['[MQTT-3.1.2-19] the User Name Flag set but no user name', 0x82, Buffer.alloc(0)],
    ['[MQTT-3.1.2-21] the Password Flag set but no password', 0xc2, str('user')],
  ])('[MQTT-3.1.4-1] %s: closed without a CONNACK', async (_n, flags, rest) => {
    const bytes = packet(0x10, str('MQTT'), Buffer.from([4, flags]), u16(0), str('mf'), rest);
    await attack(bytes, { beforeConnect: true });
    await h.expectHealthy();
  });

  it.each([
    ['[MQTT-3.1.2-18] a user name present while the User Name Flag is 0', 0x02, str('user')],
    [
      '[MQTT-3.1.2-20] a password present while the Password Flag is 0',
      0x82,
      Buffer.concat([str('u'), str('p')]),
    ],
  ])(
    '[MQTT-3.1.4-1] %s (bytes left after the payload): closed without a CONNACK',
    async (_n, flags, rest) => {
      const bytes = packet(0x10, str('MQTT'), Buffer.from([4, flags]), u16(0), str('ex'), rest);
      await attack(bytes, { beforeConnect: true });
      await h.expectHealthy();
    },
  );
});

// Ill-formed UTF-8: a lone continuation byte, an overlong '/', a UTF-16 surrogate (ED A0 80), a
// truncated sequence. U+0000 separately.
const BAD_UTF8: Array<[string, Buffer]> = [
  ['a lone continuation byte', Buffer.from([0x61, 0x80])],
  ['an overlong encoding', Buffer.from([0xc0, 0xaf])],
  ['an encoded surrogate U+D800', Buffer.from([0xed, 0xa0, 0x80])],
  ['a truncated sequence', Buffer.from([0x61, 0xe2, 0x82])],
];
const NUL = Buffer.from([0x61, 0x00, 0x62]);

describe('strings: ill-formed UTF-8 and U+0000', () => {
  for (const [what, bytes] of BAD_UTF8) {
    it(`[MQTT-1.5.3-1] [MQTT-3.1.3-4] [MQTT-3.1.3-11] [MQTT-3.1.3-10] ${what} in the client id, user name and will topic of CONNECT: closed without a CONNACK`, async () => {
      await attack(connectPacket({ clientId: bytes }), { beforeConnect: true });
      await attack(connectPacket({ clientId: 'u8', username: bytes }), { beforeConnect: true });
      await attack(connectPacket({ clientId: 'u8w', will: { topic: bytes } }), { beforeConnect: true });
      await h.expectHealthy();
    });

    it(`[MQTT-1.5.3-1] [MQTT-3.3.2-1] [MQTT-3.8.3-1] [MQTT-3.10.3-1] ${what} in a PUBLISH topic, a SUBSCRIBE filter and an UNSUBSCRIBE filter: closed without a reply`, async () => {
      await attack(packet(0x32, str(bytes), u16(3), Buffer.from('x')));
      await attack(packet(0x82, u16(4), str(bytes), Buffer.from([0])));
      await attack(packet(0xa2, u16(5), str(bytes)));
      await h.expectHealthy();
    });
  }

  it('[MQTT-1.5.3-2] U+0000 in the client id or the user name of CONNECT: closed without a CONNACK', async () => {
    await attack(connectPacket({ clientId: NUL }), { beforeConnect: true });
    await attack(connectPacket({ clientId: 'nul', username: NUL }), { beforeConnect: true });
    await h.expectHealthy();
  });

  it('[MQTT-1.5.3-2] [MQTT-4.7.3-2] U+0000 in a PUBLISH topic or a SUBSCRIBE filter: closed without a reply', async () => {
    await attack(packet(0x30, str(NUL), Buffer.from('x')));
    await attack(packet(0x82, u16(6), str(Buffer.from([0x61, 0x00, 0x2f, 0x23])), Buffer.from([0])));
    await attack(packet(0xa2, u16(7), str(NUL)));
    await h.expectHealthy();
  });
});

describe('topics and filters', () => {
  it.each(['watch/#', 'watch/+', '+', '#', 'a/+/b', 'a#'])(
    '[MQTT-3.3.2-2] [MQTT-4.7.1-1] a wildcard in a PUBLISH topic ("%s"): closed without a reply',
    async (topic) => {
      await attack(packet(0x30, str(topic), Buffer.from('x')));
      await h.expectHealthy();
    },
  );

  it('[MQTT-4.7.3-1] an empty PUBLISH topic: closed without a reply', async () => {
    await attack(packet(0x32, str(''), u16(9), Buffer.from('x')));
    await h.expectHealthy();
  });

  it.each(['a/#/b', '#a', 'a/b#', '##', '#/'])(
    '[MQTT-4.7.1-2] the invalid filter "%s" in SUBSCRIBE: closed or refused with 0x80, never subscribed',
    async (filter) => {
      const { client, connectionId } = await h.openConnected();
      client.send(packet(0x82, u16(11), str(filter), Buffer.from([0])));
      await waitUntil(() => client.closed || client.pending().length > 0, 3000, 'a close or a SUBACK');
      if (client.closed) {
        expect(client.pending()).toEqual([]);
        await h.reasonFor(connectionId);
      } else {
        expect((await client.next('suback')).returnCodes).toEqual([0x80]);
      }
      await h.expectHealthy();
    },
  );

  it.each(['a+', '+a/b', 'a/+b/c', '++', '+#'])(
    '[MQTT-4.7.1-3] the invalid filter "%s" in SUBSCRIBE: closed without a SUBACK',
    async (filter) => {
      await attack(packet(0x82, u16(12), str(filter), Buffer.from([0])));
      await h.expectHealthy();
    },
  );

  it('[MQTT-4.7.3-1] an empty filter in SUBSCRIBE or UNSUBSCRIBE: closed without a reply', async () => {
    await attack(packet(0x82, u16(13), str(''), Buffer.from([0])));
    await attack(packet(0xa2, u16(14), str('')));
    await h.expectHealthy();
  });

  it.each([
    ['QoS 3', 3],
    ['reserved bit 2', 0x04],
    ['reserved bit 7', 0x80],
    ['reserved bits with QoS 1', 0xf1],
  ])('[MQTT-3.8.3-4] a SUBSCRIBE requested-QoS byte with %s: closed without a SUBACK', async (_n, byte) => {
    await attack(packet(0x82, u16(15), str('watch/x'), Buffer.from([byte])));
    await h.expectHealthy();
  });

  it('[MQTT-3.8.3-3] a SUBSCRIBE without filters: closed without a SUBACK', async () => {
    await attack(packet(0x82, u16(16)));
    await h.expectHealthy();
  });

  it('[MQTT-3.10.3-2] an UNSUBSCRIBE without filters: closed without an UNSUBACK', async () => {
    await attack(packet(0xa2, u16(17)));
    await h.expectHealthy();
  });

  it('[MQTT-3.8.3-3] a SUBSCRIBE filter without its QoS byte: closed without a SUBACK', async () => {
    await attack(packet(0x82, u16(18), str('watch/x')));
    await h.expectHealthy();
  });
});

describe('other malformed packets', () => {
  it.each([0x60, 0x63, 0x6a, 0x6f])(
    '[MQTT-3.6.1-1] PUBREL with first byte 0x%s: closed without a PUBCOMP',
    async (first) => {
      await attack(packet(first, u16(1)));
      await h.expectHealthy();
    },
  );

  it('[MQTT-4.8.0-1] PINGREQ with a body: closed without a PINGRESP', async () => {
    await attack(Buffer.from([0xc0, 0x02, 0x00, 0x00]));
    await h.expectHealthy();
  });

  it('[MQTT-4.8.0-1] DISCONNECT with a body: closed', async () => {
    await attack(Buffer.from([0xe0, 0x01, 0x00]));
    await h.expectHealthy();
  });

  it.each([
    ['PUBLISH QoS 1 with packet id 0', packet(0x32, str('watch/z'), u16(0), Buffer.from('x'))],
    ['SUBSCRIBE with packet id 0', packet(0x82, u16(0), str('watch/z'), Buffer.from([0]))],
    ['UNSUBSCRIBE with packet id 0', packet(0xa2, u16(0), str('watch/z'))],
  ])('[MQTT-2.3.1-1] %s: closed without a reply', async (_n, bytes) => {
    await attack(bytes);
    await h.expectHealthy();
  });

  it.each([
    ['PUBACK', 0x40],
    ['PUBREC', 0x50],
    ['PUBCOMP', 0x70],
  ])('[MQTT-4.8.0-1] %s shorter than its packet id: closed', async (_n, first) => {
    await attack(Buffer.from([first, 0x01, 0x00]));
    await h.expectHealthy();
  });

  it('[MQTT-4.8.0-1] [MQTT-3.2.2-6] [MQTT-3.1.4-1] a CONNECT whose strings run past the Remaining Length (no return code fits): closed without a CONNACK', async () => {
    await attack(
      Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x00, 0x00, 0x20]),
      {
        beforeConnect: true,
      },
    );
    await h.expectHealthy();
  });
});
