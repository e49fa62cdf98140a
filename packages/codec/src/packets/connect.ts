import { CodecError } from '../errors.js';
import {
  type Reader,
  remainingLengthSize,
  utf8Length,
  writeBinary,
  writeRemainingLength,
  writeU16,
  writeUtf8,
} from '../primitives.js';
import { topicNameProblem } from '../topic.js';
import type { ConnectPacket, ProtocolLevel, QoS, Will } from '../types.js';

const CONNECT = 1;

/** The protocol name each supported level goes with. */
const PROTOCOL_NAME_OF_LEVEL: Record<ProtocolLevel, 'MQTT' | 'MQIsdp'> = { 3: 'MQIsdp', 4: 'MQTT' };

function readProtocolName(r: Reader): string | undefined {
  const length = r.u16('length of the protocol name');
  if (r.error !== undefined) return undefined;
  if (length === 4 && r.remaining >= 4) {
    const b = r.bytes;
    const p = r.pos;
    if (b[p] === 0x4d && b[p + 1] === 0x51 && b[p + 2] === 0x54 && b[p + 3] === 0x54) {
      r.pos += 4;
      return 'MQTT';
    }
  }
  if (length === 6 && r.remaining >= 6) {
    const b = r.bytes;
    const p = r.pos;
    // "MQIsdp", the name MQTT 3.1 clients send.
    if (
      b[p] === 0x4d &&
      b[p + 1] === 0x51 &&
      b[p + 2] === 0x49 &&
      b[p + 3] === 0x73 &&
      b[p + 4] === 0x64 &&
      b[p + 5] === 0x70
    ) {
      r.pos += 6;
      return 'MQIsdp';
    }
  }
  return undefined;
}

/**
 * Decodes a CONNECT body (3.1). The protocol name and level are checked first: an unsupported level
 * yields CODEC_UNSUPPORTED_PROTOCOL_LEVEL with connackReturnCode 0x01 [MQTT-3.1.2-2], because the
 * rest of the packet may follow another version's layout and is not read.
 */
export function decodeConnect(r: Reader): ConnectPacket | CodecError {
  const protocolName = readProtocolName(r);
  if (protocolName === undefined) {
    return (
      r.error ??
      new CodecError(
        'CODEC_INVALID_PROTOCOL_NAME',
        'CONNECT protocol name is neither "MQTT" nor "MQIsdp" [MQTT-3.1.2-1]',
        { packetType: CONNECT },
      )
    );
  }
  const level = r.u8('protocol level');
  if (r.error !== undefined) return r.error;
  if (PROTOCOL_NAME_OF_LEVEL[level as ProtocolLevel] !== protocolName) {
    return new CodecError(
      'CODEC_UNSUPPORTED_PROTOCOL_LEVEL',
      `protocol "${protocolName}" at level ${level} is not supported (MQTT 3.1.1 is "MQTT" level 4, MQTT 3.1 is "MQIsdp" level 3) [MQTT-3.1.2-2]`,
      { packetType: CONNECT, connackReturnCode: 0x01, protocolLevel: level },
    );
  }
  const flags = r.u8('connect flags');
  const keepaliveSeconds = r.u16('keep alive');
  if (r.error !== undefined) return r.error;
  if ((flags & 0x01) !== 0) {
    return new CodecError('CODEC_CONNECT_RESERVED_FLAG', 'CONNECT reserved flag must be 0 [MQTT-3.1.2-3]', {
      packetType: CONNECT,
    });
  }
  const hasWill = (flags & 0x04) !== 0;
  const willQos = (flags >> 3) & 0x03;
  const willRetain = (flags & 0x20) !== 0;
  const hasPassword = (flags & 0x40) !== 0;
  const hasUsername = (flags & 0x80) !== 0;
  if (!hasWill && willQos !== 0) {
    return willError('Will QoS must be 0 when the Will Flag is 0 [MQTT-3.1.2-13]');
  }
  if (!hasWill && willRetain) {
    return willError('Will Retain must be 0 when the Will Flag is 0 [MQTT-3.1.2-15]');
  }
  if (willQos === 3) return willError('Will QoS must not be 3 [MQTT-3.1.2-14]');
  if (hasPassword && !hasUsername) {
    return new CodecError(
      'CODEC_PASSWORD_WITHOUT_USERNAME',
      'CONNECT has the Password Flag without the User Name Flag [MQTT-3.1.2-22]',
      { packetType: CONNECT },
    );
  }

  const clientId = r.utf8('client identifier');
  let will: Will | undefined;
  if (hasWill) {
    const topic = r.utf8('will topic');
    const payload = r.binary('will message');
    if (r.error !== undefined) return r.error;
    const problem = topicNameProblem(topic);
    if (problem !== undefined) {
      return new CodecError('CODEC_INVALID_TOPIC_NAME', `will topic: ${problem}`, { packetType: CONNECT });
    }
    will = { topic, payload, qos: willQos as QoS, retain: willRetain };
  }
  const username = hasUsername ? r.utf8('user name') : undefined;
  const password = hasPassword ? r.binary('password') : undefined;
  r.expectEnd();
  if (r.error !== undefined) return r.error;
  return {
    type: 'connect',
    protocolName,
    protocolLevel: level as ProtocolLevel,
    clientId,
    cleanSession: (flags & 0x02) !== 0,
    keepaliveSeconds,
    will,
    username,
    password,
  };
}

function willError(message: string): CodecError {
  return new CodecError('CODEC_INVALID_WILL_FLAGS', message, { packetType: CONNECT });
}

/** Encodes a CONNECT into `target` at `pos`; returns the end position. */
export function writeConnect(packet: ConnectPacket, target: Uint8Array, pos: number): number {
  // measureConnect checks every field, so nothing is written for a CONNECT that cannot be encoded.
  const length = measureConnect(packet);
  const { protocolLevel, will, username, password } = packet;
  const protocolName = PROTOCOL_NAME_OF_LEVEL[protocolLevel];
  target[pos++] = CONNECT << 4;
  pos = writeRemainingLength(target, pos, length);
  pos = writeUtf8(target, pos, protocolName, protocolName.length);
  target[pos++] = protocolLevel;
  let flags = packet.cleanSession ? 0x02 : 0;
  if (will !== undefined) flags |= 0x04 | (will.qos << 3) | (will.retain ? 0x20 : 0);
  if (password !== undefined) flags |= 0x40;
  if (username !== undefined) flags |= 0x80;
  target[pos++] = flags;
  pos = writeU16(target, pos, packet.keepaliveSeconds);
  pos = writeUtf8(target, pos, packet.clientId, utf8Length(packet.clientId));
  if (will !== undefined) {
    pos = writeUtf8(target, pos, will.topic, utf8Length(will.topic));
    pos = writeBinary(target, pos, will.payload);
  }
  if (username !== undefined) pos = writeUtf8(target, pos, username, utf8Length(username));
  if (password !== undefined) pos = writeBinary(target, pos, password);
  return pos;
}

/**
 * The Remaining Length of a CONNECT. Every field is checked here, before anything is written, so
 * that encodedLength throws CODEC_INVALID_ARGUMENT for a CONNECT that cannot be encoded and
 * encodeInto writes nothing for it.
 */
export function measureConnect(packet: ConnectPacket): number {
  const { protocolLevel, will, username, password, keepaliveSeconds } = packet;
  const protocolName = PROTOCOL_NAME_OF_LEVEL[protocolLevel];
  if (protocolName === undefined || packet.protocolName !== protocolName) {
    throw new CodecError(
      'CODEC_INVALID_ARGUMENT',
      `CONNECT protocolName "${packet.protocolName}" does not go with level ${protocolLevel}`,
    );
  }
  if (password !== undefined && username === undefined) {
    throw new CodecError('CODEC_INVALID_ARGUMENT', 'CONNECT password needs a username [MQTT-3.1.2-22]');
  }
  if (!Number.isInteger(keepaliveSeconds) || keepaliveSeconds < 0 || keepaliveSeconds > 0xffff) {
    throw new CodecError('CODEC_INVALID_ARGUMENT', `CONNECT keep alive ${keepaliveSeconds} is not 0–65535`);
  }
  let length = 2 + protocolName.length + 1 + 1 + 2 + stringFieldLength(packet.clientId, 'client identifier');
  if (will !== undefined) {
    if (will.qos !== 0 && will.qos !== 1 && will.qos !== 2) {
      throw new CodecError(
        'CODEC_INVALID_ARGUMENT',
        `CONNECT will QoS must be 0, 1 or 2, got ${String(will.qos)} [MQTT-3.1.2-14]`,
      );
    }
    const problem = topicNameProblem(will.topic);
    if (problem !== undefined)
      throw new CodecError('CODEC_INVALID_ARGUMENT', `CONNECT will topic: ${problem}`);
    length += stringFieldLength(will.topic, 'will topic') + binaryFieldLength(will.payload, 'will message');
  }
  if (username !== undefined) length += stringFieldLength(username, 'user name');
  if (password !== undefined) length += binaryFieldLength(password, 'password');
  remainingLengthSize(length);
  return length;
}

/** The bytes a length-prefixed string field takes; refuses U+0000 [MQTT-1.5.3-2] and more than 65535 bytes. */
function stringFieldLength(text: string, what: string): number {
  const bytes = utf8Length(text);
  if (bytes > 0xffff)
    throw new CodecError('CODEC_INVALID_ARGUMENT', `CONNECT ${what} of ${bytes} bytes exceeds 65535`);
  if (text.includes('\u0000')) {
    throw new CodecError('CODEC_INVALID_ARGUMENT', `CONNECT ${what} contains U+0000 [MQTT-1.5.3-2]`);
  }
  return 2 + bytes;
}

/** The bytes a length-prefixed binary field takes; refuses more than 65535 bytes. */
function binaryFieldLength(data: Uint8Array, what: string): number {
  if (data.length > 0xffff)
    throw new CodecError('CODEC_INVALID_ARGUMENT', `CONNECT ${what} of ${data.length} bytes exceeds 65535`);
  return 2 + data.length;
}
