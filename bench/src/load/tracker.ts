/**
 * Correctness at one subscriber: per publisher, a bitmap of received sequence numbers (duplicates),
 * the highest sequence seen (order), and the count of distinct messages (loss, against what was sent).
 */
export class PublisherTrack {
  bits = new Uint8Array(1 << 16);
  unique = 0;
  duplicates = 0;
  outOfOrder = 0;
  highest = -1;

  record(seq: number): void {
    const byte = seq >>> 3;
    if (byte >= this.bits.length) {
      let size = this.bits.length * 2;
      while (size <= byte) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.bits);
      this.bits = grown;
    }
    const mask = 1 << (seq & 7);
    if ((this.bits[byte]! & mask) !== 0) {
      this.duplicates++;
      return;
    }
    this.bits[byte]! |= mask;
    this.unique++;
    if (seq < this.highest) this.outOfOrder++;
    else this.highest = seq;
  }
}

export class SubscriberTrack {
  readonly publishers: PublisherTrack[] = [];
  received = 0;
  /** Messages with a publisher index outside the run's publishers (corrupted payloads). */
  foreign = 0;

  constructor(publisherCount: number) {
    for (let i = 0; i < publisherCount; i++) this.publishers.push(new PublisherTrack());
  }

  record(publisher: number, seq: number): void {
    this.received++;
    const track = this.publishers[publisher];
    if (track === undefined) this.foreign++;
    else track.record(seq);
  }
}

export interface Correctness {
  /** Messages the subscribers should have received in total (sent x matching subscribers). */
  expected: number;
  /** Deliveries counted, duplicates included. */
  received: number;
  lost: number;
  duplicates: number;
  outOfOrder: number;
  foreign: number;
}

/** Sums correctness over subscribers, each expected to receive everything every publisher sent. */
export function correctness(
  subscribers: readonly SubscriberTrack[],
  sentPerPublisher: readonly number[],
): Correctness {
  const result: Correctness = { expected: 0, received: 0, lost: 0, duplicates: 0, outOfOrder: 0, foreign: 0 };
  for (const sub of subscribers) {
    result.received += sub.received;
    result.foreign += sub.foreign;
    sentPerPublisher.forEach((sent, i) => {
      const track = sub.publishers[i]!;
      result.expected += sent;
      result.lost += Math.max(0, sent - track.unique);
      result.duplicates += track.duplicates;
      result.outOfOrder += track.outOfOrder;
    });
  }
  return result;
}
