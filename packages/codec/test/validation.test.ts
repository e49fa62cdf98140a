/**
 * Every validation rule of the decoder, each test named after the normative statement of
 * MQTT 3.1.1 it checks ([MQTT-x.y.z-n]) or, where the standard states the rule without a number,
 * after its section. Bytes are built here from hex with a Remaining Length computed by the
 * algorithm of 2.2.3 (written in this file, independent of the codec).
 */
import {
  CodecError,
  type CodecErrorCode,
  type ConnectPacket,
  decodePacket,
  encode,
  isValidTopicFilter,
  isValidTopicName,
  type Packet,
  PacketDecoder,
  topicFilterProblem,
  topicNameProblem,
} from '@broker/codec';
import { describe, expect, test } from 'vitest';
import { fixtureBytes, packetFixtures } from './fixtures/packets.js';
import { concat, expectError, expectPacket, expectThrowsCode, fromHex, toHex, utf8Hex } from './helpers.js';

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');
const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

/** The Remaining Length field for `n`, by the algorithm of 2.2.3. */
function rlHex(n: number): string {
  let out = '';
  do {
    let digit = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) digit |= 0x80;
    out += hex2(digit);
  } while (n > 0);
  return out;
}

/** A packet: first byte, Remaining Length, body. */
function pkt(firstByte: number, bodyHex: string): Uint8Array {
  const body = fromHex(bodyHex);
  return concat([Uint8Array.of(firstByte), fromHex(rlHex(body.length)), body]);
}

/** A length-prefixed UTF-8 string (1.5.3). */
const str = (text: string): string => {
  const h = utf8Hex(text);
  return hex4(h.length / 2) + h;
};
/** A length-prefixed field of raw bytes given as hex. */
const raw = (bytesHex: string): string => {
  const h = bytesHex.replace(/\s/g, '');
  return hex4(h.length / 2) + h;
};

const MQTT_4 = `${str('MQTT')}04`;
const MQISDP_3 = `${str('MQIsdp')}03`;
/** A CONNECT with the given connect flags, keep alive 60 and payload. */
const connect = (flags: number, payloadHex: string, nameAndLevel = MQTT_4): Uint8Array =>
  pkt(0x10, `${nameAndLevel}${hex2(flags)}003c${payloadHex}`);

function decoded(bytes: Uint8Array): Packet {
  const p = decodePacket(bytes);
  if (p instanceof CodecError) throw new Error(`expected a packet, got ${p.code}: ${p.message}`);
  return p;
}

function decodedConnect(bytes: Uint8Array): ConnectPacket {
  const p = decoded(bytes);
  if (p.type !== 'connect') throw new Error(`expected CONNECT, got ${p.type}`);
  return p;
}

// ------------------------------------------------------------------------------------------------
describe('fixed header (2.2)', () => {
  test.each([0, 15])('table 2.1: reserved packet type %i is refused (CODEC_INVALID_PACKET_TYPE)', (type) => {
    for (let flags = 0; flags < 16; flags++) {
      const error = expectError(
        decodePacket(fromHex(`${hex2((type << 4) | flags)} 00`)),
        'CODEC_INVALID_PACKET_TYPE',
      );
      expect(error.packetType).toBe(type);
    }
  });

  // Table 2.2: the required flags of every packet type but PUBLISH.
  const required: Record<string, number> = {
    connect: 0,
    connack: 0,
    puback: 0,
    pubrec: 0,
    pubrel: 2,
    pubcomp: 0,
    subscribe: 2,
    suback: 0,
    unsubscribe: 2,
    unsuback: 0,
    pingreq: 0,
    pingresp: 0,
    disconnect: 0,
  };
  const samples = Object.keys(required).map((type) => {
    const f = packetFixtures.find((x) => x.packet.type === type)!;
    return { type, requiredFlags: required[type]!, bytes: fixtureBytes(f), packet: f.packet };
  });

  describe.each(samples)('$type', ({ type, requiredFlags, bytes, packet }) => {
    const packetType = bytes[0]! >> 4;
    test(`[MQTT-2.2.2-1] flags ${requiredFlags.toString(2).padStart(4, '0')} are accepted`, () => {
      expect(bytes[0]! & 0x0f).toBe(requiredFlags);
      expectPacket(decodePacket(bytes), packet);
    });

    const invalid = Array.from({ length: 16 }, (_, i) => i).filter((f) => f !== requiredFlags);
    test.each(invalid)(
      `[MQTT-2.2.2-1] [MQTT-2.2.2-2] ${type.toUpperCase()} with flags %i is refused (CODEC_INVALID_FLAGS)`,
      (flags) => {
        const changed = Uint8Array.from(bytes);
        changed[0] = (packetType << 4) | flags;
        const error = expectError(decodePacket(changed), 'CODEC_INVALID_FLAGS');
        expect(error.packetType).toBe(packetType);
        // Refused from the first two bytes alone, before the body.
        const d = new PacketDecoder();
        d.push(changed.subarray(0, 2));
        expectError(d.next(), 'CODEC_INVALID_FLAGS');
      },
    );
  });

  test('[MQTT-2.2.2-2] PUBREL with flags 0000 is refused', () => {
    expectError(decodePacket(fromHex('60 02 0001')), 'CODEC_INVALID_FLAGS');
  });

  test('[MQTT-3.8.1-1] SUBSCRIBE with flags 0000 is refused', () => {
    expectError(decodePacket(pkt(0x80, `0001${str('a')}00`)), 'CODEC_INVALID_FLAGS');
  });

  test('[MQTT-3.10.1-1] UNSUBSCRIBE with flags 0000 is refused', () => {
    expectError(decodePacket(pkt(0xa0, `0001${str('a')}`)), 'CODEC_INVALID_FLAGS');
  });

  describe('PUBLISH flags (3.3.1)', () => {
    const body = (qos: number) => `${str('t')}${qos > 0 ? '0001' : ''}6869`;
    for (let flags = 0; flags < 16; flags++) {
      const dup = (flags & 8) !== 0;
      const qos = (flags >> 1) & 3;
      const retain = (flags & 1) !== 0;
      const bytes = pkt(0x30 | flags, body(qos));
      if (qos === 3) {
        test(`[MQTT-3.3.1-4] PUBLISH with QoS 3 (flags ${flags.toString(2).padStart(4, '0')}) is refused`, () => {
          const error = expectError(decodePacket(bytes), 'CODEC_INVALID_QOS');
          expect(error.packetType).toBe(3);
          const d = new PacketDecoder();
          d.push(bytes.subarray(0, 2));
          expectError(d.next(), 'CODEC_INVALID_QOS');
        });
      } else if (qos === 0 && dup) {
        test(`[MQTT-3.3.1-2] PUBLISH QoS 0 with DUP (flags ${flags.toString(2).padStart(4, '0')}) is refused`, () => {
          expectError(decodePacket(bytes), 'CODEC_INVALID_FLAGS');
        });
      } else {
        test(`3.3.1: PUBLISH flags ${flags.toString(2).padStart(4, '0')} give dup ${dup}, QoS ${qos}, retain ${retain}`, () => {
          expectPacket(decodePacket(bytes), {
            type: 'publish',
            topic: 't',
            payload: fromHex('6869'),
            qos: qos as 0 | 1 | 2,
            retain,
            dup,
            packetId: qos > 0 ? 1 : undefined,
          });
        });
      }
    }
  });

  describe('Remaining Length (2.2.3)', () => {
    test('2.2.3: a fifth continuation byte is refused (CODEC_MALFORMED_REMAINING_LENGTH)', () => {
      const error = expectError(decodePacket(fromHex('30 ffffffff 7f')), 'CODEC_MALFORMED_REMAINING_LENGTH');
      expect(error.packetType).toBe(3);
      expectError(decodePacket(fromHex('c0 80808080 01')), 'CODEC_MALFORMED_REMAINING_LENGTH');
    });

    test('2.2.3: refused as soon as the fourth length byte has its continuation bit, before any body', () => {
      const d = new PacketDecoder();
      d.push(fromHex('30 808080'));
      expect(d.next()).toBeUndefined();
      d.push(fromHex('80'));
      expectError(d.next(), 'CODEC_MALFORMED_REMAINING_LENGTH');
    });
  });
});

// ------------------------------------------------------------------------------------------------
describe('CONNECT (3.1)', () => {
  const clientA = str('a');

  test('[MQTT-3.1.2-1] protocol name other than "MQTT" / "MQIsdp" is refused (CODEC_INVALID_PROTOCOL_NAME)', () => {
    for (const name of ['MQTX', 'mqtt', 'MQT', 'MQTTT', '', 'MQIsdP', 'MQIs']) {
      const error = expectError(
        decodePacket(connect(0x02, clientA, `${str(name)}04`)),
        'CODEC_INVALID_PROTOCOL_NAME',
      );
      expect(error.packetType).toBe(1);
      expect(error.connackReturnCode).toBeUndefined();
    }
  });

  test.each([
    ['"MQTT" level 5 (an MQTT 5 CONNECT)', pkt(0x10, `${str('MQTT')}05 02 003c 00 ${clientA}`), 5],
    ['"MQTT" level 3', connect(0x02, clientA, `${str('MQTT')}03`), 3],
    ['"MQTT" level 0', connect(0x02, clientA, `${str('MQTT')}00`), 0],
    ['"MQTT" level 255', connect(0x02, clientA, `${str('MQTT')}ff`), 255],
    ['"MQIsdp" level 4', connect(0x02, clientA, `${str('MQIsdp')}04`), 4],
    ['"MQIsdp" level 5', connect(0x02, clientA, `${str('MQIsdp')}05`), 5],
  ] as const)(
    '[MQTT-3.1.2-2] %s is refused with CODEC_UNSUPPORTED_PROTOCOL_LEVEL and CONNACK return code 0x01',
    (_name, bytes, level) => {
      const error = expectError(decodePacket(bytes), 'CODEC_UNSUPPORTED_PROTOCOL_LEVEL');
      expect(error.connackReturnCode).toBe(0x01);
      expect(error.protocolLevel).toBe(level);
      expect(error.packetType).toBe(1);
      expect(error.referenceCode).toBe(600);
    },
  );

  test('[MQTT-3.1.2-2] "MQTT" level 4 and "MQIsdp" level 3 are accepted', () => {
    expect(decodedConnect(connect(0x02, clientA)).protocolLevel).toBe(4);
    const c = decodedConnect(connect(0x02, clientA, MQISDP_3));
    expect(c.protocolLevel).toBe(3);
    expect(c.protocolName).toBe('MQIsdp');
  });

  test('[MQTT-3.1.2-3] the reserved connect flag set is refused (CODEC_CONNECT_RESERVED_FLAG)', () => {
    for (const flags of [0x01, 0x03, 0xc3]) {
      expectError(
        decodePacket(connect(flags, `${clientA}${str('u')}${raw('70')}`)),
        'CODEC_CONNECT_RESERVED_FLAG',
      );
    }
  });

  test('[MQTT-3.1.2-13] Will QoS 1 or 2 without the Will Flag is refused (CODEC_INVALID_WILL_FLAGS)', () => {
    expectError(decodePacket(connect(0x0a, clientA)), 'CODEC_INVALID_WILL_FLAGS');
    expectError(decodePacket(connect(0x12, clientA)), 'CODEC_INVALID_WILL_FLAGS');
  });

  test('[MQTT-3.1.2-13] Will QoS 3 without the Will Flag is refused', () => {
    expectError(decodePacket(connect(0x1a, clientA)), 'CODEC_INVALID_WILL_FLAGS');
  });

  test('[MQTT-3.1.2-14] Will QoS 3 with the Will Flag is refused (CODEC_INVALID_WILL_FLAGS)', () => {
    const error = expectError(
      decodePacket(connect(0x1e, `${clientA}${str('w')}${raw('00')}`)),
      'CODEC_INVALID_WILL_FLAGS',
    );
    expect(error.packetType).toBe(1);
  });

  test('[MQTT-3.1.2-15] Will Retain without the Will Flag is refused (CODEC_INVALID_WILL_FLAGS)', () => {
    expectError(decodePacket(connect(0x22, clientA)), 'CODEC_INVALID_WILL_FLAGS');
  });

  test('[MQTT-3.1.2-11] [MQTT-3.1.2-12] Will Flag 0 with Will QoS 0 and Will Retain 0: no will, the next field is the user name', () => {
    const c = decodedConnect(connect(0x82, `${clientA}${str('w')}`));
    expect(c.will).toBeUndefined();
    expect('will' in c).toBe(true);
    expect(c.username).toBe('w');
  });

  test.each([
    [0, false],
    [1, false],
    [2, false],
    [0, true],
    [1, true],
    [2, true],
  ] as const)(
    '[MQTT-3.1.2-9] [MQTT-3.1.2-14] Will Flag 1 with Will QoS %i and retain %s: will topic and message read',
    (qos, retain) => {
      const flags = 0x02 | 0x04 | (qos << 3) | (retain ? 0x20 : 0);
      const c = decodedConnect(connect(flags, `${clientA}${str('w/t')}${raw('010203')}`));
      expect(c.will?.topic).toBe('w/t');
      expect(Array.from(c.will?.payload ?? [])).toEqual([1, 2, 3]);
      expect(c.will?.qos).toBe(qos);
      expect(c.will?.retain).toBe(retain);
    },
  );

  test('[MQTT-3.1.2-9] Will Flag 1 without the will fields is refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(connect(0x06, clientA)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(connect(0x06, `${clientA}${str('w')}`)), 'CODEC_LENGTH_MISMATCH');
  });

  test('[MQTT-3.1.2-22] Password Flag without User Name Flag is refused (CODEC_PASSWORD_WITHOUT_USERNAME)', () => {
    expectError(decodePacket(connect(0x42, `${clientA}${raw('7077')}`)), 'CODEC_PASSWORD_WITHOUT_USERNAME');
  });

  test('[MQTT-3.1.2-19] [MQTT-3.1.2-21] User Name / Password Flag without the field is refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(connect(0x82, clientA)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(connect(0xc2, `${clientA}${str('u')}`)), 'CODEC_LENGTH_MISMATCH');
  });

  test('[MQTT-3.1.2-18] [MQTT-3.1.2-20] flags 0: a user name or password present anyway is trailing data (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(connect(0x02, `${clientA}${str('u')}`)), 'CODEC_LENGTH_MISMATCH');
  });

  test('3.1.3.5: the password is binary data, not UTF-8 (0xFF 0x00 accepted)', () => {
    const c = decodedConnect(connect(0xc2, `${clientA}${str('u')}${raw('ff00c080')}`));
    expect(Array.from(c.password ?? [])).toEqual([0xff, 0x00, 0xc0, 0x80]);
  });

  test('3.1.3.3: the will message is binary data, not UTF-8', () => {
    const c = decodedConnect(connect(0x06, `${clientA}${str('w')}${raw('ff00')}`));
    expect(Array.from(c.will?.payload ?? [])).toEqual([0xff, 0x00]);
  });

  test('[MQTT-3.1.3-10] [MQTT-4.7.1-1] a will topic with a wildcard is refused (CODEC_INVALID_TOPIC_NAME, 601)', () => {
    for (const topic of ['w/#', '+', 'a/+/b']) {
      const error = expectError(
        decodePacket(connect(0x06, `${clientA}${str(topic)}${raw('00')}`)),
        'CODEC_INVALID_TOPIC_NAME',
      );
      expect(error.referenceCode).toBe(601);
    }
  });

  test('[MQTT-4.7.3-1] an empty will topic is refused (CODEC_INVALID_TOPIC_NAME)', () => {
    expectError(decodePacket(connect(0x06, `${clientA}${str('')}${raw('00')}`)), 'CODEC_INVALID_TOPIC_NAME');
  });

  test('[MQTT-3.1.3-6] a zero-byte client identifier is accepted by the codec', () => {
    expect(decodedConnect(connect(0x02, str(''))).clientId).toBe('');
  });

  test('3.1: trailing bytes after the CONNECT payload are refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(connect(0x02, `${clientA}00`)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(connect(0xc2, `${clientA}${str('u')}${raw('70')}ff`)), 'CODEC_LENGTH_MISMATCH');
  });

  test('1.5.3: a client identifier whose length runs past the packet is refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(connect(0x02, '0005 61')), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(connect(0x02, '00')), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(connect(0x02, '')), 'CODEC_LENGTH_MISMATCH');
  });

  test('3.1.2: a CONNECT cut inside its variable header is refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(pkt(0x10, `${MQTT_4}02 00`)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(pkt(0x10, `${MQTT_4}`)), 'CODEC_LENGTH_MISMATCH');
  });
});

// ------------------------------------------------------------------------------------------------
describe('UTF-8 encoded strings (1.5.3)', () => {
  /** Where a UTF-8 string appears, as a builder from the string's raw bytes (hex) to a packet. */
  const places: [string, (bytesHex: string) => Uint8Array][] = [
    ['CONNECT client identifier', (b) => connect(0x02, raw(b))],
    ['CONNECT user name', (b) => connect(0x82, `${str('c')}${raw(b)}`)],
    ['CONNECT will topic', (b) => connect(0x06, `${str('c')}${raw(`61${b}`)}${raw('00')}`)],
    ['PUBLISH topic name', (b) => pkt(0x30, `${raw(`61${b}`)}6869`)],
    ['PUBLISH QoS 1 topic name', (b) => pkt(0x32, `${raw(`61${b}`)}0001`)],
    ['SUBSCRIBE topic filter', (b) => pkt(0x82, `0001${str('ok')}00${raw(`61${b}`)}01`)],
    ['UNSUBSCRIBE topic filter', (b) => pkt(0xa2, `0001${raw(`61${b}`)}`)],
  ];

  const illFormed: [string, string][] = [
    ['overlong 0xC0 0x80', 'c080'],
    ['overlong 0xE0 0x80 0xAF ("/")', 'e080af'],
    ['byte 0xFF', 'ff'],
    ['byte 0xFE', 'fe'],
    ['a lone continuation byte 0x80', '80'],
    ['truncated 2-byte sequence 0xC3', 'c3'],
    ['truncated 3-byte sequence 0xE2 0x82', 'e282'],
    ['truncated 4-byte sequence 0xF0 0xAA 0x9B', 'f0aa9b'],
    ['a truncated sequence followed by ASCII 0xE2 0x41', 'e241'],
    ['code point above U+10FFFF (0xF4 0x90 0x80 0x80)', 'f4908080'],
  ];
  const surrogates: [string, string][] = [
    ['encoded surrogate U+D800 (0xED 0xA0 0x80)', 'eda080'],
    ['encoded surrogate U+DFFF (0xED 0xBF 0xBF)', 'edbfbf'],
    ['encoded surrogate pair (CESU-8 0xED 0xA0 0xBD 0xED 0xB8 0x80)', 'eda0bdedb880'],
  ];
  const nulls: [string, string][] = [
    ['U+0000 (0x00)', '00'],
    ['U+0000 after ASCII (0x62 0x00)', '6200'],
    ['U+0000 after a multi-byte character (0xC3 0xA9 0x00)', 'c3a900'],
  ];

  describe.each(places)('%s', (_place, build) => {
    test('a well-formed multi-byte string is accepted (control case)', () => {
      expect(decodePacket(build('c3a9e282acf0aa9b94'))).not.toBeInstanceOf(CodecError);
    });

    test.each(illFormed)(
      '[MQTT-1.5.3-1] ill-formed UTF-8, %s, is refused (CODEC_MALFORMED_UTF8)',
      (_n, bytes) => {
        expectError(decodePacket(build(bytes)), 'CODEC_MALFORMED_UTF8');
      },
    );

    test.each(surrogates)('[MQTT-1.5.3-1] %s is refused (CODEC_MALFORMED_UTF8)', (_n, bytes) => {
      expectError(decodePacket(build(bytes)), 'CODEC_MALFORMED_UTF8');
    });

    test.each(nulls)(
      '[MQTT-1.5.3-2] [MQTT-4.7.3-2] %s is refused (CODEC_UTF8_NULL_CHARACTER)',
      (_n, bytes) => {
        expectError(decodePacket(build(bytes)), 'CODEC_UTF8_NULL_CHARACTER');
      },
    );
  });

  test('[MQTT-1.5.3-3] a leading BOM (0xEF 0xBB 0xBF) in a topic name is kept as U+FEFF, not stripped', () => {
    const p = decoded(pkt(0x30, `${raw('efbbbf61')}`));
    if (p.type !== 'publish') throw new Error(p.type);
    expect(p.topic).toBe('\uFEFFa');
    expect(p.topic.length).toBe(2);
    expect(toHex(encode(p))).toBe(toHex(pkt(0x30, `${raw('efbbbf61')}`)));
  });

  test('[MQTT-1.5.3-3] a BOM in a client identifier, user name and topic filter is kept', () => {
    const c = decodedConnect(connect(0x82, `${raw('efbbbf')}${raw('efbbbf75')}`));
    expect(c.clientId).toBe('\uFEFF');
    expect(c.username).toBe('\uFEFFu');
    const s = decoded(pkt(0x82, `0001${raw('efbbbf2f23')}00`));
    expect(s).toEqual({
      type: 'subscribe',
      packetId: 1,
      subscriptions: [{ topicFilter: '\uFEFF/#', qos: 0 }],
    });
  });

  test('1.5.3: U+FFFF and other non-characters are well-formed and accepted', () => {
    const p = decoded(pkt(0x30, `${raw('efbfbf')}`));
    expect(p).toMatchObject({ topic: '\uFFFF' });
  });

  test('1.5.3.1: the standard example "A" U+2A6D4 (41 F0 AA 9B 94) decodes to a surrogate pair', () => {
    expect(decoded(pkt(0x30, raw('41f0aa9b94')))).toMatchObject({ topic: 'A\u{2A6D4}' });
  });
});

// ------------------------------------------------------------------------------------------------
describe('topic names and topic filters (4.7)', () => {
  test.each(['#', '+', 'a/#', 'a/+', 'a/+/b', 'sport/tennis/#', '#/a'])(
    '[MQTT-3.3.2-2] [MQTT-4.7.1-1] PUBLISH topic name "%s" with a wildcard is refused (CODEC_INVALID_TOPIC_NAME, referenceCode 601)',
    (topic) => {
      const error = expectError(decodePacket(pkt(0x30, `${str(topic)}00`)), 'CODEC_INVALID_TOPIC_NAME');
      expect(error.referenceCode).toBe(601);
      expect(error.packetType).toBe(3);
      expect(isValidTopicName(topic)).toBe(false);
      expect(topicNameProblem(topic)).toMatch(/MQTT-3\.3\.2-2/);
    },
  );

  test('[MQTT-4.7.3-1] an empty PUBLISH topic name is refused (CODEC_INVALID_TOPIC_NAME)', () => {
    const error = expectError(decodePacket(fromHex('30 02 0000')), 'CODEC_INVALID_TOPIC_NAME');
    expect(error.referenceCode).toBe(601);
    expectError(decodePacket(fromHex('32 04 0000 0001')), 'CODEC_INVALID_TOPIC_NAME');
    expect(isValidTopicName('')).toBe(false);
    expect(topicNameProblem('')).toMatch(/MQTT-4\.7\.3-1/);
  });

  test('[MQTT-4.7.3-1] an empty topic filter in SUBSCRIBE and UNSUBSCRIBE is refused (CODEC_INVALID_TOPIC_FILTER)', () => {
    const s = expectError(decodePacket(pkt(0x82, `0001${str('')}00`)), 'CODEC_INVALID_TOPIC_FILTER');
    expect(s.referenceCode).toBe(601);
    expect(s.packetType).toBe(8);
    const u = expectError(decodePacket(pkt(0xa2, `0001${str('')}`)), 'CODEC_INVALID_TOPIC_FILTER');
    expect(u.packetType).toBe(10);
    expect(isValidTopicFilter('')).toBe(false);
  });

  test.each([
    ' ',
    '/',
    '//',
    'a/b',
    '$SYS/broker/load',
    'sport/tennis/player1',
    '/finance',
    'é/€/\u{2A6D4}',
    'a b',
  ])('4.7.3: topic name "%s" is valid', (topic) => {
    expect(isValidTopicName(topic)).toBe(true);
    expect(topicNameProblem(topic)).toBeUndefined();
    expect(decoded(pkt(0x30, str(topic)))).toMatchObject({ type: 'publish', topic });
  });

  test('[MQTT-4.7.3-2] a topic name or filter containing U+0000 is not valid', () => {
    expect(isValidTopicName('a\u0000b')).toBe(false);
    expect(isValidTopicFilter('a/\u0000')).toBe(false);
    expect(topicNameProblem('\u0000')).toMatch(/MQTT-4\.7\.3-2/);
    expect(topicFilterProblem('\u0000/#')).toMatch(/MQTT-4\.7\.3-2/);
  });

  const invalidFilters: [string, string][] = [
    ['a/#/b', 'MQTT-4.7.1-2'],
    ['sport/tennis/#/ranking', 'MQTT-4.7.1-2'],
    ['sport/tennis#', 'MQTT-4.7.1-2'],
    ['#a', 'MQTT-4.7.1-2'],
    ['a/b#', 'MQTT-4.7.1-2'],
    ['##', 'MQTT-4.7.1-2'],
    ['#/', 'MQTT-4.7.1-2'],
    ['a+', 'MQTT-4.7.1-3'],
    ['+a/b', 'MQTT-4.7.1-3'],
    ['sport+', 'MQTT-4.7.1-3'],
    ['a/+b/c', 'MQTT-4.7.1-3'],
    ['++', 'MQTT-4.7.1-3'],
    ['+#', 'MQTT-4.7.1-'],
  ];
  test.each(invalidFilters)(
    '[MQTT-4.7.1-2] [MQTT-4.7.1-3] filter "%s" is invalid (%s)',
    (filter, statement) => {
      expect(isValidTopicFilter(filter)).toBe(false);
      expect(topicFilterProblem(filter)).toContain(statement);
      const s = expectError(
        decodePacket(pkt(0x82, `0001${str('ok')}01${str(filter)}01`)),
        'CODEC_INVALID_TOPIC_FILTER',
      );
      expect(s.referenceCode).toBe(601);
      expectError(decodePacket(pkt(0xa2, `0001${str(filter)}`)), 'CODEC_INVALID_TOPIC_FILTER');
    },
  );

  const validFilters = [
    '#',
    '+',
    '/+',
    '+/+',
    'a/+/#',
    '/',
    '//',
    '$SYS/#',
    '+/#',
    '/#',
    '+/tennis/#',
    'sport/+/player1',
    'sport/tennis/player1/#',
    'sport/#',
    'a/b',
    '+//+',
  ];
  test.each(validFilters)('4.7.1: filter "%s" is valid, in SUBSCRIBE and UNSUBSCRIBE', (filter) => {
    expect(isValidTopicFilter(filter)).toBe(true);
    expect(topicFilterProblem(filter)).toBeUndefined();
    expect(decoded(pkt(0x82, `0007${str(filter)}02`))).toEqual({
      type: 'subscribe',
      packetId: 7,
      subscriptions: [{ topicFilter: filter, qos: 2 }],
    });
    expect(decoded(pkt(0xa2, `0007${str(filter)}`))).toEqual({
      type: 'unsubscribe',
      packetId: 7,
      topicFilters: [filter],
    });
  });
});

// ------------------------------------------------------------------------------------------------
describe('SUBSCRIBE and UNSUBSCRIBE payloads', () => {
  test('[MQTT-3.8.3-3] SUBSCRIBE without topic filters is refused (CODEC_NO_TOPIC_FILTERS)', () => {
    const error = expectError(decodePacket(fromHex('82 02 0001')), 'CODEC_NO_TOPIC_FILTERS');
    expect(error.packetType).toBe(8);
  });

  test('[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters is refused (CODEC_NO_TOPIC_FILTERS)', () => {
    const error = expectError(decodePacket(fromHex('a2 02 0001')), 'CODEC_NO_TOPIC_FILTERS');
    expect(error.packetType).toBe(10);
  });

  test('[MQTT-3.8.3-4] requested QoS 3 is refused (CODEC_INVALID_SUBSCRIPTION_OPTIONS)', () => {
    expectError(decodePacket(pkt(0x82, `0001${str('a')}03`)), 'CODEC_INVALID_SUBSCRIPTION_OPTIONS');
  });

  test('[MQTT-3.8.3-4] every requested-QoS byte with a reserved bit set, or QoS 3, is refused', () => {
    for (let options = 0; options < 256; options++) {
      const bytes = pkt(0x82, `0001${str('a/b')}01${str('c')}${hex2(options)}`);
      if (options <= 2) {
        expectPacket(decodePacket(bytes), {
          type: 'subscribe',
          packetId: 1,
          subscriptions: [
            { topicFilter: 'a/b', qos: 1 },
            { topicFilter: 'c', qos: options as 0 | 1 | 2 },
          ],
        });
      } else {
        expectError(decodePacket(bytes), 'CODEC_INVALID_SUBSCRIPTION_OPTIONS');
      }
    }
  });

  test('3.8.3: a topic filter without its requested QoS byte is refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(pkt(0x82, `0001${str('a')}`)), 'CODEC_LENGTH_MISMATCH');
  });

  test('1.5.3: a topic filter whose length runs past the packet is refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(pkt(0x82, '0001 0009 61 00')), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(pkt(0xa2, '0001 0009 61')), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(pkt(0xa2, '0001 00')), 'CODEC_LENGTH_MISMATCH');
  });
});

// ------------------------------------------------------------------------------------------------
describe('packet identifiers (2.3.1)', () => {
  const zeroId: [string, Uint8Array][] = [
    ['PUBLISH QoS 1', pkt(0x32, `${str('t')}0000`)],
    ['PUBLISH QoS 2', pkt(0x34, `${str('t')}0000ff`)],
    ['SUBSCRIBE', pkt(0x82, `0000${str('t')}00`)],
    ['UNSUBSCRIBE', pkt(0xa2, `0000${str('t')}`)],
    ['PUBACK', fromHex('40 02 0000')],
    ['PUBREC', fromHex('50 02 0000')],
    ['PUBREL', fromHex('62 02 0000')],
    ['PUBCOMP', fromHex('70 02 0000')],
    ['SUBACK', fromHex('90 03 0000 00')],
    ['UNSUBACK', fromHex('b0 02 0000')],
  ];
  test.each(zeroId)(
    '[MQTT-2.3.1-1] %s with packet identifier 0 is refused (CODEC_INVALID_PACKET_ID)',
    (_n, bytes) => {
      const error = expectError(decodePacket(bytes), 'CODEC_INVALID_PACKET_ID');
      expect(error.packetType).toBe(bytes[0]! >> 4);
    },
  );

  test('[MQTT-2.3.1-5] a PUBLISH at QoS 0 carries no packet identifier: the two bytes after the topic are payload', () => {
    expectPacket(decodePacket(pkt(0x30, `${str('t')}0000`)), {
      type: 'publish',
      topic: 't',
      payload: fromHex('0000'),
      qos: 0,
      retain: false,
      dup: false,
      packetId: undefined,
    });
  });

  test('2.3.1: a PUBLISH at QoS 1 cut before its packet identifier is refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(pkt(0x32, `${str('t')}`)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(pkt(0x34, `${str('t')}00`)), 'CODEC_LENGTH_MISMATCH');
  });
});

// ------------------------------------------------------------------------------------------------
describe('remaining length disagreeing with the content', () => {
  test('1.5.3: a PUBLISH topic length beyond the end of the packet (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(fromHex('30 03 0005 61')), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(fromHex('30 01 00')), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(fromHex('30 00')), 'CODEC_LENGTH_MISMATCH');
  });

  test.each([
    ['PUBACK', '40'],
    ['PUBREC', '50'],
    ['PUBREL', '62'],
    ['PUBCOMP', '70'],
    ['UNSUBACK', 'b0'],
  ])('3.4–3.11: %s with Remaining Length 3, 1 or 0 is refused (CODEC_LENGTH_MISMATCH)', (_n, first) => {
    expectError(decodePacket(fromHex(`${first} 03 0001 00`)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(fromHex(`${first} 01 01`)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(fromHex(`${first} 00`)), 'CODEC_LENGTH_MISMATCH');
  });

  test.each([
    ['PINGREQ (3.12)', 'c0'],
    ['PINGRESP (3.13)', 'd0'],
    ['DISCONNECT (3.14)', 'e0'],
  ])('%s with a body is refused (CODEC_LENGTH_MISMATCH)', (_n, first) => {
    expectError(decodePacket(fromHex(`${first} 01 00`)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(fromHex(`${first} 02 0000`)), 'CODEC_LENGTH_MISMATCH');
  });

  test('3.2: CONNACK with Remaining Length 1 or 3 is refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(fromHex('20 01 00')), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(fromHex('20 03 0000 00')), 'CODEC_LENGTH_MISMATCH');
  });

  test('3.9.3: SUBACK without return codes is refused (CODEC_LENGTH_MISMATCH)', () => {
    expectError(decodePacket(fromHex('90 02 000a')), 'CODEC_LENGTH_MISMATCH');
  });

  test('2.2.3: a packet whose Remaining Length is one short, fed to a decoder, desynchronises into an error', () => {
    const d = new PacketDecoder();
    // PUBACK claiming 1 byte: refused, not read into the next packet.
    d.push(fromHex('40 01 00 01 c0 00'));
    expectError(d.next(), 'CODEC_LENGTH_MISMATCH');
  });
});

// ------------------------------------------------------------------------------------------------
describe('SUBACK and CONNACK codes', () => {
  test('[MQTT-3.9.3-2] every reserved SUBACK return code is refused (CODEC_INVALID_RETURN_CODE)', () => {
    for (let code = 0; code < 256; code++) {
      const bytes = fromHex(`90 04 000a 01 ${hex2(code)}`);
      if (code <= 2 || code === 0x80) {
        expectPacket(decodePacket(bytes), {
          type: 'suback',
          packetId: 10,
          returnCodes: [1, code as 0 | 1 | 2 | 0x80],
        });
      } else {
        const error = expectError(decodePacket(bytes), 'CODEC_INVALID_RETURN_CODE');
        expect(error.packetType).toBe(9);
      }
    }
  });

  test('3.2.2.1: CONNACK flags with any of the reserved bits 7-1 set are refused (CODEC_INVALID_CONNACK_FLAGS)', () => {
    for (let flags = 2; flags < 256; flags++) {
      const error = expectError(
        decodePacket(fromHex(`20 02 ${hex2(flags)} 00`)),
        'CODEC_INVALID_CONNACK_FLAGS',
      );
      expect(error.packetType).toBe(2);
    }
  });

  test('3.2.2.3 table 3.1: CONNACK return codes 6-255 are reserved and refused (CODEC_INVALID_RETURN_CODE)', () => {
    for (let code = 6; code < 256; code++) {
      const error = expectError(decodePacket(fromHex(`20 02 00 ${hex2(code)}`)), 'CODEC_INVALID_RETURN_CODE');
      expect(error.packetType).toBe(2);
    }
  });
});

// ------------------------------------------------------------------------------------------------
describe('the error table: every CodecErrorCode has a case', () => {
  const tooLarge = new PacketDecoder({ maxPacketBytes: 10 });
  tooLarge.push(
    fixtureBytes(packetFixtures.find((f) => f.name.startsWith('PUBLISH with a payload of 200'))!),
  );
  const table: Record<CodecErrorCode, () => unknown> = {
    CODEC_MALFORMED_REMAINING_LENGTH: () => decodePacket(fromHex('30 ffffffff 01')),
    CODEC_PACKET_TOO_LARGE: () => tooLarge.next(),
    CODEC_INVALID_PACKET_TYPE: () => decodePacket(fromHex('f0 00')),
    CODEC_INVALID_FLAGS: () => decodePacket(fromHex('60 02 0001')),
    CODEC_INVALID_QOS: () => decodePacket(pkt(0x36, `${str('t')}0001`)),
    CODEC_INVALID_PROTOCOL_NAME: () => decodePacket(connect(0x02, str('a'), `${str('HTTP')}04`)),
    CODEC_UNSUPPORTED_PROTOCOL_LEVEL: () => decodePacket(connect(0x02, str('a'), `${str('MQTT')}05`)),
    CODEC_CONNECT_RESERVED_FLAG: () => decodePacket(connect(0x03, str('a'))),
    CODEC_INVALID_WILL_FLAGS: () => decodePacket(connect(0x0a, str('a'))),
    CODEC_PASSWORD_WITHOUT_USERNAME: () => decodePacket(connect(0x42, `${str('a')}${raw('00')}`)),
    CODEC_MALFORMED_UTF8: () => decodePacket(pkt(0x30, raw('c080'))),
    CODEC_UTF8_NULL_CHARACTER: () => decodePacket(pkt(0x30, raw('6100'))),
    CODEC_INVALID_TOPIC_NAME: () => decodePacket(pkt(0x30, str('a/#'))),
    CODEC_INVALID_TOPIC_FILTER: () => decodePacket(pkt(0x82, `0001${str('a/#/b')}00`)),
    CODEC_NO_TOPIC_FILTERS: () => decodePacket(fromHex('82 02 0001')),
    CODEC_INVALID_PACKET_ID: () => decodePacket(fromHex('40 02 0000')),
    CODEC_INVALID_SUBSCRIPTION_OPTIONS: () => decodePacket(pkt(0x82, `0001${str('a')}03`)),
    CODEC_INVALID_RETURN_CODE: () => decodePacket(fromHex('90 03 0001 03')),
    CODEC_INVALID_CONNACK_FLAGS: () => decodePacket(fromHex('20 02 02 00')),
    CODEC_LENGTH_MISMATCH: () => decodePacket(fromHex('40 03 0001 00')),
    CODEC_INVALID_ARGUMENT: () => {
      try {
        return encode({
          type: 'publish',
          topic: 'a/+',
          payload: new Uint8Array(0),
          qos: 0,
          retain: false,
          dup: false,
        });
      } catch (error) {
        return error;
      }
    },
  };

  test.each(Object.entries(table))('%s', (code, produce) => {
    const error = produce();
    expect(error).toBeInstanceOf(CodecError);
    const e = error as CodecError;
    expect(e.code).toBe(code);
    expect(e.name).toBe('CodecError');
    expect(e).toBeInstanceOf(Error);
    expect(e.message.length).toBeGreaterThan(0);
    expect(e.referenceCode).toBe(
      code === 'CODEC_INVALID_TOPIC_NAME' || code === 'CODEC_INVALID_TOPIC_FILTER' ? 601 : 600,
    );
  });

  test('the table lists 21 codes', () => {
    expect(Object.keys(table)).toHaveLength(21);
  });

  test('decoding errors are returned, never thrown', () => {
    for (const [code, produce] of Object.entries(table)) {
      if (code === 'CODEC_INVALID_ARGUMENT') continue;
      expect(produce).not.toThrow();
    }
  });

  test('expectThrowsCode helper sanity: CODEC_INVALID_ARGUMENT is thrown by encode', () => {
    expectThrowsCode(() => encode({ type: 'puback', packetId: 0 }), 'CODEC_INVALID_ARGUMENT');
  });
});
