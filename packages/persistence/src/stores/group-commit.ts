/**
 * The pipelined group commit both durable stores (SqliteStore, LogStore) are built on: the Store
 * port's record methods append to a batch, one commit writes it, one asynchronous sync makes it
 * durable, and every flush of the batch resolves with it.
 */
import { channel } from 'node:diagnostics_channel';
import { closeSync, fdatasync, fsyncSync, openSync } from 'node:fs';
import type {
  MessageState,
  SessionSnapshot,
  Store,
  StoreContents,
  StoredDelivery,
  StoredMessage,
} from '@broker/core';
import { PersistenceError } from '../errors.js';
import { compactBatch, type Op, rowDelivery, rowMessage } from './ops.js';

type QoS = StoredMessage['qos'];

/** Name of the `node:diagnostics_channel` channel on which a failed commit is published. */
export const PERSISTENCE_ERROR_CHANNEL = 'broker:persistence:error';
const errorChannel = channel(PERSISTENCE_ERROR_CHANNEL);

/** `fs.fdatasync`'s shape: the test hook `syncFile` of the stores replaces it. */
export type SyncFile = (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => void;

/** What every store built on {@link GroupCommitStore} takes. */
export interface GroupCommitOptions {
  /**
   * How long records wait before they are committed, in milliseconds. Default 0: commit on the next
   * macrotask (`setImmediate`), grouping everything recorded in the same event-loop turn into one
   * commit. A larger value groups more (fewer fsyncs) and delays acknowledgements by as much.
   */
  commitIntervalMs?: number;
  /**
   * What a resolved `flush()` (an acknowledgement) survives.
   * - `'fsync'` (default): kill -9, a kernel crash and a power cut — `flush()` resolves only after the
   *   commit was fsync'ed (`fdatasync`, on the libuv thread pool, not the main thread).
   * - `'os'`: kill -9 and other process crashes — `flush()` resolves once the commit is written to the
   *   OS (page cache). A power cut or kernel crash may lose the last acknowledged commits (the file
   *   stays consistent either way). For those who accept that for speed.
   */
  durability?: 'fsync' | 'os';
  /**
   * @internal Tests only: replaces `fs.fdatasync` for the commit syncs (to hold one, or make one
   * fail). Must call `callback` once, like `fs.fdatasync`.
   */
  syncFile?: SyncFile;
  /** Called once when a commit fails and the store stops accepting work (PERSIST_WRITE_FAILED). */
  onError?: (error: PersistenceError) => void;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: PersistenceError) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: PersistenceError) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Marked handled: a commit nobody waits for must not become an unhandled rejection (a crash).
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/**
 * A {@link Store} whose record methods only append to an in-memory batch, committed in pipelined
 * group commits:
 * - the batch, compacted ({@link compactBatch}), is written in one commit ({@link writeBatch}) on the
 *   next macrotask (or after `commitIntervalMs`), through the OS page cache: the main thread never
 *   blocks on a per-commit fsync;
 * - then the store makes it durable with an asynchronous `fdatasync` (libuv thread pool) of
 *   {@link syncFd}, and resolves the batch's `flush()` promise when that completes;
 * - at most one such sync (or {@link startMaintenance} work) is in flight. Records and flushes that
 *   arrive meanwhile form the next batch, committed and synced as one when it completes: under load,
 *   batches grow by themselves (and more of a batch cancels out).
 *
 * A failed commit or sync (disk full, I/O error) rejects the flushes waiting on it with
 * PERSIST_WRITE_FAILED and every later flush too: the broker then stops acknowledging instead of
 * promising what is not stored. (A failed fsync is not retried: the kernel may have dropped the dirty
 * pages.) The failure is reported to `onError` and on the `broker:persistence:error` diagnostics
 * channel; it never throws out of a timer or callback.
 */
export abstract class GroupCommitStore implements Store {
  /** Path of the store's file. */
  readonly file: string;
  private readonly commitIntervalMs: number;
  private readonly onError: ((error: PersistenceError) => void) | undefined;
  protected readonly durability: 'fsync' | 'os';
  protected readonly syncFile: SyncFile;
  /** What the sync is called in error messages ("fsync of the WAL"). */
  private readonly syncName: string;
  private batch: Op[] = [];
  private waiting: Deferred | undefined = undefined;
  private timer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | undefined = undefined;
  private failure: PersistenceError | undefined = undefined;
  private failedFlush: Promise<void> | undefined = undefined;
  private isClosed = false;
  private closing: Promise<void> | undefined = undefined;
  private commitCount = 0;
  private syncCount = 0;
  /** Something was committed that no sync has covered yet. */
  private unsynced = false;
  /** Settles (never rejects) when the sync or maintenance in flight completes; undefined when none is. */
  private inFlight: Promise<void> | undefined = undefined;

  protected constructor(file: string, syncName: string, options: GroupCommitOptions) {
    this.file = file;
    this.syncName = syncName;
    this.commitIntervalMs = options.commitIntervalMs ?? 0;
    this.onError = options.onError;
    this.durability = options.durability ?? 'fsync';
    this.syncFile = options.syncFile ?? fdatasync;
  }

  /** Writes a compacted, non-empty batch in one commit, synchronously. Throws if it cannot. */
  protected abstract writeBatch(ops: readonly Op[]): void;
  /** The descriptor the syncs fdatasync (valid while the store is open). */
  protected abstract get syncFd(): number;
  /** Releases the store's files, after the last commit and sync. */
  protected abstract closeFiles(): void;
  abstract load(): StoreContents | Promise<StoreContents>;

  /**
   * Called after a commit is durable, with nothing in flight: work that must not overlap a sync (a
   * LogStore compaction). Returns undefined when there is none; otherwise starts it and returns a
   * promise that settles when it is done, holding the next commit until then. A rejection stops the
   * store as a failed commit does.
   */
  protected startMaintenance(): Promise<void> | undefined {
    return undefined;
  }

  // Store port: records (synchronous, no I/O) ---------------------------------------------------------

  private record(op: Op): void {
    if (this.isClosed || this.failure !== undefined) return;
    this.batch.push(op);
    this.schedule();
  }

  sessionCreated(clientId: string): void {
    this.record({ kind: 'sessionCreated', clientId });
  }
  sessionRemoved(clientId: string): void {
    this.record({ kind: 'sessionRemoved', clientId });
  }
  subscriptionAdded(clientId: string, topicFilter: string, qos: QoS): void {
    this.record({ kind: 'subscriptionAdded', clientId, topicFilter, qos });
  }
  subscriptionRemoved(clientId: string, topicFilter: string): void {
    this.record({ kind: 'subscriptionRemoved', clientId, topicFilter });
  }
  messageAdded(message: StoredMessage): void {
    this.record({ kind: 'messageAdded', message: rowMessage(message) });
  }
  outgoingAdded(clientId: string, messageId: number, delivery: StoredDelivery): void {
    this.record({ kind: 'outgoingAdded', clientId, messageId, delivery: rowDelivery(delivery) });
  }
  outgoingChanged(clientId: string, messageId: number, delivery: StoredDelivery): void {
    this.record({ kind: 'outgoingChanged', clientId, messageId, delivery: rowDelivery(delivery) });
  }
  outgoingRemoved(clientId: string, messageId: number): void {
    this.record({ kind: 'outgoingRemoved', clientId, messageId });
  }
  incomingAdded(
    clientId: string,
    messageId: number,
    packetId: number,
    state: MessageState,
    dup: boolean,
  ): void {
    this.record({ kind: 'incomingAdded', clientId, messageId, packetId, state, dup: dup ? 1 : 0 });
  }
  incomingRemoved(clientId: string, packetId: number): void {
    this.record({ kind: 'incomingRemoved', clientId, packetId });
  }
  retainedSet(message: StoredMessage): void {
    this.record({ kind: 'retainedSet', message: rowMessage(message) });
  }
  retainedCleared(topic: string): void {
    this.record({ kind: 'retainedCleared', topic });
  }
  sessionReplaced(snapshot: SessionSnapshot): void {
    const copy: SessionSnapshot = {
      clientId: snapshot.clientId,
      subscriptions: snapshot.subscriptions.map((x) => ({ ...x })),
      // Copies (new Uint8Array(x) copies; a Buffer's slice() would only view the caller's bytes).
      incomingMessages: snapshot.incomingMessages.map((m) => ({ ...m, payload: new Uint8Array(m.payload) })),
      outgoingMessages: snapshot.outgoingMessages.map((m) => ({ ...m, payload: new Uint8Array(m.payload) })),
    };
    this.record({ kind: 'sessionReplaced', snapshot: copy });
  }

  // Store port: commits ------------------------------------------------------------------------------

  /**
   * Resolves once everything recorded before the call is committed and (by default) fsync'ed; every
   * call before that commit gets the same promise object. Rejects with PERSIST_WRITE_FAILED if the
   * commit or its sync failed, and from then on always (with PERSIST_CLOSED after `close()`).
   */
  flush(): Promise<void> {
    if (this.failure !== undefined) return this.failedFlush!;
    if (this.isClosed) {
      return Promise.reject(
        new PersistenceError('PERSIST_CLOSED', `${this.file}: the store is closed`, { file: this.file }),
      );
    }
    if (this.waiting === undefined) this.waiting = deferred();
    this.schedule();
    return this.waiting.promise;
  }

  /**
   * Waits for the sync in flight, commits what is pending, syncs it and closes the file. Resolves
   * when closed; rejects with PERSIST_WRITE_FAILED if the pending records could not be committed or
   * synced (the file is closed anyway). Records and flushes after the call are refused, as after it.
   */
  close(): Promise<void> {
    if (this.closing === undefined) this.closing = this.closeNow();
    return this.closing;
  }

  private async closeNow(): Promise<void> {
    this.isClosed = true;
    this.clearTimer();
    const failureBefore = this.failure;
    // Its callback settles the flushes it covers and, the store being closed, starts nothing more.
    if (this.inFlight !== undefined) await this.inFlight;
    const group = this.waiting;
    this.waiting = undefined;
    if (this.failure === undefined && this.commitBatch() && this.unsynced) {
      this.unsynced = false;
      const error = await new Promise<NodeJS.ErrnoException | null>((resolve) =>
        this.syncFile(this.syncFd, resolve),
      );
      if (error === null) this.syncCount++;
      else this.fail(error, this.syncName);
    }
    if (this.failure === undefined) group?.resolve();
    else group?.reject(this.failure);
    this.closeFiles();
    if (this.failure !== undefined && this.failure !== failureBefore) throw this.failure;
  }

  /** Commits (one per batch) so far by this instance: for metrics and tests. */
  get commits(): number {
    return this.commitCount;
  }

  /** Fsyncs completed so far by this instance (one per group of commits): for metrics and tests. */
  get syncs(): number {
    return this.syncCount;
  }

  /** The error that stopped the store, if a commit or sync failed. */
  get failed(): PersistenceError | undefined {
    return this.failure;
  }

  /** @throws PersistenceError PERSIST_CLOSED after `close()`. */
  protected checkOpen(): void {
    if (this.isClosed)
      throw new PersistenceError('PERSIST_CLOSED', `${this.file}: the store is closed`, { file: this.file });
  }

  /**
   * Writes what is pending now (for `load()`, so that what it reads includes it); made durable by the
   * next sync, as usual.
   */
  protected commitPending(): void {
    // With a sync in flight, schedule() waits: its completion syncs this commit too.
    if (this.commitBatch() && this.unsynced) this.schedule();
  }

  private schedule(): void {
    // While a sync is in flight, its completion runs the next cycle (the batch keeps growing).
    if (this.timer !== undefined || this.inFlight !== undefined || this.isClosed) return;
    this.timer =
      this.commitIntervalMs > 0
        ? setTimeout(() => this.cycle(), this.commitIntervalMs)
        : setImmediate(() => this.cycle());
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer as ReturnType<typeof setTimeout>);
    clearImmediate(this.timer as ReturnType<typeof setImmediate>);
    this.timer = undefined;
  }

  /**
   * One group commit: writes the batch, then starts the sync that settles the flushes of the batch (or
   * settles them at once when nothing needs syncing). Never with a sync in flight.
   */
  private cycle(): void {
    this.clearTimer();
    const group = this.waiting;
    this.waiting = undefined;
    if (this.failure !== undefined || !this.commitBatch()) {
      group?.reject(this.failure!);
      return;
    }
    if (!this.unsynced) {
      group?.resolve();
      this.afterDurable();
      return;
    }
    this.unsynced = false;
    this.hold((settled) =>
      this.syncFile(this.syncFd, (error) => {
        if (error === null) {
          this.syncCount++;
          group?.resolve();
        } else {
          if (this.failure === undefined) this.fail(error, this.syncName);
          group?.reject(this.failure!);
        }
        settled();
      }),
    );
  }

  /**
   * Runs `work` as the one thing in flight: no commit starts until it calls `settled`, after which
   * the next cycle is scheduled if anything waits (unless the store is closed: close() takes over).
   */
  private hold(work: (settled: () => void) => void): void {
    let release!: () => void;
    this.inFlight = new Promise<void>((resolve) => {
      release = resolve;
    });
    work(() => {
      this.inFlight = undefined;
      release();
      if (this.isClosed) return;
      if (!this.afterDurable()) return;
      // The next group commits on the next macrotask, not here: the acknowledgements this sync
      // released go out first (microtasks), and the input already read joins the group.
      if (this.waiting !== undefined || this.batch.length > 0 || this.unsynced) this.schedule();
    });
  }

  /**
   * After a commit is durable: starts maintenance if the store has any (false then: its completion
   * schedules what waits), true otherwise.
   */
  private afterDurable(): boolean {
    if (this.failure !== undefined || this.isClosed) return true;
    let work: Promise<void> | undefined;
    try {
      work = this.startMaintenance();
    } catch (error) {
      this.fail(error, 'compaction');
      return true;
    }
    if (work === undefined) return true;
    this.hold((settled) =>
      work.then(settled, (error: unknown) => {
        if (this.failure === undefined) this.fail(error, 'compaction');
        settled();
      }),
    );
    return false;
  }

  /**
   * Writes the batch (compacted) in one commit. False if that failed: the store has then stopped.
   * With `durability: 'fsync'`, marks that a sync is needed if anything was written.
   */
  private commitBatch(): boolean {
    if (this.failure !== undefined) return false;
    const ops = this.batch;
    if (ops.length === 0) return true;
    this.batch = [];
    try {
      const compacted = compactBatch(ops);
      if (compacted.length > 0) this.writeBatch(compacted);
      this.commitCount++;
      if (compacted.length > 0 && this.durability === 'fsync') this.unsynced = true;
      return true;
    } catch (error) {
      this.fail(error);
      return false;
    }
  }

  protected fail(error: unknown, what = 'commit'): void {
    const failure = new PersistenceError(
      'PERSIST_WRITE_FAILED',
      `${this.file}: ${what} failed, nothing more will be acknowledged: ${String(error)}`,
      { cause: error, file: this.file },
    );
    this.failure = failure;
    this.failedFlush = Promise.reject(failure);
    this.failedFlush.catch(() => {});
    if (errorChannel.hasSubscribers) errorChannel.publish({ error: failure });
    try {
      this.onError?.(failure);
    } catch {
      // A throwing listener must not turn a reported failure into a crash from a timer.
    }
  }
}

/** Makes a directory's entries (a new file's name) durable. No-op where directories cannot be opened. */
export function syncDirectory(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
