import { copyBytes, type QoS } from '@broker/codec';
import type { MessageState } from './message.js';
import type { MessageSnapshot, SessionSnapshot } from './snapshot.js';
import type { Store, StoreContents, StoredDelivery, StoredMessage } from './store.js';

interface SessionRecord {
  subscriptions: Map<string, QoS>;
  /** messageId -> delivery, in the order they were added (the order of delivery). */
  outgoing: Map<number, StoredDelivery>;
  /** packetId -> incoming QoS 2 record. */
  incoming: Map<number, { messageId: number; state: MessageState; dup: boolean }>;
}

/**
 * A Store that keeps everything in memory: what a broker restarted in the same process with the
 * same store restores. Nothing survives the process. `flush()` commits at the next microtask; all
 * calls before then share one promise, as the Store contract asks.
 */
export class MemoryStore implements Store {
  private readonly sessions = new Map<string, SessionRecord>();
  private readonly messages = new Map<number, StoredMessage>();
  private readonly retained = new Map<string, StoredMessage>();
  /** How many deliveries and incoming records refer to each message. */
  private readonly references = new Map<number, number>();
  private pendingCommit: Promise<void> | undefined = undefined;
  private isClosed = false;

  load(): StoreContents {
    this.isClosed = false;
    const sessions: SessionSnapshot[] = [];
    for (const [clientId, record] of this.sessions) {
      const outgoing: MessageSnapshot[] = [];
      const queued: MessageSnapshot[] = [];
      for (const [messageId, d] of record.outgoing) {
        const m = this.messages.get(messageId);
        if (m === undefined) continue;
        const snapshot = {
          ...this.content(m),
          qos: d.qos,
          retain: d.retain,
          dup: d.dup,
          packetId: d.packetId,
          state: d.state,
        };
        (d.state === 1 ? queued : outgoing).push(snapshot);
      }
      const incoming: MessageSnapshot[] = [];
      for (const [packetId, r] of record.incoming) {
        const m = this.messages.get(r.messageId);
        if (m === undefined) continue;
        incoming.push({
          ...this.content(m),
          qos: m.qos,
          retain: m.retain,
          dup: r.dup,
          packetId,
          state: r.state,
        });
      }
      sessions.push({
        clientId,
        subscriptions: [...record.subscriptions].map(([topicFilter, qos]) => ({ topicFilter, qos })),
        incomingMessages: incoming,
        outgoingMessages: [...outgoing, ...queued],
      });
    }
    return {
      sessions,
      retained: [...this.retained.values()].map((m) => ({ ...m, payload: copyBytes(m.payload) })),
    };
  }

  private content(m: StoredMessage): { messageId: number; topic: string; payload: Uint8Array } {
    return { messageId: m.messageId, topic: m.topic, payload: copyBytes(m.payload) };
  }

  private session(clientId: string): SessionRecord {
    let record = this.sessions.get(clientId);
    if (record === undefined) {
      record = { subscriptions: new Map(), outgoing: new Map(), incoming: new Map() };
      this.sessions.set(clientId, record);
    }
    return record;
  }

  sessionCreated(clientId: string): void {
    this.session(clientId);
  }

  sessionRemoved(clientId: string): void {
    const record = this.sessions.get(clientId);
    this.sessions.delete(clientId);
    if (record === undefined) return;
    for (const messageId of record.outgoing.keys()) this.release(messageId);
    for (const r of record.incoming.values()) this.release(r.messageId);
  }

  subscriptionAdded(clientId: string, topicFilter: string, qos: QoS): void {
    this.session(clientId).subscriptions.set(topicFilter, qos);
  }

  subscriptionRemoved(clientId: string, topicFilter: string): void {
    this.sessions.get(clientId)?.subscriptions.delete(topicFilter);
  }

  messageAdded(message: StoredMessage): void {
    this.messages.set(message.messageId, { ...message, payload: copyBytes(message.payload) });
  }

  outgoingAdded(clientId: string, messageId: number, delivery: StoredDelivery): void {
    const outgoing = this.session(clientId).outgoing;
    if (!outgoing.has(messageId)) this.refer(messageId);
    outgoing.set(messageId, { ...delivery });
  }

  outgoingChanged(clientId: string, messageId: number, delivery: StoredDelivery): void {
    const outgoing = this.sessions.get(clientId)?.outgoing;
    if (outgoing?.has(messageId)) outgoing.set(messageId, { ...delivery });
  }

  outgoingRemoved(clientId: string, messageId: number): void {
    if (this.sessions.get(clientId)?.outgoing.delete(messageId)) this.release(messageId);
  }

  incomingAdded(
    clientId: string,
    messageId: number,
    packetId: number,
    state: MessageState,
    dup: boolean,
  ): void {
    const incoming = this.session(clientId).incoming;
    const previous = incoming.get(packetId);
    if (previous !== undefined) this.release(previous.messageId);
    this.refer(messageId);
    incoming.set(packetId, { messageId, state, dup });
  }

  incomingRemoved(clientId: string, packetId: number): void {
    const incoming = this.sessions.get(clientId)?.incoming;
    const record = incoming?.get(packetId);
    if (record === undefined) return;
    incoming!.delete(packetId);
    this.release(record.messageId);
  }

  retainedSet(message: StoredMessage): void {
    this.retained.set(message.topic, { ...message, payload: copyBytes(message.payload) });
  }

  retainedCleared(topic: string): void {
    this.retained.delete(topic);
  }

  sessionReplaced(snapshot: SessionSnapshot): void {
    this.sessionRemoved(snapshot.clientId);
    const record = this.session(snapshot.clientId);
    for (const s of snapshot.subscriptions) record.subscriptions.set(s.topicFilter, s.qos);
    for (const m of [...snapshot.incomingMessages, ...snapshot.outgoingMessages]) {
      this.messages.set(m.messageId, {
        messageId: m.messageId,
        topic: m.topic,
        payload: copyBytes(m.payload),
        qos: m.qos,
        retain: m.retain,
      });
    }
    for (const m of snapshot.incomingMessages) {
      this.refer(m.messageId);
      record.incoming.set(m.packetId, { messageId: m.messageId, state: m.state, dup: m.dup });
    }
    for (const m of snapshot.outgoingMessages) {
      this.refer(m.messageId);
      record.outgoing.set(m.messageId, {
        qos: m.qos,
        retain: m.retain,
        packetId: m.packetId,
        state: m.state,
        dup: m.dup,
      });
    }
  }

  private refer(messageId: number): void {
    this.references.set(messageId, (this.references.get(messageId) ?? 0) + 1);
  }

  /** Drops a message once no session refers to it any more. */
  private release(messageId: number): void {
    const count = (this.references.get(messageId) ?? 1) - 1;
    if (count > 0) {
      this.references.set(messageId, count);
      return;
    }
    this.references.delete(messageId);
    this.messages.delete(messageId);
  }

  flush(): Promise<void> {
    if (this.pendingCommit === undefined) {
      this.pendingCommit = Promise.resolve().then(() => {
        this.pendingCommit = undefined;
      });
    }
    return this.pendingCommit;
  }

  async close(): Promise<void> {
    this.isClosed = true;
  }

  /** Whether close() was called since the last load() (for tests). */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Messages held (for tests of the store-once, refer-many rule). */
  get messageCount(): number {
    return this.messages.size;
  }
}
