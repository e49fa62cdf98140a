import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  fsync,
  ftruncateSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { StoreContents } from '@broker/core';
import { isPersistenceError, PersistenceError } from '../errors.js';
import {
  type GroupCommitOptions,
  GroupCommitStore,
  PERSISTENCE_ERROR_CHANNEL,
  syncDirectory,
} from './group-commit.js';
import { FRAME_HEADER_BYTES, FrameWriter, LOG_HEADER_BYTES } from './log-format.js';
import { acquireLock, type HeldLock } from './log-lock.js';
import { readLog } from './log-read.js';
import { encodeOps, LiveState } from './log-state.js';
import type { Op } from './ops.js';

export { isPersistenceError, PersistenceError, type PersistenceErrorCode } from '../errors.js';
export { LOG_FORMAT_VERSION, LOG_MAGIC } from './log-format.js';

/** Name of the `node:diagnostics_channel` channel on which a failed commit is published. */
export const LOG_ERROR_CHANNEL = PERSISTENCE_ERROR_CHANNEL;

/**
 * Options of {@link LogStore.open}; those of the group commit ({@link GroupCommitOptions}:
 * `commitIntervalMs`, `durability`, `onError`) too. A commit is one frame appended to the log; with
 * `durability: 'fsync'` the log is fdatasync'ed before its flush resolves.
 */
export interface LogStoreOptions extends GroupCommitOptions {
  /** Directory of the log; created if missing. */
  dataDir: string;
  /** File name inside `dataDir`. Default `'broker.log'` (plus `.lock` while open, `.compact` while compacting). */
  fileName?: string;
  /**
   * The log is compacted (rewritten as the live state) once it is larger than this and than twice
   * the live state's encoded size, in bytes. Default 64 MiB.
   */
  compactMinBytes?: number;
}

/** Frames of a compaction are cut at about this size (bounded buffers when writing and reading). */
const SNAPSHOT_FRAME_BYTES = 1024 * 1024;

/**
 * A durable {@link Store} in one append-only file, for persistent sessions (clean session 0), their
 * subscriptions, in-flight and queued messages, and retained messages. The live state is kept in
 * memory ({@link LiveState}); the file is its log.
 *
 * Record methods only append to an in-memory batch. Commits are the pipelined group commits of
 * {@link GroupCommitStore}, as SqliteStore's: a commit encodes the batch (compacted) into one frame and
 * writes it with one `write` at the end of the file (page cache), then an asynchronous `fdatasync` on
 * the libuv pool makes it durable and resolves the batch's flushes; one sync in flight, the next group
 * forming meanwhile. The same promise: with `durability: 'fsync'` (default) an acknowledged message
 * survives kill -9 and a power cut (as far as the disk honours fsync); with `'os'`, kill -9 only.
 *
 * Recovery: a frame cut short, or a last frame whose CRC fails (a write the crash interrupted), is
 * truncated away; a bad frame followed by further frames is damage, refused with PERSIST_CORRUPT_FILE.
 *
 * Compaction: after a durable commit, with nothing in flight, once the file passes `compactMinBytes`
 * and twice the live state's size, the live state is written to `<file>.compact`, fdatasync'ed,
 * renamed over the log, and the directory fsync'ed, before the next commit (which goes to the new file).
 * A crash at any point leaves the old or the new complete log; a leftover `.compact` is deleted at open.
 *
 * One process at a time: `<file>.lock` holds the owner's pid; a lock of a process that is gone is taken
 * over. A failed write or sync (disk full, I/O error) stops the store as SqliteStore's does.
 */
export class LogStore extends GroupCommitStore {
  private fd: number;
  /** Bytes of the log file (where the next frame goes). */
  private size: number;
  private readonly state: LiveState;
  private readonly writer = new FrameWriter();
  private readonly lock: HeldLock;
  private readonly compactMinBytes: number;
  /** The compaction being written: commits meanwhile (load()'s) go to both files. */
  private compacting: { fd: number; size: number } | undefined = undefined;
  private compactionCount = 0;

  private constructor(
    file: string,
    fd: number,
    size: number,
    state: LiveState,
    lock: HeldLock,
    options: LogStoreOptions,
  ) {
    super(file, 'fsync of the log', options);
    this.fd = fd;
    this.size = size;
    this.state = state;
    this.lock = lock;
    this.compactMinBytes = options.compactMinBytes ?? 64 * 1024 * 1024;
  }

  /**
   * Opens (or creates) the log, takes its lock, and reads it into memory (recovering from a torn
   * last frame). Synchronous, as SqliteStore.open.
   * @throws PersistenceError PERSIST_OPEN_FAILED (cannot be opened or created, or in use by another
   *   live process), PERSIST_CORRUPT_FILE (not a log of ours, or damaged before its last frame),
   *   PERSIST_SCHEMA_UNSUPPORTED (written by a newer version); each names the file.
   */
  static open(options: LogStoreOptions): LogStore {
    const file = join(options.dataDir, options.fileName ?? 'broker.log');
    const durable = (options.durability ?? 'fsync') === 'fsync';
    let lock: HeldLock;
    try {
      mkdirSync(options.dataDir, { recursive: true });
      lock = acquireLock(file);
    } catch (error) {
      throw openFailed(file, error);
    }
    let fd: number | undefined;
    try {
      rmSync(`${file}.compact`, { force: true });
      try {
        fd = openSync(file, 'r+');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
      if (fd === undefined || fstatSync(fd).size === 0) {
        if (fd !== undefined) closeSync(fd);
        fd = createLog(file, durable);
      }
      const state = new LiveState();
      const { size, tornAt } = readLog(fd, file, state);
      if (tornAt !== undefined) {
        // The tail a crash cut short: never acknowledged (its sync had not completed). Cut away, so
        // the next frame follows a whole one.
        ftruncateSync(fd, tornAt);
        if (durable) syncFileNow(fd);
      }
      state.dropUnreferenced();
      return new LogStore(file, fd, tornAt ?? size, state, lock, options);
    } catch (error) {
      if (fd !== undefined) closeSync(fd);
      lock.release();
      if (isPersistenceError(error)) throw error;
      throw openFailed(file, error);
    }
  }

  /**
   * Everything stored: sessions (subscriptions; incoming; outgoing with in-flight states 2–5 first in
   * send order, then queued state 1 oldest first) and retained messages. Commits what is pending
   * first. The payloads are the store's own bytes (not copies): do not modify them.
   */
  load(): StoreContents {
    this.checkOpen();
    this.commitPending();
    return this.state.contentsOf();
  }

  /** Compactions done by this instance: for metrics and tests. */
  get compactions(): number {
    return this.compactionCount;
  }

  /** @internal Tests only: ids of the message contents held in memory. */
  get storedMessageIds(): number[] {
    return this.state.messageIds();
  }

  /** @internal Tests only: the live state's size as counted along (what compaction compares), and walked. */
  get liveStateSizes(): { counted: number; walked: number } {
    return { counted: this.state.liveBytes, walked: this.state.encodedBytes() };
  }

  /** Bytes of the log file now: for metrics and tests. */
  get fileBytes(): number {
    return this.size;
  }

  // Group commit: one frame per batch, the log's fdatasync ---------------------------------------------

  protected writeBatch(ops: readonly Op[]): void {
    const w = this.writer;
    w.reset();
    w.beginFrame();
    encodeOps(w, ops);
    w.endFrame();
    if (w.length === 0) return;
    writeAll(this.fd, w.buffer, w.length, this.size);
    this.size += w.length;
    if (this.compacting !== undefined) {
      writeAll(this.compacting.fd, w.buffer, w.length, this.compacting.size);
      this.compacting.size += w.length;
    }
    // Only once written: a failed write leaves the state as the file has it (and stops the store).
    this.state.applyOps(ops);
  }

  protected get syncFd(): number {
    return this.fd;
  }

  protected closeFiles(): void {
    try {
      closeSync(this.fd);
    } catch {
      // Nothing to lose: what was acknowledged was synced before; a failed store acknowledges nothing.
    } finally {
      this.lock.release();
    }
  }

  protected override startMaintenance(): Promise<void> | undefined {
    const live = LOG_HEADER_BYTES + this.state.liveBytes;
    if (this.size <= Math.max(this.compactMinBytes, 2 * live)) return undefined;
    return this.compact();
  }

  /**
   * Rewrites the log as the live state: `.compact` written and synced, renamed over the log, the
   * directory synced; then the store switches to it. Before the rename a failure leaves the old log
   * in use (and stops the store: the disk is failing); after it, the new one.
   */
  private async compact(): Promise<void> {
    const temporary = `${this.file}.compact`;
    const durable = this.durability === 'fsync';
    const fd = openSync(temporary, 'w+');
    let renamed = false;
    try {
      const w = new FrameWriter(Math.min(2 * SNAPSHOT_FRAME_BYTES, 64 * 1024));
      let size = 0;
      const flush = () => {
        writeAll(fd, w.buffer, w.length, size);
        size += w.length;
        w.reset();
      };
      w.header();
      this.state.writeSnapshot(w, () => {
        if (w.frameBytes < SNAPSHOT_FRAME_BYTES) return;
        w.endFrame();
        flush();
        w.beginFrame();
      });
      flush();
      this.compacting = { fd, size };
      if (durable) await new Promise<void>((resolve, reject) => this.syncFile(fd, settle(resolve, reject)));
      renameSync(temporary, this.file);
      renamed = true;
      closeSync(this.fd);
      this.fd = fd;
      this.size = this.compacting.size;
      this.compacting = undefined;
      this.compactionCount++;
      // The new name must be durable before anything appended to the new file is acknowledged.
      if (durable) await syncDirectoryAsync(dirname(this.file));
    } catch (error) {
      this.compacting = undefined;
      if (!renamed) {
        closeSync(fd);
        rmSync(temporary, { force: true });
      }
      throw error;
    }
  }
}

function openFailed(file: string, error: unknown): PersistenceError {
  if (isPersistenceError(error)) return error;
  return new PersistenceError('PERSIST_OPEN_FAILED', `cannot open ${file}: ${String(error)}`, {
    cause: error,
    file,
  });
}

/** `buffer[0, length)` at `position`, however many writes it takes. */
function writeAll(fd: number, buffer: Buffer, length: number, position: number): void {
  let written = 0;
  while (written < length) {
    written += writeSync(fd, buffer, written, length - written, position + written);
  }
}

function settle(resolve: () => void, reject: (error: unknown) => void) {
  return (error: NodeJS.ErrnoException | null) => (error === null ? resolve() : reject(error));
}

/** At open only (creation, recovery), where blocking is fine. */
function syncFileNow(fd: number): void {
  fdatasyncSync(fd);
}

/**
 * A new, empty log: written as `.compact` and renamed into place (with syncs), so that a log file
 * always starts with a whole header.
 */
function createLog(file: string, durable: boolean): number {
  const temporary = `${file}.compact`;
  const fd = openSync(temporary, 'w+');
  try {
    const w = new FrameWriter(LOG_HEADER_BYTES + FRAME_HEADER_BYTES);
    w.header();
    writeAll(fd, w.buffer, w.length, 0);
    if (durable) syncFileNow(fd);
    renameSync(temporary, file);
  } catch (error) {
    closeSync(fd);
    rmSync(temporary, { force: true });
    throw error;
  }
  if (durable) syncDirectory(dirname(file));
  return fd;
}

function syncDirectoryAsync(dir: string): Promise<void> {
  if (process.platform === 'win32') return Promise.resolve();
  const fd = openSync(dir, 'r');
  return new Promise<void>((resolve, reject) =>
    fsync(fd, (error) => {
      closeSync(fd);
      settle(resolve, reject)(error);
    }),
  );
}
