/**
 * The LogStore's file format, version 1: bytes in, bytes out (no state, no policy).
 *
 *   header   "MQTBLOG\n" (8 bytes) + u32 LE format version
 *   frame    u32 LE payload length + u32 LE CRC-32 of the payload + payload      (one per commit)
 *   payload  ops, one after another: a kind byte (LogOp), then its fields:
 *            varint   unsigned LEB128 (7 bits a byte, low first), integers up to 2^53
 *            string   varint byte length + UTF-8
 *            bytes    varint length + raw bytes
 *            flags    one byte: qos | retain << 2 | dup << 3 | state << 4
 *            packet   varint packetId + 1 (so -1, "none yet", is 0)
 *
 * A frame is never empty. Compatibility: readers of version N read versions 1..N and refuse newer
 * ones (PERSIST_SCHEMA_UNSUPPORTED). Adding an op kind, or a field to the end of an op, needs a
 * version bump (an older reader could not skip it); so does any change of what an op means.
 */
import * as zlib from 'node:zlib';

/** The first 8 bytes of every log file. */
export const LOG_MAGIC = Buffer.from('MQTBLOG\n', 'latin1');
/** The data format version this code writes (and the newest it reads). */
export const LOG_FORMAT_VERSION = 1;
/** Magic + version. */
export const LOG_HEADER_BYTES = 12;
/** Length + CRC before each frame's payload. */
export const FRAME_HEADER_BYTES = 8;

/** Op kinds of the file (the Store port's records; sessionReplaced is written as what it does). */
export const LogOp = {
  /** string clientId */
  sessionCreated: 1,
  /** string clientId */
  sessionRemoved: 2,
  /** string clientId, string topicFilter, byte qos */
  subscriptionAdded: 3,
  /** string clientId, string topicFilter */
  subscriptionRemoved: 4,
  /** varint messageId, string topic, flags (qos, retain), bytes payload */
  messageAdded: 5,
  /** string clientId, varint messageId, flags, packet */
  outgoingAdded: 6,
  /** string clientId, varint messageId, flags, packet */
  outgoingChanged: 7,
  /** string clientId, varint messageId */
  outgoingRemoved: 8,
  /** string clientId, varint messageId, varint packetId, flags (state, dup) */
  incomingAdded: 9,
  /** string clientId, varint packetId */
  incomingRemoved: 10,
  /** a message as messageAdded: the retained message of its topic */
  retainedSet: 11,
  /** string topic */
  retainedCleared: 12,
  /** string topic, varint messageId: content written before (compaction) is the topic's retained message */
  retainedKept: 13,
} as const;

/** `flags` byte of a message, a delivery or an incoming record. */
export function flags(qos: number, retain: number, dup: number, state: number): number {
  return qos | (retain << 2) | (dup << 3) | (state << 4);
}

// CRC-32 (IEEE, as zlib) ---------------------------------------------------------------------------

let table: Int32Array | undefined;

/** Table-driven CRC-32 for Node versions without `zlib.crc32` (before 20.15). */
function crc32Fallback(data: Uint8Array): number {
  if (table === undefined) {
    table = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c;
    }
  }
  let crc = -1;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

/** CRC-32 (IEEE 802.3, the one of zlib and PNG) of `data`, unsigned. */
export const crc32: (data: Uint8Array) => number = nativeCrc32 ?? crc32Fallback;
/** @internal For its test: the fallback, whatever the Node version. */
export const crc32Portable = crc32Fallback;

// Writing ------------------------------------------------------------------------------------------

/**
 * Encodes frames into one growable, reused Buffer: `beginFrame`, the fields, `endFrame`; then the
 * caller writes `buffer[0, length)` and calls `reset`. No allocation per field.
 */
export class FrameWriter {
  buffer: Buffer;
  /** Bytes encoded so far (from 0). */
  length = 0;
  private frameStart = -1;

  constructor(initialBytes = 64 * 1024) {
    this.buffer = Buffer.allocUnsafe(initialBytes);
  }

  reset(): void {
    this.length = 0;
    this.frameStart = -1;
  }

  /** Room for `bytes` more. */
  private ensure(bytes: number): void {
    const needed = this.length + bytes;
    if (needed <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }

  beginFrame(): void {
    this.ensure(FRAME_HEADER_BYTES);
    this.frameStart = this.length;
    this.length += FRAME_HEADER_BYTES;
  }

  /** Bytes in the open frame's payload so far. */
  get frameBytes(): number {
    return this.frameStart < 0 ? 0 : this.length - this.frameStart - FRAME_HEADER_BYTES;
  }

  /** Closes the open frame (length and CRC); an empty one is taken back. */
  endFrame(): void {
    const start = this.frameStart;
    this.frameStart = -1;
    const payload = this.length - start - FRAME_HEADER_BYTES;
    if (payload === 0) {
      this.length = start;
      return;
    }
    const b = this.buffer;
    b.writeUInt32LE(payload, start);
    b.writeUInt32LE(crc32(b.subarray(start + FRAME_HEADER_BYTES, this.length)), start + 4);
  }

  header(): void {
    this.ensure(LOG_HEADER_BYTES);
    LOG_MAGIC.copy(this.buffer, this.length);
    this.buffer.writeUInt32LE(LOG_FORMAT_VERSION, this.length + 8);
    this.length += LOG_HEADER_BYTES;
  }

  byte(value: number): void {
    this.ensure(1);
    this.buffer[this.length++] = value;
  }

  varint(value: number): void {
    this.ensure(8);
    const b = this.buffer;
    let p = this.length;
    // `& 0x7f` is exact up to 2^53 (ToInt32 keeps the low bits); the division too.
    while (value >= 0x80) {
      b[p++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 128);
    }
    b[p++] = value;
    this.length = p;
  }

  string(value: string): void {
    const n = value.length;
    if (n < 0x80) {
      // Short ASCII (client ids, topics) without a call into C++; anything else takes the slow path.
      this.ensure(n + 1);
      const b = this.buffer;
      let p = this.length + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c >= 0x80) break;
        b[p++] = c;
      }
      if (i === n) {
        b[this.length] = n;
        this.length = p;
        return;
      }
    }
    const bytes = Buffer.byteLength(value, 'utf8');
    this.varint(bytes);
    this.ensure(bytes);
    this.buffer.write(value, this.length, bytes, 'utf8');
    this.length += bytes;
  }

  bytes(value: Uint8Array): void {
    const n = value.length;
    this.varint(n);
    this.ensure(n);
    this.buffer.set(value, this.length);
    this.length += n;
  }
}

// Reading ------------------------------------------------------------------------------------------

/** Thrown by FrameReader on a field that runs past its frame, or an op it does not know. */
export class MalformedFrame extends Error {}

/** Reads the fields of one frame's payload, `buffer[position, end)`. */
export class FrameReader {
  buffer: Buffer = Buffer.alloc(0);
  position = 0;
  end = 0;

  reset(buffer: Buffer, start: number, end: number): void {
    this.buffer = buffer;
    this.position = start;
    this.end = end;
  }

  get done(): boolean {
    return this.position >= this.end;
  }

  byte(): number {
    if (this.position >= this.end) throw new MalformedFrame('a field runs past the end of its frame');
    return this.buffer[this.position++]!;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 128;
      if (scale > 2 ** 56) throw new MalformedFrame('a varint is too long');
    }
  }

  private span(): number {
    const n = this.varint();
    if (this.position + n > this.end) throw new MalformedFrame('a field runs past the end of its frame');
    return n;
  }

  string(): string {
    const n = this.span();
    const start = this.position;
    this.position += n;
    return this.buffer.toString('utf8', start, this.position);
  }

  /** A copy (the read buffer is reused). */
  bytes(): Buffer {
    const n = this.span();
    const start = this.position;
    this.position += n;
    return Buffer.from(this.buffer.subarray(start, this.position));
  }
}
