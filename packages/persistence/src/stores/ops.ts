/**
 * What a store's record methods append to its batch, and the compaction of a batch before it is
 * committed: shared by the durable stores (SqliteStore, LogStore), which commit the same ops.
 */
import type { SessionSnapshot, StoredDelivery, StoredMessage } from '@broker/core';

type QoS = StoredMessage['qos'];

/** One record of the Store port, as batched. */
export type Op =
  | { kind: 'sessionCreated'; clientId: string }
  | { kind: 'sessionRemoved'; clientId: string }
  | { kind: 'subscriptionAdded'; clientId: string; topicFilter: string; qos: QoS }
  | { kind: 'subscriptionRemoved'; clientId: string; topicFilter: string }
  | { kind: 'messageAdded'; message: RowMessage }
  | { kind: 'outgoingAdded'; clientId: string; messageId: number; delivery: RowDelivery }
  | { kind: 'outgoingChanged'; clientId: string; messageId: number; delivery: RowDelivery }
  | { kind: 'outgoingRemoved'; clientId: string; messageId: number }
  | {
      kind: 'incomingAdded';
      clientId: string;
      messageId: number;
      packetId: number;
      state: number;
      dup: number;
    }
  | { kind: 'incomingRemoved'; clientId: string; packetId: number }
  | { kind: 'retainedSet'; message: RowMessage }
  | { kind: 'retainedCleared'; topic: string }
  | { kind: 'sessionReplaced'; snapshot: SessionSnapshot };

/**
 * A message as a store keeps it: the payload as a Buffer (what SQLite binds), booleans as 0/1 (as
 * bound to SQLite). The payload is the caller's bytes, not a copy: the Store port hands them over
 * (the caller never changes them afterwards).
 */
export interface RowMessage {
  messageId: number;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: number;
}
export interface RowDelivery {
  qos: number;
  retain: number;
  packetId: number;
  state: number;
  dup: number;
}

export function rowMessage(m: StoredMessage): RowMessage {
  return {
    messageId: m.messageId,
    topic: m.topic,
    payload: asBuffer(m.payload),
    qos: m.qos,
    retain: m.retain ? 1 : 0,
  };
}
/** The same bytes as a Buffer (a view, not a copy). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
export function rowDelivery(d: StoredDelivery): RowDelivery {
  return { qos: d.qos, retain: d.retain ? 1 : 0, packetId: d.packetId, state: d.state, dup: d.dup ? 1 : 0 };
}

/**
 * Drops from a batch what cancels out before it is committed: a delivery (or an incoming QoS 2
 * record) added and removed again within the batch — the common case of an online persistent
 * subscriber that acknowledges within one group commit — and the content of a message that then
 * nothing in the batch refers to any more. The removal itself stays unless the row cannot have existed
 * before the batch (a delivery of content recorded in this batch: content is recorded once, before
 * anything refers to it [Store contract]); an incoming record's removal always stays (its packet id
 * may have been held before). A delivery added and changed (sent, PUBREC received…) but not removed
 * within the batch is written once, by its addition carrying its last state; a delivery added again,
 * or a packet id taken again, is one row in the place of the first. The result commits the same end
 * state with fewer writes (a property test checks it against core's MemoryStore). Nothing spans a
 * session's removal or replacement.
 */
/** @internal Exported for its tests. */
export function compactBatch(ops: readonly Op[]): readonly Op[] {
  /** 1 where ops[i] is dropped. */
  const dropped = new Uint8Array(ops.length);
  let changed = false;
  const drop = (index: number): void => {
    dropped[index] = 1;
    changed = true;
  };
  /** ops[i] written as another op (a later state folded into its place). */
  const replaced = new Map<number, Op>();
  const opAt = (index: number): Op => replaced.get(index) ?? ops[index]!;
  const cancelledMessages = new Set<number>();
  /** clientId → messageId → [index of outgoingAdded, indices of its later changes or re-additions…]. */
  const openOutgoing = new Map<string, Map<number, number[]>>();
  /** clientId → packetId → incomingAdded (its index, the message it now holds). */
  const openIncoming = new Map<string, Map<number, { index: number; messageId: number }>>();
  /** Messages whose content is recorded in this batch (before the op at hand). */
  const newContent = new Set<number>();
  for (let index = 0; index < ops.length; index++) {
    const op = ops[index]!;
    switch (op.kind) {
      case 'messageAdded':
        newContent.add(op.message.messageId);
        break;
      case 'outgoingAdded': {
        let byMessage = openOutgoing.get(op.clientId);
        if (byMessage === undefined) {
          byMessage = new Map();
          openOutgoing.set(op.clientId, byMessage);
        }
        const open = byMessage.get(op.messageId);
        // Added again in the batch: keeps the first one's place, like a change (an upsert).
        if (open === undefined) byMessage.set(op.messageId, [index]);
        else open.push(index);
        break;
      }
      case 'outgoingChanged':
        openOutgoing.get(op.clientId)?.get(op.messageId)?.push(index);
        break;
      case 'outgoingRemoved': {
        const byMessage = openOutgoing.get(op.clientId);
        const open = byMessage?.get(op.messageId);
        if (open === undefined) break;
        for (const i of open) drop(i);
        // The removal stays if the row may have existed before the batch (an addition again of a
        // delivery). It cannot if the content is new in this batch: content is recorded once, before
        // anything refers to it [Store contract] — the common case, which then writes nothing.
        if (newContent.has(op.messageId)) drop(index);
        cancelledMessages.add(op.messageId);
        byMessage!.delete(op.messageId);
        break;
      }
      case 'incomingAdded': {
        let byPacket = openIncoming.get(op.clientId);
        if (byPacket === undefined) {
          byPacket = new Map();
          openIncoming.set(op.clientId, byPacket);
        }
        const open = byPacket.get(op.packetId);
        if (open === undefined) {
          byPacket.set(op.packetId, { index, messageId: op.messageId });
        } else {
          // The packet id taken again in the batch: one row, in the first one's place.
          cancelledMessages.add(open.messageId);
          replaced.set(open.index, op);
          drop(index);
          open.messageId = op.messageId;
        }
        break;
      }
      case 'incomingRemoved': {
        const byPacket = openIncoming.get(op.clientId);
        const open = byPacket?.get(op.packetId);
        if (open === undefined) break;
        // The removal stays: the packet id may have been held before the batch (a replacement).
        drop(open.index);
        cancelledMessages.add(open.messageId);
        byPacket!.delete(op.packetId);
        break;
      }
      case 'sessionRemoved':
      case 'sessionReplaced': {
        const clientId = op.kind === 'sessionRemoved' ? op.clientId : op.snapshot.clientId;
        openOutgoing.delete(clientId);
        openIncoming.delete(clientId);
        break;
      }
      default:
    }
  }
  // Deliveries still open: their changes fold into the addition (same row, same seq, last state).
  for (const byMessage of openOutgoing.values()) {
    for (const indices of byMessage.values()) {
      if (indices.length < 2) continue;
      const first = ops[indices[0]!] as Extract<Op, { kind: 'outgoingAdded' }>;
      const last = ops[indices[indices.length - 1]!] as Extract<
        Op,
        { kind: 'outgoingChanged' | 'outgoingAdded' }
      >;
      replaced.set(indices[0]!, { ...first, delivery: last.delivery });
      for (let i = 1; i < indices.length; i++) drop(indices[i]!);
    }
  }
  if (!changed) return ops;
  // A message's content stays if anything left in the batch may refer to it.
  const stillReferenced = new Set<number>();
  if (cancelledMessages.size > 0) {
    for (let index = 0; index < ops.length; index++) {
      if (dropped[index] === 1) continue;
      const op = opAt(index);
      if (op.kind === 'outgoingAdded' || op.kind === 'outgoingChanged' || op.kind === 'incomingAdded') {
        stillReferenced.add(op.messageId);
      } else if (op.kind === 'retainedSet') {
        stillReferenced.add(op.message.messageId);
      } else if (op.kind === 'sessionReplaced') {
        for (const m of [...op.snapshot.incomingMessages, ...op.snapshot.outgoingMessages])
          stillReferenced.add(m.messageId);
      }
    }
  }
  const result: Op[] = [];
  for (let index = 0; index < ops.length; index++) {
    if (dropped[index] === 1) continue;
    const op = opAt(index);
    if (op.kind === 'messageAdded') {
      const id = op.message.messageId;
      if (cancelledMessages.has(id) && !stillReferenced.has(id)) continue;
    }
    result.push(op);
  }
  return result;
}
