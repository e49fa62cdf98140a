/**
 * The streaming behaviour of PacketDecoder: need-more, framing across chunks, zero copy, the packet
 * size limit applied from the fixed header, the sticky error, and the protocol level learned from
 * CONNECT. Also decodePacket's one-packet contract.
 */
import {
  CodecError,
  type ConnectPacket,
  decodePacket,
  encode,
  type Packet,
  PacketDecoder,
  type PublishPacket,
} from '@broker/codec';
import { describe, expect, test } from 'vitest';
import { fixture, fixtureBytes, PAYLOAD_200 } from './fixtures/packets.js';
import { concat, drain, expectError, expectPacket, fromHex } from './helpers.js';

const publishQos0 = fixture('PUBLISH QoS 0');
const publish200 = fixture('PUBLISH with a payload of 200 bytes');
const connectFull = fixture('CONNECT with the variable header of the standard example');
const puback = fixture('PUBACK');
const pingreq = fixture('PINGREQ');

function asPublish(p: Packet | CodecError | undefined): PublishPacket {
  if (p === undefined || p instanceof CodecError || p.type !== 'publish') {
    throw new Error(`expected a PUBLISH, got ${String(p)}`);
  }
  return p;
}

function asConnect(p: Packet | CodecError | undefined): ConnectPacket {
  if (p === undefined || p instanceof CodecError || p.type !== 'connect') {
    throw new Error(`expected a CONNECT, got ${String(p)}`);
  }
  return p;
}

describe('need more bytes', () => {
  test('a new decoder has nothing to return', () => {
    const d = new PacketDecoder();
    expect(d.next()).toBeUndefined();
    expect(d.bufferedBytes).toBe(0);
    expect(d.error).toBeUndefined();
    expect(d.protocolLevel).toBeUndefined();
  });

  test('pushing an empty chunk changes nothing', () => {
    const d = new PacketDecoder();
    d.push(new Uint8Array(0));
    expect(d.next()).toBeUndefined();
    expect(d.bufferedBytes).toBe(0);
  });

  test('only the first byte of the fixed header: undefined', () => {
    const d = new PacketDecoder();
    d.push(fromHex('30'));
    expect(d.next()).toBeUndefined();
    expect(d.bufferedBytes).toBe(1);
  });

  test('a Remaining Length cut after a continuation byte: undefined', () => {
    const bytes = fixtureBytes(publish200); // 30 cd 01 …
    const d = new PacketDecoder();
    d.push(bytes.subarray(0, 2));
    expect(d.next()).toBeUndefined();
    d.push(bytes.subarray(2, 3));
    expect(d.next()).toBeUndefined();
    d.push(bytes.subarray(3));
    expectPacket(d.next(), publish200.packet);
  });

  test('a whole fixed header and part of the body: undefined, then the packet when the rest arrives', () => {
    const bytes = fixtureBytes(connectFull);
    const d = new PacketDecoder();
    d.push(bytes.subarray(0, 2));
    expect(d.next()).toBeUndefined();
    d.push(bytes.subarray(2, 20));
    expect(d.next()).toBeUndefined();
    expect(d.bufferedBytes).toBe(20);
    d.push(bytes.subarray(20));
    expectPacket(d.next(), connectFull.packet);
    expect(d.bufferedBytes).toBe(0);
  });

  test('calling next() repeatedly while waiting does not consume anything', () => {
    const bytes = fixtureBytes(publishQos0);
    const d = new PacketDecoder();
    d.push(bytes.subarray(0, 4));
    for (let i = 0; i < 5; i++) expect(d.next()).toBeUndefined();
    expect(d.bufferedBytes).toBe(4);
    d.push(bytes.subarray(4));
    expectPacket(d.next(), publishQos0.packet);
  });
});

describe('framing', () => {
  test('several packets in one chunk come out one per next(), in order', () => {
    const d = new PacketDecoder();
    d.push(
      concat([
        fixtureBytes(publishQos0),
        fixtureBytes(puback),
        fixtureBytes(pingreq),
        fixtureBytes(connectFull),
      ]),
    );
    expectPacket(d.next(), publishQos0.packet);
    expectPacket(d.next(), puback.packet);
    expectPacket(d.next(), pingreq.packet);
    expectPacket(d.next(), connectFull.packet);
    expect(d.next()).toBeUndefined();
    expect(d.bufferedBytes).toBe(0);
  });

  test('bufferedBytes counts what has not been returned yet', () => {
    const a = fixtureBytes(publishQos0);
    const b = fixtureBytes(puback);
    const d = new PacketDecoder();
    d.push(concat([a, b, b.subarray(0, 1)]));
    expect(d.bufferedBytes).toBe(a.length + b.length + 1);
    d.next();
    expect(d.bufferedBytes).toBe(b.length + 1);
    d.next();
    expect(d.bufferedBytes).toBe(1);
    expect(d.next()).toBeUndefined();
  });

  test('a packet straddling two chunks, with whole packets before and after it', () => {
    const a = fixtureBytes(puback);
    const b = fixtureBytes(publish200);
    const c = fixtureBytes(publishQos0);
    const out = drain([concat([a, b.subarray(0, 50)]), concat([b.subarray(50), c])]);
    expect(out).toHaveLength(3);
    expectPacket(out[0], puback.packet);
    expectPacket(out[1], publish200.packet);
    expectPacket(out[2], publishQos0.packet);
  });

  test('a packet straddling many chunks (the header itself split)', () => {
    const b = fixtureBytes(publish200);
    const chunks = [
      b.subarray(0, 1),
      b.subarray(1, 2),
      b.subarray(2, 3),
      b.subarray(3, 100),
      b.subarray(100),
    ];
    const out = drain(chunks);
    expect(out).toHaveLength(1);
    expectPacket(out[0], publish200.packet);
  });

  test('chunks pushed before any next() are all kept', () => {
    const d = new PacketDecoder();
    const a = fixtureBytes(publishQos0);
    const b = fixtureBytes(connectFull);
    d.push(a);
    d.push(b.subarray(0, 5));
    d.push(b.subarray(5));
    d.push(a);
    expectPacket(d.next(), publishQos0.packet);
    expectPacket(d.next(), connectFull.packet);
    expectPacket(d.next(), publishQos0.packet);
    expect(d.next()).toBeUndefined();
  });
});

describe('zero copy', () => {
  test('a PUBLISH payload that arrived whole in one chunk is a view of that chunk', () => {
    const chunk = fixtureBytes(publish200);
    const d = new PacketDecoder();
    d.push(chunk);
    const p = asPublish(d.next());
    expect(p.payload.buffer).toBe(chunk.buffer);
    expect(p.payload.byteOffset).toBe(chunk.byteOffset + 8);
    expect(Array.from(p.payload)).toEqual(Array.from(PAYLOAD_200));
  });

  test('the second and third packets of one chunk are views of it too, also at a non-zero byteOffset', () => {
    const backing = new Uint8Array(1000);
    const stream = concat([fixtureBytes(publishQos0), fixtureBytes(publish200), fixtureBytes(publishQos0)]);
    backing.set(stream, 17);
    const chunk = backing.subarray(17, 17 + stream.length);
    const d = new PacketDecoder();
    d.push(chunk);
    for (let i = 0; i < 3; i++) expect(asPublish(d.next()).payload.buffer).toBe(backing.buffer);
  });

  test('CONNECT will message and password are views of the chunk', () => {
    const chunk = fixtureBytes(connectFull);
    const d = new PacketDecoder();
    d.push(chunk);
    const c = asConnect(d.next());
    expect(c.will?.payload.buffer).toBe(chunk.buffer);
    expect(c.password?.buffer).toBe(chunk.buffer);
  });

  test('a packet straddling chunks is copied once; the whole packet after it in the last chunk is a view', () => {
    const a = fixtureBytes(publish200);
    const b = fixtureBytes(publishQos0);
    const first = a.subarray(0, 100);
    const second = concat([a.subarray(100), b]);
    const d = new PacketDecoder();
    d.push(first);
    d.push(second);
    const straddling = asPublish(d.next());
    expect(straddling.payload.buffer).not.toBe(first.buffer);
    expect(straddling.payload.buffer).not.toBe(second.buffer);
    expect(Array.from(straddling.payload)).toEqual(Array.from(PAYLOAD_200));
    const whole = asPublish(d.next());
    expect(whole.payload.buffer).toBe(second.buffer);
  });
});

describe('maximum packet size, refused from the fixed header alone', () => {
  test('declared 268,435,455 with 5 bytes sent and maxPacketBytes 1 MiB: CODEC_PACKET_TOO_LARGE', () => {
    const d = new PacketDecoder({ maxPacketBytes: 1024 * 1024 });
    expect(d.maxPacketBytes).toBe(1024 * 1024);
    d.push(fromHex('30 ffffff7f'));
    const error = expectError(d.next(), 'CODEC_PACKET_TOO_LARGE');
    expect(error.packetType).toBe(3);
    expect(error.referenceCode).toBe(600);
    expect(d.bufferedBytes).toBe(0);
  });

  test('declared 268,435,455 with the default maximum: need more, and only what was sent is buffered', () => {
    const d = new PacketDecoder();
    d.push(fromHex('30 ffffff7f'));
    expect(d.next()).toBeUndefined();
    expect(d.bufferedBytes).toBe(5);
    for (let i = 0; i < 10; i++) d.push(new Uint8Array(1000));
    expect(d.next()).toBeUndefined();
    expect(d.bufferedBytes).toBe(10_005);
    expect(d.error).toBeUndefined();
  });

  test('the limit counts the whole packet, fixed header included', () => {
    const bytes = fixtureBytes(publishQos0); // 9 bytes
    expectPacket(decodePacket(bytes, { maxPacketBytes: 9 }), publishQos0.packet);
    expectError(decodePacket(bytes, { maxPacketBytes: 8 }), 'CODEC_PACKET_TOO_LARGE');
  });

  test('any packet type is measured (a SUBSCRIBE declaring 16,384 bytes)', () => {
    const d = new PacketDecoder({ maxPacketBytes: 16_000 });
    d.push(fromHex('82 808001'));
    const error = expectError(d.next(), 'CODEC_PACKET_TOO_LARGE');
    expect(error.packetType).toBe(8);
  });

  test('packets under the limit before an oversized one are still returned', () => {
    const d = new PacketDecoder({ maxPacketBytes: 100 });
    d.push(concat([fixtureBytes(puback), fixtureBytes(publish200)]));
    expectPacket(d.next(), puback.packet);
    expectError(d.next(), 'CODEC_PACKET_TOO_LARGE');
  });
});

describe('after an error', () => {
  test('every next() returns the same error, push is ignored, error is exposed', () => {
    const d = new PacketDecoder();
    d.push(concat([fixtureBytes(puback), fromHex('00 00'), fixtureBytes(pingreq)]));
    expectPacket(d.next(), puback.packet);
    const error = expectError(d.next(), 'CODEC_INVALID_PACKET_TYPE');
    expect(d.error).toBe(error);
    expect(d.bufferedBytes).toBe(0);
    d.push(fixtureBytes(pingreq));
    expect(d.bufferedBytes).toBe(0);
    for (let i = 0; i < 3; i++) expect(d.next()).toBe(error);
    expect(d.error).toBe(error);
  });

  test('an error found in the body (not the header) is sticky too', () => {
    const d = new PacketDecoder();
    d.push(fromHex('40 02 0000')); // PUBACK with packet identifier 0
    const error = expectError(d.next(), 'CODEC_INVALID_PACKET_ID');
    d.push(fixtureBytes(puback));
    expect(d.next()).toBe(error);
  });

  test('the decoder never throws on input (a few hostile streams)', () => {
    const streams = ['ff ff ff ff ff ff', '30 ff ff ff ff', '10 00', '82 00', 'e0 01 00', '3f 00'];
    for (const hex of streams) {
      const d = new PacketDecoder();
      expect(() => {
        d.push(fromHex(hex));
        d.next();
        d.next();
      }).not.toThrow();
      expect(d.next()).toBeInstanceOf(CodecError);
    }
  });
});

describe('protocol level', () => {
  test('learned from a CONNECT at level 4', () => {
    const d = new PacketDecoder();
    expect(d.protocolLevel).toBeUndefined();
    d.push(fixtureBytes(connectFull));
    d.next();
    expect(d.protocolLevel).toBe(4);
  });

  test('learned from a CONNECT at level 3 ("MQIsdp")', () => {
    const d = new PacketDecoder();
    d.push(fixtureBytes(fixture('CONNECT level 3 "MQIsdp", clean session 0')));
    expect(asConnect(d.next()).protocolLevel).toBe(3);
    expect(d.protocolLevel).toBe(3);
  });

  test('given by the options (a client decoding its server), overwritten by a CONNECT', () => {
    const d = new PacketDecoder({ protocolLevel: 3 });
    expect(d.protocolLevel).toBe(3);
    d.push(fixtureBytes(connectFull));
    d.next();
    expect(d.protocolLevel).toBe(4);
  });

  test('not learned from a refused CONNECT; the error carries the level and CONNACK code 1', () => {
    const d = new PacketDecoder();
    d.push(fromHex('10 0d 0004 4d515454 05 02 003c 0001 61'));
    const error = expectError(d.next(), 'CODEC_UNSUPPORTED_PROTOCOL_LEVEL');
    expect(error.protocolLevel).toBe(5);
    expect(error.connackReturnCode).toBe(1);
    expect(d.protocolLevel).toBeUndefined();
  });
});

describe('decodePacket', () => {
  test('decodes exactly one packet', () => {
    expectPacket(decodePacket(fixtureBytes(puback)), puback.packet);
  });

  test('empty input, one byte, or a cut packet: CODEC_LENGTH_MISMATCH', () => {
    expectError(decodePacket(new Uint8Array(0)), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(fromHex('c0')), 'CODEC_LENGTH_MISMATCH');
    expectError(decodePacket(fromHex('40 02 00')), 'CODEC_LENGTH_MISMATCH');
  });

  test('two packets: CODEC_LENGTH_MISMATCH', () => {
    expectError(decodePacket(concat([fixtureBytes(puback), fixtureBytes(pingreq)])), 'CODEC_LENGTH_MISMATCH');
  });

  test('an invalid packet: its own error', () => {
    expectError(decodePacket(fromHex('f0 00')), 'CODEC_INVALID_PACKET_TYPE');
  });

  test('decodes what encode produced (a Node Buffer)', () => {
    const bytes = encode(publish200.packet);
    expectPacket(decodePacket(bytes), publish200.packet);
  });
});
