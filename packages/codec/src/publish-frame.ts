import { CodecError } from './errors.js';
import { publishFirstByte } from './packets/publish.js';
import { allocate, remainingLengthSize, utf8Length, writeRemainingLength, writeUtf8 } from './primitives.js';
import { topicNameProblem } from './topic.js';
import type { QoS } from './types.js';

/**
 * One PUBLISH encoded once for many receivers (the broker's fan-out). The fixed header, topic and
 * payload are shared; what differs per receiver, the packet identifier and the DUP flag, is patched
 * into a copy with `withPacketId`. At QoS 0 nothing differs: every receiver is sent `bytes` itself.
 *
 * `bytes` must not be modified: it may already be queued on many connections.
 */
export class PublishFrame {
  /** The whole packet; at QoS 1 and 2 its packet identifier is 0 (a placeholder). */
  readonly bytes: Uint8Array;
  readonly qos: QoS;
  /** Where the two bytes of the packet identifier start, or -1 at QoS 0. */
  readonly packetIdOffset: number;
  /** Bytes before the payload: fixed header, topic and packet identifier. */
  readonly headLength: number;

  constructor(bytes: Uint8Array, qos: QoS, packetIdOffset: number, headLength: number) {
    this.bytes = bytes;
    this.qos = qos;
    this.packetIdOffset = packetIdOffset;
    this.headLength = headLength;
  }

  /**
   * A copy of the packet with `packetId` and the DUP flag set, for one receiver at QoS 1 or 2.
   * @throws CodecError CODEC_INVALID_ARGUMENT at QoS 0 or for an identifier outside 1–65535.
   */
  withPacketId(packetId: number, dup = false): Uint8Array {
    const out = allocate(this.bytes.length);
    out.set(this.bytes);
    this.patch(out, 0, packetId, dup);
    return out;
  }

  /**
   * Writes the packet with `packetId` and DUP into `target` at `offset` (for a caller batching
   * several packets into one buffer); returns the bytes written.
   */
  writeInto(target: Uint8Array, offset: number, packetId: number, dup = false): number {
    // Checked before the first byte is written: a throw leaves `target` untouched.
    if (!Number.isInteger(offset) || offset < 0 || offset + this.bytes.length > target.length) {
      throw new CodecError(
        'CODEC_INVALID_ARGUMENT',
        `PUBLISH needs ${this.bytes.length} bytes at offset ${offset}; the buffer has ${target.length}`,
      );
    }
    if (this.qos > 0 && (!Number.isInteger(packetId) || packetId < 1 || packetId > 0xffff)) {
      throw new CodecError('CODEC_INVALID_ARGUMENT', `packet identifier ${packetId} is outside 1–65535`);
    }
    target.set(this.bytes, offset);
    if (this.qos > 0) this.patch(target, offset, packetId, dup);
    return this.bytes.length;
  }

  private patch(target: Uint8Array, offset: number, packetId: number, dup: boolean): void {
    if (this.qos === 0)
      throw new CodecError('CODEC_INVALID_ARGUMENT', 'a QoS 0 PUBLISH has no packet identifier');
    if (!(packetId >= 1 && packetId <= 0xffff) || !Number.isInteger(packetId)) {
      throw new CodecError('CODEC_INVALID_ARGUMENT', `packet identifier ${packetId} is outside 1–65535`);
    }
    if (dup) target[offset] = this.bytes[0]! | 0x08;
    target[offset + this.packetIdOffset] = packetId >>> 8;
    target[offset + this.packetIdOffset + 1] = packetId & 0xff;
  }
}

export interface PublishFrameInput {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
}

/**
 * Encodes a PUBLISH once, for sending to many receivers.
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
  const length = 2 + topicBytes + (qos > 0 ? 2 : 0) + payload.length;
  const out = allocate(1 + remainingLengthSize(length) + length);
  out[0] = publishFirstByte(qos, input.retain, false);
  let pos = writeRemainingLength(out, 1, length);
  pos = writeUtf8(out, pos, topic, topicBytes);
  let packetIdOffset = -1;
  if (qos > 0) {
    packetIdOffset = pos;
    out[pos++] = 0;
    out[pos++] = 0;
  }
  out.set(payload, pos);
  return new PublishFrame(out, qos, packetIdOffset, pos);
}
