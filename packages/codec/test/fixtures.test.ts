/**
 * Every hand-written fixture of ./fixtures/packets.ts through every entry point: decodePacket,
 * encode, encodeInto, encodedLength, a round trip, a decoder fed one byte at a time, and all of
 * them at once in one chunk. Then the Remaining Length examples of table 2.4.
 */
import {
  CodecError,
  decodePacket,
  encode,
  encodedLength,
  encodeInto,
  MAX_REMAINING_LENGTH,
  PacketDecoder,
  type PublishPacket,
} from '@broker/codec';
import { describe, expect, test } from 'vitest';
import { fixtureBytes, packetFixtures, remainingLengthExamples } from './fixtures/packets.js';
import { concat, drain, expectError, expectPacket, fromHex, toHex } from './helpers.js';

describe.each(packetFixtures)('$name', (f) => {
  const bytes = fixtureBytes(f);

  test('decodePacket gives the packet', () => {
    expectPacket(decodePacket(bytes), f.packet);
  });

  test('encode gives the bytes', () => {
    expect(toHex(encode(f.packet))).toBe(toHex(bytes));
  });

  test('encodedLength is the byte count', () => {
    expect(encodedLength(f.packet)).toBe(bytes.length);
  });

  test('encodeInto writes the bytes at a non-zero offset and nothing around them', () => {
    const offset = 3;
    const target = new Uint8Array(bytes.length + 7).fill(0xaa);
    expect(encodeInto(f.packet, target, offset)).toBe(bytes.length);
    expect(toHex(target.subarray(offset, offset + bytes.length))).toBe(toHex(bytes));
    expect(Array.from(target.subarray(0, offset))).toEqual([0xaa, 0xaa, 0xaa]);
    expect(Array.from(target.subarray(offset + bytes.length))).toEqual(new Array(4).fill(0xaa));
  });

  test('encodeInto fits a buffer of exactly the packet size', () => {
    const target = new Uint8Array(bytes.length);
    expect(encodeInto(f.packet, target, 0)).toBe(bytes.length);
    expect(toHex(target)).toBe(toHex(bytes));
  });

  test('round trip: decode(encode(p)) equals p, encode(decode(b)) equals b', () => {
    expectPacket(decodePacket(encode(f.packet)), f.packet);
    const decoded = decodePacket(bytes);
    if (decoded instanceof CodecError) throw decoded;
    expect(toHex(encode(decoded))).toBe(toHex(bytes));
  });

  test('a PacketDecoder fed one byte at a time returns it once, at the last byte', () => {
    const decoder = new PacketDecoder();
    for (let i = 0; i < bytes.length; i++) {
      expect(decoder.next()).toBeUndefined();
      decoder.push(bytes.subarray(i, i + 1));
      expect(decoder.bufferedBytes).toBe(i + 1);
    }
    expectPacket(decoder.next(), f.packet);
    expect(decoder.next()).toBeUndefined();
    expect(decoder.bufferedBytes).toBe(0);
    expect(decoder.error).toBeUndefined();
  });

  test('decodePacket refuses the bytes one short and one byte too many', () => {
    expectError(decodePacket(bytes.subarray(0, bytes.length - 1)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(concat([bytes, Uint8Array.of(0xc0)])), 'CODEC_LENGTH_MISMATCH');
  });
});

describe('all fixtures together', () => {
  const all = packetFixtures.map(fixtureBytes);
  const stream = concat(all);

  test('concatenated in one chunk, they come out in order', () => {
    const decoder = new PacketDecoder();
    decoder.push(stream);
    for (const f of packetFixtures) expectPacket(decoder.next(), f.packet);
    expect(decoder.next()).toBeUndefined();
    expect(decoder.bufferedBytes).toBe(0);
  });

  test('concatenated and fed one byte at a time, they come out in order', () => {
    const chunks = Array.from(stream, (b) => Uint8Array.of(b));
    const out = drain(chunks);
    expect(out).toHaveLength(packetFixtures.length);
    out.forEach((p, i) => {
      expectPacket(p, packetFixtures[i]!.packet);
    });
  });

  test('concatenated and cut in chunks of 7 bytes, they come out in order', () => {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i += 7) chunks.push(stream.subarray(i, i + 7));
    const out = drain(chunks);
    expect(out).toHaveLength(packetFixtures.length);
    out.forEach((p, i) => {
      expectPacket(p, packetFixtures[i]!.packet);
    });
  });

  test('encodeInto one after another into one buffer gives the concatenation', () => {
    const target = new Uint8Array(stream.length);
    let pos = 0;
    for (const f of packetFixtures) pos += encodeInto(f.packet, target, pos);
    expect(pos).toBe(stream.length);
    expect(toHex(target)).toBe(toHex(stream));
  });

  test('the fixtures cover all 14 packet types', () => {
    expect(new Set(packetFixtures.map((f) => f.packet.type)).size).toBe(14);
  });
});

describe('Remaining Length, table 2.4 (2.2.3)', () => {
  test('MAX_REMAINING_LENGTH is 268,435,455, the largest value of table 2.4', () => {
    expect(MAX_REMAINING_LENGTH).toBe(268_435_455);
  });

  test.each(remainingLengthExamples)('$value is encoded as $hex', ({ value, hex }) => {
    const headerLength = 1 + hex.length / 2;
    if (value === 0) {
      expect(toHex(encode({ type: 'pingreq' }))).toBe(`c0${hex}`);
      return;
    }
    if (value > 2_097_152) return; // 256 MB: only its header is checked, on the decoding side below.
    // A PUBLISH QoS 0 on topic "t": Remaining Length = 2 + 1 + payload.
    const packet: PublishPacket = {
      type: 'publish',
      topic: 't',
      payload: new Uint8Array(value - 3),
      qos: 0,
      retain: false,
      dup: false,
    };
    expect(encodedLength(packet)).toBe(headerLength + value);
    const bytes = encode(packet);
    expect(bytes.length).toBe(headerLength + value);
    expect(toHex(bytes.subarray(0, headerLength + 3))).toBe(`30${hex}000174`);
    const target = new Uint8Array(headerLength + value + 1);
    expect(encodeInto(packet, target, 1)).toBe(headerLength + value);
    expect(toHex(target.subarray(1, headerLength + 1))).toBe(`30${hex}`);
  });

  test.each(remainingLengthExamples)(
    '$hex is decoded as $value from the fixed header alone (maxPacketBytes at the limit and one below)',
    ({ value, hex }) => {
      const header = fromHex(`30${hex}`);
      const total = header.length + value;
      // Exactly the size: accepted, the decoder waits for the body.
      const atLimit = new PacketDecoder({ maxPacketBytes: total });
      atLimit.push(header);
      if (value === 0) {
        // A PUBLISH with Remaining Length 0 has no topic: it is refused as too short, once whole.
        expectError(atLimit.next(), 'CODEC_LENGTH_MISMATCH');
      } else {
        expect(atLimit.next()).toBeUndefined();
        expect(atLimit.bufferedBytes).toBe(header.length);
      }
      // One byte less allowed: refused from the header alone.
      const below = new PacketDecoder({ maxPacketBytes: total - 1 });
      below.push(header);
      const error = expectError(below.next(), 'CODEC_PACKET_TOO_LARGE');
      expect(error.packetType).toBe(3);
    },
  );

  test('268,435,455 (ff ff ff 7f) with the default maximum: need more, nothing of that size buffered', () => {
    const decoder = new PacketDecoder();
    decoder.push(fromHex('30 ffffff7f'));
    expect(decoder.next()).toBeUndefined();
    expect(decoder.bufferedBytes).toBe(5);
    decoder.push(fromHex('0001 74'));
    expect(decoder.next()).toBeUndefined();
    expect(decoder.bufferedBytes).toBe(8);
  });

  test('2,097,152 (80 80 80 01) decodes whole: a PUBLISH of 2 MiB round trips', () => {
    const payload = new Uint8Array(2_097_152 - 3).fill(0x5a);
    const bytes = fromHex('30 80808001 0001 74');
    const whole = concat([bytes, payload]);
    const decoded = decodePacket(whole);
    if (decoded instanceof CodecError) throw decoded;
    expect(decoded.type).toBe('publish');
    if (decoded.type !== 'publish') return;
    expect(decoded.topic).toBe('t');
    expect(decoded.payload.length).toBe(payload.length);
    expect(decoded.payload.every((b) => b === 0x5a)).toBe(true);
  });
});
