import { type Broker, createConnectionPair, type MemoryPeer } from '@broker/core';

/*
 * A minimal MQTT 3.1.1 client over core's in-memory connection, for the conformance suite. It encodes
 * the handful of packets the suite sends and decodes what the broker answers, without depending on
 * @broker/codec (which is not a run-time dependency of this package).
 */

/** A packet the broker sent, decoded just enough for the suite. */
export type MiniPacket =
  | { type: 'connack'; sessionPresent: boolean; returnCode: number }
  | {
      type: 'publish';
      topic: string;
      payload: Uint8Array;
      qos: 0 | 1 | 2;
      retain: boolean;
      dup: boolean;
      packetId: number | undefined;
    }
  | { type: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp' | 'unsuback'; packetId: number }
  | { type: 'suback'; packetId: number; returnCodes: number[] }
  | { type: 'other'; code: number };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function remainingLength(length: number): number[] {
  const out: number[] = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    out.push(byte);
  } while (length > 0);
  return out;
}

function packet(firstByte: number, body: number[] | Uint8Array): Uint8Array {
  const header = [firstByte, ...remainingLength(body.length)];
  const out = new Uint8Array(header.length + body.length);
  out.set(header, 0);
  out.set(body, header.length);
  return out;
}

function utf8(text: string): number[] {
  const bytes = encoder.encode(text);
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
}

function u16(value: number): number[] {
  return [value >> 8, value & 0xff];
}

/** Encodes one PUBLISH. */
export function encodePublish(
  topic: string,
  payload: Uint8Array,
  qos: 0 | 1 | 2,
  packetId: number | undefined,
  retain = false,
  dup = false,
): Uint8Array {
  const head = [...utf8(topic), ...(qos > 0 ? u16(packetId ?? 1) : [])];
  const body = new Uint8Array(head.length + payload.length);
  body.set(head, 0);
  body.set(payload, head.length);
  return packet(0x30 | (dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0), body);
}

/** Decodes the packets in a byte stream chunk by chunk. */
class MiniDecoder {
  private buffer = new Uint8Array(0);

  push(bytes: Uint8Array): MiniPacket[] {
    const joined = new Uint8Array(this.buffer.length + bytes.length);
    joined.set(this.buffer, 0);
    joined.set(bytes, this.buffer.length);
    const out: MiniPacket[] = [];
    let offset = 0;
    for (;;) {
      if (joined.length - offset < 2) break;
      let length = 0;
      let multiplier = 1;
      let i = offset + 1;
      let isComplete = false;
      while (i < joined.length && i < offset + 5) {
        const byte = joined[i++]!;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) {
          isComplete = true;
          break;
        }
      }
      if (!isComplete || joined.length - i < length) break;
      out.push(decodeOne(joined[offset]!, joined.subarray(i, i + length)));
      offset = i + length;
    }
    this.buffer = joined.slice(offset);
    return out;
  }
}

function decodeOne(first: number, body: Uint8Array): MiniPacket {
  const type = first >> 4;
  const id = body.length >= 2 ? (body[0]! << 8) | body[1]! : 0;
  switch (type) {
    case 2:
      return { type: 'connack', sessionPresent: (body[0]! & 1) === 1, returnCode: body[1]! };
    case 3: {
      const qos = ((first >> 1) & 3) as 0 | 1 | 2;
      const topicLength = id;
      const topic = decoder.decode(body.subarray(2, 2 + topicLength));
      let offset = 2 + topicLength;
      let packetId: number | undefined;
      if (qos > 0) {
        packetId = (body[offset]! << 8) | body[offset + 1]!;
        offset += 2;
      }
      return {
        type: 'publish',
        topic,
        payload: body.slice(offset),
        qos,
        retain: (first & 1) === 1,
        dup: (first & 8) === 8,
        packetId,
      };
    }
    case 4:
      return { type: 'puback', packetId: id };
    case 5:
      return { type: 'pubrec', packetId: id };
    case 6:
      return { type: 'pubrel', packetId: id };
    case 7:
      return { type: 'pubcomp', packetId: id };
    case 9:
      return { type: 'suback', packetId: id, returnCodes: [...body.subarray(2)] };
    case 11:
      return { type: 'unsuback', packetId: id };
    default:
      return { type: 'other', code: type };
  }
}

/** A scripted client: connect, subscribe, publish, acknowledge; read what the broker sent. */
export class MiniClient {
  readonly peer: MemoryPeer;
  readonly received: MiniPacket[] = [];
  readonly connack: Extract<MiniPacket, { type: 'connack' }>;
  private readonly decoder = new MiniDecoder();

  /** Connects (clean session as asked) and takes the CONNACK, which must accept. */
  constructor(broker: Broker, clientId: string, options: { cleanSession?: boolean } = {}) {
    const { connection, peer } = createConnectionPair();
    this.peer = peer;
    peer.onData = (bytes) => {
      this.received.push(...this.decoder.push(bytes));
    };
    broker.accept(connection);
    const flags = options.cleanSession === false ? 0 : 0x02;
    peer.write(packet(0x10, [...utf8('MQTT'), 4, flags, 0, 0, ...utf8(clientId)]));
    const first = this.received.shift();
    if (first?.type !== 'connack' || first.returnCode !== 0) {
      throw new Error(`expected CONNACK 0 for ${clientId}, got ${JSON.stringify(first)}`);
    }
    this.connack = first;
  }

  subscribe(topicFilter: string, qos: 0 | 1 | 2, packetId = 1): this {
    this.peer.write(packet(0x82, [...u16(packetId), ...utf8(topicFilter), qos]));
    return this;
  }

  unsubscribe(topicFilter: string, packetId = 1): this {
    this.peer.write(packet(0xa2, [...u16(packetId), ...utf8(topicFilter)]));
    return this;
  }

  publish(
    topic: string,
    payload: string | Uint8Array,
    qos: 0 | 1 | 2,
    options: { packetId?: number; retain?: boolean } = {},
  ): this {
    const bytes = typeof payload === 'string' ? encoder.encode(payload) : payload;
    this.peer.write(encodePublish(topic, bytes, qos, options.packetId, options.retain ?? false));
    return this;
  }

  puback(packetId: number): this {
    this.peer.write(packet(0x40, u16(packetId)));
    return this;
  }
  pubrec(packetId: number): this {
    this.peer.write(packet(0x50, u16(packetId)));
    return this;
  }
  pubrel(packetId: number): this {
    this.peer.write(packet(0x62, u16(packetId)));
    return this;
  }
  pubcomp(packetId: number): this {
    this.peer.write(packet(0x70, u16(packetId)));
    return this;
  }
  disconnect(): void {
    this.peer.write(packet(0xe0, []));
  }
  /** Drops the connection without DISCONNECT (the session, if persistent, stays). */
  drop(): void {
    this.peer.close();
  }

  /** Removes and returns everything received so far. */
  take(): MiniPacket[] {
    return this.received.splice(0);
  }

  /** Removes and returns the PUBLISH packets received so far, payloads as text. */
  takePublishes(): Array<{
    topic: string;
    payload: string;
    qos: number;
    packetId: number | undefined;
    retain: boolean;
    dup: boolean;
  }> {
    const out = [];
    for (const p of this.take()) {
      if (p.type !== 'publish') continue;
      out.push({
        topic: p.topic,
        payload: decoder.decode(p.payload),
        qos: p.qos,
        packetId: p.packetId,
        retain: p.retain,
        dup: p.dup,
      });
    }
    return out;
  }
}
