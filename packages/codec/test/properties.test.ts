/**
 * Properties over every valid packet shape, and fuzzing of the streaming decoder with random and
 * mutated input. fast-check prints the seed and the shrunk counterexample on failure; replay one
 * with `{ seed, path }` in the parameters of the failing property.
 */

import {
  CodecError,
  type ConnackPacket,
  type ConnectPacket,
  decodePacket,
  encode,
  encodedLength,
  encodeInto,
  isValidTopicFilter,
  isValidTopicName,
  type Packet,
  PacketDecoder,
  type QoS,
  type SubackReturnCode,
  utf8Length,
} from '@broker/codec';
import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { concat, plain } from './helpers.js';

// Fixed run counts keep the file fast and its cost stable (a few seconds on one slow core). The seed
// is random and printed on failure; FC_SEED=<n> replays a whole run deterministically.
const RUNS = { roundTrip: 1000, chunking: 300, byteByByte: 100, fuzz: 1000 } as const;
const { FC_SEED } = process.env;
if (FC_SEED !== undefined) fc.configureGlobal({ seed: Number(FC_SEED) });

// ------------------------------------------------------------------------------------------------
// Arbitraries

/** One code point: mostly interesting ones (multi-byte, BOM, separators), sometimes any (no lone surrogates). */
const codePoint = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'a',
      'b',
      'Z',
      '0',
      ' ',
      '$',
      '-',
      'é',
      'ü',
      '€',
      '\u{2A6D4}',
      '\u{1F600}',
      '\uFEFF',
      '\uFFFF',
      '\u0001',
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);
const noNul = (c: string) => c !== '\u0000';
/** A UTF-8 encoded string field: any code point but U+0000 [MQTT-1.5.3-2]. */
const utf8String = (maxLength: number) => fc.string({ unit: codePoint.filter(noNul), maxLength });
/** The text of one topic level: no separator, no wildcard, no U+0000. */
const level = fc.string({
  unit: codePoint.filter((c) => noNul(c) && c !== '/' && c !== '+' && c !== '#'),
  maxLength: 6,
});
/** A topic name: levels joined by '/', at least one character [MQTT-4.7.3-1]. */
const topicName = fc
  .array(level, { minLength: 1, maxLength: 5 })
  .map((levels) => levels.join('/'))
  .filter((t) => t.length > 0);
/** A topic filter: levels, some '+', optionally a last '#' level [MQTT-4.7.1-2] [MQTT-4.7.1-3]. */
const topicFilter = fc
  .tuple(fc.array(fc.oneof(level, fc.constant('+')), { maxLength: 5 }), fc.boolean())
  .map(([levels, hash]) => (hash ? [...levels, '#'] : levels).join('/'))
  .filter((f) => f.length > 0);
const qos = fc.constantFrom<QoS>(0, 1, 2);
const packetId = fc.integer({ min: 1, max: 65535 });
const payload = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096 }) },
);
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });

const connectArb: fc.Arbitrary<ConnectPacket> = fc
  .record({
    protocolLevel: fc.constantFrom<3 | 4>(3, 4),
    clientId: utf8String(23),
    cleanSession: fc.boolean(),
    keepaliveSeconds: fc.integer({ min: 0, max: 65535 }),
    will: maybe(fc.record({ topic: topicName, payload, qos, retain: fc.boolean() })),
    username: maybe(utf8String(20)),
    password: maybe(fc.uint8Array({ maxLength: 40 })),
  })
  .map(
    (c): ConnectPacket => ({
      type: 'connect',
      protocolName: c.protocolLevel === 4 ? 'MQTT' : 'MQIsdp',
      protocolLevel: c.protocolLevel,
      clientId: c.clientId,
      cleanSession: c.cleanSession,
      keepaliveSeconds: c.keepaliveSeconds,
      will: c.will,
      username: c.username,
      // [MQTT-3.1.2-22] no password without a user name
      password: c.username === undefined ? undefined : c.password,
    }),
  );

const connackArb: fc.Arbitrary<ConnackPacket> = fc
  .record({
    sessionPresent: fc.boolean(),
    returnCode: fc.constantFrom<ConnackPacket['returnCode']>(0, 1, 2, 3, 4, 5),
  })
  // [MQTT-3.2.2-4] session present is 0 with a non-zero return code
  .map(({ sessionPresent, returnCode }) => ({
    type: 'connack',
    sessionPresent: sessionPresent && returnCode === 0,
    returnCode,
  }));

const publishArb: fc.Arbitrary<Packet> = fc
  .record({ topic: topicName, payload, qos, retain: fc.boolean(), dup: fc.boolean(), packetId })
  .map((p) => ({
    type: 'publish',
    topic: p.topic,
    payload: p.payload,
    qos: p.qos,
    retain: p.retain,
    dup: p.qos > 0 && p.dup, // [MQTT-3.3.1-2]
    packetId: p.qos > 0 ? p.packetId : undefined,
  }));

const ackArb: fc.Arbitrary<Packet> = fc
  .record({ type: fc.constantFrom('puback', 'pubrec', 'pubrel', 'pubcomp', 'unsuback' as const), packetId })
  .map((a) => a as Packet);

const subscribeArb: fc.Arbitrary<Packet> = fc.record({
  type: fc.constant('subscribe' as const),
  packetId,
  subscriptions: fc.array(fc.record({ topicFilter, qos }), { minLength: 1, maxLength: 5 }),
});

const subackArb: fc.Arbitrary<Packet> = fc.record({
  type: fc.constant('suback' as const),
  packetId,
  returnCodes: fc.array(fc.constantFrom<SubackReturnCode>(0, 1, 2, 0x80), { minLength: 1, maxLength: 8 }),
});

const unsubscribeArb: fc.Arbitrary<Packet> = fc.record({
  type: fc.constant('unsubscribe' as const),
  packetId,
  topicFilters: fc.array(topicFilter, { minLength: 1, maxLength: 5 }),
});

const emptyArb: fc.Arbitrary<Packet> = fc.constantFrom<Packet>(
  { type: 'pingreq' },
  { type: 'pingresp' },
  { type: 'disconnect' },
);

const packetArb: fc.Arbitrary<Packet> = fc.oneof(
  connectArb,
  connackArb,
  publishArb,
  publishArb,
  ackArb,
  subscribeArb,
  subackArb,
  unsubscribeArb,
  emptyArb,
);

/** Cuts `bytes` at the given points (any numbers; taken modulo the length, sorted, deduplicated). */
function cut(bytes: Uint8Array, points: readonly number[]): Uint8Array[] {
  const at = [...new Set(points.map((p) => (bytes.length === 0 ? 0 : p % (bytes.length + 1))))].sort(
    (a, b) => a - b,
  );
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of at) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

/**
 * Feeds `chunks` to a decoder and checks its invariants as it goes: it never throws, returns only
 * packets, undefined or CodecErrors, terminates (every packet consumes at least two bytes, so the
 * loop is bounded), never buffers more than it was given, and repeats its error once failed.
 */
function runDecoder(chunks: readonly Uint8Array[], options: { maxPacketBytes?: number } = {}) {
  const decoder = new PacketDecoder(options);
  const packets: Packet[] = [];
  let error: CodecError | undefined;
  let pushed = 0;
  let consumed = 0;
  for (const chunk of chunks) {
    decoder.push(chunk);
    pushed += chunk.length;
    expect(decoder.bufferedBytes).toBeLessThanOrEqual(pushed - consumed);
    const budget = pushed / 2 + 2;
    for (let calls = 0; ; calls++) {
      expect(calls).toBeLessThanOrEqual(budget);
      const before = decoder.bufferedBytes;
      const result = decoder.next();
      expect(decoder.bufferedBytes).toBeLessThanOrEqual(pushed - consumed);
      if (result === undefined) {
        expect(decoder.bufferedBytes).toBe(before);
        break;
      }
      if (result instanceof CodecError) {
        expect(result.code).toMatch(/^CODEC_/);
        expect(decoder.next()).toBe(result);
        expect(decoder.error).toBe(result);
        error = result;
        break;
      }
      expect(typeof result).toBe('object');
      expect(typeof result.type).toBe('string');
      expect(before - decoder.bufferedBytes).toBeGreaterThanOrEqual(2);
      consumed += before - decoder.bufferedBytes;
      packets.push(result);
    }
    if (error !== undefined) break;
  }
  if (error !== undefined) {
    expect(decoder.bufferedBytes).toBe(0);
    decoder.push(Uint8Array.of(0xc0, 0x00));
    expect(decoder.next()).toBe(error);
  }
  return { packets, error, decoder };
}

/**
 * Whatever the decoder returns can be encoded again, and decodes to the same packet. One known
 * difference: a received CONNACK with session present 1 and a non-zero return code (which a server
 * must not send, [MQTT-3.2.2-4]) is accepted, and the encoder, as a sender, writes session present 0.
 */
function expectReencodable(packet: Packet): void {
  const again = decodePacket(encode(packet));
  if (again instanceof CodecError) throw new Error(`re-encoded ${packet.type} refused: ${again.code}`);
  const expected =
    packet.type === 'connack' && packet.returnCode !== 0 ? { ...packet, sessionPresent: false } : packet;
  expect(plain(again)).toStrictEqual(plain(expected));
}

// ------------------------------------------------------------------------------------------------
describe('round trip', () => {
  test.prop([packetArb], { numRuns: RUNS.roundTrip })('decode(encode(p)) equals p', (packet) => {
    const bytes = encode(packet);
    expect(bytes.length).toBe(encodedLength(packet));
    const decoded = decodePacket(bytes);
    if (decoded instanceof CodecError) throw new Error(`${decoded.code}: ${decoded.message}`);
    expect(plain(decoded)).toStrictEqual(plain(packet));
  });

  test.prop([packetArb, fc.nat({ max: 64 })], { numRuns: RUNS.roundTrip })(
    'encodeInto at any offset writes exactly encode(p) and nothing else',
    (packet, offset) => {
      const bytes = encode(packet);
      const target = new Uint8Array(offset + bytes.length + 3).fill(0x5c);
      expect(encodeInto(packet, target, offset)).toBe(bytes.length);
      expect(Array.from(target.subarray(offset, offset + bytes.length))).toEqual(Array.from(bytes));
      expect(target.subarray(0, offset).every((b) => b === 0x5c)).toBe(true);
      expect(target.subarray(offset + bytes.length).every((b) => b === 0x5c)).toBe(true);
    },
  );

  test.prop([topicName], { numRuns: RUNS.roundTrip })(
    'generated topic names are valid and measured right',
    (topic) => {
      expect(isValidTopicName(topic)).toBe(true);
      expect(utf8Length(topic)).toBe(new TextEncoder().encode(topic).length);
    },
  );

  test.prop([topicFilter], { numRuns: RUNS.roundTrip })(
    'topicFilter validity agrees with a level-by-level reading of 4.7.1',
    (filter) => {
      expect(isValidTopicFilter(filter)).toBe(true);
      // Breaking the filter by gluing a character to a wildcard makes it invalid.
      if (filter.includes('+')) expect(isValidTopicFilter(filter.replace('+', '+x'))).toBe(false);
      if (filter.endsWith('#')) expect(isValidTopicFilter(`${filter}/a`)).toBe(false);
    },
  );
});

describe('chunking', () => {
  test.prop([fc.array(packetArb, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 30 })], {
    numRuns: RUNS.chunking,
  })('any chunking of several encoded packets gives the same packets, in order', (packets, points) => {
    const stream = concat(packets.map(encode));
    const { packets: out, error } = runDecoder(cut(stream, points));
    expect(error).toBeUndefined();
    expect(plain(out)).toStrictEqual(plain(packets));
  });

  test.prop([fc.array(packetArb, { minLength: 1, maxLength: 5 })], { numRuns: RUNS.byteByByte })(
    'one byte at a time gives the same packets',
    (packets) => {
      const stream = concat(packets.map(encode));
      const { packets: out } = runDecoder(Array.from(stream, (b) => Uint8Array.of(b)));
      expect(plain(out)).toStrictEqual(plain(packets));
    },
  );
});

describe('fuzzing the decoder', () => {
  test.prop([fc.uint8Array({ maxLength: 2048 }), fc.array(fc.nat(), { maxLength: 20 })], {
    numRuns: RUNS.fuzz,
  })(
    'random bytes in random chunks: never throws, only packets / undefined / CodecErrors, bounded',
    (bytes, points) => {
      const { packets } = runDecoder(cut(bytes, points));
      for (const p of packets) expectReencodable(p);
    },
  );

  /** A random body behind a valid-looking fixed header, so the fuzz reaches the body decoders. */
  const framed = fc
    .tuple(fc.integer({ min: 0x10, max: 0xef }), fc.uint8Array({ maxLength: 300 }))
    .map(([first, body]) => {
      const lengthBytes: number[] = [];
      let n = body.length;
      do {
        let digit = n % 128;
        n = Math.floor(n / 128);
        if (n > 0) digit |= 0x80;
        lengthBytes.push(digit);
      } while (n > 0);
      return concat([Uint8Array.of(first, ...lengthBytes), body]);
    });

  test.prop([fc.array(framed, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 20 })], {
    numRuns: RUNS.fuzz,
  })('well-framed random bodies: never throws, decoded packets re-encode to themselves', (frames, points) => {
    const { packets } = runDecoder(cut(concat(frames), points));
    for (const p of packets) expectReencodable(p);
  });

  const mutation = fc.oneof(
    fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ op: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ op: fc.constant('delete' as const), at: fc.nat() }),
  );
  type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

  function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
    const out = Array.from(bytes);
    for (const m of mutations) {
      if (m.op === 'insert') out.splice(m.at % (out.length + 1), 0, m.byte);
      else if (out.length === 0) continue;
      else if (m.op === 'flip') out[m.at % out.length]! ^= 1 << m.bit;
      else out.splice(m.at % out.length, 1);
    }
    return Uint8Array.from(out);
  }

  test.prop(
    [
      fc.array(packetArb, { minLength: 1, maxLength: 4 }),
      fc.array(mutation, { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(), { maxLength: 20 }),
    ],
    { numRuns: RUNS.fuzz },
  )(
    'mutated valid packets (flip / insert / delete): never throws, bounded, re-encodable',
    (packets, mutations, points) => {
      const bytes = mutate(concat(packets.map(encode)), mutations);
      const { packets: out } = runDecoder(cut(bytes, points));
      for (const p of out) expectReencodable(p);
    },
  );

  test.prop(
    [
      fc.uint8Array({ maxLength: 600 }),
      fc.integer({ min: 2, max: 300 }),
      fc.array(fc.nat(), { maxLength: 10 }),
    ],
    {
      numRuns: RUNS.fuzz,
    },
  )('with a small maxPacketBytes, no packet larger than the limit is ever returned', (bytes, max, points) => {
    const decoder = new PacketDecoder({ maxPacketBytes: max });
    for (const chunk of cut(bytes, points)) {
      decoder.push(chunk);
      for (;;) {
        const before = decoder.bufferedBytes;
        const result = decoder.next();
        if (result === undefined || result instanceof CodecError) break;
        expect(before - decoder.bufferedBytes).toBeLessThanOrEqual(max);
      }
      if (decoder.error !== undefined) break;
    }
  });
});
