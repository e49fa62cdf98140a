import { CodecError } from './errors.js';
import { writeAck } from './packets/ack.js';
import { writeConnack } from './packets/connack.js';
import { measureConnect, writeConnect } from './packets/connect.js';
import { encodePublish, measurePublish, writePublish } from './packets/publish.js';
import { measureSuback, writeSuback } from './packets/suback.js';
import { measureSubscribe, writeSubscribe } from './packets/subscribe.js';
import { measureUnsubscribe, writeUnsubscribe } from './packets/unsubscribe.js';
import { allocate, checkPacketId, remainingLengthSize } from './primitives.js';
import type { Packet } from './types.js';

/** The Remaining Length of a packet: the bytes after its fixed header. */
function measure(packet: Packet): number {
  switch (packet.type) {
    case 'publish':
      return measurePublish(packet);
    case 'connect':
      return measureConnect(packet);
    case 'subscribe':
      return measureSubscribe(packet);
    case 'suback':
      return measureSuback(packet);
    case 'unsubscribe':
      return measureUnsubscribe(packet);
    // Fields are checked here, before anything is written, so that encodedLength throws for a
    // packet that cannot be encoded and encodeInto writes nothing.
    case 'connack':
      if (!Number.isInteger(packet.returnCode) || packet.returnCode < 0 || packet.returnCode > 5) {
        throw new CodecError('CODEC_INVALID_ARGUMENT', `CONNACK return code ${packet.returnCode} is not 0–5`);
      }
      return 2;
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
    case 'unsuback':
      checkPacketId(packet.packetId, packet.type.toUpperCase());
      return 2;
    case 'pingreq':
    case 'pingresp':
    case 'disconnect':
      return 0;
    default:
      throw new CodecError(
        'CODEC_INVALID_ARGUMENT',
        `unknown packet type ${String((packet as Packet).type)}`,
      );
  }
}

/**
 * The number of bytes `packet` takes on the wire.
 * @throws CodecError CODEC_INVALID_ARGUMENT for a packet that cannot be encoded.
 */
export function encodedLength(packet: Packet): number {
  const length = measure(packet);
  return 1 + remainingLengthSize(length) + length;
}

/**
 * Encodes `packet` into `target` starting at `offset` and returns the number of bytes written.
 * @throws CodecError CODEC_INVALID_ARGUMENT for a packet that cannot be encoded, or when `target`
 * has no room for it (nothing is written then).
 */
export function encodeInto(packet: Packet, target: Uint8Array, offset = 0): number {
  const size = encodedLength(packet);
  if (offset < 0 || offset + size > target.length) {
    throw new CodecError(
      'CODEC_INVALID_ARGUMENT',
      `${packet.type} needs ${size} bytes at offset ${offset}; the buffer has ${target.length}`,
    );
  }
  const end = write(packet, target, offset);
  return end - offset;
}

/**
 * Encodes `packet` into a new buffer (a Node Buffer where there is one).
 * @throws CodecError CODEC_INVALID_ARGUMENT for a packet that cannot be encoded.
 */
export function encode(packet: Packet): Uint8Array {
  if (packet.type === 'publish') return encodePublish(packet);
  const size = encodedLength(packet);
  const out = allocate(size);
  write(packet, out, 0);
  return out;
}

function write(packet: Packet, target: Uint8Array, pos: number): number {
  switch (packet.type) {
    case 'publish':
      return writePublish(packet, target, pos);
    case 'connect':
      return writeConnect(packet, target, pos);
    case 'connack':
      return writeConnack(packet, target, pos);
    case 'subscribe':
      return writeSubscribe(packet, target, pos);
    case 'suback':
      return writeSuback(packet, target, pos);
    case 'unsubscribe':
      return writeUnsubscribe(packet, target, pos);
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
    case 'unsuback':
      return writeAck(packet, target, pos);
    case 'pingreq':
      target[pos] = 0xc0;
      target[pos + 1] = 0;
      return pos + 2;
    case 'pingresp':
      target[pos] = 0xd0;
      target[pos + 1] = 0;
      return pos + 2;
    case 'disconnect':
      target[pos] = 0xe0;
      target[pos + 1] = 0;
      return pos + 2;
    default:
      throw new CodecError(
        'CODEC_INVALID_ARGUMENT',
        `unknown packet type ${String((packet as Packet).type)}`,
      );
  }
}
