import { CodecError } from '../errors.js';
import type { Reader } from '../primitives.js';
import type { ConnackPacket, ConnackReturnCode } from '../types.js';

/** Decodes a CONNACK body (3.2): two bytes, the session-present flag and a return code 0–5. */
export function decodeConnack(r: Reader): ConnackPacket | CodecError {
  const flags = r.u8('connect acknowledge flags');
  const returnCode = r.u8('connect return code');
  r.expectEnd();
  if (r.error !== undefined) return r.error;
  if ((flags & 0xfe) !== 0) {
    return new CodecError(
      'CODEC_INVALID_CONNACK_FLAGS',
      'CONNACK flags bits 7-1 are reserved and must be 0',
      {
        packetType: 2,
      },
    );
  }
  if (returnCode > 5) {
    return new CodecError('CODEC_INVALID_RETURN_CODE', `CONNACK return code ${returnCode} is reserved`, {
      packetType: 2,
    });
  }
  return { type: 'connack', sessionPresent: flags === 1, returnCode: returnCode as ConnackReturnCode };
}

export function writeConnack(packet: ConnackPacket, target: Uint8Array, pos: number): number {
  if (!Number.isInteger(packet.returnCode) || packet.returnCode < 0 || packet.returnCode > 5) {
    throw new CodecError('CODEC_INVALID_ARGUMENT', `CONNACK return code ${packet.returnCode} is not 0–5`);
  }
  target[pos] = 0x20;
  target[pos + 1] = 2;
  // [MQTT-3.2.2-4] session present is 0 whenever the return code is non-zero.
  target[pos + 2] = packet.sessionPresent && packet.returnCode === 0 ? 1 : 0;
  target[pos + 3] = packet.returnCode;
  return pos + 4;
}
