/**
 * The standard's data representations (section 1.5), read and write side by side: two-byte
 * integers, UTF-8 strings, binary data, and the variable-length Remaining Length (2.2.3).
 */
import { CodecError, type CodecErrorCode } from './errors.js';

/** The largest Remaining Length four bytes can carry (2.2.3). */
export const MAX_REMAINING_LENGTH = 268_435_455;

// The codec runs outside Node too, so it reaches these through globalThis and types them itself.
interface Utf8Decoder {
  decode(input: Uint8Array): string;
}
interface Utf8Encoder {
  encodeInto(source: string, destination: Uint8Array): { read: number; written: number };
}
const textGlobals = globalThis as unknown as {
  TextDecoder: new (label: string, options: { fatal: boolean; ignoreBOM: boolean }) => Utf8Decoder;
  TextEncoder: new () => Utf8Encoder;
};
// fatal: ill-formed UTF-8 (including encoded surrogates, [MQTT-1.5.3-1]) is an error, not U+FFFD.
// ignoreBOM: a leading U+FEFF is part of the string and must not be stripped [MQTT-1.5.3-3].
const utf8Decoder = new textGlobals.TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new textGlobals.TextEncoder();

type AsciiSlice = (bytes: Uint8Array, start: number, end: number) => string;
/**
 * Turns bytes already known to be ASCII into a string. Node's Buffer has a native latin1 slice that
 * is several times faster than anything in JavaScript for short strings such as topics; elsewhere we
 * fall back to String.fromCharCode.
 */
const asciiSlice: AsciiSlice = (() => {
  const nodeBuffer = (globalThis as { Buffer?: { prototype: { latin1Slice?: unknown } } }).Buffer;
  const latin1Slice = nodeBuffer?.prototype.latin1Slice;
  if (typeof latin1Slice === 'function') {
    const slice = latin1Slice as (this: Uint8Array, start: number, end: number) => string;
    return (bytes, start, end) => slice.call(bytes, start, end);
  }
  return (bytes, start, end) =>
    String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
})();

const NO_BYTES = new Uint8Array(0);

/**
 * A read position inside one packet's bytes. One reader serves every decoder and is reset for every
 * packet, so decoding allocates nothing for bookkeeping. Readers never throw: the first problem is
 * recorded in `error` and every later read returns a harmless value.
 */
export class Reader {
  bytes: Uint8Array = NO_BYTES;
  pos = 0;
  end = 0;
  packetType = 0;
  error: CodecError | undefined = undefined;
  /** Whether the last string read held `+` or `#`, found during the UTF-8 scan so topic checks cost nothing. */
  lastStringHadWildcard = false;

  reset(bytes: Uint8Array, pos: number, end: number, packetType: number): void {
    this.bytes = bytes;
    this.pos = pos;
    this.end = end;
    this.packetType = packetType;
    this.error = undefined;
  }

  fail(code: CodecErrorCode, message: string): void {
    if (this.error === undefined) this.error = new CodecError(code, message, { packetType: this.packetType });
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private short(what: string): void {
    this.fail('CODEC_LENGTH_MISMATCH', `packet ends inside the ${what}: the remaining length is too short`);
    this.pos = this.end;
  }

  u8(what: string): number {
    if (this.pos >= this.end) {
      this.short(what);
      return 0;
    }
    return this.bytes[this.pos++]!;
  }

  u16(what: string): number {
    if (this.pos + 2 > this.end) {
      this.short(what);
      return 0;
    }
    const value = (this.bytes[this.pos]! << 8) | this.bytes[this.pos + 1]!;
    this.pos += 2;
    return value;
  }

  /** A packet identifier, which must be non-zero where present [MQTT-2.3.1-1]. */
  packetId(): number {
    const id = this.u16('packet identifier');
    if (id === 0 && this.error === undefined) {
      this.fail('CODEC_INVALID_PACKET_ID', 'packet identifier 0 is not allowed [MQTT-2.3.1-1]');
    }
    return id;
  }

  /** Binary data: a two-byte length and that many bytes, returned as a view (1.5.3 / 3.1.3.5). */
  binary(what: string): Uint8Array {
    const length = this.u16(`length of the ${what}`);
    if (this.pos + length > this.end) {
      this.short(what);
      return this.bytes.subarray(0, 0);
    }
    const view = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    return view;
  }

  /** A UTF-8 encoded string (1.5.3), checked for well-formedness and U+0000. */
  utf8(what: string): string {
    const length = this.u16(`length of the ${what}`);
    const start = this.pos;
    const end = start + length;
    if (end > this.end) {
      this.short(what);
      return '';
    }
    this.pos = end;
    const bytes = this.bytes;
    let isAscii = true;
    let hadWildcard = false;
    for (let i = start; i < end; i++) {
      const b = bytes[i]!;
      if (b === 0) {
        this.fail('CODEC_UTF8_NULL_CHARACTER', `the ${what} contains U+0000 [MQTT-1.5.3-2]`);
        return '';
      }
      if (b > 0x7f) {
        isAscii = false;
        break;
      }
      if (b === 0x2b || b === 0x23) hadWildcard = true;
    }
    if (isAscii) {
      this.lastStringHadWildcard = hadWildcard;
      return asciiSlice(bytes, start, end);
    }
    let text: string;
    try {
      text = utf8Decoder.decode(bytes.subarray(start, end));
    } catch {
      this.fail('CODEC_MALFORMED_UTF8', `the ${what} is not well-formed UTF-8 [MQTT-1.5.3-1]`);
      return '';
    }
    if (text.includes('\u0000')) {
      this.fail('CODEC_UTF8_NULL_CHARACTER', `the ${what} contains U+0000 [MQTT-1.5.3-2]`);
      return '';
    }
    this.lastStringHadWildcard = text.includes('+') || text.includes('#');
    return text;
  }

  /** The rest of the packet, as a view. */
  rest(): Uint8Array {
    const view = this.bytes.subarray(this.pos, this.end);
    this.pos = this.end;
    return view;
  }

  /** Fails when bytes are left over: the remaining length disagrees with the content. */
  expectEnd(): void {
    if (this.pos !== this.end && this.error === undefined) {
      this.fail(
        'CODEC_LENGTH_MISMATCH',
        `${this.end - this.pos} unexpected bytes after the packet's content`,
      );
    }
  }
}

/**
 * The number of bytes `text` takes in UTF-8. Throws for a lone surrogate, which no well-formed
 * UTF-8 string may carry [MQTT-1.5.3-1]: a caller passed a string that cannot be sent.
 */
export function utf8Length(text: string): number {
  const n = text.length;
  let bytes = n;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      const next = text.charCodeAt(i + 1);
      if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) {
        throw new CodecError('CODEC_INVALID_ARGUMENT', 'string contains a lone surrogate [MQTT-1.5.3-1]');
      }
      bytes += 2; // four bytes for two UTF-16 units
      i++;
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

/** Writes a length-prefixed UTF-8 string whose byte length the caller measured with utf8Length. */
export function writeUtf8(target: Uint8Array, pos: number, text: string, byteLength: number): number {
  if (byteLength > 0xffff) {
    throw new CodecError('CODEC_INVALID_ARGUMENT', `string of ${byteLength} bytes exceeds 65535`);
  }
  target[pos] = byteLength >>> 8;
  target[pos + 1] = byteLength & 0xff;
  pos += 2;
  if (byteLength === text.length) {
    for (let i = 0; i < byteLength; i++) target[pos + i] = text.charCodeAt(i);
  } else {
    utf8Encoder.encodeInto(text, target.subarray(pos, pos + byteLength));
  }
  return pos + byteLength;
}

/** Writes length-prefixed binary data. */
export function writeBinary(target: Uint8Array, pos: number, data: Uint8Array): number {
  if (data.length > 0xffff) {
    throw new CodecError('CODEC_INVALID_ARGUMENT', `binary field of ${data.length} bytes exceeds 65535`);
  }
  target[pos] = data.length >>> 8;
  target[pos + 1] = data.length & 0xff;
  target.set(data, pos + 2);
  return pos + 2 + data.length;
}

export function writeU16(target: Uint8Array, pos: number, value: number): number {
  target[pos] = value >>> 8;
  target[pos + 1] = value & 0xff;
  return pos + 2;
}

/** Bytes the Remaining Length field takes for `length` (1 to 4). */
export function remainingLengthSize(length: number): number {
  if (length < 128) return 1;
  if (length < 16_384) return 2;
  if (length < 2_097_152) return 3;
  if (length <= MAX_REMAINING_LENGTH) return 4;
  throw new CodecError(
    'CODEC_INVALID_ARGUMENT',
    `remaining length ${length} exceeds ${MAX_REMAINING_LENGTH}`,
  );
}

/** Writes the Remaining Length as the standard's variable-length integer (2.2.3). */
export function writeRemainingLength(target: Uint8Array, pos: number, length: number): number {
  do {
    let digit = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) digit |= 0x80;
    target[pos++] = digit;
  } while (length > 0);
  return pos;
}

/** Checks a packet identifier supplied to an encoder. */
export function checkPacketId(packetId: number | undefined, what: string): number {
  if (packetId === undefined || !Number.isInteger(packetId) || packetId < 1 || packetId > 0xffff) {
    throw new CodecError(
      'CODEC_INVALID_ARGUMENT',
      `${what} needs a packet identifier from 1 to 65535, got ${String(packetId)} [MQTT-2.3.1-1]`,
    );
  }
  return packetId;
}

/**
 * A copy of `bytes`, of the same kind (a Buffer stays a Buffer, a Uint8Array a Uint8Array). Not
 * `bytes.slice()`: on a Node Buffer that is a view of the same memory, so it neither protects against
 * later changes nor frees the memory it views.
 */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  if (!isNodeBuffer(bytes)) return new Uint8Array(bytes);
  // allocate() is Node's pooled allocUnsafe: a small copy shares a slab instead of owning an ArrayBuffer.
  const copy = allocate(bytes.length);
  copy.set(bytes);
  return copy;
}

const nodeBufferClass = (globalThis as { Buffer?: { isBuffer(value: unknown): boolean } }).Buffer;
const isNodeBuffer = (bytes: Uint8Array): boolean => nodeBufferClass?.isBuffer(bytes) === true;

/** Allocates an output buffer: Node's pooled Buffer where there is one, a Uint8Array elsewhere. */
export const allocate: (size: number) => Uint8Array = (() => {
  const nodeBuffer = (globalThis as { Buffer?: { allocUnsafe?: (size: number) => Uint8Array } }).Buffer;
  const allocUnsafe = nodeBuffer?.allocUnsafe;
  if (typeof allocUnsafe === 'function') return (size) => allocUnsafe(size);
  return (size) => new Uint8Array(size);
})();
