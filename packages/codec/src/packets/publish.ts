import { CodecError } from '../errors.js';
import {
  allocate,
  checkPacketId,
  type Reader,
  remainingLengthSize,
  utf8Length,
  writeRemainingLength,
  writeUtf8,
} from '../primitives.js';
import { topicNameProblem } from '../topic.js';
import type { PublishPacket, QoS } from '../types.js';

const PUBLISH = 3;

/**
 * Decodes a PUBLISH body (3.3). The fixed-header flags carry DUP, QoS and RETAIN; the caller has
 * already refused QoS 3 [MQTT-3.3.1-4]. The payload is a view of the packet's bytes.
 */
export function decodePublish(r: Reader, flags: number): PublishPacket | CodecError {
  const qos = ((flags >> 1) & 0x03) as QoS;
  const topic = r.utf8('topic name');
  const hadWildcard = r.lastStringHadWildcard;
  const packetId = qos > 0 ? r.packetId() : undefined;
  if (r.error !== undefined) return r.error;
  if (topic.length === 0 || hadWildcard) {
    return new CodecError('CODEC_INVALID_TOPIC_NAME', topicNameProblem(topic)!, { packetType: PUBLISH });
  }
  return {
    type: 'publish',
    topic,
    payload: r.rest(),
    qos,
    retain: (flags & 0x01) !== 0,
    dup: (flags & 0x08) !== 0,
    packetId,
  };
}

/**
 * A PUBLISH whose large payload arrived over several chunks, kept as views of them (see
 * `PublishPacket.payloadParts`). `payload` joins the parts once, on first access.
 */
export class PartedPublishPacket implements PublishPacket {
  readonly type = 'publish' as const;
  topic: string;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  packetId: number | undefined;
  payloadParts: readonly Uint8Array[];
  private joined: Uint8Array | undefined = undefined;

  constructor(header: PublishPacket, payloadParts: readonly Uint8Array[]) {
    this.topic = header.topic;
    this.qos = header.qos;
    this.retain = header.retain;
    this.dup = header.dup;
    this.packetId = header.packetId;
    this.payloadParts = payloadParts;
  }

  get payload(): Uint8Array {
    if (this.joined === undefined) this.joined = joinParts(this.payloadParts);
    return this.joined;
  }

  set payload(value: Uint8Array) {
    this.joined = value;
    this.payloadParts = [value];
  }
}

/** The total length of `parts`. */
export function partsLength(parts: readonly Uint8Array[]): number {
  let length = 0;
  for (const part of parts) length += part.length;
  return length;
}

/** Copies `parts` into `target` from `offset` on; returns the end position. */
export function copyParts(parts: readonly Uint8Array[], target: Uint8Array, offset: number): number {
  let pos = offset;
  for (const part of parts) {
    target.set(part, pos);
    pos += part.length;
  }
  return pos;
}

/** `parts` (a payload's `payloadParts`) in one new buffer; the only part itself when there is one. */
export function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = allocate(partsLength(parts));
  copyParts(parts, out, 0);
  return out;
}

/** The first byte of a PUBLISH with these flags. */
export function publishFirstByte(qos: QoS, retain: boolean, dup: boolean): number {
  return (PUBLISH << 4) | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0);
}

function checkPublish(packet: PublishPacket): number {
  const { qos, topic } = packet;
  if (qos !== 0 && qos !== 1 && qos !== 2) {
    throw new CodecError('CODEC_INVALID_ARGUMENT', `PUBLISH QoS must be 0, 1 or 2, got ${String(qos)}`);
  }
  const problem = topicNameProblem(topic);
  if (problem !== undefined) throw new CodecError('CODEC_INVALID_ARGUMENT', `PUBLISH topic: ${problem}`);
  if (qos === 0 && packet.dup) {
    throw new CodecError('CODEC_INVALID_ARGUMENT', 'DUP must be 0 for QoS 0 messages [MQTT-3.3.1-2]');
  }
  // Checked here, before anything is written, so encodedLength throws and encodeInto writes nothing.
  if (qos > 0) checkPacketId(packet.packetId, 'PUBLISH at QoS > 0');
  const topicBytes = utf8Length(topic);
  if (topicBytes > 0xffff) {
    throw new CodecError(
      'CODEC_INVALID_ARGUMENT',
      `PUBLISH topic of ${topicBytes} bytes exceeds 65535 [MQTT-4.7.3-3]`,
    );
  }
  return topicBytes;
}

/** The Remaining Length of a PUBLISH. */
export function measurePublish(packet: PublishPacket): number {
  const length = 2 + checkPublish(packet) + (packet.qos > 0 ? 2 : 0) + packet.payload.length;
  remainingLengthSize(length);
  return length;
}

/** Encodes a PUBLISH into `target` at `pos`; returns the end position. */
export function writePublish(packet: PublishPacket, target: Uint8Array, pos: number): number {
  const topicBytes = checkPublish(packet);
  return writePublishMeasured(packet, target, pos, topicBytes);
}

function writePublishMeasured(
  packet: PublishPacket,
  target: Uint8Array,
  pos: number,
  topicBytes: number,
): number {
  const { qos, payload } = packet;
  const length = 2 + topicBytes + (qos > 0 ? 2 : 0) + payload.length;
  target[pos++] = publishFirstByte(qos, packet.retain, packet.dup);
  pos = writeRemainingLength(target, pos, length);
  pos = writeUtf8(target, pos, packet.topic, topicBytes);
  if (qos > 0) {
    const id = checkPacketId(packet.packetId, 'PUBLISH at QoS > 0');
    target[pos++] = id >>> 8;
    target[pos++] = id & 0xff;
  }
  target.set(payload, pos);
  return pos + payload.length;
}

/** Encodes a PUBLISH into a new buffer, measuring the topic once (the common case, kept lean). */
export function encodePublish(packet: PublishPacket): Uint8Array {
  const topicBytes = checkPublish(packet);
  const length = 2 + topicBytes + (packet.qos > 0 ? 2 : 0) + packet.payload.length;
  const out = allocate(1 + remainingLengthSize(length) + length);
  writePublishMeasured(packet, out, 0, topicBytes);
  return out;
}
