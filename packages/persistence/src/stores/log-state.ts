/**
 * The LogStore's live state: what its log adds up to, kept in memory, because load() returns it and
 * compaction writes it. Committed batches and replayed frames change it through the same methods,
 * in the same order, so a reopened store holds what the closed one held.
 */
import {
  IntMap,
  type MessageSnapshot,
  type SessionSnapshot,
  type StoreContents,
  type StoredMessage,
} from '@broker/core';
import { type FrameReader, type FrameWriter, flags, LogOp, MalformedFrame } from './log-format.js';
import type { Op, RowDelivery, RowMessage } from './ops.js';

type QoS = StoredMessage['qos'];

/** A message's content and how many deliveries, incoming records and retained topics refer to it. */
interface Content {
  message: RowMessage;
  refs: number;
}

interface IncomingRecord {
  messageId: number;
  state: number;
  dup: number;
}

interface SessionState {
  /** topic filter → QoS, in the order made. */
  subscriptions: Map<string, number>;
  /** messageId → delivery, in the order added (SqliteStore's seq): the order of delivery. */
  outgoing: IntMap<RowDelivery>;
  /** packetId → incoming QoS 2 record, in the order added. */
  incoming: IntMap<IncomingRecord>;
}

/**
 * Sessions (creation order), message contents (once, reference counted, shared by reference between
 * deliveries), retained messages. The semantics are SqliteStore's: an addition again is an update in
 * place, a removal of what is not there is nothing, content a record refers to before it was added
 * is ignored (the record with it), and content whose last reference goes is dropped at the end of its
 * batch.
 */
export class LiveState {
  readonly sessions = new Map<string, SessionState>();
  // Keyed by message id and packet id, changed with every message: IntMaps, not Maps (core's IntMap
  // says why: a Map's old tables keep the young values alive and full GCs follow).
  private readonly contents = new IntMap<Content>();
  /** topic → messageId, in the order set. */
  private readonly retained = new Map<string, number>();
  /** Content that lost its last reference in this batch: dropped at its end unless referred to again. */
  private released: number[] = [];
  /**
   * What compaction would write, roughly, kept up to date by every change (the walk of
   * {@link encodedBytes}, counted as it goes): the compaction threshold compares the file with it
   * after every commit, so a state that shrank is compacted as soon as the file is twice its size.
   */
  liveBytes = 0;

  private session(clientId: string): SessionState {
    let session = this.sessions.get(clientId);
    if (session === undefined) {
      session = { subscriptions: new Map(), outgoing: new IntMap(), incoming: new IntMap() };
      this.sessions.set(clientId, session);
      this.liveBytes += recordBytes(clientId);
    }
    return session;
  }

  private refer(messageId: number): boolean {
    const content = this.contents.get(messageId);
    if (content === undefined) return false;
    content.refs++;
    return true;
  }

  private release(messageId: number): void {
    const content = this.contents.get(messageId);
    if (content !== undefined && --content.refs === 0) this.released.push(messageId);
  }

  sessionCreated(clientId: string): void {
    this.session(clientId);
  }

  sessionRemoved(clientId: string): void {
    const session = this.sessions.get(clientId);
    if (session === undefined) return;
    this.sessions.delete(clientId);
    const perRecord = recordBytes(clientId);
    this.liveBytes -= perRecord * (1 + session.outgoing.size + session.incoming.size);
    for (const filter of session.subscriptions.keys()) this.liveBytes -= perRecord + filter.length;
    for (const messageId of session.outgoing.keys()) this.release(messageId);
    for (const record of session.incoming.values()) this.release(record.messageId);
  }

  subscriptionAdded(clientId: string, topicFilter: string, qos: number): void {
    const subscriptions = this.session(clientId).subscriptions;
    if (!subscriptions.has(topicFilter)) this.liveBytes += recordBytes(clientId) + topicFilter.length;
    subscriptions.set(topicFilter, qos);
  }

  subscriptionRemoved(clientId: string, topicFilter: string): void {
    if (this.sessions.get(clientId)?.subscriptions.delete(topicFilter))
      this.liveBytes -= recordBytes(clientId) + topicFilter.length;
  }

  /** Content kept while anything refers to it; content nothing refers to is replaced. */
  messageAdded(message: RowMessage): void {
    const content = this.contents.get(message.messageId);
    if (content === undefined) {
      this.contents.set(message.messageId, { message, refs: 0 });
      this.liveBytes += contentBytes(message);
    } else if (content.refs === 0) {
      this.liveBytes += contentBytes(message) - contentBytes(content.message);
      content.message = message;
    }
  }

  outgoingAdded(clientId: string, messageId: number, delivery: RowDelivery): void {
    const outgoing = this.session(clientId).outgoing;
    if (outgoing.has(messageId)) outgoing.set(messageId, delivery);
    else if (this.refer(messageId)) {
      outgoing.set(messageId, delivery);
      this.liveBytes += recordBytes(clientId);
    }
  }

  outgoingChanged(clientId: string, messageId: number, delivery: RowDelivery): void {
    const outgoing = this.sessions.get(clientId)?.outgoing;
    if (outgoing?.has(messageId)) outgoing.set(messageId, delivery);
  }

  outgoingRemoved(clientId: string, messageId: number): void {
    if (this.sessions.get(clientId)?.outgoing.delete(messageId)) {
      this.liveBytes -= recordBytes(clientId);
      this.release(messageId);
    }
  }

  incomingAdded(clientId: string, messageId: number, packetId: number, state: number, dup: number): void {
    const incoming = this.session(clientId).incoming;
    if (!this.refer(messageId)) return;
    const previous = incoming.get(packetId);
    if (previous !== undefined) this.release(previous.messageId);
    else this.liveBytes += recordBytes(clientId);
    incoming.set(packetId, { messageId, state, dup });
  }

  incomingRemoved(clientId: string, packetId: number): void {
    const incoming = this.sessions.get(clientId)?.incoming;
    const record = incoming?.get(packetId);
    if (record === undefined) return;
    incoming!.delete(packetId);
    this.liveBytes -= recordBytes(clientId);
    this.release(record.messageId);
  }

  retainedSet(message: RowMessage): void {
    this.messageAdded(message);
    this.retainedKept(message.topic, message.messageId);
  }

  /** The topic's retained message is content added before. */
  retainedKept(topic: string, messageId: number): void {
    if (!this.refer(messageId)) return;
    const previous = this.retained.get(topic);
    this.retained.set(topic, messageId);
    if (previous !== undefined) this.release(previous);
    else this.liveBytes += retainedBytes(topic);
  }

  retainedCleared(topic: string): void {
    const previous = this.retained.get(topic);
    if (previous === undefined) return;
    this.retained.delete(topic);
    this.liveBytes -= retainedBytes(topic);
    this.release(previous);
  }

  /** The end of a batch (a commit, a replayed frame): content nothing refers to any more is dropped. */
  endBatch(): void {
    if (this.released.length === 0) return;
    for (const messageId of this.released) {
      const content = this.contents.get(messageId);
      if (content?.refs === 0) this.dropContent(messageId, content);
    }
    this.released = [];
  }

  /** Ids of the contents held (for tests of the store-once, drop-when-unreferenced rule). */
  messageIds(): number[] {
    return [...this.contents.keys()];
  }

  /** Drops content nothing refers to (added but never referred to): at open, as SqliteStore does. */
  dropUnreferenced(): void {
    for (const [messageId, content] of this.contents) {
      if (content.refs === 0) this.dropContent(messageId, content);
    }
  }

  private dropContent(messageId: number, content: Content): void {
    this.contents.delete(messageId);
    this.liveBytes -= contentBytes(content.message);
  }

  /**
   * What compaction would write, roughly, in bytes (string lengths stand for their UTF-8 bytes),
   * walked: {@link liveBytes} counts the same as it goes (tests check they agree).
   */
  encodedBytes(): number {
    let bytes = 0;
    for (const content of this.contents.values()) bytes += contentBytes(content.message);
    for (const [clientId, session] of this.sessions) {
      const perRecord = recordBytes(clientId);
      bytes += perRecord * (1 + session.outgoing.size + session.incoming.size);
      for (const filter of session.subscriptions.keys()) bytes += perRecord + filter.length;
    }
    for (const topic of this.retained.keys()) bytes += retainedBytes(topic);
    return bytes;
  }

  // Committed batches ---------------------------------------------------------------------------------

  /** Applies a committed batch (compacted), as {@link encodeOps} wrote it: content first. */
  applyOps(ops: readonly Op[]): void {
    for (const op of ops) if (op.kind === 'messageAdded') this.messageAdded(op.message);
    for (const op of ops) {
      switch (op.kind) {
        case 'sessionCreated':
          this.sessionCreated(op.clientId);
          break;
        case 'sessionRemoved':
          this.sessionRemoved(op.clientId);
          break;
        case 'subscriptionAdded':
          this.subscriptionAdded(op.clientId, op.topicFilter, op.qos);
          break;
        case 'subscriptionRemoved':
          this.subscriptionRemoved(op.clientId, op.topicFilter);
          break;
        case 'messageAdded': // first, above
          break;
        case 'outgoingAdded':
          this.outgoingAdded(op.clientId, op.messageId, op.delivery);
          break;
        case 'outgoingChanged':
          this.outgoingChanged(op.clientId, op.messageId, op.delivery);
          break;
        case 'outgoingRemoved':
          this.outgoingRemoved(op.clientId, op.messageId);
          break;
        case 'incomingAdded':
          this.incomingAdded(op.clientId, op.messageId, op.packetId, op.state, op.dup);
          break;
        case 'incomingRemoved':
          this.incomingRemoved(op.clientId, op.packetId);
          break;
        case 'retainedSet':
          this.retainedSet(op.message);
          break;
        case 'retainedCleared':
          this.retainedCleared(op.topic);
          break;
        case 'sessionReplaced':
          this.sessionReplaced(op.snapshot);
          break;
      }
    }
    this.endBatch();
  }

  /** What {@link encodeSessionReplaced} writes for it. */
  private sessionReplaced(snapshot: SessionSnapshot): void {
    const { clientId } = snapshot;
    this.sessionRemoved(clientId);
    this.sessionCreated(clientId);
    for (const s of snapshot.subscriptions) this.subscriptionAdded(clientId, s.topicFilter, s.qos);
    for (const m of snapshot.incomingMessages) {
      this.messageAdded(rowOf(m));
      this.incomingAdded(clientId, m.messageId, m.packetId, m.state, m.dup ? 1 : 0);
    }
    for (const m of snapshot.outgoingMessages) {
      this.messageAdded(rowOf(m));
      this.outgoingAdded(clientId, m.messageId, {
        qos: m.qos,
        retain: m.retain ? 1 : 0,
        packetId: m.packetId,
        state: m.state,
        dup: m.dup ? 1 : 0,
      });
    }
  }

  // Replay --------------------------------------------------------------------------------------------

  /** Applies one frame read from the file. @throws MalformedFrame */
  replayFrame(r: FrameReader): void {
    while (!r.done) {
      const kind = r.byte();
      switch (kind) {
        case LogOp.sessionCreated:
          this.sessionCreated(r.string());
          break;
        case LogOp.sessionRemoved:
          this.sessionRemoved(r.string());
          break;
        case LogOp.subscriptionAdded:
          this.subscriptionAdded(r.string(), r.string(), r.byte());
          break;
        case LogOp.subscriptionRemoved:
          this.subscriptionRemoved(r.string(), r.string());
          break;
        case LogOp.messageAdded:
          this.messageAdded(readMessage(r));
          break;
        case LogOp.outgoingAdded:
        case LogOp.outgoingChanged: {
          const clientId = r.string();
          const messageId = r.varint();
          const f = r.byte();
          const delivery = {
            qos: f & 3,
            retain: (f >> 2) & 1,
            packetId: r.varint() - 1,
            state: f >> 4,
            dup: (f >> 3) & 1,
          };
          if (kind === LogOp.outgoingAdded) this.outgoingAdded(clientId, messageId, delivery);
          else this.outgoingChanged(clientId, messageId, delivery);
          break;
        }
        case LogOp.outgoingRemoved:
          this.outgoingRemoved(r.string(), r.varint());
          break;
        case LogOp.incomingAdded: {
          const clientId = r.string();
          const messageId = r.varint();
          const packetId = r.varint();
          const f = r.byte();
          this.incomingAdded(clientId, messageId, packetId, f >> 4, (f >> 3) & 1);
          break;
        }
        case LogOp.incomingRemoved:
          this.incomingRemoved(r.string(), r.varint());
          break;
        case LogOp.retainedSet:
          this.retainedSet(readMessage(r));
          break;
        case LogOp.retainedCleared:
          this.retainedCleared(r.string());
          break;
        case LogOp.retainedKept:
          this.retainedKept(r.string(), r.varint());
          break;
        default:
          throw new MalformedFrame(`unknown op kind ${kind}`);
      }
    }
    this.endBatch();
  }

  // Compaction ----------------------------------------------------------------------------------------

  /**
   * Writes the whole state as ops that rebuild it: content first, then sessions in order
   * (subscriptions, incoming records, deliveries in order), then retained topics. `frameFull` is asked
   * between ops whether to close the frame and start another (frames of bounded size).
   */
  writeSnapshot(w: FrameWriter, frameFull: () => void): void {
    w.beginFrame();
    // All content, even what nothing refers to yet: a record may refer to it later (it is dropped
    // at open if nothing does by then, as SqliteStore drops it).
    for (const content of this.contents.values()) {
      writeMessage(w, LogOp.messageAdded, content.message);
      frameFull();
    }
    for (const [clientId, session] of this.sessions) {
      w.byte(LogOp.sessionCreated);
      w.string(clientId);
      for (const [filter, qos] of session.subscriptions) {
        w.byte(LogOp.subscriptionAdded);
        w.string(clientId);
        w.string(filter);
        w.byte(qos);
      }
      for (const [packetId, record] of session.incoming) {
        writeIncoming(w, clientId, record.messageId, packetId, record.state, record.dup);
        frameFull();
      }
      for (const [messageId, d] of session.outgoing) {
        writeDelivery(w, LogOp.outgoingAdded, clientId, messageId, d);
        frameFull();
      }
    }
    for (const [topic, messageId] of this.retained) {
      w.byte(LogOp.retainedKept);
      w.string(topic);
      w.varint(messageId);
    }
    w.endFrame();
  }

  // Loading -------------------------------------------------------------------------------------------

  /**
   * The state as the Store port's load() returns it (SqliteStore's order: sessions as created;
   * outgoing in flight in send order, then queued oldest first). Payloads are the stored bytes, not
   * copies: core only reads them.
   */
  contentsOf(): StoreContents {
    const sessions: SessionSnapshot[] = [];
    for (const [clientId, session] of this.sessions) {
      const outgoing: MessageSnapshot[] = [];
      const queued: MessageSnapshot[] = [];
      for (const [messageId, d] of session.outgoing) {
        const m = this.contents.get(messageId)!.message;
        (d.state === 1 ? queued : outgoing).push({
          messageId,
          topic: m.topic,
          payload: bytesOf(m.payload),
          qos: d.qos as QoS,
          dup: d.dup === 1,
          retain: d.retain === 1,
          packetId: d.packetId,
          state: d.state as MessageSnapshot['state'],
        });
      }
      for (const d of queued) outgoing.push(d);
      const incoming: MessageSnapshot[] = [];
      for (const [packetId, record] of session.incoming) {
        const m = this.contents.get(record.messageId)!.message;
        incoming.push({
          messageId: m.messageId,
          topic: m.topic,
          payload: bytesOf(m.payload),
          qos: m.qos as QoS,
          dup: record.dup === 1,
          retain: m.retain === 1,
          packetId,
          state: record.state as MessageSnapshot['state'],
        });
      }
      sessions.push({
        clientId,
        subscriptions: [...session.subscriptions].map(([topicFilter, qos]) => ({
          topicFilter,
          qos: qos as QoS,
        })),
        incomingMessages: incoming,
        outgoingMessages: outgoing,
      });
    }
    const retained: StoredMessage[] = [];
    for (const messageId of this.retained.values()) {
      const m = this.contents.get(messageId)!.message;
      retained.push({
        messageId,
        topic: m.topic,
        payload: bytesOf(m.payload),
        qos: m.qos as QoS,
        retain: true,
      });
    }
    return { sessions, retained };
  }
}

// The sizes compaction writes, roughly (string lengths stand for their UTF-8 bytes).
function contentBytes(m: RowMessage): number {
  return 8 + m.topic.length + m.payload.length;
}
function recordBytes(clientId: string): number {
  return 6 + clientId.length;
}
function retainedBytes(topic: string): number {
  return 6 + topic.length;
}

/** A Uint8Array view of the stored bytes (what the port hands out), no copy. */
function bytesOf(payload: Buffer): Uint8Array {
  return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
}

function rowOf(m: MessageSnapshot): RowMessage {
  // The payload is the store's own copy (sessionReplaced copied it when recorded).
  return {
    messageId: m.messageId,
    topic: m.topic,
    payload: Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength),
    qos: m.qos,
    retain: m.retain ? 1 : 0,
  };
}

function readMessage(r: FrameReader): RowMessage {
  const messageId = r.varint();
  const topic = r.string();
  const f = r.byte();
  return { messageId, topic, payload: r.bytes(), qos: f & 3, retain: (f >> 2) & 1 };
}

// Encoding ------------------------------------------------------------------------------------------

function writeMessage(w: FrameWriter, kind: number, m: RowMessage): void {
  w.byte(kind);
  w.varint(m.messageId);
  w.string(m.topic);
  w.byte(flags(m.qos, m.retain, 0, 0));
  w.bytes(m.payload);
}

function writeDelivery(
  w: FrameWriter,
  kind: number,
  clientId: string,
  messageId: number,
  d: RowDelivery,
): void {
  w.byte(kind);
  w.string(clientId);
  w.varint(messageId);
  w.byte(flags(d.qos, d.retain, d.dup, d.state));
  w.varint(d.packetId + 1);
}

function writeIncoming(
  w: FrameWriter,
  clientId: string,
  messageId: number,
  packetId: number,
  state: number,
  dup: number,
): void {
  w.byte(LogOp.incomingAdded);
  w.string(clientId);
  w.varint(messageId);
  w.varint(packetId);
  w.byte(flags(0, 0, dup, state));
}

/**
 * Encodes a committed batch (compacted) into the open frame: what {@link LiveState.applyOps} applies.
 * Content first, as SqliteStore inserts it first: the batch's compaction may fold a record that refers
 * to content into the place of an earlier one, before the content's own op. The same end state:
 * content is only dropped at the end of a batch, and adding it is idempotent.
 */
export function encodeOps(w: FrameWriter, ops: readonly Op[]): void {
  for (const op of ops) if (op.kind === 'messageAdded') writeMessage(w, LogOp.messageAdded, op.message);
  for (const op of ops) {
    switch (op.kind) {
      case 'sessionCreated':
      case 'sessionRemoved':
        w.byte(op.kind === 'sessionCreated' ? LogOp.sessionCreated : LogOp.sessionRemoved);
        w.string(op.clientId);
        break;
      case 'subscriptionAdded':
        w.byte(LogOp.subscriptionAdded);
        w.string(op.clientId);
        w.string(op.topicFilter);
        w.byte(op.qos);
        break;
      case 'subscriptionRemoved':
        w.byte(LogOp.subscriptionRemoved);
        w.string(op.clientId);
        w.string(op.topicFilter);
        break;
      case 'messageAdded': // first, above
        break;
      case 'outgoingAdded':
        writeDelivery(w, LogOp.outgoingAdded, op.clientId, op.messageId, op.delivery);
        break;
      case 'outgoingChanged':
        writeDelivery(w, LogOp.outgoingChanged, op.clientId, op.messageId, op.delivery);
        break;
      case 'outgoingRemoved':
        w.byte(LogOp.outgoingRemoved);
        w.string(op.clientId);
        w.varint(op.messageId);
        break;
      case 'incomingAdded':
        writeIncoming(w, op.clientId, op.messageId, op.packetId, op.state, op.dup);
        break;
      case 'incomingRemoved':
        w.byte(LogOp.incomingRemoved);
        w.string(op.clientId);
        w.varint(op.packetId);
        break;
      case 'retainedSet':
        writeMessage(w, LogOp.retainedSet, op.message);
        break;
      case 'retainedCleared':
        w.byte(LogOp.retainedCleared);
        w.string(op.topic);
        break;
      case 'sessionReplaced':
        encodeSessionReplaced(w, op.snapshot);
        break;
    }
  }
}

/** A session replacement, as the ops it amounts to (what LiveState.sessionReplaced applies). */
function encodeSessionReplaced(w: FrameWriter, snapshot: SessionSnapshot): void {
  const { clientId } = snapshot;
  w.byte(LogOp.sessionRemoved);
  w.string(clientId);
  w.byte(LogOp.sessionCreated);
  w.string(clientId);
  for (const s of snapshot.subscriptions) {
    w.byte(LogOp.subscriptionAdded);
    w.string(clientId);
    w.string(s.topicFilter);
    w.byte(s.qos);
  }
  for (const m of snapshot.incomingMessages) {
    writeMessage(w, LogOp.messageAdded, rowOf(m));
    writeIncoming(w, clientId, m.messageId, m.packetId, m.state, m.dup ? 1 : 0);
  }
  for (const m of snapshot.outgoingMessages) {
    writeMessage(w, LogOp.messageAdded, rowOf(m));
    const delivery = {
      qos: m.qos,
      retain: m.retain ? 1 : 0,
      packetId: m.packetId,
      state: m.state,
      dup: m.dup ? 1 : 0,
    };
    writeDelivery(w, LogOp.outgoingAdded, clientId, m.messageId, delivery);
  }
}
