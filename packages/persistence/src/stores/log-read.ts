/**
 * Reading a log at open: the header checked, then frame after frame replayed into the live state,
 * through one reused read buffer (a few hundred MB of log never become one string or array).
 */
import { fstatSync, readSync } from 'node:fs';
import { PersistenceError } from '../errors.js';
import {
  crc32,
  FRAME_HEADER_BYTES,
  FrameReader,
  LOG_FORMAT_VERSION,
  LOG_HEADER_BYTES,
  LOG_MAGIC,
  MalformedFrame,
} from './log-format.js';
import type { LiveState } from './log-state.js';

/** A window on a file, read forward in chunks. */
class Chunks {
  buffer: Buffer;
  /** File position of buffer[0], and how many bytes of the file the buffer holds. */
  private start = 0;
  private held = 0;

  constructor(
    private readonly fd: number,
    private readonly size: number,
  ) {
    this.buffer = Buffer.allocUnsafe(Math.max(64, Math.min(size, 1024 * 1024)));
  }

  /** Makes the file's bytes [position, position + length) readable; returns their offset in `buffer`. */
  at(position: number, length: number): number {
    if (position >= this.start && position + length <= this.start + this.held) return position - this.start;
    if (length > this.buffer.length)
      this.buffer = Buffer.allocUnsafe(Math.max(length, 2 * this.buffer.length));
    this.start = position;
    this.held = 0;
    const want = Math.min(this.buffer.length, this.size - position);
    while (this.held < want) {
      const n = readSync(this.fd, this.buffer, this.held, want - this.held, position + this.held);
      if (n === 0) break;
      this.held += n;
    }
    if (this.held < length) throw new Error(`short read at byte ${position}`);
    return 0;
  }

  /** Whether every byte from `position` to the end of the file is zero. */
  zerosFrom(position: number): boolean {
    for (let p = position; p < this.size; ) {
      const length = Math.min(this.buffer.length, this.size - p);
      const offset = this.at(p, length);
      for (let i = 0; i < length; i++) if (this.buffer[offset + i] !== 0) return false;
      p += length;
    }
    return true;
  }
}

/**
 * Replays the log in `fd` into `state`. Returns the file's size and, when its end is a torn frame (a
 * frame cut short, or a bad last frame: a write a crash interrupted), where that frame starts: the
 * caller truncates there. A bad frame followed by anything but zeros is damage, not a crash.
 * @throws PersistenceError PERSIST_CORRUPT_FILE (not a log, or damaged), PERSIST_SCHEMA_UNSUPPORTED.
 */
export function readLog(
  fd: number,
  file: string,
  state: LiveState,
): { size: number; tornAt: number | undefined } {
  const size = fstatSync(fd).size;
  const corrupt = (why: string) => new PersistenceError('PERSIST_CORRUPT_FILE', `${file} ${why}`, { file });
  if (size < LOG_HEADER_BYTES) throw corrupt('is not a @broker/persistence log (shorter than its header)');
  const chunks = new Chunks(fd, size);
  let offset = chunks.at(0, LOG_HEADER_BYTES);
  if (!chunks.buffer.subarray(offset, offset + LOG_MAGIC.length).equals(LOG_MAGIC)) {
    throw corrupt('is not a @broker/persistence log (no "MQTBLOG" header); refusing to use or reset it');
  }
  const version = chunks.buffer.readUInt32LE(offset + LOG_MAGIC.length);
  if (version > LOG_FORMAT_VERSION) {
    throw new PersistenceError(
      'PERSIST_SCHEMA_UNSUPPORTED',
      `${file} has data format version ${version}; this version of @broker/persistence reads versions 1–${LOG_FORMAT_VERSION}. Use a newer version.`,
      { file },
    );
  }
  if (version < 1) throw corrupt('has no data format version');
  const reader = new FrameReader();
  let position = LOG_HEADER_BYTES;
  while (position < size) {
    if (size - position < FRAME_HEADER_BYTES) return { size, tornAt: position };
    offset = chunks.at(position, FRAME_HEADER_BYTES);
    const length = chunks.buffer.readUInt32LE(offset);
    const checksum = chunks.buffer.readUInt32LE(offset + 4);
    const end = position + FRAME_HEADER_BYTES + length;
    if (end > size) return { size, tornAt: position };
    offset = chunks.at(position + FRAME_HEADER_BYTES, length);
    if (length === 0 || crc32(chunks.buffer.subarray(offset, offset + length)) !== checksum) {
      if (chunks.zerosFrom(end)) return { size, tornAt: position };
      throw corrupt(
        `is damaged: the frame at byte ${position} fails its checksum and ${size - end} bytes follow it; refusing to drop the commits after it`,
      );
    }
    reader.reset(chunks.buffer, offset, offset + length);
    try {
      state.replayFrame(reader);
    } catch (error) {
      if (!(error instanceof MalformedFrame)) throw error;
      throw corrupt(`is damaged: the frame at byte ${position} cannot be read (${error.message})`);
    }
    position = end;
  }
  return { size, tornAt: undefined };
}
