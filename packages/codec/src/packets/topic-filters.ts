import { CodecError } from '../errors.js';
import { type Reader, utf8Length } from '../primitives.js';
import { topicFilterProblem } from '../topic.js';

/** SUBSCRIBE and UNSUBSCRIBE carry their filters the same way; these read and measure one. */

/** Reads one topic filter and checks its wildcards [MQTT-4.7.1-2] [MQTT-4.7.1-3]. */
export function readTopicFilter(r: Reader, packetType: number): string | CodecError {
  const filter = r.utf8('topic filter');
  if (r.error !== undefined) return r.error;
  const problem = topicFilterProblem(filter);
  if (problem !== undefined) {
    return new CodecError('CODEC_INVALID_TOPIC_FILTER', `${problem}: "${filter}"`, { packetType });
  }
  return filter;
}

/** The error for a SUBSCRIBE [MQTT-3.8.3-3] or UNSUBSCRIBE [MQTT-3.10.3-2] without filters. */
export function noTopicFilters(packetType: number, name: string, statement: string): CodecError {
  return new CodecError(
    'CODEC_NO_TOPIC_FILTERS',
    `${name} must contain at least one topic filter [${statement}]`,
    {
      packetType,
    },
  );
}

/**
 * The bytes a filter takes on the wire (length prefix included), for an encoder.
 * @throws CodecError CODEC_INVALID_ARGUMENT for an invalid filter or one over 65535 bytes.
 */
export function topicFilterFieldLength(filter: string, name: string): number {
  const problem = topicFilterProblem(filter);
  if (problem !== undefined) throw new CodecError('CODEC_INVALID_ARGUMENT', `${name} filter: ${problem}`);
  const bytes = utf8Length(filter);
  if (bytes > 0xffff) {
    throw new CodecError(
      'CODEC_INVALID_ARGUMENT',
      `${name} filter of ${bytes} bytes exceeds 65535 [MQTT-4.7.3-3]`,
    );
  }
  return 2 + bytes;
}
