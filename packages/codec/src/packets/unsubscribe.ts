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
import type { UnsubscribePacket } from '../types.js';
import { noTopicFilters, readTopicFilter, topicFilterFieldLength } from './topic-filters.js';

const UNSUBSCRIBE = 10;

/** Decodes an UNSUBSCRIBE body (3.10): a packet identifier and one or more topic filters. */
export function decodeUnsubscribe(r: Reader): UnsubscribePacket | CodecError {
  const packetId = r.packetId();
  if (r.error !== undefined) return r.error;
  const topicFilters: string[] = [];
  while (r.remaining > 0) {
    const filter = readTopicFilter(r, UNSUBSCRIBE);
    if (filter instanceof CodecError) return filter;
    topicFilters.push(filter);
  }
  if (topicFilters.length === 0) return noTopicFilters(UNSUBSCRIBE, 'UNSUBSCRIBE', 'MQTT-3.10.3-2');
  return { type: 'unsubscribe', packetId, topicFilters };
}

export function measureUnsubscribe(packet: UnsubscribePacket): number {
  if (packet.topicFilters.length === 0) {
    throw new CodecError(
      'CODEC_INVALID_ARGUMENT',
      'UNSUBSCRIBE needs at least one topic filter [MQTT-3.10.3-2]',
    );
  }
  checkPacketId(packet.packetId, 'UNSUBSCRIBE'); // before anything is written
  let length = 2;
  for (const filter of packet.topicFilters) length += topicFilterFieldLength(filter, 'UNSUBSCRIBE');
  remainingLengthSize(length);
  return length;
}

export function writeUnsubscribe(packet: UnsubscribePacket, target: Uint8Array, pos: number): number {
  const length = measureUnsubscribe(packet);
  target[pos++] = (UNSUBSCRIBE << 4) | 0x02; // [MQTT-3.10.1-1] flags 0010
  pos = writeRemainingLength(target, pos, length);
  pos = writeU16(target, pos, checkPacketId(packet.packetId, 'UNSUBSCRIBE'));
  for (const filter of packet.topicFilters) pos = writeUtf8(target, pos, filter, utf8Length(filter));
  return pos;
}
