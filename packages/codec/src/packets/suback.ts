import { CodecError } from '../errors.js';
import {
  checkPacketId,
  type Reader,
  remainingLengthSize,
  writeRemainingLength,
  writeU16,
} from '../primitives.js';
import type { SubackPacket, SubackReturnCode } from '../types.js';

const SUBACK = 9;

function isSubackReturnCode(code: number): code is SubackReturnCode {
  return code === 0 || code === 1 || code === 2 || code === 0x80;
}

/** Decodes a SUBACK body (3.9): a packet identifier and one return code per filter. */
export function decodeSuback(r: Reader): SubackPacket | CodecError {
  const packetId = r.packetId();
  if (r.error !== undefined) return r.error;
  const returnCodes: SubackReturnCode[] = [];
  while (r.remaining > 0) {
    const code = r.u8('return code');
    // [MQTT-3.9.3-2] 0x03–0x7F and 0x81–0xFF are reserved.
    if (!isSubackReturnCode(code)) {
      return new CodecError(
        'CODEC_INVALID_RETURN_CODE',
        `SUBACK return code 0x${code.toString(16)} is reserved [MQTT-3.9.3-2]`,
        {
          packetType: SUBACK,
        },
      );
    }
    returnCodes.push(code);
  }
  if (returnCodes.length === 0) {
    return new CodecError('CODEC_LENGTH_MISMATCH', 'SUBACK carries no return code', { packetType: SUBACK });
  }
  return { type: 'suback', packetId, returnCodes };
}

export function measureSuback(packet: SubackPacket): number {
  for (const code of packet.returnCodes) {
    if (!isSubackReturnCode(code)) {
      throw new CodecError(
        'CODEC_INVALID_ARGUMENT',
        `SUBACK return code ${String(code)} is not 0, 1, 2 or 0x80`,
      );
    }
  }
  if (packet.returnCodes.length === 0)
    throw new CodecError('CODEC_INVALID_ARGUMENT', 'SUBACK needs a return code');
  checkPacketId(packet.packetId, 'SUBACK'); // before anything is written
  const length = 2 + packet.returnCodes.length;
  remainingLengthSize(length);
  return length;
}

export function writeSuback(packet: SubackPacket, target: Uint8Array, pos: number): number {
  const length = measureSuback(packet);
  target[pos++] = SUBACK << 4;
  pos = writeRemainingLength(target, pos, length);
  pos = writeU16(target, pos, checkPacketId(packet.packetId, 'SUBACK'));
  for (const code of packet.returnCodes) target[pos++] = code;
  return pos;
}
