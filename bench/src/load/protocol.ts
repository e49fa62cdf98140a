/**
 * The few MQTT 3.1.1 bytes the load generator needs: packets encoded once with @broker/codec at
 * setup, acknowledgements written by hand, and a minimal streaming frame reader that allocates
 * nothing for packets that arrive whole in one chunk.
 */
import { encode, encodePublishFrame, type QoS } from '@broker/codec';

/** Payload layout written into every PUBLISH: publisher index, sequence number, send time. */
export const PAYLOAD_PUBLISHER = 0; // u16 LE
export const PAYLOAD_SEQUENCE = 2; // u32 LE
export const PAYLOAD_TIME = 6; // f64 LE, performance.now() of the generator process, ms
export const PAYLOAD_MIN_BYTES = 14;

export const TYPE_CONNACK = 2;
export const TYPE_PUBLISH = 3;
export const TYPE_PUBACK = 4;
export const TYPE_PUBREC = 5;
export const TYPE_PUBREL = 6;
export const TYPE_PUBCOMP = 7;
export const TYPE_SUBACK = 9;
export const TYPE_PINGRESP = 13;

export function connectPacket(clientId: string, cleanSession: boolean, keepaliveSeconds = 0): Buffer {
  return Buffer.from(
    encode({
      type: 'connect',
      protocolName: 'MQTT',
      protocolLevel: 4,
      clientId,
      cleanSession,
      keepaliveSeconds,
    }),
  );
}

export function subscribePacket(packetId: number, topicFilter: string, qos: QoS): Buffer {
  return Buffer.from(encode({ type: 'subscribe', packetId, subscriptions: [{ topicFilter, qos }] }));
}

export const DISCONNECT = Buffer.from(encode({ type: 'disconnect' }));

/** A PUBLISH to copy and patch per send. */
export interface PublishTemplate {
  bytes: Buffer;
  /** Offset of the packet identifier, or -1 at QoS 0. */
  packetIdOffset: number;
  /** Offset of the payload. */
  payloadOffset: number;
}

export function publishTemplate(topic: string, qos: QoS, payloadBytes: number): PublishTemplate {
  if (payloadBytes < PAYLOAD_MIN_BYTES)
    throw new Error(`payload must be at least ${PAYLOAD_MIN_BYTES} bytes`);
  const payload = new Uint8Array(payloadBytes).fill(0x61);
  const frame = encodePublishFrame({ topic, payload, qos, retain: false });
  const bytes = Buffer.from(frame.bytes.buffer, frame.bytes.byteOffset, frame.bytes.byteLength);
  return { bytes, packetIdOffset: frame.packetIdOffset, payloadOffset: frame.headLength };
}

/** Writes a 4-byte acknowledgement (PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70). */
export function writeAck(target: Buffer, offset: number, firstByte: number, packetId: number): number {
  target[offset] = firstByte;
  target[offset + 1] = 2;
  target[offset + 2] = packetId >>> 8;
  target[offset + 3] = packetId & 0xff;
  return offset + 4;
}

/**
 * Called for each whole packet: `buf[start]` is the first byte of the fixed header, the variable
 * header starts at `body`, and the packet ends before `end`. Valid only during the call. Packets
 * larger than LARGE_FRAME are not assembled: `buf` then holds only their first HEAD_BYTES bytes
 * (enough for the header and the benchmark's payload fields) and `end` is where they would end.
 */
export type FrameHandler = (buf: Buffer, start: number, body: number, end: number) => void;

export const LARGE_FRAME = 64 * 1024;
export const HEAD_BYTES = 1024;

/**
 * Splits a byte stream into MQTT packets. Packets split over chunks are joined with one copy;
 * large ones are reported from their head and the rest is skipped.
 */
export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private needed = 0;
  /** Bytes of a large packet still to discard. */
  private skip = 0;

  constructor(private readonly onFrame: FrameHandler) {}

  push(input: Buffer): void {
    let chunk = input;
    if (this.skip > 0) {
      if (chunk.length <= this.skip) {
        this.skip -= chunk.length;
        return;
      }
      chunk = chunk.subarray(this.skip);
      this.skip = 0;
    }
    let buf = chunk;
    if (this.pending.length > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < this.needed) return;
      buf = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let off = 0;
    const len = buf.length;
    while (off < len) {
      // Remaining length: 1 to 4 bytes after the first.
      let pos = off + 1;
      let remaining = 0;
      let multiplier = 1;
      let complete = false;
      while (pos < len) {
        const b = buf[pos++]!;
        remaining += (b & 0x7f) * multiplier;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
        multiplier *= 128;
        if (multiplier > 128 * 128 * 128) throw new Error('malformed remaining length');
      }
      if (!complete) {
        this.stash(buf.subarray(off), len - off + 1);
        return;
      }
      const end = pos + remaining;
      if (end > len) {
        const total = end - off;
        if (total < LARGE_FRAME) {
          this.stash(buf.subarray(off), total);
          return;
        }
        const available = len - off;
        if (available < HEAD_BYTES) {
          this.stash(buf.subarray(off), HEAD_BYTES);
          return;
        }
        const head = Buffer.from(buf.subarray(off, off + HEAD_BYTES));
        this.pending = [];
        this.pendingBytes = 0;
        this.skip = total - available;
        this.onFrame(head, 0, pos - off, total);
        return;
      }
      this.onFrame(buf, off, pos, end);
      off = end;
    }
  }

  private stash(rest: Buffer, needed: number): void {
    // Copy: the chunk may be a view the caller reuses.
    this.pending = [Buffer.from(rest)];
    this.pendingBytes = rest.length;
    this.needed = needed;
  }
}
