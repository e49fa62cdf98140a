import { CodecError } from '../errors.js';
import {
  checkPacketId,
  type Reader,
  remainingLengthSize,
  utf8Length,
  writeRemainingLength,
  writeU16,
  writeUtf8,
} from '../primitives.js';
import type { QoS, SubscribePacket, Subscription } from '../types.js';
import { noTopicFilters, readTopicFilter, topicFilterFieldLength } from './topic-filters.js';

const SUBSCRIBE = 8;

/** Decodes a SUBSCRIBE body (3.8): a packet identifier and one or more (filter, requested QoS) pairs. */
export function decodeSubscribe(r: Reader): SubscribePacket | CodecError {
  const packetId = r.packetId();
  if (r.error !== undefined) return r.error;
  const subscriptions: Subscription[] = [];
  while (r.remaining > 0) {
    const topicFilter = readTopicFilter(r, SUBSCRIBE);
    if (topicFilter instanceof CodecError) return topicFilter;
    const options = r.u8('requested QoS');
    if (r.error !== undefined) return r.error;
    // [MQTT-3.8.3-4] the upper six bits are reserved and the QoS is 0, 1 or 2.
    if ((options & 0xfc) !== 0 || (options & 0x03) === 3) {
      return new CodecError(
        'CODEC_INVALID_SUBSCRIPTION_OPTIONS',
        `requested QoS byte 0x${options.toString(16).padStart(2, '0')} is malformed [MQTT-3.8.3-4]`,
        { packetType: SUBSCRIBE },
      );
    }
    subscriptions.push({ topicFilter, qos: options as QoS });
  }
  if (subscriptions.length === 0) return noTopicFilters(SUBSCRIBE, 'SUBSCRIBE', 'MQTT-3.8.3-3');
  return { type: 'subscribe', packetId, subscriptions };
}

export function measureSubscribe(packet: SubscribePacket): number {
  if (packet.subscriptions.length === 0) {
    throw new CodecError(
      'CODEC_INVALID_ARGUMENT',
      'SUBSCRIBE needs at least one topic filter [MQTT-3.8.3-3]',
    );
  }
  checkPacketId(packet.packetId, 'SUBSCRIBE'); // before anything is written
  let length = 2;
  for (const s of packet.subscriptions) {
    if (s.qos !== 0 && s.qos !== 1 && s.qos !== 2) {
      throw new CodecError('CODEC_INVALID_ARGUMENT', `SUBSCRIBE QoS must be 0, 1 or 2, got ${String(s.qos)}`);
    }
    length += topicFilterFieldLength(s.topicFilter, 'SUBSCRIBE') + 1;
  }
  remainingLengthSize(length);
  return length;
}

export function writeSubscribe(packet: SubscribePacket, target: Uint8Array, pos: number): number {
  const length = measureSubscribe(packet);
  target[pos++] = (SUBSCRIBE << 4) | 0x02; // [MQTT-3.8.1-1] flags 0010
  pos = writeRemainingLength(target, pos, length);
  pos = writeU16(target, pos, checkPacketId(packet.packetId, 'SUBSCRIBE'));
  for (const s of packet.subscriptions) {
    pos = writeUtf8(target, pos, s.topicFilter, utf8Length(s.topicFilter));
    target[pos++] = s.qos;
  }
  return pos;
}
