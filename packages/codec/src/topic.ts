/**
 * Topic names and topic filters (4.7). A name is what a PUBLISH carries; a filter is what a
 * SUBSCRIBE asks for and may hold the wildcards `+` (one level) and `#` (this level and all below).
 */

/** Why a topic name is invalid, or undefined when it is valid. */
export function topicNameProblem(topic: string): string | undefined {
  if (topic.length === 0) return 'a topic name must be at least one character long [MQTT-4.7.3-1]';
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x2b /* + */ || c === 0x23 /* # */) {
      return 'a topic name must not contain the wildcards + or # [MQTT-3.3.2-2] [MQTT-4.7.1-1]';
    }
    if (c === 0) return 'a topic name must not contain U+0000 [MQTT-4.7.3-2]';
  }
  return undefined;
}

/** Why a topic filter is invalid, or undefined when it is valid. */
export function topicFilterProblem(filter: string): string | undefined {
  const n = filter.length;
  if (n === 0) return 'a topic filter must be at least one character long [MQTT-4.7.3-1]';
  for (let i = 0; i < n; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0x23 /* # */) {
      // [MQTT-4.7.1-2] '#' stands alone in its level and is the last character.
      if ((i > 0 && filter.charCodeAt(i - 1) !== 0x2f) || i !== n - 1) {
        return 'the multi-level wildcard # must be alone in the last level of a filter [MQTT-4.7.1-2]';
      }
    } else if (c === 0) {
      return 'a topic filter must not contain U+0000 [MQTT-4.7.3-2]';
    } else if (c === 0x2b /* + */) {
      // [MQTT-4.7.1-3] '+' occupies an entire level.
      if ((i > 0 && filter.charCodeAt(i - 1) !== 0x2f) || (i < n - 1 && filter.charCodeAt(i + 1) !== 0x2f)) {
        return 'the single-level wildcard + must occupy an entire level of a filter [MQTT-4.7.1-3]';
      }
    }
  }
  return undefined;
}

export function isValidTopicName(topic: string): boolean {
  return topicNameProblem(topic) === undefined;
}

export function isValidTopicFilter(filter: string): boolean {
  return topicFilterProblem(filter) === undefined;
}
