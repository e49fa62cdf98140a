/**
 * Small helpers shared by the codec tests: hex conversion, byte comparison, and a normaliser that
 * turns every Uint8Array view (decoded payloads may be Node Buffers) into a plain array so packets
 * compare by content and not by class or backing store.
 */
import { CodecError, type CodecErrorCode, type Packet, PacketDecoder } from '@broker/codec';
import { expect } from 'vitest';

/** Bytes from a hex string; spaces, newlines and `|` separators are ignored. */
export function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/[\s|]/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new Error(`bad hex: ${hex}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Lower-case hex of any byte view. */
export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** Hex of a string's UTF-8 bytes. */
export function utf8Hex(text: string): string {
  return toHex(new TextEncoder().encode(text));
}

/** Concatenates byte views into one new Uint8Array. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/**
 * A deep copy of `value` where every Uint8Array becomes `{ bytes: number[] }` and every object a plain
 * object with the same own keys (undefined-valued keys kept, so `toStrictEqual` still sees them).
 */
export function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bytes: Array.from(value) };
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) out[key] = plain((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

/** Asserts that `actual` is a decoded packet equal (bytes by content) to `expected`. */
export function expectPacket(actual: Packet | CodecError | undefined, expected: Packet): void {
  if (actual instanceof CodecError)
    throw new Error(`expected a ${expected.type}, got ${actual.code}: ${actual.message}`);
  expect(plain(actual)).toStrictEqual(plain(expected));
}

/** Asserts that `actual` is a CodecError with `code`, and returns it. */
export function expectError(actual: Packet | CodecError | undefined, code: CodecErrorCode): CodecError {
  if (!(actual instanceof CodecError)) {
    throw new Error(
      `expected ${code}, got ${actual === undefined ? 'undefined' : JSON.stringify(plain(actual))}`,
    );
  }
  expect(actual.code, actual.message).toBe(code);
  return actual;
}

/** Asserts that `fn` throws a CodecError with `code`, and returns it. */
export function expectThrowsCode(fn: () => unknown, code: CodecErrorCode): CodecError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  if (!(thrown instanceof CodecError))
    throw new Error(`expected a CodecError ${code}, got ${String(thrown)}`);
  expect(thrown.code, thrown.message).toBe(code);
  return thrown;
}

/** Everything a decoder returns for `chunks`, until it needs more bytes or fails. */
export function drain(chunks: readonly Uint8Array[], decoder = new PacketDecoder()): (Packet | CodecError)[] {
  const out: (Packet | CodecError)[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (;;) {
      const result = decoder.next();
      if (result === undefined) break;
      out.push(result);
      if (result instanceof CodecError) return out;
    }
  }
  return out;
}
