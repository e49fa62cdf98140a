import {
  copyBytes,
  encodePublishFrame,
  joinParts,
  type PublishFrame,
  partsLength,
  type QoS,
} from '@broker/codec';

/**
 * Message states, numbered as the reference component numbers them (ARCHITECTURE.md): 1–5 outgoing,
 * 6–9 incoming, 10 done. They appear in events, session snapshots and the store.
 */
export const MessageState = {
  /** Outgoing: queued, waiting to be sent. */
  Queued: 1,
  /** Outgoing QoS 1: sent, waiting for PUBACK. */
  AwaitingPuback: 2,
  /** Outgoing QoS 2: sent, waiting for PUBREC. */
  AwaitingPubrec: 3,
  /** Outgoing QoS 2: PUBREC received, PUBREL not yet sent. */
  PubrecReceived: 4,
  /** Outgoing QoS 2: PUBREL sent, waiting for PUBCOMP. */
  AwaitingPubcomp: 5,
  /** Incoming QoS 1: received, PUBACK not yet sent. */
  ReceivedQos1: 6,
  /** Incoming QoS 2: received, PUBREC not yet sent. */
  ReceivedQos2: 7,
  /** Incoming QoS 2: PUBREC sent, waiting for PUBREL. */
  AwaitingPubrel: 8,
  /** Incoming QoS 2: PUBREL received, PUBCOMP not yet sent. */
  PubrelReceived: 9,
  /** Either direction: done. */
  Done: 10,
} as const;
export type MessageState = (typeof MessageState)[keyof typeof MessageState];

/** A client holding acknowledgements until what they promise is stored (core's `Client`). */
export interface AckWaiter {
  /** Sends the held acknowledgements that may go now, in order. */
  releaseAcks(): void;
}

/**
 * Whether the acknowledgement of a received message promises nothing a crash could lose any more:
 * no recorded delivery of it is pending, and it is not a retained message (whose storage is what the
 * acknowledgement promises).
 */
export function isSettled(message: Message): boolean {
  return message.unsettledDeliveries === 0 && !message.retain;
}

/**
 * An application message held by the broker: one object however many sessions it goes to. Its
 * PUBLISH is encoded at most once per QoS (and retain flag) and shared by every receiver
 * [ARCHITECTURE: encode a fan-out once].
 */
export class Message {
  /** Broker-wide unique id (the reference's MessageId). */
  readonly id: number;
  readonly topic: string;
  /** Bytes of the payload. */
  readonly payloadLength: number;
  /** The QoS it was published with. */
  readonly qos: QoS;
  /** The RETAIN flag it was published with. */
  readonly retain: boolean;
  /**
   * Store records (outgoing deliveries and incoming records of persistent sessions) that refer to
   * this message: its content is recorded with the first and may be dropped by the store after the last.
   */
  storeReferences = 0;
  /**
   * Deliveries of this message recorded in the store (to persistent sessions) and not completed or
   * dropped yet. While any remain, the publisher's PUBACK or PUBREC waits for the store's commit.
   * Once none do (every persistent subscriber acknowledged it), nothing about the message needs to
   * survive a crash any more, and the acknowledgement may go before the commit (see `Client.sendAck`).
   */
  unsettledDeliveries = 0;
  /** Whose acknowledgement of this message waits for a commit, until it is sent. */
  ackWaiter: AckWaiter | undefined = undefined;
  private isOwned: boolean;
  private frames: Array<PublishFrame | undefined> | undefined = undefined;
  /**
   * One buffer, or the parts a large payload arrived in (views of the received chunks, see the
   * codec's `payloadParts`): those are sent as they are and joined only if `payload` is read.
   */
  private body: Uint8Array | readonly Uint8Array[];

  constructor(
    id: number,
    topic: string,
    payload: Uint8Array | readonly Uint8Array[],
    qos: QoS,
    retain: boolean,
    isOwned: boolean,
  ) {
    this.id = id;
    this.topic = topic;
    this.body = payload;
    this.payloadLength = payload instanceof Uint8Array ? payload.length : partsLength(payload);
    this.qos = qos;
    this.retain = retain;
    this.isOwned = isOwned;
  }

  /**
   * The payload in one buffer (parts are joined once, on first read). May be a view of a received
   * chunk until `own()` is called.
   */
  get payload(): Uint8Array {
    const body = this.body;
    if (body instanceof Uint8Array) return body;
    const joined = joinParts(body);
    this.body = joined;
    return joined;
  }

  /**
   * Copies the payload out of the received chunk, once, before the message is kept beyond the turn
   * it arrived in (queued, retained, stored): a view would pin the whole chunk in memory.
   */
  own(): this {
    if (!this.isOwned) {
      // A payload that fills at least half of the buffer it views (a large packet the decoder
      // assembled into a buffer of its own, or one that had a read chunk mostly to itself) is kept
      // as it is: copying it would cost more than the little memory it pins. A small view into a
      // big read chunk is copied, so the chunk can be freed.
      // Parts are only made for large payloads (64 KiB and more), which fill the chunks they view
      // but for the first and the last: they are kept too.
      const body = this.body;
      if (body instanceof Uint8Array && body.byteLength * 2 < body.buffer.byteLength) {
        this.body = copyBytes(body);
      }
      this.isOwned = true;
    }
    return this;
  }

  /** Drops the cached frames (see `frame()`); the next `frame()` encodes again. */
  releaseFrames(): void {
    this.frames = undefined;
  }

  /** The encoded PUBLISH for delivery at `qos` with RETAIN `retain`, built once and cached until `releaseFrames()`. */
  frame(qos: QoS, retain: boolean): PublishFrame {
    const slot = retain ? qos + 3 : qos;
    if (this.frames === undefined)
      this.frames = [undefined, undefined, undefined, undefined, undefined, undefined];
    let frame = this.frames[slot];
    if (frame === undefined) {
      frame = encodePublishFrame({ topic: this.topic, payload: this.body, qos, retain });
      this.frames[slot] = frame;
    }
    return frame;
  }
}
