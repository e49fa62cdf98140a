import type { MessageSnapshot, MessageState, SessionSnapshot } from '@broker/core';
import { PersistenceError } from './errors.js';

/*
 * The reference component's SaveSession / LoadSession JSON, exactly as its manual prints it:
 *
 *   { "ClientId": "...",
 *     "Subscriptions":    [{ "Topic": "...", "QoS": 0|1|2 }],
 *     "IncomingMessages": [{ "MessageId", "Topic", "Payload" (hex), "QoS", "DUP", "Retain", "PacketId", "State" }],
 *     "OutgoingMessages": [ same keys ] }
 *
 * Compatibility note: this format is the reference's, not ours, so it has no version field. Keys, their
 * casing and the meaning of the numbers (states 1–10) must never change. What may change without notice
 * is only what we *accept* beyond the strict format (the leniencies listed on `sessionFromJson`).
 */

type QoS = SessionSnapshot['subscriptions'][number]['qos'];

/** Options of {@link sessionFromJson}. */
export interface SessionFromJsonOptions {
  /**
   * What to do with a key the format does not have (anywhere: top level, subscriptions, messages).
   * `'reject'` (default) throws PERSIST_INVALID_FIELD naming it, so a misspelt key (`"Qos"`) is not
   * silently ignored; `'ignore'` skips it, for JSON written by a newer reference that added fields.
   */
  unknownKeys?: 'reject' | 'ignore';
}

/** Options of {@link sessionToJson}. */
export interface SessionToJsonOptions {
  /** Indentation passed to `JSON.stringify` (default none: one line). */
  space?: number | string;
}

const TOP_KEYS = ['ClientId', 'Subscriptions', 'IncomingMessages', 'OutgoingMessages'] as const;
const SUBSCRIPTION_KEYS = ['Topic', 'QoS'] as const;
const MESSAGE_KEYS = ['MessageId', 'Topic', 'Payload', 'QoS', 'DUP', 'Retain', 'PacketId', 'State'] as const;

const OUTGOING_STATES: ReadonlySet<number> = new Set([1, 2, 3, 4, 5]);
const INCOMING_STATES: ReadonlySet<number> = new Set([6, 7, 8, 9]);
const QOS1_STATES: ReadonlySet<number> = new Set([2, 6]);
const QOS2_STATES: ReadonlySet<number> = new Set([3, 4, 5, 7, 8, 9]);
const QUEUED = 1;

const HEX_DIGITS = '0123456789ABCDEF';
const BYTE_TO_HEX: string[] = Array.from(
  { length: 256 },
  (_, b) => `${HEX_DIGITS[b >> 4]}${HEX_DIGITS[b & 15]}`,
);

/** Hexadecimal, two upper-case digits per byte ("Test" → "54657374"), as the reference prints payloads. */
export function bytesToHex(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += BYTE_TO_HEX[bytes[i]!];
  return out;
}

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48; // 0-9
  if (code >= 65 && code <= 70) return code - 55; // A-F
  if (code >= 97 && code <= 102) return code - 87; // a-f
  return -1;
}

/** Parses hexadecimal (either case); returns a reason instead of bytes when it is not valid. */
function hexToBytes(hex: string): Uint8Array | string {
  if (hex.length % 2 !== 0) return `has an odd number of hex digits (${hex.length})`;
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) {
    const high = hexValue(hex.charCodeAt(2 * i));
    const low = hexValue(hex.charCodeAt(2 * i + 1));
    if (high < 0 || low < 0) {
      const at = high < 0 ? 2 * i : 2 * i + 1;
      return `has a non-hexadecimal character ${JSON.stringify(hex[at])} at offset ${at}`;
    }
    bytes[i] = (high << 4) | low;
  }
  return bytes;
}

// Writing ------------------------------------------------------------------------------------------

function messageJson(m: MessageSnapshot): Record<(typeof MESSAGE_KEYS)[number], unknown> {
  return {
    MessageId: m.messageId,
    Topic: m.topic,
    Payload: bytesToHex(m.payload),
    QoS: m.qos,
    DUP: m.dup,
    Retain: m.retain,
    // The reference: "This will always be -1 if QoS is 0."
    PacketId: m.qos === 0 ? -1 : m.packetId,
    State: m.state,
  };
}

/**
 * A session snapshot (core's `broker.saveSession(clientId)`) as the reference's SaveSession JSON:
 * keys and casing as the reference prints them, payloads in upper-case hexadecimal, PacketId -1 for
 * QoS 0 and for a queued message that has no packet identifier yet.
 *
 * The snapshot is checked with the same rules as {@link sessionFromJson}, so what is written can be
 * read back.
 * @throws PersistenceError PERSIST_INVALID_FIELD naming the JSON field of an impossible snapshot.
 */
export function sessionToJson(snapshot: SessionSnapshot, options: SessionToJsonOptions = {}): string {
  const json = {
    ClientId: snapshot.clientId,
    Subscriptions: snapshot.subscriptions.map((s) => ({ Topic: s.topicFilter, QoS: s.qos })),
    IncomingMessages: snapshot.incomingMessages.map(messageJson),
    OutgoingMessages: snapshot.outgoingMessages.map(messageJson),
  };
  parseSession(json, 'reject');
  return JSON.stringify(json, null, options.space);
}

// Reading ------------------------------------------------------------------------------------------

/**
 * Blanks out what the reference's printed example has and JSON has not, keeping every other character
 * (and so the positions in JSON.parse's messages): `//` line comments and a comma before `}` or `]`.
 * String literals (with their escapes) are copied untouched, so `"http://x"` stays as it is.
 */
export function stripJsonLeniencies(text: string): string {
  const out: string[] = [];
  /** Index in `out` of the last comma outside strings with only whitespace or comments after it. */
  let pendingComma = -1;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      const start = i++;
      while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i = Math.min(i + 1, text.length);
      out.push(text.slice(start, i));
      pendingComma = -1;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n' && text[i] !== '\r') {
        out.push(' ');
        i++;
      }
    } else if (c === ',') {
      pendingComma = out.length;
      out.push(c);
      i++;
    } else if (c === '}' || c === ']') {
      if (pendingComma >= 0) out[pendingComma] = ' ';
      pendingComma = -1;
      out.push(c);
      i++;
    } else {
      if (c !== ' ' && c !== '\t' && c !== '\n' && c !== '\r') pendingComma = -1;
      out.push(c);
      i++;
    }
  }
  return out.join('');
}

function invalid(field: string, reason: string): PersistenceError {
  return new PersistenceError('PERSIST_INVALID_FIELD', `session JSON: ${field} ${reason}`, { field });
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `a string (${JSON.stringify(value.slice(0, 20))})`;
  return `${typeof value} ${String(value)}`;
}

function objectAt(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(field, `must be an object, got ${typeName(value)}`);
  }
  return value as Record<string, unknown>;
}

function checkKeys(
  object: Record<string, unknown>,
  allowed: readonly string[],
  field: string,
  unknownKeys: 'reject' | 'ignore',
): void {
  if (unknownKeys === 'ignore') return;
  for (const key of Object.keys(object)) {
    if (allowed.includes(key)) continue;
    const sameIgnoringCase = allowed.find((k) => k.toLowerCase() === key.toLowerCase());
    const hint =
      sameIgnoringCase === undefined ? '' : ` (keys are case-sensitive: did you mean "${sameIgnoringCase}"?)`;
    throw invalid(field === '' ? key : `${field}.${key}`, `is not a key of the session format${hint}`);
  }
}

function integerAt(object: Record<string, unknown>, key: string, field: string): number {
  const value = object[key];
  if (value === undefined) throw invalid(field, 'is missing');
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw invalid(field, `must be an integer, got ${typeName(value)}`);
  }
  return value;
}

function booleanAt(object: Record<string, unknown>, key: string, field: string): boolean {
  const value = object[key];
  if (value === undefined) throw invalid(field, 'is missing');
  if (typeof value !== 'boolean') throw invalid(field, `must be true or false, got ${typeName(value)}`);
  return value;
}

function stringAt(object: Record<string, unknown>, key: string, field: string): string {
  const value = object[key];
  if (value === undefined) throw invalid(field, 'is missing');
  if (typeof value !== 'string') throw invalid(field, `must be a string, got ${typeName(value)}`);
  return value;
}

function qosAt(object: Record<string, unknown>, field: string): QoS {
  const qos = integerAt(object, 'QoS', field);
  if (qos !== 0 && qos !== 1 && qos !== 2) throw invalid(field, `must be 0, 1 or 2, got ${qos}`);
  return qos;
}

function utf8Length(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** Why a string cannot be an MQTT topic name or filter, or undefined [MQTT-4.7.3-1..4, MQTT-4.7.1-2/3]. */
function topicProblem(topic: string, isFilter: boolean): string | undefined {
  if (topic.length === 0) return 'must not be empty';
  if (topic.includes('\u0000')) return 'must not contain U+0000';
  if (utf8Length(topic) > 0xffff) return 'is longer than 65535 bytes';
  if (!isFilter) return topic.includes('+') || topic.includes('#') ? 'must not contain + or #' : undefined;
  const levels = topic.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1))
      return '# must be a whole level and the last one';
    if (level.includes('+') && level !== '+') return '+ must be a whole level';
  }
  return undefined;
}

function arrayAt(object: Record<string, unknown>, key: string): unknown[] {
  const value = object[key];
  // An absent list is an empty one: the reference's sample always has all three, a hand-written file may not.
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid(key, `must be an array, got ${typeName(value)}`);
  return value;
}

function parseMessage(
  value: unknown,
  field: string,
  states: ReadonlySet<number>,
  unknownKeys: 'reject' | 'ignore',
): MessageSnapshot {
  const m = objectAt(value, field);
  checkKeys(m, MESSAGE_KEYS, field, unknownKeys);
  const messageId = integerAt(m, 'MessageId', `${field}.MessageId`);
  if (messageId < 1) throw invalid(`${field}.MessageId`, `must be a positive integer, got ${messageId}`);
  const topic = stringAt(m, 'Topic', `${field}.Topic`);
  const problem = topicProblem(topic, false);
  if (problem !== undefined) throw invalid(`${field}.Topic`, problem);
  const payload = hexToBytes(stringAt(m, 'Payload', `${field}.Payload`));
  if (typeof payload === 'string') throw invalid(`${field}.Payload`, payload);
  const qos = qosAt(m, `${field}.QoS`);
  const dup = booleanAt(m, 'DUP', `${field}.DUP`);
  const retain = booleanAt(m, 'Retain', `${field}.Retain`);
  const state = integerAt(m, 'State', `${field}.State`);
  if (!states.has(state)) {
    const which = states === INCOMING_STATES ? 'an incoming message (6–9)' : 'an outgoing message (1–5)';
    const why = state === 10 ? ' (10 = done is never stored)' : '';
    throw invalid(`${field}.State`, `${state} is not a state of ${which}${why}`);
  }
  if (QOS2_STATES.has(state) && qos !== 2)
    throw invalid(`${field}.State`, `${state} is a QoS 2 state, QoS is ${qos}`);
  if (QOS1_STATES.has(state) && qos !== 1)
    throw invalid(`${field}.State`, `${state} is a QoS 1 state, QoS is ${qos}`);
  // PacketId: absent means -1 (no packet identifier).
  const packetId = m['PacketId'] === undefined ? -1 : integerAt(m, 'PacketId', `${field}.PacketId`);
  const needsPacketId = qos > 0 && state !== QUEUED;
  if (needsPacketId && !(packetId >= 1 && packetId <= 0xffff)) {
    throw invalid(
      `${field}.PacketId`,
      `must be 1–65535 for a QoS ${qos} message in state ${state}, got ${packetId}`,
    );
  }
  if (!needsPacketId && packetId !== -1) {
    const why = qos === 0 ? 'a QoS 0 message' : 'a queued message (state 1)';
    throw invalid(`${field}.PacketId`, `must be -1 (or absent) for ${why}, got ${packetId}`);
  }
  return { messageId, topic, payload, qos, dup, retain, packetId, state: state as MessageState };
}

/** Checks a parsed value and builds the snapshot; builds nothing (throws first) when anything is wrong. */
function parseSession(value: unknown, unknownKeys: 'reject' | 'ignore'): SessionSnapshot {
  const root = objectAt(value, '$');
  checkKeys(root, TOP_KEYS, '', unknownKeys);
  const clientId = root['ClientId'];
  if (clientId === undefined) throw invalid('ClientId', 'is missing');
  if (typeof clientId !== 'string') throw invalid('ClientId', `must be a string, got ${typeName(clientId)}`);
  if (clientId.length === 0) throw invalid('ClientId', 'must not be empty');

  const filters = new Set<string>();
  const subscriptions = arrayAt(root, 'Subscriptions').map((item, i) => {
    const field = `Subscriptions[${i}]`;
    const s = objectAt(item, field);
    checkKeys(s, SUBSCRIPTION_KEYS, field, unknownKeys);
    const topicFilter = stringAt(s, 'Topic', `${field}.Topic`);
    const problem = topicProblem(topicFilter, true);
    if (problem !== undefined) throw invalid(`${field}.Topic`, problem);
    if (filters.has(topicFilter)) throw invalid(`${field}.Topic`, `"${topicFilter}" is listed twice`);
    filters.add(topicFilter);
    return { topicFilter, qos: qosAt(s, `${field}.QoS`) };
  });

  const messageIds = new Set<number>();
  const list = (key: 'IncomingMessages' | 'OutgoingMessages', states: ReadonlySet<number>) => {
    const packetIds = new Set<number>();
    return arrayAt(root, key).map((item, i) => {
      const field = `${key}[${i}]`;
      const m = parseMessage(item, field, states, unknownKeys);
      if (messageIds.has(m.messageId)) throw invalid(`${field}.MessageId`, `${m.messageId} is a duplicate`);
      messageIds.add(m.messageId);
      if (m.packetId !== -1) {
        if (packetIds.has(m.packetId))
          throw invalid(`${field}.PacketId`, `${m.packetId} is used by two ${key}`);
        packetIds.add(m.packetId);
      }
      return m;
    });
  };
  const incomingMessages = list('IncomingMessages', INCOMING_STATES);
  const outgoingMessages = list('OutgoingMessages', OUTGOING_STATES);
  return { clientId, subscriptions, incomingMessages, outgoingMessages };
}

/**
 * Reads the reference's SaveSession JSON into a session snapshot for core's
 * `broker.loadSession(snapshot)`. Nothing is built until all of it has been checked.
 *
 * Leniencies (so that the manual's own example can be pasted):
 * - `//` line comments outside string literals, and a trailing comma before `}` or `]`, are ignored.
 * - An absent `Subscriptions`, `IncomingMessages` or `OutgoingMessages` is an empty list; an absent
 *   `PacketId` means -1 (no packet identifier). Payload hex digits may be either case.
 *
 * Strictness (an error naming the field, e.g. `IncomingMessages[0].State`):
 * - keys are case-sensitive and unknown keys are rejected (unless `unknownKeys: 'ignore'`);
 * - a State must belong to the list's direction: incoming 6–9, outgoing 1–5; 10 (done) is never
 *   stored. The manual's example has an incoming message in State 3, an outgoing state, and is
 *   rejected for that;
 * - QoS 0–2, the state agreeing with the QoS, PacketId 1–65535 where a packet identifier is in use
 *   (and -1 otherwise), MessageIds unique across both lists, packet ids unique per list, topics and
 *   filters valid, ClientId a non-empty string, every value of its JSON type.
 * @throws PersistenceError PERSIST_INVALID_JSON when the text is not JSON; PERSIST_INVALID_FIELD
 *   naming the field (also in `error.field`) otherwise.
 */
export function sessionFromJson(json: string, options: SessionFromJsonOptions = {}): SessionSnapshot {
  if (typeof json !== 'string') {
    throw new PersistenceError(
      'PERSIST_INVALID_JSON',
      `session JSON must be a string, got ${typeName(json)}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(stripJsonLeniencies(json));
  } catch (error) {
    throw new PersistenceError(
      'PERSIST_INVALID_JSON',
      `session JSON is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  return parseSession(value, options.unknownKeys ?? 'reject');
}
