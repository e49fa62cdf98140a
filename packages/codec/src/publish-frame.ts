import { CodecError } from './errors.js';
import { copyParts, joinParts, partsLength, publishFirstByte } from './packets/publish.js';
import { allocate, remainingLengthSize, utf8Length, writeRemainingLength, writeUtf8 } from './primitives.js';
import { topicNameProblem } from './topic.js';
import type { QoS } from './types.js';

/**
 * Payloads up to this size are encoded into one contiguous buffer with their head: copying a small
 * payload once is cheaper than handing the socket two buffers. Larger payloads are never copied: the
 * frame keeps the caller's payload and a separate head, and a sender writes `head` then `payload`
 * (one writev), so a 1 MiB message fanned out to many receivers is sent without a single copy.
 */
export const CONTIGUOUS_PAYLOAD_LIMIT_BYTES = 4096;

const NO_PARTS: readonly Uint8Array[] = Object.freeze([]);

/**
 * One PUBLISH encoded once for many receivers (the broker's fan-out). The fixed header, topic and
 * payload are shared; what differs per receiver, the packet identifier and the DUP flag, is patched
 * into a copy of the head (`headWithPacketId`) or of the whole packet (`withPacketId`). At QoS 0
 * nothing differs: every receiver is sent the same bytes.
 *
 * Nothing here may be modified: the buffers may already be queued on many connections, and
 * `payload` is the caller's own (for large payloads), which must stay unchanged while the frame lives.
 */
export class PublishFrame {
  readonly qos: QoS;
  /** Bytes of the payload. */
  readonly payloadLength: number;
  /** Where the two bytes of the packet identifier start in `head` (and `bytes`), or -1 at QoS 0. */
  readonly packetIdOffset: number;
  /** Whether `head` and the payload are separate buffers (a large payload, kept without copying). */
  readonly isSplit: boolean;
  /** Bytes before the payload. */
  readonly headLength: number;
  /** The first byte of the fixed header (the DUP flag is patched into copies of it). */
  private readonly firstByte: number;
  /** The whole packet in one buffer: always for small payloads, built on demand for split frames. */
  private contiguous: Uint8Array | undefined;
  /** Split frames: the head. Contiguous frames: a view of `contiguous`, made on first use. */
  private headBytes: Uint8Array | undefined;
  /** Split frames: the payload as the buffers it is sent in; undefined for contiguous frames. */
  private parts: readonly Uint8Array[] | undefined;
  private joinedPayload: Uint8Array | undefined;

  // Only the buffers a frame is sent from are made when it is encoded: a small message's frame is one
  // object and one buffer (the views below are made only if asked for), since one is made per message.
  /**
   * @internal Made by {@link encodePublishFrame}. `bytes` is the whole packet when `isContiguous`,
   * else the head, sent before `payload` (the caller's buffer or parts, kept as they are).
   */
  constructor(
    qos: QoS,
    packetIdOffset: number,
    headLength: number,
    bytes: Uint8Array,
    payload: Uint8Array | readonly Uint8Array[],
    isContiguous: boolean,
  ) {
    this.qos = qos;
    this.packetIdOffset = packetIdOffset;
    this.firstByte = bytes[0]!;
    this.headLength = headLength;
    this.isSplit = !isContiguous;
    this.contiguous = isContiguous ? bytes : undefined;
    this.headBytes = isContiguous ? undefined : bytes;
    this.joinedPayload = isContiguous || !(payload instanceof Uint8Array) ? undefined : payload;
    this.parts = isContiguous ? undefined : payload instanceof Uint8Array ? [payload] : payload;
    this.payloadLength = payload instanceof Uint8Array ? payload.length : partsLength(payload);
  }

  /** Fixed header, topic and (at QoS 1 and 2) a packet identifier placeholder of 0. */
  get head(): Uint8Array {
    if (this.headBytes === undefined) this.headBytes = this.contiguous!.subarray(0, this.headLength);
    return this.headBytes;
  }

  /**
   * The payload as the buffers to write after `head`, in order: the caller's buffer, or its parts
   * (a payload the decoder kept as views of the chunks it arrived in). Empty for a contiguous frame.
   */
  get payloadParts(): readonly Uint8Array[] {
    return this.parts ?? NO_PARTS;
  }

  /**
   * The payload in one buffer: a view of `bytes` for small payloads, the caller's buffer for large
   * ones, or its parts joined (once, on first access) when it was given in parts.
   */
  get payload(): Uint8Array {
    if (this.joinedPayload === undefined) {
      this.joinedPayload =
        this.parts === undefined ? this.contiguous!.subarray(this.headLength) : joinParts(this.parts);
    }
    return this.joinedPayload;
  }

  /** Bytes of the whole packet. */
  get length(): number {
    return this.headLength + this.payloadLength;
  }

  /** The whole packet in one buffer (packet identifier 0 at QoS 1 and 2); built once for a split frame. */
  get bytes(): Uint8Array {
    let bytes = this.contiguous;
    if (bytes === undefined) {
      bytes = allocate(this.length);
      this.copyInto(bytes, 0);
      this.contiguous = bytes;
    }
    return bytes;
  }

  /**
   * A copy of the whole packet with `packetId` and the DUP flag set, for one receiver at QoS 1 or 2.
   * @throws CodecError CODEC_INVALID_ARGUMENT at QoS 0 or for an identifier outside 1–65535.
   */
  withPacketId(packetId: number, dup = false): Uint8Array {
    this.checkPacketId(packetId);
    const out = allocate(this.length);
    this.copyInto(out, 0);
    this.patch(out, 0, packetId, dup);
    return out;
  }

  /**
   * A copy of the head only, with `packetId` and DUP set: send it followed by `payloadParts` (shared).
   * @throws CodecError CODEC_INVALID_ARGUMENT at QoS 0 or for an identifier outside 1–65535.
   */
  headWithPacketId(packetId: number, dup = false): Uint8Array {
    this.checkPacketId(packetId);
    const out = allocate(this.headLength);
    out.set(this.head);
    this.patch(out, 0, packetId, dup);
    return out;
  }

  /**
   * Writes the packet with `packetId` and DUP into `target` at `offset` (for a caller batching
   * several packets into one buffer); returns the bytes written. At QoS 0 the identifier is ignored.
   * @throws CodecError CODEC_INVALID_ARGUMENT for an identifier outside 1–65535 at QoS 1 or 2, or
   * when `target` has no room (nothing is written then).
   */
  writeInto(target: Uint8Array, offset: number, packetId: number, dup = false): number {
    // Checked before the first byte is written: a throw leaves `target` untouched.
    const length = this.length;
    if (!Number.isInteger(offset) || offset < 0 || offset + length > target.length) {
      throw new CodecError(
        'CODEC_INVALID_ARGUMENT',
        `PUBLISH needs ${length} bytes at offset ${offset}; the buffer has ${target.length}`,
      );
    }
    if (this.qos > 0) this.checkPacketId(packetId);
    this.copyInto(target, offset);
    if (this.qos > 0) this.patch(target, offset, packetId, dup);
    return length;
  }

  /** Writes the packet as encoded (packet identifier 0) into `target` at `offset`. */
  private copyInto(target: Uint8Array, offset: number): void {
    const contiguous = this.contiguous;
    if (contiguous !== undefined) {
      target.set(contiguous, offset);
      return;
    }
    target.set(this.head, offset);
    copyParts(this.payloadParts, target, offset + this.headLength);
  }

  private checkPacketId(packetId: number): void {
    if (this.qos === 0)
      throw new CodecError('CODEC_INVALID_ARGUMENT', 'a QoS 0 PUBLISH has no packet identifier');
    if (!Number.isInteger(packetId) || packetId < 1 || packetId > 0xffff) {
      throw new CodecError('CODEC_INVALID_ARGUMENT', `packet identifier ${packetId} is outside 1–65535`);
    }
  }

  private patch(target: Uint8Array, offset: number, packetId: number, dup: boolean): void {
    if (dup) target[offset] = this.firstByte | 0x08;
    target[offset + this.packetIdOffset] = packetId >>> 8;
    target[offset + this.packetIdOffset + 1] = packetId & 0xff;
  }
}

export interface PublishFrameInput {
  topic: string;
  /** One buffer, or parts to be sent one after the other (never joined for sending). */
  payload: Uint8Array | readonly Uint8Array[];
  qos: QoS;
  retain: boolean;
}

/**
 * Encodes a PUBLISH once, for sending to many receivers. A payload above
 * CONTIGUOUS_PAYLOAD_LIMIT_BYTES is kept by reference, not copied: do not modify it afterwards.
 * @throws CodecError CODEC_INVALID_ARGUMENT for an invalid topic or QoS.
 */
export function encodePublishFrame(input: PublishFrameInput): PublishFrame {
  const { topic, payload, qos } = input;
  if (qos !== 0 && qos !== 1 && qos !== 2) {
    throw new CodecError('CODEC_INVALID_ARGUMENT', `PUBLISH QoS must be 0, 1 or 2, got ${String(qos)}`);
  }
  const problem = topicNameProblem(topic);
  if (problem !== undefined) throw new CodecError('CODEC_INVALID_ARGUMENT', `PUBLISH topic: ${problem}`);
  const topicBytes = utf8Length(topic);
  const payloadLength = payload instanceof Uint8Array ? payload.length : partsLength(payload);
  const length = 2 + topicBytes + (qos > 0 ? 2 : 0) + payloadLength;
  const headLength = 1 + remainingLengthSize(length) + length - payloadLength;
  const isContiguous = payloadLength <= CONTIGUOUS_PAYLOAD_LIMIT_BYTES;
  const out = allocate(isContiguous ? headLength + payloadLength : headLength);
  out[0] = publishFirstByte(qos, input.retain, false);
  let pos = writeRemainingLength(out, 1, length);
  pos = writeUtf8(out, pos, topic, topicBytes);
  let packetIdOffset = -1;
  if (qos > 0) {
    packetIdOffset = pos;
    out[pos++] = 0;
    out[pos++] = 0;
  }
  if (!isContiguous) return new PublishFrame(qos, packetIdOffset, headLength, out, payload, false);
  // Small parts are copied in like one buffer; large ones are kept as they are.
  if (payload instanceof Uint8Array) out.set(payload, pos);
  else copyParts(payload, out, pos);
  return new PublishFrame(qos, packetIdOffset, headLength, out, payload, true);
}
