/**
 * Large PUBLISH payloads that arrive over several chunks are kept as views of those chunks
 * (`payloadParts`), not copied into one buffer; `encodePublishFrame` sends parts as they are.
 */
import {
  CodecError,
  copyBytes,
  decodePacket,
  encode,
  encodePublishFrame,
  PARTED_PAYLOAD_MIN_BYTES,
  PacketDecoder,
  type PublishPacket,
  type QoS,
} from '@broker/codec';
import { describe, expect, test } from 'vitest';

function payloadOf(length: number): Uint8Array {
  const payload = new Uint8Array(length);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 131 + 7) & 0xff;
  return payload;
}

function publish(payload: Uint8Array, qos: QoS = 1): PublishPacket {
  return {
    type: 'publish',
    topic: 'big/t',
    payload,
    qos,
    retain: true,
    dup: false,
    packetId: qos > 0 ? 77 : undefined,
  };
}

/** The bytes cut into Buffers of `size` (what a socket delivers), pushed one by one. */
function decodeInChunks(bytes: Uint8Array, size: number): { packets: unknown[]; chunks: Buffer[] } {
  const decoder = new PacketDecoder();
  const chunks: Buffer[] = [];
  const packets: unknown[] = [];
  for (let pos = 0; pos < bytes.length; pos += size) {
    const chunk = Buffer.from(bytes.subarray(pos, Math.min(bytes.length, pos + size)));
    chunks.push(chunk);
    decoder.push(chunk);
    for (let p = decoder.next(); p !== undefined; p = decoder.next()) {
      packets.push(p);
      if (p instanceof CodecError) return { packets, chunks }; // the stream ends with its error
    }
  }
  return { packets, chunks };
}

describe('parted payloads', () => {
  test.each([
    [200_000, 65_536, 1],
    [200_000, 1_500, 2],
    [PARTED_PAYLOAD_MIN_BYTES, 40_000, 0],
    [1024 * 1024, 65_536, 1],
  ] as const)(
    'a %d-byte payload in %d-byte chunks at QoS %d is kept as views of the chunks, and joins to the bytes sent',
    (length, size, qos) => {
      const payload = payloadOf(length);
      const { packets, chunks } = decodeInChunks(encode(publish(payload, qos)), size);
      expect(packets).toHaveLength(1);
      const packet = packets[0] as PublishPacket;
      expect(packet).toMatchObject({ type: 'publish', topic: 'big/t', qos, retain: true, dup: false });
      expect(packet.packetId).toBe(qos > 0 ? 77 : undefined);
      const parts = packet.payloadParts!;
      expect(parts.length).toBeGreaterThan(1);
      // No copy: every part views one of the pushed chunks.
      const buffers = new Set(chunks.map((c) => c.buffer));
      expect(parts.every((part) => buffers.has(part.buffer as ArrayBuffer))).toBe(true);
      expect(Buffer.compare(Buffer.from(packet.payload), Buffer.from(payload))).toBe(0);
    },
  );

  test('a payload below PARTED_PAYLOAD_MIN_BYTES over several chunks is one buffer, as before', () => {
    const payload = payloadOf(PARTED_PAYLOAD_MIN_BYTES - 1);
    const { packets } = decodeInChunks(encode(publish(payload)), 10_000);
    const packet = packets[0] as PublishPacket;
    expect(packet.payloadParts).toBeUndefined();
    expect(Buffer.compare(Buffer.from(packet.payload), Buffer.from(payload))).toBe(0);
  });

  test('a large PUBLISH that arrives in one chunk has no parts: its payload is a view of that chunk', () => {
    const bytes = encode(publish(payloadOf(200_000)));
    const packet = decodePacket(bytes) as PublishPacket;
    expect(packet.payloadParts).toBeUndefined();
    expect(packet.payload.buffer).toBe(bytes.buffer);
  });

  test('a large PUBLISH over chunks is followed correctly by the next packets of the stream', () => {
    const big = encode(publish(payloadOf(150_000)));
    const small = encode(publish(payloadOf(10), 0));
    const stream = new Uint8Array(big.length + small.length * 2);
    stream.set(big);
    stream.set(small, big.length);
    stream.set(small, big.length + small.length);
    const { packets } = decodeInChunks(stream, 65_536);
    expect(packets.map((p) => (p as PublishPacket).payload.length)).toEqual([150_000, 10, 10]);
  });

  test('[MQTT-3.3.2-2] a wildcard in the topic of a large parted PUBLISH is the same CodecError as for a small one', () => {
    const bytes = encode(publish(payloadOf(200_000)));
    // Patch the topic 'big/t' into 'big/#' (same length).
    const at = Buffer.from(bytes).indexOf('big/t');
    bytes[at + 4] = '#'.charCodeAt(0);
    const { packets } = decodeInChunks(bytes, 65_536);
    expect(packets).toHaveLength(1);
    expect(packets[0]).toBeInstanceOf(CodecError);
    expect((packets[0] as CodecError).code).toBe('CODEC_INVALID_TOPIC_NAME');
  });

  test('a topic length running past the packet is a CodecError, not a crash', () => {
    const bytes = encode(publish(payloadOf(PARTED_PAYLOAD_MIN_BYTES + 10)));
    const at = Buffer.from(bytes).indexOf('big/t') - 2;
    bytes[at] = 0xff;
    bytes[at + 1] = 0xff; // 65,535 bytes of topic in a packet of about 65,560
    const { packets } = decodeInChunks(bytes, 20_000);
    expect(packets[0]).toBeInstanceOf(CodecError);
  });

  test('setting payload replaces the parts', () => {
    const { packets } = decodeInChunks(encode(publish(payloadOf(100_000))), 65_536);
    const packet = packets[0] as PublishPacket;
    packet.payload = new Uint8Array([1, 2, 3]);
    expect(packet.payloadParts).toEqual([new Uint8Array([1, 2, 3])]);
    expect(encode(packet).length).toBe(encode(publish(new Uint8Array([1, 2, 3]))).length);
  });
});

describe('encodePublishFrame with parts', () => {
  const payload = payloadOf(300_000);
  const parts = [payload.subarray(0, 1000), payload.subarray(1000, 250_000), payload.subarray(250_000)];

  test.each([0, 1, 2] as const)(
    'QoS %d: sends the parts themselves after the head; every form equals the encoded packet',
    (qos) => {
      const frame = encodePublishFrame({ topic: 'big/t', payload: parts, qos, retain: false });
      expect(frame.isSplit).toBe(true);
      expect(frame.payloadParts).toEqual(parts);
      expect(frame.payloadParts.every((p, i) => p === parts[i])).toBe(true);
      expect(frame.payloadLength).toBe(payload.length);
      const reference = { ...publish(payload, qos), retain: false };
      const withId = qos === 0 ? frame.bytes : frame.withPacketId(77, false);
      expect(Buffer.compare(Buffer.from(withId), Buffer.from(encode(reference)))).toBe(0);
      if (qos > 0) {
        const head = frame.headWithPacketId(77, false);
        const sent = Buffer.concat([head, ...frame.payloadParts]);
        expect(Buffer.compare(sent, Buffer.from(encode(reference)))).toBe(0);
        const target = new Uint8Array(frame.length + 5);
        expect(frame.writeInto(target, 5, 77)).toBe(frame.length);
        expect(Buffer.compare(Buffer.from(target.subarray(5)), Buffer.from(encode(reference)))).toBe(0);
      }
      expect(Buffer.compare(Buffer.from(frame.payload), Buffer.from(payload))).toBe(0);
    },
  );

  test('small parts are joined into one contiguous packet', () => {
    const small = [new Uint8Array([1, 2]), new Uint8Array([3])];
    const frame = encodePublishFrame({ topic: 't', payload: small, qos: 0, retain: false });
    expect(frame.isSplit).toBe(false);
    expect([...frame.payload]).toEqual([1, 2, 3]);
  });
});

describe('copyBytes', () => {
  test('copies (a Buffer stays a Buffer), where Buffer#slice would only view', () => {
    const source = Buffer.from('abc');
    const copy = copyBytes(source);
    source[0] = 0x7a;
    expect(Buffer.isBuffer(copy)).toBe(true);
    expect(Buffer.from(copy).toString()).toBe('abc');
    expect(Buffer.from(source.slice()).toString()).toBe('zbc'); // why copyBytes exists
  });
});
