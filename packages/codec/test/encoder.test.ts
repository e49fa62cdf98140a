/**
 * The encoders: packets that cannot be encoded are refused with CODEC_INVALID_ARGUMENT by encode,
 * encodedLength and encodeInto alike (and encodeInto then writes nothing); the fixed-header flags
 * and fields the standard imposes on a sender; UTF-8 lengths.
 */
import {
  CodecError,
  type ConnectPacket,
  decodePacket,
  encode,
  encodeAck,
  encodedLength,
  encodeInto,
  type Packet,
  type PublishPacket,
  utf8Length,
} from '@broker/codec';
import { describe, expect, test } from 'vitest';
import { fixture, fixtureBytes, packetFixtures } from './fixtures/packets.js';
import { expectPacket, expectThrowsCode, fromHex, toHex } from './helpers.js';

const publish = (fields: Partial<PublishPacket>): PublishPacket => ({
  type: 'publish',
  topic: 'a/b',
  payload: Uint8Array.of(1, 2),
  qos: 0,
  retain: false,
  dup: false,
  ...fields,
});

const connect = (fields: Partial<ConnectPacket>): ConnectPacket => ({
  type: 'connect',
  protocolName: 'MQTT',
  protocolLevel: 4,
  clientId: 'c',
  cleanSession: true,
  keepaliveSeconds: 60,
  ...fields,
});

/** Casts a deliberately invalid packet past the type checker. */
const bad = (value: unknown): Packet => value as Packet;

const invalid: [string, Packet][] = [
  // PUBLISH
  ['PUBLISH QoS 3', publish({ qos: 3 as never, packetId: 1 })],
  ['PUBLISH QoS -1', publish({ qos: -1 as never })],
  ['PUBLISH QoS "1"', publish({ qos: '1' as never, packetId: 1 })],
  ['[MQTT-3.3.2-2] PUBLISH topic with # ', publish({ topic: 'a/#' })],
  ['[MQTT-3.3.2-2] PUBLISH topic with +', publish({ topic: '+' })],
  ['[MQTT-4.7.3-1] PUBLISH empty topic', publish({ topic: '' })],
  ['[MQTT-4.7.3-2] PUBLISH topic with U+0000', publish({ topic: 'a\u0000b' })],
  ['[MQTT-1.5.3-1] PUBLISH topic with a lone high surrogate', publish({ topic: 'a\uD800' })],
  ['[MQTT-1.5.3-1] PUBLISH topic with a lone low surrogate', publish({ topic: '\uDC00b' })],
  ['[MQTT-1.5.3-1] PUBLISH topic with reversed surrogates', publish({ topic: '\uDC00\uD800' })],
  ['[MQTT-3.3.1-2] PUBLISH QoS 0 with DUP', publish({ dup: true })],
  ['[MQTT-2.3.1-1] PUBLISH QoS 1 without packet id', publish({ qos: 1 })],
  ['[MQTT-2.3.1-1] PUBLISH QoS 2 with packet id 0', publish({ qos: 2, packetId: 0 })],
  ['[MQTT-2.3.1-1] PUBLISH QoS 1 with packet id 65536', publish({ qos: 1, packetId: 65536 })],
  ['[MQTT-2.3.1-1] PUBLISH QoS 1 with packet id 1.5', publish({ qos: 1, packetId: 1.5 })],
  ['[MQTT-4.7.3-3] PUBLISH topic of 65536 bytes', publish({ topic: 'a'.repeat(65536) })],
  // acks
  ['[MQTT-2.3.1-1] PUBACK packet id 0', { type: 'puback', packetId: 0 }],
  ['[MQTT-2.3.1-1] PUBREC packet id 65536', { type: 'pubrec', packetId: 65536 }],
  ['[MQTT-2.3.1-1] PUBREL packet id -1', { type: 'pubrel', packetId: -1 }],
  ['[MQTT-2.3.1-1] PUBCOMP without packet id', bad({ type: 'pubcomp' })],
  ['[MQTT-2.3.1-1] UNSUBACK packet id NaN', { type: 'unsuback', packetId: Number.NaN }],
  // SUBSCRIBE, SUBACK, UNSUBSCRIBE
  ['[MQTT-3.8.3-3] empty SUBSCRIBE', { type: 'subscribe', packetId: 1, subscriptions: [] }],
  [
    '[MQTT-2.3.1-1] SUBSCRIBE packet id 0',
    { type: 'subscribe', packetId: 0, subscriptions: [{ topicFilter: 'a', qos: 0 }] },
  ],
  [
    '[MQTT-3.8.3-4] SUBSCRIBE QoS 3',
    { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 3 as never }] },
  ],
  [
    '[MQTT-4.7.1-2] SUBSCRIBE filter a/#/b',
    { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a/#/b', qos: 0 }] },
  ],
  [
    '[MQTT-4.7.3-3] SUBSCRIBE filter of 65536 bytes',
    { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: `${'€'.repeat(21845)}a`, qos: 0 }] },
  ],
  [
    '[MQTT-4.7.3-2] SUBSCRIBE filter with U+0000',
    { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a/\u0000/#', qos: 0 }] },
  ],
  [
    '[MQTT-4.7.1-3] SUBSCRIBE filter a+',
    { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a+', qos: 0 }] },
  ],
  [
    '[MQTT-4.7.3-1] SUBSCRIBE empty filter',
    { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '', qos: 0 }] },
  ],
  ['[MQTT-3.9.3-2] SUBACK return code 3', { type: 'suback', packetId: 1, returnCodes: [3 as never] }],
  ['3.9.3 SUBACK without return codes', { type: 'suback', packetId: 1, returnCodes: [] }],
  ['[MQTT-2.3.1-1] SUBACK packet id 0', { type: 'suback', packetId: 0, returnCodes: [0] }],
  ['[MQTT-3.10.3-2] empty UNSUBSCRIBE', { type: 'unsubscribe', packetId: 1, topicFilters: [] }],
  ['[MQTT-2.3.1-1] UNSUBSCRIBE packet id 0', { type: 'unsubscribe', packetId: 0, topicFilters: ['a'] }],
  [
    '[MQTT-4.7.3-3] UNSUBSCRIBE filter of 65536 bytes',
    { type: 'unsubscribe', packetId: 1, topicFilters: ['b'.repeat(65536)] },
  ],
  ['[MQTT-4.7.1-2] UNSUBSCRIBE filter #a', { type: 'unsubscribe', packetId: 1, topicFilters: ['ok', '#a'] }],
  // CONNACK
  ['3.2.2.3 CONNACK return code 6', { type: 'connack', sessionPresent: false, returnCode: 6 as never }],
  ['3.2.2.3 CONNACK return code -1', { type: 'connack', sessionPresent: false, returnCode: -1 as never }],
  // CONNECT
  ['[MQTT-3.1.2-22] CONNECT password without username', connect({ password: Uint8Array.of(1) })],
  ['[MQTT-3.1.2-2] CONNECT "MQTT" at level 3', connect({ protocolLevel: 3 })],
  ['[MQTT-3.1.2-2] CONNECT "MQIsdp" at level 4', connect({ protocolName: 'MQIsdp' })],
  ['[MQTT-3.1.2-2] CONNECT at level 5', connect({ protocolLevel: 5 as never })],
  [
    '[MQTT-3.1.2-14] CONNECT will QoS 3',
    connect({ will: { topic: 'w', payload: new Uint8Array(0), qos: 3 as never, retain: false } }),
  ],
  [
    '[MQTT-3.1.2-14] CONNECT will QoS -1',
    connect({ will: { topic: 'w', payload: new Uint8Array(0), qos: -1 as never, retain: false } }),
  ],
  [
    '[MQTT-4.7.1-1] CONNECT will topic with a wildcard',
    connect({ will: { topic: 'w/#', payload: new Uint8Array(0), qos: 0, retain: false } }),
  ],
  [
    '[MQTT-4.7.3-1] CONNECT empty will topic',
    connect({ will: { topic: '', payload: new Uint8Array(0), qos: 0, retain: false } }),
  ],
  ['3.1.2.10 CONNECT keep alive 65536', connect({ keepaliveSeconds: 65536 })],
  ['3.1.2.10 CONNECT keep alive -1', connect({ keepaliveSeconds: -1 })],
  ['[MQTT-1.5.3-1] CONNECT client id with a lone surrogate', connect({ clientId: '\uD83D' })],
  ['[MQTT-1.5.3-2] CONNECT client id with U+0000', connect({ clientId: 'a\u0000' })],
  ['[MQTT-1.5.3-2] CONNECT user name with U+0000', connect({ username: '\u0000' })],
  ['1.5.3 CONNECT user name of 65536 bytes', connect({ username: 'é'.repeat(32768) })],
  ['3.1.3.5 CONNECT password of 65536 bytes', connect({ username: 'u', password: new Uint8Array(65536) })],
  [
    '3.1.3.3 CONNECT will message of 65536 bytes',
    connect({ will: { topic: 'w', payload: new Uint8Array(65536), qos: 0, retain: false } }),
  ],
  // anything else
  ['an unknown packet type', bad({ type: 'auth' })],
];

describe('packets that cannot be encoded: CODEC_INVALID_ARGUMENT', () => {
  test.each(invalid)('%s: encode throws', (_name, packet) => {
    expectThrowsCode(() => encode(packet), 'CODEC_INVALID_ARGUMENT');
  });

  test.each(invalid)('%s: encodedLength throws', (_name, packet) => {
    expectThrowsCode(() => encodedLength(packet), 'CODEC_INVALID_ARGUMENT');
  });

  test.each(invalid)('%s: encodeInto throws and writes nothing', (_name, packet) => {
    const target = new Uint8Array(70_000).fill(0xaa);
    expectThrowsCode(() => encodeInto(packet, target, 5), 'CODEC_INVALID_ARGUMENT');
    expect(target.every((b) => b === 0xaa)).toBe(true);
  });

  test('the thrown errors are CodecErrors with referenceCode 600', () => {
    const error = expectThrowsCode(() => encode(publish({ topic: '#' })), 'CODEC_INVALID_ARGUMENT');
    expect(error).toBeInstanceOf(CodecError);
    expect(error.referenceCode).toBe(600);
  });
});

describe('encodeInto bounds', () => {
  const f = fixture('CONNECT with the variable header of the standard example');
  const size = fixtureBytes(f).length;

  test('a buffer one byte too small: throws CODEC_INVALID_ARGUMENT and writes nothing', () => {
    const target = new Uint8Array(size - 1).fill(0xaa);
    expectThrowsCode(() => encodeInto(f.packet, target, 0), 'CODEC_INVALID_ARGUMENT');
    expect(target.every((b) => b === 0xaa)).toBe(true);
  });

  test('an offset leaving one byte too few: throws and writes nothing', () => {
    const target = new Uint8Array(size + 9).fill(0xaa);
    expectThrowsCode(() => encodeInto(f.packet, target, 10), 'CODEC_INVALID_ARGUMENT');
    expect(target.every((b) => b === 0xaa)).toBe(true);
    expect(encodeInto(f.packet, target, 9)).toBe(size);
  });

  test('a negative offset or one past the end: throws and writes nothing', () => {
    const target = new Uint8Array(size * 2).fill(0xaa);
    expectThrowsCode(() => encodeInto(f.packet, target, -1), 'CODEC_INVALID_ARGUMENT');
    expectThrowsCode(() => encodeInto(f.packet, target, size * 2 + 1), 'CODEC_INVALID_ARGUMENT');
    expect(target.every((b) => b === 0xaa)).toBe(true);
  });

  test.each(packetFixtures)('$name: too small by one byte writes nothing', ({ packet, hex }) => {
    const n = fromHex(hex).length;
    const target = new Uint8Array(n + 2).fill(0xaa);
    expectThrowsCode(() => encodeInto(packet, target, 3), 'CODEC_INVALID_ARGUMENT');
    expect(target.every((b) => b === 0xaa)).toBe(true);
  });

  test('the offset defaults to 0', () => {
    const target = new Uint8Array(4);
    expect(encodeInto({ type: 'puback', packetId: 258 }, target)).toBe(4);
    expect(toHex(target)).toBe('40020102');
  });

  test('a view at a byteOffset is written through its own indices', () => {
    const backing = new Uint8Array(20).fill(0xaa);
    const view = backing.subarray(10, 14);
    expect(encodeInto({ type: 'pingresp' }, view, 1)).toBe(2);
    expect(toHex(backing.subarray(10, 14))).toBe('aad000aa');
    expect(backing.subarray(0, 10).every((b) => b === 0xaa)).toBe(true);
  });
});

describe('what the standard imposes on the sender', () => {
  test('[MQTT-3.6.1-1] PUBREL is encoded with fixed-header flags 0010', () => {
    expect(toHex(encode({ type: 'pubrel', packetId: 1 }))).toBe('62020001');
  });

  test('[MQTT-3.8.1-1] SUBSCRIBE is encoded with fixed-header flags 0010', () => {
    const bytes = encode({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 1 }] });
    expect(bytes[0]).toBe(0x82);
    expect(toHex(bytes)).toBe('8206000100016101');
  });

  test('[MQTT-3.10.1-1] UNSUBSCRIBE is encoded with fixed-header flags 0010', () => {
    const bytes = encode({ type: 'unsubscribe', packetId: 1, topicFilters: ['a'] });
    expect(bytes[0]).toBe(0xa2);
    expect(toHex(bytes)).toBe('a2050001000161');
  });

  test('2.2.2 table 2.2: the other packets are encoded with flags 0000 (PUBLISH aside)', () => {
    for (const f of packetFixtures) {
      const first = encode(f.packet)[0]!;
      const expected = ['pubrel', 'subscribe', 'unsubscribe'].includes(f.packet.type) ? 2 : undefined;
      if (f.packet.type === 'publish') continue;
      expect(first & 0x0f, f.name).toBe(expected ?? 0);
    }
  });

  test.each([1, 2, 3, 4, 5] as const)(
    '[MQTT-3.2.2-4] CONNACK with return code %i and sessionPresent true is encoded with session present 0',
    (returnCode) => {
      const bytes = encode({ type: 'connack', sessionPresent: true, returnCode });
      expect(toHex(bytes)).toBe(`2002000${returnCode}`);
      const target = new Uint8Array(4);
      encodeInto({ type: 'connack', sessionPresent: true, returnCode }, target, 0);
      expect(target[2]).toBe(0);
    },
  );

  test('[MQTT-3.2.2-2] [MQTT-3.2.2-3] CONNACK accepted keeps session present as given', () => {
    expect(toHex(encode({ type: 'connack', sessionPresent: true, returnCode: 0 }))).toBe('20020100');
    expect(toHex(encode({ type: 'connack', sessionPresent: false, returnCode: 0 }))).toBe('20020000');
  });

  test('[MQTT-3.1.2-11] CONNECT without a will has Will Flag, Will QoS and Will Retain 0', () => {
    const bytes = encode(connect({ cleanSession: false }));
    expect(bytes[9]! & 0x3c).toBe(0);
  });

  test('[MQTT-3.1.2-3] CONNECT is encoded with the reserved flag 0', () => {
    const bytes = encode(
      connect({
        will: { topic: 'w', payload: Uint8Array.of(1), qos: 2, retain: true },
        username: 'u',
        password: Uint8Array.of(2),
      }),
    );
    expect(bytes[9]).toBe(0xf6);
  });

  test('[MQTT-3.1.2-18] [MQTT-3.1.2-20] an absent username/password (undefined) sets no flag and no field', () => {
    expect(encodedLength(connect({ username: undefined, password: undefined }))).toBe(
      encodedLength(connect({})),
    );
  });

  test('an empty username and an empty password are present fields, not absent ones', () => {
    const bytes = encode(connect({ username: '', password: new Uint8Array(0) }));
    expect(bytes[9]).toBe(0xc2);
    expectPacket(decodePacket(bytes), {
      ...connect({}),
      will: undefined,
      username: '',
      password: new Uint8Array(0),
    });
  });

  test('keep alive 0 and 65535 are encoded as two bytes, most significant first (1.5.2)', () => {
    expect(toHex(encode(connect({ keepaliveSeconds: 0 })).subarray(10, 12))).toBe('0000');
    expect(toHex(encode(connect({ keepaliveSeconds: 65535 })).subarray(10, 12))).toBe('ffff');
    expect(toHex(encode(connect({ keepaliveSeconds: 258 })).subarray(10, 12))).toBe('0102');
  });

  test('packet identifiers 1 and 65535 are encoded most significant byte first (1.5.2)', () => {
    expect(toHex(encode({ type: 'puback', packetId: 1 }))).toBe('40020001');
    expect(toHex(encode({ type: 'unsuback', packetId: 65535 }))).toBe('b002ffff');
    expect(toHex(encode(publish({ qos: 1, packetId: 0xabcd, payload: new Uint8Array(0) })))).toBe(
      '3207 0003612f62 abcd'.replace(/ /g, ''),
    );
  });

  test('a PUBLISH at QoS 0 with a packetId given ignores it (no identifier at QoS 0, [MQTT-2.3.1-5])', () => {
    expect(toHex(encode(publish({ qos: 0, packetId: 5, payload: new Uint8Array(0) })))).toBe(
      '30050003612f62',
    );
  });
});

describe('UTF-8 lengths (1.5.3)', () => {
  test.each([
    ['', 0],
    ['a', 1],
    ['é', 2],
    ['€', 3],
    ['\u{2A6D4}', 4],
    ['A\u{2A6D4}', 5],
    ['\uFEFF', 3],
    ['\u007f\u0080\u07ff\u0800\uffff\u{10000}\u{10ffff}', 1 + 2 + 2 + 3 + 3 + 4 + 4],
  ])('utf8Length(%j) is %i', (text, length) => {
    expect(utf8Length(text)).toBe(length);
    expect(new TextEncoder().encode(text).length).toBe(length);
  });

  test.each(['\uD800', '\uDFFF', 'a\uD800b', '\uDC00\uD800', '\uD83D\uD83D'])(
    '[MQTT-1.5.3-1] utf8Length(%j) (a lone surrogate) throws CODEC_INVALID_ARGUMENT',
    (text) => {
      expectThrowsCode(() => utf8Length(text), 'CODEC_INVALID_ARGUMENT');
    },
  );

  test('a multi-byte topic is measured in bytes, not UTF-16 units', () => {
    const topic = 'é/€/\u{2A6D4}'; // 2 + 1 + 3 + 1 + 4 = 11 bytes, 6 UTF-16 units
    expect(topic.length).toBe(6);
    const p = publish({ topic, payload: new Uint8Array(0) });
    expect(encodedLength(p)).toBe(2 + 2 + 11);
    const bytes = encode(p);
    expect(toHex(bytes)).toBe(`300d000b c3a9 2f e282ac 2f f0aa9b94`.replace(/ /g, ''));
    expectPacket(decodePacket(bytes), { ...p, packetId: undefined });
  });

  test('a multi-byte client id, will topic, username and filters are measured in bytes', () => {
    const c = connect({
      clientId: '€',
      will: { topic: 'é', payload: new Uint8Array(0), qos: 1, retain: false },
      username: '\u{2A6D4}',
    });
    expect(encodedLength(c)).toBe(2 + 10 + 5 + 4 + 2 + 6);
    expectPacket(decodePacket(encode(c)), { ...c, password: undefined });
    const s: Packet = { type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: '€/+', qos: 0 }] };
    expect(encodedLength(s)).toBe(2 + 2 + 2 + 5 + 1);
    const u: Packet = { type: 'unsubscribe', packetId: 1, topicFilters: ['€/#'] };
    expect(encodedLength(u)).toBe(2 + 2 + 2 + 5);
  });

  test('a topic of exactly 65535 bytes is encoded; the Remaining Length takes 3 bytes', () => {
    const p = publish({ topic: 'a'.repeat(65535), payload: new Uint8Array(0) });
    expect(encodedLength(p)).toBe(1 + 3 + 2 + 65535);
    const bytes = encode(p);
    expect(toHex(bytes.subarray(0, 6))).toBe('30818004ffff');
  });
});

describe('encode output', () => {
  test('encode returns a buffer of exactly the encoded length', () => {
    for (const f of packetFixtures) {
      const bytes = encode(f.packet);
      expect(bytes.length).toBe(encodedLength(f.packet));
      expect(bytes).toBeInstanceOf(Uint8Array);
    }
  });

  test('the payload is copied: changing the source afterwards does not change the bytes', () => {
    const payload = Uint8Array.of(1, 2, 3);
    const bytes = encode(publish({ payload }));
    payload[0] = 9;
    expect(toHex(bytes)).toBe('30080003612f62010203');
  });

  test('a payload that is a view at a byteOffset is encoded from its own bytes', () => {
    const backing = Uint8Array.of(9, 9, 1, 2, 9);
    expect(toHex(encode(publish({ payload: backing.subarray(2, 4) })))).toBe('30070003612f620102');
  });
});

describe('encodeAck', () => {
  test.each([
    ['puback', 0x40],
    ['pubrec', 0x50],
    ['pubrel', 0x62],
    ['pubcomp', 0x70],
    ['unsuback', 0xb0],
  ] as const)('[MQTT-3.6.1-1] encodes %s like encode() does', (type, firstByte) => {
    const bytes = encodeAck(type, 0x1234);
    expect(Array.from(bytes)).toEqual([firstByte, 2, 0x12, 0x34]);
    expect(Array.from(bytes)).toEqual(Array.from(encode({ type, packetId: 0x1234 })));
  });

  test('[MQTT-2.3.1-1] refuses packet identifier 0 with CODEC_INVALID_ARGUMENT', () => {
    expectThrowsCode(() => encodeAck('puback', 0), 'CODEC_INVALID_ARGUMENT');
  });
});
