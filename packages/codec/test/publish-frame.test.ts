/**
 * PublishFrame: one PUBLISH encoded once for many receivers, patched per receiver with a packet
 * identifier and DUP.
 */
import {
  CONTIGUOUS_PAYLOAD_LIMIT_BYTES,
  decodePacket,
  encode,
  encodePublishFrame,
  PublishFrame,
  type PublishPacket,
  type QoS,
} from '@broker/codec';
import { describe, expect, test } from 'vitest';
import { PAYLOAD_200 } from './fixtures/packets.js';
import { expectPacket, expectThrowsCode, toHex } from './helpers.js';

const input = (qos: QoS, retain = false) => ({ topic: 'a/é/\u{2A6D4}', payload: PAYLOAD_200, qos, retain });

function expected(qos: QoS, retain: boolean, packetId: number | undefined, dup = false): PublishPacket {
  return { type: 'publish', topic: 'a/é/\u{2A6D4}', payload: PAYLOAD_200, qos, retain, dup, packetId };
}

describe('encodePublishFrame', () => {
  test.each([
    [0, false],
    [0, true],
    [1, false],
    [1, true],
    [2, false],
    [2, true],
  ] as const)(
    'QoS %i retain %s: bytes are encode() of the same PUBLISH (packet id 0 as placeholder)',
    (qos, retain) => {
      const frame = encodePublishFrame(input(qos, retain));
      expect(frame).toBeInstanceOf(PublishFrame);
      expect(frame.qos).toBe(qos);
      if (qos === 0) {
        expectPacket(decodePacket(frame.bytes), expected(0, retain, undefined));
        expect(toHex(frame.bytes)).toBe(toHex(encode(expected(0, retain, undefined))));
      } else {
        // The placeholder identifier is 0, which no receiver may be sent [MQTT-2.3.1-1].
        expect(frame.bytes[frame.packetIdOffset]).toBe(0);
        expect(frame.bytes[frame.packetIdOffset + 1]).toBe(0);
        const withOne = encode(expected(qos, retain, 1));
        withOne[frame.packetIdOffset + 1] = 0;
        expect(toHex(frame.bytes)).toBe(toHex(withOne));
      }
    },
  );

  test('QoS 0 has packetIdOffset -1; headLength is the bytes before the payload', () => {
    const frame = encodePublishFrame(input(0));
    expect(frame.packetIdOffset).toBe(-1);
    // "a/é/\u{2A6D4}" is 1 + 1 + 2 + 1 + 4 = 9 bytes; 1 + 2 (RL 2 + 9 + 200 = 211) + 2 + 9
    expect(frame.headLength).toBe(1 + 2 + 2 + 9);
    expect(frame.bytes.length).toBe(frame.headLength + 200);
    expect(toHex(frame.bytes.subarray(frame.headLength))).toBe(toHex(PAYLOAD_200));
  });

  test('QoS 1: packetIdOffset points after the topic, headLength after the identifier', () => {
    const frame = encodePublishFrame(input(1));
    expect(frame.packetIdOffset).toBe(1 + 2 + 2 + 9);
    expect(frame.headLength).toBe(frame.packetIdOffset + 2);
    expect(toHex(frame.bytes.subarray(frame.headLength))).toBe(toHex(PAYLOAD_200));
  });

  test('an empty payload and a one-byte Remaining Length', () => {
    const frame = encodePublishFrame({ topic: 't', payload: new Uint8Array(0), qos: 2, retain: false });
    expect(toHex(frame.bytes)).toBe('3405000174' + '0000');
    expect(frame.packetIdOffset).toBe(5);
    expect(toHex(frame.withPacketId(0x0102))).toBe('34050001740102');
  });

  test.each([
    [
      '[MQTT-3.3.2-2] a wildcard topic',
      { topic: 'a/#', payload: new Uint8Array(0), qos: 0 as QoS, retain: false },
    ],
    [
      '[MQTT-4.7.3-1] an empty topic',
      { topic: '', payload: new Uint8Array(0), qos: 1 as QoS, retain: false },
    ],
    [
      '[MQTT-4.7.3-2] a topic with U+0000',
      { topic: 'a\u0000', payload: new Uint8Array(0), qos: 1 as QoS, retain: false },
    ],
    [
      '[MQTT-1.5.3-1] a topic with a lone surrogate',
      { topic: '\uD800', payload: new Uint8Array(0), qos: 1 as QoS, retain: false },
    ],
    ['[MQTT-3.3.1-4] QoS 3', { topic: 't', payload: new Uint8Array(0), qos: 3 as QoS, retain: false }],
  ])('%s is refused with CODEC_INVALID_ARGUMENT', (_name, bad) => {
    expectThrowsCode(() => encodePublishFrame(bad), 'CODEC_INVALID_ARGUMENT');
  });
});

describe('withPacketId', () => {
  test.each([1, 2] as const)(
    'QoS %i: distinct copies decode with each id and DUP; bytes unchanged',
    (qos) => {
      const frame = encodePublishFrame(input(qos, true));
      const before = toHex(frame.bytes);
      const a = frame.withPacketId(1);
      const b = frame.withPacketId(65535, true);
      const c = frame.withPacketId(0x1234, false);
      expect(a).not.toBe(frame.bytes);
      expect(a.buffer === b.buffer && a.byteOffset === b.byteOffset).toBe(false);
      expectPacket(decodePacket(a), expected(qos, true, 1));
      expectPacket(decodePacket(b), expected(qos, true, 65535, true));
      expectPacket(decodePacket(c), expected(qos, true, 0x1234));
      // Patching one copy leaves the others and the frame alone.
      expectPacket(decodePacket(a), expected(qos, true, 1));
      expect(toHex(frame.bytes)).toBe(before);
      // Each copy is what encode() gives for the same packet.
      expect(toHex(b)).toBe(toHex(encode(expected(qos, true, 65535, true))));
    },
  );

  test('[MQTT-3.3.1-1] DUP is set only on the copy asked for, for a redelivery', () => {
    const frame = encodePublishFrame(input(1));
    expect(frame.withPacketId(5, true)[0]).toBe(0x3a);
    expect(frame.withPacketId(5)[0]).toBe(0x32);
    expect(frame.bytes[0]).toBe(0x32);
  });

  test('QoS 0: withPacketId throws CODEC_INVALID_ARGUMENT (no packet identifier at QoS 0, [MQTT-2.3.1-5])', () => {
    const frame = encodePublishFrame(input(0));
    expectThrowsCode(() => frame.withPacketId(1), 'CODEC_INVALID_ARGUMENT');
  });

  test.each([0, -1, 65536, 1.5, Number.NaN])('[MQTT-2.3.1-1] packet identifier %d is refused', (id) => {
    const frame = encodePublishFrame(input(1));
    expectThrowsCode(() => frame.withPacketId(id), 'CODEC_INVALID_ARGUMENT');
  });
});

describe('writeInto', () => {
  test('writes the patched packet at an offset and returns its length; bytes unchanged', () => {
    const frame = encodePublishFrame(input(2));
    const before = toHex(frame.bytes);
    const n = frame.bytes.length;
    const target = new Uint8Array(2 * n + 10).fill(0xaa);
    expect(frame.writeInto(target, 3, 7)).toBe(n);
    expect(frame.writeInto(target, 3 + n, 8, true)).toBe(n);
    expectPacket(decodePacket(target.subarray(3, 3 + n)), expected(2, false, 7));
    expectPacket(decodePacket(target.subarray(3 + n, 3 + 2 * n)), expected(2, false, 8, true));
    expect(Array.from(target.subarray(0, 3))).toEqual([0xaa, 0xaa, 0xaa]);
    expect(target.subarray(3 + 2 * n).every((b) => b === 0xaa)).toBe(true);
    expect(toHex(frame.bytes)).toBe(before);
  });

  test('QoS 0: writes the bytes as they are', () => {
    const frame = encodePublishFrame(input(0, true));
    const target = new Uint8Array(frame.bytes.length + 1);
    expect(frame.writeInto(target, 1, 0)).toBe(frame.bytes.length);
    expectPacket(decodePacket(target.subarray(1)), expected(0, true, undefined));
  });

  test('[MQTT-2.3.1-1] QoS 1 with packet identifier 0 throws CODEC_INVALID_ARGUMENT', () => {
    const frame = encodePublishFrame(input(1));
    const target = new Uint8Array(frame.bytes.length);
    expectThrowsCode(() => frame.writeInto(target, 0, 0), 'CODEC_INVALID_ARGUMENT');
  });
});

describe('large payloads are not copied', () => {
  test('a payload above the contiguous limit is kept by reference; head + payload decode as the packet', () => {
    const payload = new Uint8Array(CONTIGUOUS_PAYLOAD_LIMIT_BYTES + 1).fill(7);
    const frame = encodePublishFrame({ topic: 'big/blob', payload, qos: 1, retain: true });
    expect(frame.isSplit).toBe(true);
    expect(frame.payload).toBe(payload);
    const head = frame.headWithPacketId(300, true);
    const whole = new Uint8Array(head.length + payload.length);
    whole.set(head);
    whole.set(payload, head.length);
    const decoded = decodePacket(whole);
    expect(decoded).toMatchObject({
      type: 'publish',
      topic: 'big/blob',
      qos: 1,
      retain: true,
      dup: true,
      packetId: 300,
    });
    expect(Array.from(frame.withPacketId(300, true))).toEqual(Array.from(whole));
    expect(frame.bytes.length).toBe(frame.length);
  });

  test('a small payload is encoded with its head into one buffer', () => {
    const frame = encodePublishFrame({ topic: 't', payload: new Uint8Array(10), qos: 0, retain: false });
    expect(frame.isSplit).toBe(false);
    expect(frame.payload.buffer).toBe(frame.bytes.buffer);
    expect(frame.length).toBe(frame.bytes.length);
  });
});
