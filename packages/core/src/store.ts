import type { QoS } from '@broker/codec';
import type { MessageState } from './message.js';
import type { SessionSnapshot } from './snapshot.js';

/** A message's content as the store keeps it: once, however many sessions refer to it. */
export interface StoredMessage {
  messageId: number;
  topic: string;
  payload: Uint8Array;
  /** The QoS it was published with. */
  qos: QoS;
  /** The RETAIN flag it was published with. */
  retain: boolean;
}

/** Where one outgoing message stands for one session. */
export interface StoredDelivery {
  /** min(published, granted). */
  qos: QoS;
  /** RETAIN flag of this delivery. */
  retain: boolean;
  /** -1 while queued. */
  packetId: number;
  state: MessageState;
  dup: boolean;
}

/** What a store hands back at start. */
export interface StoreContents {
  /** Persistent sessions, with their subscriptions and messages (in order). */
  sessions: SessionSnapshot[];
  /** Retained messages. */
  retained: StoredMessage[];
}

/**
 * The Store port: what core tells a store so that persistent sessions (clean session 0) and
 * retained messages survive a restart. Only persistent sessions are recorded.
 *
 * Contract:
 * - The record methods are synchronous and must not throw for I/O reasons: a store batches them.
 * - `flush()` resolves once everything recorded before the call is durable, and rejects if it cannot
 *   be. Calls made before the next commit share it (one commit per batch, not per message), and a
 *   store returns the same promise object to those calls, which lets core group its waiting.
 * - Core calls `flush()` only where the protocol promises durability: before acknowledging a QoS 1
 *   or 2 PUBLISH that reached a persistent session or the retained set.
 * - A message is recorded with `messageAdded` once, before the first delivery or incoming record
 *   that refers to it; the store drops it when nothing refers to it any more.
 * - The payload of `messageAdded` and `retainedSet` is handed over: the caller never changes those
 *   bytes afterwards, so a store may keep them by reference instead of copying them (core's payloads
 *   are its own copies, never written after they are taken). A `sessionReplaced` snapshot is not
 *   handed over: it comes from an application.
 */
export interface Store {
  load(): StoreContents | Promise<StoreContents>;
  sessionCreated(clientId: string): void;
  sessionRemoved(clientId: string): void;
  subscriptionAdded(clientId: string, topicFilter: string, qos: QoS): void;
  subscriptionRemoved(clientId: string, topicFilter: string): void;
  messageAdded(message: StoredMessage): void;
  outgoingAdded(clientId: string, messageId: number, delivery: StoredDelivery): void;
  outgoingChanged(clientId: string, messageId: number, delivery: StoredDelivery): void;
  outgoingRemoved(clientId: string, messageId: number): void;
  /** A QoS 2 message received from a persistent session, held until PUBREL (state 8). */
  incomingAdded(
    clientId: string,
    messageId: number,
    packetId: number,
    state: MessageState,
    dup: boolean,
  ): void;
  incomingRemoved(clientId: string, packetId: number): void;
  retainedSet(message: StoredMessage): void;
  retainedCleared(topic: string): void;
  /** Whole-session replacement (loadSession). */
  sessionReplaced(snapshot: SessionSnapshot): void;
  flush(): Promise<void>;
  close(): Promise<void>;
}
