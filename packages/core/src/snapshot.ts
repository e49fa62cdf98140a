import { copyBytes, type QoS, topicFilterProblem, topicNameProblem } from '@broker/codec';
import { CoreError } from './errors.js';
import { Message, MessageState } from './message.js';
import { type InboundRecord, type OutboundDelivery, Session } from './session.js';

/** One message of a session snapshot, with the fields of the reference's session JSON. */
export interface MessageSnapshot {
  messageId: number;
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  dup: boolean;
  retain: boolean;
  /** -1 when the message has no packet identifier (QoS 0, or not yet sent). */
  packetId: number;
  state: MessageState;
}

/**
 * A session as plain data (the reference's SaveSession / LoadSession content). `@broker/persistence`
 * turns it into the reference's JSON and back.
 */
export interface SessionSnapshot {
  clientId: string;
  subscriptions: Array<{ topicFilter: string; qos: QoS }>;
  /** Incoming QoS 2 messages not yet released by PUBREL (states 6–9). */
  incomingMessages: MessageSnapshot[];
  /** Outgoing messages: in flight (states 2–5) in send order, then queued (state 1) oldest first. */
  outgoingMessages: MessageSnapshot[];
}

function outgoingSnapshot(delivery: OutboundDelivery): MessageSnapshot {
  const { message } = delivery;
  return {
    messageId: message.id,
    topic: message.topic,
    payload: copyBytes(message.payload),
    qos: delivery.qos,
    dup: delivery.dup,
    retain: delivery.retain,
    packetId: delivery.packetId === 0 ? -1 : delivery.packetId,
    state: delivery.state,
  };
}

function incomingSnapshot(record: InboundRecord): MessageSnapshot {
  const { message } = record;
  return {
    messageId: message.id,
    topic: message.topic,
    payload: copyBytes(message.payload),
    qos: message.qos,
    dup: record.dup,
    retain: message.retain,
    packetId: record.packetId,
    state: record.state,
  };
}

export function snapshotSession(session: Session): SessionSnapshot {
  return {
    clientId: session.clientId,
    subscriptions: [...session.subscriptions].map(([topicFilter, qos]) => ({ topicFilter, qos })),
    incomingMessages: [...session.incoming.values()].map(incomingSnapshot),
    outgoingMessages: [...session.inflight.values(), ...session.queued()].map(outgoingSnapshot),
  };
}

const OUTGOING_STATES: ReadonlySet<number> = new Set([1, 2, 3, 4, 5]);
const INCOMING_STATES: ReadonlySet<number> = new Set([6, 7, 8, 9]);

function invalid(field: string, reason: string): CoreError {
  return new CoreError('CORE_INVALID_ARGUMENT', `session snapshot: ${field} ${reason}`);
}

function checkMessage(m: MessageSnapshot, field: string, states: ReadonlySet<number>): void {
  if (!Number.isSafeInteger(m.messageId) || m.messageId < 1)
    throw invalid(`${field}.messageId`, 'must be a positive integer');
  const topicProblem = topicNameProblem(m.topic);
  if (topicProblem !== undefined) throw invalid(`${field}.topic`, topicProblem);
  if (m.qos !== 0 && m.qos !== 1 && m.qos !== 2) throw invalid(`${field}.qos`, 'must be 0, 1 or 2');
  if (!states.has(m.state)) throw invalid(`${field}.state`, `${m.state} does not belong to this direction`);
  const needsPacketId = m.state !== MessageState.Queued;
  if (needsPacketId && (m.qos === 0 || !(m.packetId >= 1 && m.packetId <= 0xffff))) {
    throw invalid(`${field}.packetId`, 'must be 1–65535 for a QoS 1 or 2 message in this state');
  }
  if (!needsPacketId && m.packetId !== -1)
    throw invalid(`${field}.packetId`, 'must be -1 for a queued message');
  const qos2States: ReadonlySet<number> = new Set([3, 4, 5, 7, 8, 9]);
  if (qos2States.has(m.state) && m.qos !== 2) throw invalid(`${field}.state`, `${m.state} is a QoS 2 state`);
  if ((m.state === 2 || m.state === 6) && m.qos !== 1)
    throw invalid(`${field}.state`, `${m.state} is a QoS 1 state`);
}

/**
 * Builds a stored (offline, clean session 0) session from a snapshot, after checking all of it: a
 * rejected snapshot changes nothing.
 * @throws CoreError CORE_INVALID_ARGUMENT naming the field that is wrong.
 */
export function restoreSession(snapshot: SessionSnapshot, noteMessageId: (id: number) => void): Session {
  if (typeof snapshot.clientId !== 'string' || snapshot.clientId.length === 0) {
    throw invalid('clientId', 'must be a non-empty string');
  }
  snapshot.subscriptions.forEach((s, i) => {
    const problem = topicFilterProblem(s.topicFilter);
    if (problem !== undefined) throw invalid(`subscriptions[${i}].topicFilter`, problem);
    if (s.qos !== 0 && s.qos !== 1 && s.qos !== 2)
      throw invalid(`subscriptions[${i}].qos`, 'must be 0, 1 or 2');
  });
  const ids = new Set<number>();
  const packetIds = new Set<number>();
  const incomingPacketIds = new Set<number>();
  snapshot.incomingMessages.forEach((m, i) => {
    checkMessage(m, `incomingMessages[${i}]`, INCOMING_STATES);
    if (ids.has(m.messageId))
      throw invalid(`incomingMessages[${i}].messageId`, `${m.messageId} is a duplicate`);
    if (incomingPacketIds.has(m.packetId)) {
      throw invalid(`incomingMessages[${i}].packetId`, `${m.packetId} is in use twice`);
    }
    incomingPacketIds.add(m.packetId);
    ids.add(m.messageId);
  });
  snapshot.outgoingMessages.forEach((m, i) => {
    checkMessage(m, `outgoingMessages[${i}]`, OUTGOING_STATES);
    if (ids.has(m.messageId))
      throw invalid(`outgoingMessages[${i}].messageId`, `${m.messageId} is a duplicate`);
    if (m.packetId !== -1) {
      if (packetIds.has(m.packetId))
        throw invalid(`outgoingMessages[${i}].packetId`, `${m.packetId} is in use twice`);
      packetIds.add(m.packetId);
    }
    ids.add(m.messageId);
  });

  const session = new Session(snapshot.clientId, false);
  for (const s of snapshot.subscriptions) session.subscribe(s.topicFilter, s.qos);
  for (const m of snapshot.incomingMessages) {
    noteMessageId(m.messageId);
    // This broker delivers an incoming message when it arrives and holds only QoS 2 identifiers
    // until PUBREL. A QoS 1 message not yet acknowledged (state 6) needs no record: its sender
    // re-sends it, as QoS 1 allows. A QoS 2 message before PUBREC (state 7) is held like state 8,
    // so the re-sent PUBLISH is answered with PUBREC and not delivered twice [MQTT-4.3.3-2].
    if (m.state === MessageState.ReceivedQos1) continue;
    const state = m.state === MessageState.ReceivedQos2 ? MessageState.AwaitingPubrel : m.state;
    const message = new Message(m.messageId, m.topic, copyBytes(m.payload), m.qos, m.retain, true);
    message.storeReferences = 1; // the store holds this record (restore) or is given it (loadSession)
    session.addIncoming({ message, packetId: m.packetId, dup: m.dup, state });
  }
  for (const m of snapshot.outgoingMessages) {
    noteMessageId(m.messageId);
    const message = new Message(m.messageId, m.topic, copyBytes(m.payload), m.qos, m.retain, true);
    message.storeReferences = 1; // the store holds this record (restore) or is given it (loadSession)
    const delivery: OutboundDelivery = {
      message,
      qos: m.qos,
      retain: m.retain,
      packetId: m.packetId === -1 ? 0 : m.packetId,
      state: m.state,
      dup: m.dup,
    };
    if (m.state === MessageState.Queued) session.enqueue(delivery);
    else {
      session.addInflight(delivery);
      session.notePacketId(m.packetId);
    }
  }
  return session;
}
