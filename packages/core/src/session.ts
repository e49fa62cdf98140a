import type { QoS } from '@broker/codec';
import type { Client } from './engine/client.js';
import { IntMap, type ReadonlyIntMap } from './int-map.js';
import type { Message, MessageState } from './message.js';

/** One message on its way to one session: its QoS there, packet identifier and state (1–5). */
export interface OutboundDelivery {
  readonly message: Message;
  /** min(published, granted) [MQTT-3.8.4-6]. */
  readonly qos: QoS;
  /** RETAIN flag of this delivery: set only for retained messages sent on subscribe [MQTT-3.3.1-8] [MQTT-3.3.1-9]. */
  readonly retain: boolean;
  /** 0 until sent at QoS 1 or 2. */
  packetId: number;
  state: MessageState;
  /** Set once the PUBLISH has been sent, so a re-send carries DUP=1 [MQTT-3.3.1-1]. */
  dup: boolean;
}

/** A QoS 2 message received from the client and not yet released by PUBREL. */
export interface InboundRecord {
  readonly message: Message;
  readonly packetId: number;
  readonly dup: boolean;
  state: MessageState;
}

/** Shared, never written: the queue of every session that has not queued anything yet. */
const NO_DELIVERIES: OutboundDelivery[] = [];

/** Shared, never written: what the maps of a session read as until it has put something in them. */
const EMPTY_MAP: ReadonlyMap<never, never> = new Map<never, never>();
const EMPTY_INT_MAP: ReadonlyIntMap<never> = new IntMap<never>();

/**
 * A session (MQTT 3.1.1 section 3.1.2.4): what the broker keeps for a client id — subscriptions,
 * messages on their way out (in flight and queued) and QoS 2 messages on their way in. It outlives
 * its connection when the client asked for clean session 0.
 */
export class Session {
  readonly clientId: string;
  /** Clean session flag of the connection that made or last resumed it. */
  isClean: boolean;
  /** The connected client, or undefined while offline. */
  client: Client | undefined = undefined;
  // The maps are made on first use: an idle client (no subscription, nothing in flight) has none.
  private subscriptionMap: Map<string, QoS> | undefined = undefined;
  // Packet identifiers change with every message: IntMaps, not Maps (see IntMap for why).
  private inflightMap: IntMap<OutboundDelivery> | undefined = undefined;
  private incomingMap: IntMap<InboundRecord> | undefined = undefined;
  /** Messages waiting to be sent, oldest first; `queueHead` is the index of the oldest. */
  private queue: OutboundDelivery[] = NO_DELIVERIES;
  private queueHead = 0;
  /** Payload bytes of the queued messages (publisher flow control measures backlogs with it). */
  queuedBytes = 0;
  private lastPacketId = 0;

  constructor(clientId: string, isClean: boolean) {
    this.clientId = clientId;
    this.isClean = isClean;
  }

  /** Topic filter -> granted QoS. Changed through `subscribe`, `unsubscribe` and `clearSubscriptions`. */
  get subscriptions(): ReadonlyMap<string, QoS> {
    return this.subscriptionMap ?? EMPTY_MAP;
  }

  subscribe(topicFilter: string, qos: QoS): void {
    if (this.subscriptionMap === undefined) this.subscriptionMap = new Map();
    this.subscriptionMap.set(topicFilter, qos);
  }

  /** False if there was no such subscription. */
  unsubscribe(topicFilter: string): boolean {
    return this.subscriptionMap?.delete(topicFilter) ?? false;
  }

  clearSubscriptions(): void {
    this.subscriptionMap = undefined;
  }

  /** In-flight outgoing QoS 1/2 messages by packet identifier, in the order they were sent. */
  get inflight(): ReadonlyIntMap<OutboundDelivery> {
    return this.inflightMap ?? EMPTY_INT_MAP;
  }

  addInflight(delivery: OutboundDelivery): void {
    // Kept once made, even when it empties: a client that has had messages in flight will again.
    if (this.inflightMap === undefined) this.inflightMap = new IntMap();
    this.inflightMap.set(delivery.packetId, delivery);
  }

  /** False if no delivery had this packet identifier. */
  removeInflight(packetId: number): boolean {
    return this.inflightMap?.delete(packetId) ?? false;
  }

  clearInflight(): void {
    this.inflightMap = undefined;
  }

  /** Incoming QoS 2 messages by packet identifier, from PUBREC until PUBREL [MQTT-4.3.3-2]. */
  get incoming(): ReadonlyIntMap<InboundRecord> {
    return this.incomingMap ?? EMPTY_INT_MAP;
  }

  addIncoming(record: InboundRecord): void {
    if (this.incomingMap === undefined) this.incomingMap = new IntMap();
    this.incomingMap.set(record.packetId, record);
  }

  /** False if no record had this packet identifier. */
  removeIncoming(packetId: number): boolean {
    return this.incomingMap?.delete(packetId) ?? false;
  }

  clearIncoming(): void {
    this.incomingMap = undefined;
  }

  get queuedCount(): number {
    return this.queue.length - this.queueHead;
  }

  enqueue(delivery: OutboundDelivery): void {
    // The queue array is allocated on first use: most sessions never queue anything.
    if (this.queue === NO_DELIVERIES) this.queue = [delivery];
    else this.queue.push(delivery);
    this.queuedBytes += delivery.message.payloadLength;
  }

  /** The oldest queued delivery, left in the queue. */
  peek(): OutboundDelivery | undefined {
    return this.queueHead < this.queue.length ? this.queue[this.queueHead] : undefined;
  }

  dequeue(): OutboundDelivery | undefined {
    if (this.queueHead >= this.queue.length) return undefined;
    const delivery = this.queue[this.queueHead]!;
    this.queue[this.queueHead] = undefined as unknown as OutboundDelivery;
    this.queueHead++;
    this.queuedBytes -= delivery.message.payloadLength;
    // Compact once the consumed prefix dominates, so the array does not grow without bound.
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      const old = this.queue;
      this.queue = old.slice(this.queueHead);
      this.queueHead = 0;
      // Emptied: an array dropped in the old generation would keep what it points at alive (IntMap).
      old.fill(undefined as unknown as OutboundDelivery);
    }
    return delivery;
  }

  /** Queued deliveries, oldest first (a copy). */
  queued(): OutboundDelivery[] {
    return this.queue.slice(this.queueHead);
  }

  clearQueue(): void {
    this.queue = NO_DELIVERIES;
    this.queueHead = 0;
    this.queuedBytes = 0;
  }

  /**
   * The next free packet identifier for an outgoing message: counting up from the last one and
   * wrapping after 65535, skipping identifiers still in flight, so none is reused before its
   * acknowledgement [MQTT-2.3.1-2]. The in-flight window is far below 65535, so a free one exists.
   */
  allocatePacketId(): number {
    let id = this.lastPacketId;
    do {
      id = id === 0xffff ? 1 : id + 1;
    } while (this.inflightMap?.has(id) === true);
    this.lastPacketId = id;
    return id;
  }

  /** Marks an identifier used (a restored session), so allocation continues after it. */
  notePacketId(id: number): void {
    if (id > this.lastPacketId) this.lastPacketId = id;
  }
}
