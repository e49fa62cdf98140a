import { CodecError } from './errors.js';
import { decodeAck } from './packets/ack.js';
import { decodeConnack } from './packets/connack.js';
import { decodeConnect } from './packets/connect.js';
import { decodePublish, PartedPublishPacket } from './packets/publish.js';
import { decodeSuback } from './packets/suback.js';
import { decodeSubscribe } from './packets/subscribe.js';
import { decodeUnsubscribe } from './packets/unsubscribe.js';
import { allocate, MAX_REMAINING_LENGTH, Reader } from './primitives.js';
import type { Packet, ProtocolLevel, PublishPacket } from './types.js';

export interface PacketDecoderOptions {
  /**
   * The largest whole packet (fixed header included) accepted, in bytes. A packet that declares more
   * is refused as soon as its fixed header is read, before its body is buffered. Default: the
   * protocol's own limit, 268,435,455 bytes of remaining length.
   */
  maxPacketBytes?: number | undefined;
  /**
   * The protocol level of the stream when already known (a client decoding its server's answers).
   * A server leaves it unset: the decoder learns it from CONNECT.
   */
  protocolLevel?: ProtocolLevel | undefined;
}

/**
 * A PUBLISH with at least this many payload bytes that arrives over several chunks is returned with
 * its payload as views of those chunks (`payloadParts`) instead of being copied into one buffer:
 * copying it would cost a fresh allocation of its size (page faults, GC pressure) per message.
 */
export const PARTED_PAYLOAD_MIN_BYTES = 64 * 1024;

const EMPTY = new Uint8Array(0);
const NO_CHUNKS: Array<Uint8Array | undefined> = [];
/**
 * One Reader for every decoder: decoding a packet is synchronous and never re-entered, so its
 * per-packet cursor need not live in each connection's decoder (idle connections stay small).
 */
const sharedReader = new Reader();

// Fixed-header flags each packet type must carry [MQTT-2.2.2-1]; -1 marks PUBLISH, whose flags vary.
const REQUIRED_FLAGS = [-2, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, -2] as const;
const PACKET_NAMES = [
  'reserved (0)',
  'CONNECT',
  'CONNACK',
  'PUBLISH',
  'PUBACK',
  'PUBREC',
  'PUBREL',
  'PUBCOMP',
  'SUBSCRIBE',
  'SUBACK',
  'UNSUBSCRIBE',
  'UNSUBACK',
  'PINGREQ',
  'PINGRESP',
  'DISCONNECT',
  'reserved (15)',
] as const;

/**
 * A streaming MQTT decoder. Bytes go in with `push` in any slicing, whole packets come out of `next`
 * in order. It never throws on input: `next` returns a packet, `undefined` when it needs more bytes,
 * or a CodecError, after which the stream has lost its framing and every later call returns the
 * same error (the connection must be closed).
 *
 * Zero copy: a packet that arrives whole inside one pushed chunk is decoded in place, so its
 * payload (and CONNECT's will message and password) are views of that chunk. A packet that
 * straddles chunks is copied, once, into a buffer of its exact size — except a large PUBLISH, whose
 * payload stays in its chunks (`payloadParts`, see PARTED_PAYLOAD_MIN_BYTES). A view keeps its whole
 * chunk alive and changes if the chunk is overwritten: copy (`copyBytes(payload)`; a Buffer's
 * `slice()` is only another view) what you keep beyond the current turn, and do not reuse pushed
 * chunks.
 *
 * Memory is bounded by what the peer actually sent: a packet's size is checked against
 * `maxPacketBytes` from its fixed header, and nothing is allocated for a body until all of it arrived.
 */
export class PacketDecoder {
  /** The protocol level of the stream: set by the options or by the CONNECT decoded. */
  protocolLevel: ProtocolLevel | undefined;
  readonly maxPacketBytes: number;

  // Pending input: `head` from `headPos` on, then the chunks in `queue`, `buffered` bytes in all.
  private head: Uint8Array = EMPTY;
  private headPos = 0;
  /**
   * Chunks after `head`, from `queueStart` on; shared empty until a packet straddles chunks, so idle
   * decoders stay small. A taken chunk's slot is cleared rather than shifted out: an array V8 copies
   * away (to grow it) while it is in the old generation would keep the chunks it held alive until the
   * next full GC, and received chunks are large external memory.
   */
  private queue: Array<Uint8Array | undefined> = NO_CHUNKS;
  private queueStart = 0;
  private buffered = 0;
  private failure: CodecError | undefined = undefined;

  constructor(options: PacketDecoderOptions = {}) {
    this.maxPacketBytes = options.maxPacketBytes ?? MAX_REMAINING_LENGTH + 5;
    this.protocolLevel = options.protocolLevel;
  }

  /** Bytes received and not yet returned as packets. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The error that ended this stream, if one did. */
  get error(): CodecError | undefined {
    return this.failure;
  }

  /** Adds received bytes. The chunk is kept by reference until its packets have been returned. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0 || this.failure !== undefined) return;
    if (this.buffered === 0) {
      this.head = chunk;
      this.headPos = 0;
    } else {
      if (this.queue === NO_CHUNKS) this.queue = [];
      this.queue.push(chunk);
    }
    this.buffered += chunk.length;
  }

  /** The next whole packet, `undefined` when more bytes are needed, or the error that ends the stream. */
  next(): Packet | CodecError | undefined {
    if (this.failure !== undefined) return this.failure;
    if (this.buffered < 2) return undefined;

    const first = this.byteAt(0);
    const packetType = first >> 4;
    const flags = first & 0x0f;
    const required = REQUIRED_FLAGS[packetType]!;
    if (required === -2) {
      return this.fail(
        new CodecError('CODEC_INVALID_PACKET_TYPE', `packet type ${packetType} is reserved`, { packetType }),
      );
    }
    if (required === -1) {
      if ((flags & 0x06) === 0x06) {
        return this.fail(
          new CodecError('CODEC_INVALID_QOS', 'PUBLISH with QoS 3 [MQTT-3.3.1-4]', { packetType }),
        );
      }
      if ((flags & 0x0e) === 0x08) {
        return this.fail(
          new CodecError('CODEC_INVALID_FLAGS', 'PUBLISH at QoS 0 with DUP set [MQTT-3.3.1-2]', {
            packetType,
          }),
        );
      }
    } else if (flags !== required) {
      return this.fail(
        new CodecError(
          'CODEC_INVALID_FLAGS',
          `${PACKET_NAMES[packetType]} fixed-header flags must be ${required}, got ${flags} [MQTT-2.2.2-1] [MQTT-2.2.2-2]`,
          { packetType },
        ),
      );
    }

    // Remaining Length: up to four bytes, seven bits each, least significant first (2.2.3).
    let remainingLength = 0;
    let multiplier = 1;
    let headerBytes = 1;
    for (;;) {
      if (headerBytes >= this.buffered) return undefined;
      const digit = this.byteAt(headerBytes);
      remainingLength += (digit & 0x7f) * multiplier;
      headerBytes++;
      if ((digit & 0x80) === 0) break;
      if (headerBytes === 5) {
        return this.fail(
          new CodecError('CODEC_MALFORMED_REMAINING_LENGTH', 'remaining length continues past four bytes', {
            packetType,
          }),
        );
      }
      multiplier *= 128;
    }
    const total = headerBytes + remainingLength;
    if (total > this.maxPacketBytes) {
      return this.fail(
        new CodecError(
          'CODEC_PACKET_TOO_LARGE',
          `${PACKET_NAMES[packetType]} of ${total} bytes exceeds the maximum packet size of ${this.maxPacketBytes} bytes`,
          { packetType },
        ),
      );
    }
    if (total > this.buffered) return undefined;

    let bytes: Uint8Array;
    let start: number;
    if (this.head.length - this.headPos >= total) {
      bytes = this.head;
      start = this.headPos + headerBytes;
      this.headPos += total;
      this.buffered -= total;
      if (this.headPos === this.head.length) this.shiftHead();
    } else if (packetType === 3 && remainingLength >= PARTED_PAYLOAD_MIN_BYTES) {
      const parted = this.partedPublish(flags, headerBytes, remainingLength);
      if (parted !== undefined) return parted;
      bytes = this.take(total);
      start = headerBytes;
    } else {
      bytes = this.take(total);
      start = headerBytes;
    }
    const end = start + remainingLength;
    const result = this.decodeBody(packetType, flags, bytes, start, end);
    sharedReader.bytes = EMPTY; // the shared reader must not keep this chunk alive
    if (result instanceof CodecError) return this.fail(result);
    return result;
  }

  private decodeBody(
    packetType: number,
    flags: number,
    bytes: Uint8Array,
    start: number,
    end: number,
  ): Packet | CodecError {
    const r = sharedReader;
    r.reset(bytes, start, end, packetType);
    switch (packetType) {
      case 3:
        return decodePublish(r, flags);
      case 4:
      case 5:
      case 6:
      case 7:
      case 11:
        return decodeAck(r, packetType);
      case 1: {
        const connect = decodeConnect(r);
        if (!(connect instanceof CodecError)) this.protocolLevel = connect.protocolLevel;
        return connect;
      }
      case 2:
        return decodeConnack(r);
      case 8:
        return decodeSubscribe(r);
      case 9:
        return decodeSuback(r);
      case 10:
        return decodeUnsubscribe(r);
      case 12:
        r.expectEnd();
        return r.error ?? PINGREQ;
      case 13:
        r.expectEnd();
        return r.error ?? PINGRESP;
      default:
        r.expectEnd();
        return r.error ?? DISCONNECT;
    }
  }

  /**
   * A large PUBLISH over several chunks: its headers are copied and decoded as usual, its payload is
   * taken as views. Undefined (nothing consumed) when the payload is below PARTED_PAYLOAD_MIN_BYTES
   * (or the topic length runs past the packet, an error the ordinary path then reports).
   */
  private partedPublish(
    flags: number,
    headerBytes: number,
    remainingLength: number,
  ): PartedPublishPacket | CodecError | undefined {
    const topicBytes = (this.byteAt(headerBytes) << 8) | this.byteAt(headerBytes + 1);
    const variableHeaderBytes = 2 + topicBytes + ((flags & 0x06) === 0 ? 0 : 2);
    if (remainingLength - variableHeaderBytes < PARTED_PAYLOAD_MIN_BYTES) return undefined;
    const headers = this.take(headerBytes + variableHeaderBytes);
    const header = this.decodeBody(3, flags, headers, headerBytes, headers.length);
    sharedReader.bytes = EMPTY;
    if (header instanceof CodecError) return this.fail(header);
    return new PartedPublishPacket(
      header as PublishPacket,
      this.takeParts(remainingLength - variableHeaderBytes),
    );
  }

  /** The next `count` bytes as views of the chunks they are in, consumed. */
  private takeParts(count: number): Uint8Array[] {
    const parts: Uint8Array[] = [];
    let remaining = count;
    while (remaining > 0) {
      const n = Math.min(this.head.length - this.headPos, remaining);
      parts.push(this.head.subarray(this.headPos, this.headPos + n));
      remaining -= n;
      this.headPos += n;
      if (this.headPos === this.head.length) this.shiftHead();
    }
    this.buffered -= count;
    return parts;
  }

  private fail(error: CodecError): CodecError {
    this.failure = error;
    this.head = EMPTY;
    this.headPos = 0;
    this.queue = NO_CHUNKS;
    this.queueStart = 0;
    this.buffered = 0;
    return error;
  }

  private byteAt(index: number): number {
    let i = this.headPos + index;
    if (i < this.head.length) return this.head[i]!;
    i -= this.head.length;
    const queue = this.queue;
    for (let q = this.queueStart; q < queue.length; q++) {
      const chunk = queue[q]!;
      if (i < chunk.length) return chunk[i]!;
      i -= chunk.length;
    }
    return 0; // callers check `buffered` first
  }

  private shiftHead(): void {
    // The common case, one chunk consumed whole, must not touch the queue or allocate.
    const queue = this.queue;
    this.headPos = 0;
    if (this.queueStart === queue.length) {
      this.head = EMPTY;
      return;
    }
    this.head = queue[this.queueStart]!;
    queue[this.queueStart] = undefined;
    this.queueStart++;
    if (this.queueStart === queue.length) {
      queue.length = 0;
      this.queueStart = 0;
    }
  }

  /** Copies the next `count` bytes, which straddle chunks, into one buffer and consumes them. */
  private take(count: number): Uint8Array {
    // Every byte is overwritten below, so the buffer need not be zero-filled first.
    const out = allocate(count);
    let filled = 0;
    while (filled < count) {
      const available = this.head.length - this.headPos;
      const n = Math.min(available, count - filled);
      out.set(this.head.subarray(this.headPos, this.headPos + n), filled);
      filled += n;
      this.headPos += n;
      if (this.headPos === this.head.length) this.shiftHead();
    }
    this.buffered -= count;
    return out;
  }
}

// Packets without content are immutable singletons: decoding them allocates nothing.
const PINGREQ: Packet = Object.freeze({ type: 'pingreq' });
const PINGRESP: Packet = Object.freeze({ type: 'pingresp' });
const DISCONNECT: Packet = Object.freeze({ type: 'disconnect' });

/**
 * Decodes a buffer holding exactly one whole packet. Returns the packet or a CodecError (also when
 * the bytes end early or carry more than one packet).
 */
export function decodePacket(bytes: Uint8Array, options: PacketDecoderOptions = {}): Packet | CodecError {
  const decoder = new PacketDecoder(options);
  decoder.push(bytes);
  const packet = decoder.next();
  if (packet === undefined) {
    return new CodecError('CODEC_LENGTH_MISMATCH', `${bytes.length} bytes end before the packet does`);
  }
  if (!(packet instanceof CodecError) && decoder.bufferedBytes > 0) {
    return new CodecError('CODEC_LENGTH_MISMATCH', `${decoder.bufferedBytes} bytes follow the packet`);
  }
  return packet;
}
