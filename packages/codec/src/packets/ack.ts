import { CodecError } from '../errors.js';
import { allocate, checkPacketId, type Reader } from '../primitives.js';
import type { AckPacket } from '../types.js';

/** Packet type numbers of the packets that carry only a packet identifier. */
const ACK_TYPE_NUMBER = { puback: 4, pubrec: 5, pubrel: 6, pubcomp: 7, unsuback: 11 } as const;
const ACK_TYPE_NAME = [
  '',
  '',
  '',
  '',
  'puback',
  'pubrec',
  'pubrel',
  'pubcomp',
  '',
  '',
  '',
  'unsuback',
] as const;

/** Decodes PUBACK, PUBREC, PUBREL, PUBCOMP and UNSUBACK: a two-byte packet identifier, nothing else. */
export function decodeAck(r: Reader, packetType: number): AckPacket | CodecError {
  const packetId = r.packetId();
  r.expectEnd();
  if (r.error !== undefined) return r.error;
  return { type: ACK_TYPE_NAME[packetType] as AckPacket['type'], packetId };
}

export function writeAck(packet: AckPacket, target: Uint8Array, pos: number): number {
  const id = checkPacketId(packet.packetId, packet.type.toUpperCase());
  const typeNumber = ACK_TYPE_NUMBER[packet.type];
  if (typeNumber === undefined) throw new CodecError('CODEC_INVALID_ARGUMENT', `not an ack: ${packet.type}`);
  // [MQTT-3.6.1-1] PUBREL's fixed-header flags are 0010.
  target[pos] = (typeNumber << 4) | (typeNumber === 6 ? 0x02 : 0);
  target[pos + 1] = 2;
  target[pos + 2] = id >>> 8;
  target[pos + 3] = id & 0xff;
  return pos + 4;
}

/**
 * Encodes PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK straight from its type and identifier: the
 * broker sends one per QoS 1/2 message, so this skips building a packet object.
 * @throws CodecError CODEC_INVALID_ARGUMENT for an identifier outside 1–65535.
 */
export function encodeAck(type: AckPacket['type'], packetId: number): Uint8Array {
  const typeNumber = ACK_TYPE_NUMBER[type];
  if (typeNumber === undefined) throw new CodecError('CODEC_INVALID_ARGUMENT', `not an ack: ${String(type)}`);
  checkPacketId(packetId, type.toUpperCase());
  const out = allocate(4);
  out[0] = (typeNumber << 4) | (typeNumber === 6 ? 0x02 : 0);
  out[1] = 2;
  out[2] = packetId >>> 8;
  out[3] = packetId & 0xff;
  return out;
}
