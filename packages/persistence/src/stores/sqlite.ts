import { channel } from 'node:diagnostics_channel';
import { closeSync, fdatasync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type {
  MessageSnapshot,
  MessageState,
  SessionSnapshot,
  Store,
  StoreContents,
  StoredDelivery,
  StoredMessage,
} from '@broker/core';
import Database from 'better-sqlite3';
import { PersistenceError } from '../errors.js';

export { isPersistenceError, PersistenceError, type PersistenceErrorCode } from '../errors.js';

type QoS = StoredMessage['qos'];

/*
 * File format, version 1 (`PRAGMA user_version = 1`, `PRAGMA application_id = 0x4D515442` "MQTB").
 *
 *   sessions(client_id)                           one row per persistent session
 *   subscriptions(client_id, topic_filter, qos)   rowid keeps the order they were made in
 *   messages(message_id, topic, payload, qos, retain)
 *                                                 a message's content, once, however many sessions (and
 *                                                 the retained set) refer to it; a row nothing refers to
 *                                                 is deleted in the commit that dropped its last reference
 *   outgoing(client_id, message_id, seq, qos, retain, packet_id, state, dup)
 *                                                 seq = the order the deliveries were added in
 *   incoming(client_id, packet_id, message_id, state, dup)
 *   retained(topic, message_id)
 *
 * Compatibility: readers of version N open files of versions 1..N (migrating them forward, in one
 * transaction, through MIGRATIONS) and refuse newer ones with PERSIST_SCHEMA_UNSUPPORTED. Adding an
 * index, or a nullable column that older readers may ignore, is the only change allowed without a
 * version bump; anything that changes what a row means needs a new version and a migration.
 */

/** The data format version this code writes. */
export const SQLITE_FORMAT_VERSION = 1;
/** `PRAGMA application_id` of our files ("MQTB"), telling them from other SQLite databases. */
export const SQLITE_APPLICATION_ID = 0x4d515442;

const SCHEMA_V1 = `
CREATE TABLE sessions (
  client_id TEXT NOT NULL PRIMARY KEY
);
CREATE TABLE subscriptions (
  client_id TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
  topic_filter TEXT NOT NULL,
  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),
  UNIQUE (client_id, topic_filter)
);
CREATE TABLE messages (
  message_id INTEGER NOT NULL PRIMARY KEY,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),
  retain INTEGER NOT NULL CHECK (retain IN (0, 1))
);
CREATE TABLE outgoing (
  client_id TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
  message_id INTEGER NOT NULL REFERENCES messages(message_id),
  seq INTEGER NOT NULL,
  qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),
  retain INTEGER NOT NULL CHECK (retain IN (0, 1)),
  packet_id INTEGER NOT NULL,
  state INTEGER NOT NULL CHECK (state BETWEEN 1 AND 5),
  dup INTEGER NOT NULL CHECK (dup IN (0, 1)),
  PRIMARY KEY (client_id, message_id)
) WITHOUT ROWID;
CREATE INDEX outgoing_by_message ON outgoing(message_id);
CREATE TABLE incoming (
  client_id TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
  packet_id INTEGER NOT NULL CHECK (packet_id BETWEEN 1 AND 65535),
  message_id INTEGER NOT NULL REFERENCES messages(message_id),
  state INTEGER NOT NULL CHECK (state BETWEEN 6 AND 9),
  dup INTEGER NOT NULL CHECK (dup IN (0, 1)),
  UNIQUE (client_id, packet_id)
);
CREATE INDEX incoming_by_message ON incoming(message_id);
CREATE TABLE retained (
  topic TEXT NOT NULL PRIMARY KEY,
  message_id INTEGER NOT NULL REFERENCES messages(message_id)
);
CREATE INDEX retained_by_message ON retained(message_id);
`;

const TABLES = ['sessions', 'subscriptions', 'messages', 'outgoing', 'incoming', 'retained'] as const;

/**
 * Migrations: MIGRATIONS[n] turns a version n file into version n + 1 (run in one transaction with the
 * `user_version` update). Only version 1 exists so far, so there are none.
 */
const MIGRATIONS: Readonly<Record<number, (db: Database.Database) => void>> = {};

/** Options of {@link SqliteStore.open}. */
export interface SqliteStoreOptions {
  /** Directory of the database; created if missing. */
  dataDir: string;
  /** File name inside `dataDir`. Default `'broker.sqlite'` (plus SQLite's `-wal` and `-shm` files). */
  fileName?: string;
  /**
   * How long records wait before they are committed, in milliseconds. Default 0: commit on the next
   * macrotask (`setImmediate`), grouping everything recorded in the same event-loop turn into one
   * transaction. A larger value groups more (fewer fsyncs) and delays acknowledgements by as much.
   */
  commitIntervalMs?: number;
  /** How long a commit waits for a lock held by another connection, in milliseconds. Default 5000. */
  busyTimeoutMs?: number;
  /**
   * What a resolved `flush()` (an acknowledgement) survives.
   * - `'fsync'` (default): kill -9, a kernel crash and a power cut — `flush()` resolves only after the
   *   commit's WAL frames were fsync'ed (`fdatasync`, on the libuv thread pool, not the main thread).
   * - `'os'`: kill -9 and other process crashes — `flush()` resolves once the transaction is written
   *   to the OS (page cache). A power cut or kernel crash may lose the last acknowledged commits
   *   (SQLite keeps the file consistent either way). For those who accept that for speed.
   */
  durability?: 'fsync' | 'os';
  /**
   * @internal Tests only: replaces `fs.fdatasync` for the WAL syncs (to hold one, or make one fail).
   * Must call `callback` once, like `fs.fdatasync`.
   */
  syncFile?: (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => void;
  /** Called once when a commit fails and the store stops accepting work (PERSIST_WRITE_FAILED). */
  onError?: (error: PersistenceError) => void;
}

/** Name of the `node:diagnostics_channel` channel on which a failed commit is published. */
export const SQLITE_ERROR_CHANNEL = 'broker:persistence:error';
const errorChannel = channel(SQLITE_ERROR_CHANNEL);

type Op =
  | { kind: 'sessionCreated'; clientId: string }
  | { kind: 'sessionRemoved'; clientId: string }
  | { kind: 'subscriptionAdded'; clientId: string; topicFilter: string; qos: QoS }
  | { kind: 'subscriptionRemoved'; clientId: string; topicFilter: string }
  | { kind: 'messageAdded'; message: RowMessage }
  | { kind: 'outgoingAdded'; clientId: string; messageId: number; delivery: RowDelivery }
  | { kind: 'outgoingChanged'; clientId: string; messageId: number; delivery: RowDelivery }
  | { kind: 'outgoingRemoved'; clientId: string; messageId: number }
  | {
      kind: 'incomingAdded';
      clientId: string;
      messageId: number;
      packetId: number;
      state: number;
      dup: number;
    }
  | { kind: 'incomingRemoved'; clientId: string; packetId: number }
  | { kind: 'retainedSet'; message: RowMessage }
  | { kind: 'retainedCleared'; topic: string }
  | { kind: 'sessionReplaced'; snapshot: SessionSnapshot };

/** A message as bound to SQLite: payload copied into a Buffer, booleans as 0/1. */
interface RowMessage {
  messageId: number;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: number;
}
interface RowDelivery {
  qos: number;
  retain: number;
  packetId: number;
  state: number;
  dup: number;
}

function rowMessage(m: StoredMessage): RowMessage {
  return {
    messageId: m.messageId,
    topic: m.topic,
    payload: Buffer.from(m.payload),
    qos: m.qos,
    retain: m.retain ? 1 : 0,
  };
}
function rowDelivery(d: StoredDelivery): RowDelivery {
  return { qos: d.qos, retain: d.retain ? 1 : 0, packetId: d.packetId, state: d.state, dup: d.dup ? 1 : 0 };
}

function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function isCorruption(error: unknown): boolean {
  const code = sqliteCode(error);
  return (
    code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT' || (code?.startsWith('SQLITE_CORRUPT_') ?? false)
  );
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
 * A durable {@link Store} in one SQLite file (better-sqlite3), for persistent sessions (clean
 * session 0), their subscriptions, in-flight and queued messages, and retained messages.
 *
 * Record methods only append to an in-memory batch. Commits are pipelined group commits:
 * - the batch is written in ONE transaction on the next macrotask (or after `commitIntervalMs`), in WAL
 *   mode with `synchronous = NORMAL`: the commit only writes the WAL through the OS page cache, it does
 *   not wait for the disk (the main thread never blocks on a per-commit fsync);
 * - then the store makes it durable with an asynchronous `fdatasync` (libuv thread pool) of its own file
 *   descriptor on the `-wal` file, and resolves the batch's `flush()` promise when that completes;
 * - at most one such sync is in flight. Records and flushes that arrive meanwhile form the next batch,
 *   committed and synced as one when the sync in flight completes: under load, batches grow by
 *   themselves (and more of a batch cancels out, see {@link compactBatch}).
 *
 * So with the default `durability: 'fsync'`, a resolved flush (an acknowledgement) means the records
 * before it are on disk: they survive kill -9 and a power cut as far as the disk honours fsync. This is
 * what `synchronous = FULL` promised, without blocking the event loop. Why syncing the WAL suffices: a
 * committed transaction lives in the WAL until a checkpoint, and under `synchronous = NORMAL` SQLite
 * fsyncs the WAL before each checkpoint copies it into the database, and the database after; WAL +
 * NORMAL never corrupts the file. The `-wal` file stays the same inode while our connection is open
 * (SQLite restarts writing at its start after a checkpoint; it deletes it only when the last
 * connection closes, and the store sets no `journal_size_limit` and runs no TRUNCATE checkpoints —
 * truncation would keep the inode anyway). The directory is fsync'ed once at open so that the
 * `-wal` file's entry is durable too. With `durability: 'os'` the fdatasync is skipped.
 *
 * A failed commit or sync (disk full, I/O error) rejects the flushes waiting on it with
 * PERSIST_WRITE_FAILED and every later flush too: the broker then stops acknowledging instead of
 * promising what is not stored. (A failed fsync is not retried: the kernel may have dropped the dirty
 * pages.) The failure is reported to `onError` and on the `broker:persistence:error` diagnostics
 * channel; it never throws out of a timer or callback.
 */
export class SqliteStore implements Store {
  /** Absolute or relative path of the database file. */
  readonly file: string;
  private readonly db: Database.Database;
  private readonly commitIntervalMs: number;
  private readonly onError: ((error: PersistenceError) => void) | undefined;
  private batch: Op[] = [];
  private waiting: Deferred | undefined = undefined;
  private timer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | undefined = undefined;
  private failure: PersistenceError | undefined = undefined;
  private failedFlush: Promise<void> | undefined = undefined;
  private isClosed = false;
  private closing: Promise<void> | undefined = undefined;
  private commitCount = 0;
  private syncCount = 0;
  private readonly durability: 'fsync' | 'os';
  private readonly syncFile: NonNullable<SqliteStoreOptions['syncFile']>;
  /** Our descriptor on the `-wal` file, only for fdatasync (never written through). */
  private walFd: number | undefined = undefined;
  /** Something was committed that no sync has covered yet. */
  private unsynced = false;
  /** Settles (never rejects) when the sync in flight completes; undefined when none is. */
  private syncInFlight: Promise<void> | undefined = undefined;
  /** Sessions known to have a row (so child rows need no INSERT OR IGNORE of their session). */
  private readonly knownSessions = new Set<string>();
  private nextSeq = 1;
  private readonly statements: ReturnType<typeof prepare>;
  private readonly applyBatch: (ops: readonly Op[]) => void;

  private constructor(db: Database.Database, file: string, options: SqliteStoreOptions) {
    this.db = db;
    this.file = file;
    this.commitIntervalMs = options.commitIntervalMs ?? 0;
    this.onError = options.onError;
    this.durability = options.durability ?? 'fsync';
    this.syncFile = options.syncFile ?? fdatasync;
    this.statements = prepare(db);
    for (const row of this.statements.allSessionIds.all() as Array<{ client_id: string }>)
      this.knownSessions.add(row.client_id);
    const maxSeq = (this.statements.maxSeq.get() as { seq: number | null }).seq;
    this.nextSeq = (maxSeq ?? 0) + 1;
    this.applyBatch = db.transaction((ops: readonly Op[]) => this.apply(ops));
    this.statements.deleteAllUnreferencedMessages.run();
    if (this.durability === 'fsync') {
      // The -wal file exists now: WAL mode is set and the connection has read and written. We only
      // fsync through this descriptor (fsync is per file, so it flushes SQLite's writes too).
      const fd = openSync(`${file}-wal`, process.platform === 'win32' ? 'r+' : 'r');
      try {
        syncDirectory(dirname(file));
      } catch (error) {
        closeSync(fd);
        throw error;
      }
      this.walFd = fd;
    }
  }

  /**
   * Opens (or creates) the store's database file and checks that it is ours and of a version this
   * code reads. Synchronous: better-sqlite3 is.
   * @throws PersistenceError PERSIST_CORRUPT_FILE (not a SQLite database, not one of ours, damaged),
   *   PERSIST_SCHEMA_UNSUPPORTED (written by a newer version), PERSIST_OPEN_FAILED (cannot be opened,
   *   e.g. permissions); each names the file.
   */
  static open(options: SqliteStoreOptions): SqliteStore {
    const file = join(options.dataDir, options.fileName ?? 'broker.sqlite');
    let db: Database.Database;
    try {
      mkdirSync(options.dataDir, { recursive: true });
      db = new Database(file, { timeout: options.busyTimeoutMs ?? 5000 });
    } catch (error) {
      throw new PersistenceError('PERSIST_OPEN_FAILED', `cannot open ${file}: ${String(error)}`, {
        cause: error,
        file,
      });
    }
    try {
      prepareFile(db, file);
      return new SqliteStore(db, file, options);
    } catch (error) {
      db.close();
      if (error instanceof PersistenceError) throw error;
      if (isCorruption(error)) {
        throw new PersistenceError(
          'PERSIST_CORRUPT_FILE',
          `${file} is not a readable SQLite database: ${String(error)}`,
          {
            cause: error,
            file,
          },
        );
      }
      throw new PersistenceError('PERSIST_OPEN_FAILED', `cannot open ${file}: ${String(error)}`, {
        cause: error,
        file,
      });
    }
  }

  // Store port: loading --------------------------------------------------------------------------

  /**
   * Everything stored: sessions (subscriptions; incoming; outgoing with in-flight states 2–5 first in
   * send order, then queued state 1 oldest first) and retained messages. Commits what is pending first.
   * @throws PersistenceError PERSIST_CORRUPT_FILE when the file's content cannot be read.
   */
  load(): StoreContents {
    this.checkOpen();
    // Written now so that the read sees it; made durable by the next sync, as usual.
    if (this.commitBatch() && this.unsynced) this.schedule();
    try {
      return this.readAll();
    } catch (error) {
      throw new PersistenceError('PERSIST_CORRUPT_FILE', `cannot read ${this.file}: ${String(error)}`, {
        cause: error,
        file: this.file,
      });
    }
  }

  private readAll(): StoreContents {
    const s = this.statements;
    const sessions = new Map<string, SessionSnapshot>();
    for (const row of s.allSessionIds.all() as Array<{ client_id: string }>) {
      sessions.set(row.client_id, {
        clientId: row.client_id,
        subscriptions: [],
        incomingMessages: [],
        outgoingMessages: [],
      });
    }
    for (const row of s.allSubscriptions.all() as Array<{
      client_id: string;
      topic_filter: string;
      qos: QoS;
    }>) {
      sessions.get(row.client_id)?.subscriptions.push({ topicFilter: row.topic_filter, qos: row.qos });
    }
    for (const row of s.allIncoming.all() as MessageRow[]) {
      sessions.get(row.client_id)?.incomingMessages.push(messageSnapshot(row));
    }
    for (const row of s.allOutgoing.all() as MessageRow[]) {
      sessions.get(row.client_id)?.outgoingMessages.push(messageSnapshot(row));
    }
    const retained = (
      s.allRetained.all() as Array<Omit<MessageRow, 'client_id' | 'packet_id' | 'state' | 'dup'>>
    ).map(
      (row): StoredMessage => ({
        messageId: row.message_id,
        topic: row.topic,
        payload: new Uint8Array(row.payload),
        qos: row.qos,
        retain: true,
      }),
    );
    return { sessions: [...sessions.values()], retained };
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
   * Waits for the sync in flight, commits what is pending, syncs it and closes the database. Resolves
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
    if (this.syncInFlight !== undefined) await this.syncInFlight;
    const group = this.waiting;
    this.waiting = undefined;
    if (this.failure === undefined && this.commitBatch() && this.unsynced) {
      this.unsynced = false;
      const error = await new Promise<NodeJS.ErrnoException | null>((resolve) =>
        this.syncFile(this.walFd!, resolve),
      );
      if (error === null) this.syncCount++;
      else this.fail(error, 'fsync of the WAL');
    }
    if (this.failure === undefined) group?.resolve();
    else group?.reject(this.failure);
    if (this.walFd !== undefined) closeSync(this.walFd);
    this.walFd = undefined;
    this.db.close();
    if (this.failure !== undefined && this.failure !== failureBefore) throw this.failure;
  }

  /** Transactions committed so far by this instance (one per batch): for metrics and tests. */
  get commits(): number {
    return this.commitCount;
  }

  /** WAL fsyncs completed so far by this instance (one per group of commits): for metrics and tests. */
  get syncs(): number {
    return this.syncCount;
  }

  /** The error that stopped the store, if a commit or sync failed. */
  get failed(): PersistenceError | undefined {
    return this.failure;
  }

  private checkOpen(): void {
    if (this.isClosed)
      throw new PersistenceError('PERSIST_CLOSED', `${this.file}: the store is closed`, { file: this.file });
  }

  private schedule(): void {
    // While a sync is in flight, its completion runs the next cycle (the batch keeps growing).
    if (this.timer !== undefined || this.syncInFlight !== undefined || this.isClosed) return;
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
   * One group commit: writes the batch in one transaction, then starts the sync that settles the
   * flushes of the batch (or settles them at once when nothing needs syncing). Never with a sync in
   * flight.
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
      return;
    }
    this.unsynced = false;
    let settled!: () => void;
    this.syncInFlight = new Promise<void>((resolve) => {
      settled = resolve;
    });
    this.syncFile(this.walFd!, (error) => {
      this.syncInFlight = undefined;
      settled();
      if (error === null) {
        this.syncCount++;
        group?.resolve();
      } else {
        if (this.failure === undefined) this.fail(error, 'fsync of the WAL');
        group?.reject(this.failure!);
      }
      if (this.isClosed) return; // close() takes over
      // The next group commits on the next macrotask, not here: the acknowledgements this sync
      // released go out first (microtasks), and the input already read joins the group.
      if (this.waiting !== undefined || this.batch.length > 0 || this.unsynced) this.schedule();
    });
  }

  /**
   * Writes the batch (compacted) in one transaction. False if that failed: the store has then stopped.
   * With `durability: 'fsync'`, marks that a sync is needed if anything was written.
   */
  private commitBatch(): boolean {
    if (this.failure !== undefined) return false;
    const ops = this.batch;
    if (ops.length === 0) return true;
    this.batch = [];
    try {
      const compacted = compactBatch(ops);
      this.applyBatch(compacted);
      this.commitCount++;
      if (compacted.length > 0 && this.durability === 'fsync') this.unsynced = true;
      return true;
    } catch (error) {
      this.fail(error);
      return false;
    }
  }

  private fail(error: unknown, what: 'commit' | 'fsync of the WAL' = 'commit'): void {
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

  // Applying a batch (inside the transaction) -------------------------------------------------------

  private ensureSession(clientId: string): void {
    if (this.knownSessions.has(clientId)) return;
    this.statements.insertSession.run(clientId);
    this.knownSessions.add(clientId);
  }

  private removeSession(clientId: string, released: Set<number>): void {
    const s = this.statements;
    for (const row of s.sessionMessageIds.all(clientId, clientId) as Array<{ message_id: number }>)
      released.add(row.message_id);
    s.deleteSession.run(clientId);
    this.knownSessions.delete(clientId);
  }

  private apply(ops: readonly Op[]): void {
    /** Messages that may have lost their last reference in this batch. */
    const released = new Set<number>();
    // Content first, many rows per statement. Equivalent to the op order: content is only ever
    // deleted at the end of a batch (below), and inserting it is idempotent.
    const contents: RowMessage[] = [];
    for (const op of ops) if (op.kind === 'messageAdded') contents.push(op.message);
    this.multiRow(contents.length, this.insertMessages, 5, (params, from, to) => {
      for (let i = from; i < to; i++) {
        const m = contents[i]!;
        params.push(m.messageId, m.topic, m.payload, m.qos, m.retain);
      }
    });
    let i = 0;
    while (i < ops.length) {
      const op = ops[i]!;
      if (IN_RUNS.has(op.kind)) {
        // A run of delivery and incoming-record additions, changes and removals, each touching a
        // different row (content in between is already written): ops on different rows (or tables)
        // commute, so the run is written kind by kind, many rows per statement. A row touched twice
        // ends the run, keeping the order of what touches it.
        const run = new RunOps();
        const rows = new Set<string>();
        while (i < ops.length) {
          const next = ops[i]!;
          if (next.kind === 'messageAdded') {
            i++;
            continue;
          }
          if (!IN_RUNS.has(next.kind)) break;
          const row =
            next.kind === 'incomingAdded' || next.kind === 'incomingRemoved'
              ? `i${next.clientId}\u0000${next.packetId}`
              : `o${(next as { clientId: string }).clientId}\u0000${(next as { messageId: number }).messageId}`;
          if (rows.has(row)) break;
          rows.add(row);
          run.add(next);
          i++;
        }
        this.removeOutgoing(run.outgoingRemoved, released);
        this.removeIncoming(run.incomingRemoved, released);
        this.addOutgoing(run.outgoingAdded);
        this.addIncoming(run.incomingAdded, released);
        for (const change of run.outgoingChanged) this.applyOne(change, released);
        continue;
      }
      i++;
      if (op.kind !== 'messageAdded') this.applyOne(op, released);
    }
    // One statement for the whole batch (a JSON array of ids), not one per message.
    if (released.size > 0) this.statements.deleteUnreferencedMessages.run(JSON.stringify([...released]));
  }

  /** Rows of a run of outgoingAdded, in order, many per statement (an upsert, as one by one). */
  private addOutgoing(run: Array<Extract<Op, { kind: 'outgoingAdded' }>>): void {
    for (const op of run) this.ensureSession(op.clientId);
    this.multiRow(run.length, this.upsertOutgoings, 8, (params, from, to) => {
      for (let i = from; i < to; i++) {
        const op = run[i]!;
        const d = op.delivery;
        params.push(op.clientId, op.messageId, this.nextSeq++, d.qos, d.retain, d.packetId, d.state, d.dup);
      }
    });
  }

  /** A run of outgoingRemoved: one statement per client; every id is a release candidate. */
  private removeOutgoing(run: Array<Extract<Op, { kind: 'outgoingRemoved' }>>, released: Set<number>): void {
    for (const [clientId, ids] of byClient(run, (op) => op.messageId)) {
      for (const id of ids) released.add(id);
      this.statements.deleteOutgoings.run(clientId, JSON.stringify(ids));
    }
  }

  /**
   * Rows of a run of incomingAdded, in order, many per statement. The content a row replaces (the
   * same packet id held for another message, before or earlier in the run) is a release candidate.
   */
  private addIncoming(run: Array<Extract<Op, { kind: 'incomingAdded' }>>, released: Set<number>): void {
    if (run.length === 0) return;
    for (const [clientId, packetIds] of byClient(run, (op) => op.packetId)) {
      this.ensureSession(clientId);
      const rows = this.statements.incomingMessageIds.all(clientId, JSON.stringify(packetIds)) as Array<{
        message_id: number;
      }>;
      for (const row of rows) released.add(row.message_id);
    }
    const held = new Map<string, number>();
    for (const op of run) {
      const key = `${op.clientId}\u0000${op.packetId}`;
      const previous = held.get(key);
      if (previous !== undefined) released.add(previous);
      held.set(key, op.messageId);
    }
    this.multiRow(run.length, this.upsertIncomings, 5, (params, from, to) => {
      for (let i = from; i < to; i++) {
        const op = run[i]!;
        params.push(op.clientId, op.packetId, op.messageId, op.state, op.dup);
      }
    });
  }

  /** A run of incomingRemoved: one statement per client; the content of every row deleted is a release candidate. */
  private removeIncoming(run: Array<Extract<Op, { kind: 'incomingRemoved' }>>, released: Set<number>): void {
    for (const [clientId, packetIds] of byClient(run, (op) => op.packetId)) {
      const rows = this.statements.deleteIncomings.all(clientId, JSON.stringify(packetIds)) as Array<{
        message_id: number;
      }>;
      for (const row of rows) released.add(row.message_id);
    }
  }

  /**
   * Runs a multi-row statement for `count` rows: full chunks of MULTI_ROW rows, then one statement of
   * the remainder (statements cached per row count).
   */
  private multiRow(
    count: number,
    statementFor: (rows: number) => Database.Statement,
    columns: number,
    fill: (params: unknown[], from: number, to: number) => void,
  ): void {
    for (let from = 0; from < count; from += MULTI_ROW) {
      const to = Math.min(count, from + MULTI_ROW);
      const params: unknown[] = [];
      fill(params, from, to);
      if (params.length !== (to - from) * columns) throw new Error('multiRow: wrong parameter count');
      statementFor(to - from).run(...params);
    }
  }

  private readonly multiRowStatements = new Map<string, Database.Statement>();

  private readonly insertMessages = (rows: number): Database.Statement =>
    this.cachedStatement(
      `m${rows}`,
      () => `INSERT INTO messages (message_id, topic, payload, qos, retain) VALUES ${placeholders(rows, 5)}
       ON CONFLICT (message_id) DO NOTHING`,
    );

  // A delivery added again for the same message keeps its place (seq), as a Map.set would.
  private readonly upsertOutgoings = (rows: number): Database.Statement =>
    this.cachedStatement(
      `o${rows}`,
      () => `INSERT INTO outgoing (client_id, message_id, seq, qos, retain, packet_id, state, dup)
       VALUES ${placeholders(rows, 8)}
       ON CONFLICT (client_id, message_id) DO UPDATE SET qos = excluded.qos, retain = excluded.retain,
         packet_id = excluded.packet_id, state = excluded.state, dup = excluded.dup`,
    );

  private readonly upsertIncomings = (rows: number): Database.Statement =>
    this.cachedStatement(
      `i${rows}`,
      () => `INSERT INTO incoming (client_id, packet_id, message_id, state, dup) VALUES ${placeholders(rows, 5)}
       ON CONFLICT (client_id, packet_id) DO UPDATE SET message_id = excluded.message_id,
         state = excluded.state, dup = excluded.dup`,
    );

  private cachedStatement(key: string, sql: () => string): Database.Statement {
    let statement = this.multiRowStatements.get(key);
    if (statement === undefined) {
      statement = this.db.prepare(sql());
      this.multiRowStatements.set(key, statement);
    }
    return statement;
  }

  private applyOne(op: Op, released: Set<number>): void {
    const s = this.statements;
    switch (op.kind) {
      case 'sessionCreated':
        this.ensureSession(op.clientId);
        break;
      case 'sessionRemoved':
        this.removeSession(op.clientId, released);
        break;
      case 'subscriptionAdded':
        this.ensureSession(op.clientId);
        s.upsertSubscription.run(op.clientId, op.topicFilter, op.qos);
        break;
      case 'subscriptionRemoved':
        s.deleteSubscription.run(op.clientId, op.topicFilter);
        break;
      case 'messageAdded': // written first, see apply
      case 'outgoingAdded': // in runs, see apply
        break;
      case 'outgoingChanged':
        s.updateOutgoing.run(
          op.delivery.qos,
          op.delivery.retain,
          op.delivery.packetId,
          op.delivery.state,
          op.delivery.dup,
          op.clientId,
          op.messageId,
        );
        break;
      case 'outgoingRemoved': // in runs, see apply
        break;
      case 'incomingAdded': // in runs, see apply
      case 'incomingRemoved':
        break;
      case 'retainedSet': {
        const previous = s.retainedMessageId.get(op.message.topic) as { message_id: number } | undefined;
        if (previous !== undefined) released.add(previous.message_id);
        insertMessage(s, op.message);
        s.upsertRetained.run(op.message.topic, op.message.messageId);
        break;
      }
      case 'retainedCleared': {
        const row = s.deleteRetained.get(op.topic) as { message_id: number } | undefined;
        if (row !== undefined) released.add(row.message_id);
        break;
      }
      case 'sessionReplaced':
        this.replaceSession(op.snapshot, released);
        break;
    }
  }

  private replaceSession(snapshot: SessionSnapshot, released: Set<number>): void {
    const s = this.statements;
    const { clientId } = snapshot;
    this.removeSession(clientId, released);
    this.ensureSession(clientId);
    for (const sub of snapshot.subscriptions) s.upsertSubscription.run(clientId, sub.topicFilter, sub.qos);
    const content = (m: MessageSnapshot): RowMessage => ({
      messageId: m.messageId,
      topic: m.topic,
      payload: Buffer.from(m.payload),
      qos: m.qos,
      retain: m.retain ? 1 : 0,
    });
    for (const m of snapshot.incomingMessages) {
      insertMessage(s, content(m));
      s.upsertIncoming.run(clientId, m.packetId, m.messageId, m.state, m.dup ? 1 : 0);
    }
    for (const m of snapshot.outgoingMessages) {
      insertMessage(s, content(m));
      s.upsertOutgoing.run(
        clientId,
        m.messageId,
        this.nextSeq++,
        m.qos,
        m.retain ? 1 : 0,
        m.packetId,
        m.state,
        m.dup ? 1 : 0,
      );
    }
  }
}

interface MessageRow {
  client_id: string;
  message_id: number;
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: number;
  packet_id: number;
  state: MessageState;
  dup: number;
}

function insertMessage(s: ReturnType<typeof prepare>, m: RowMessage): void {
  s.insertMessage.run(m.messageId, m.topic, m.payload, m.qos, m.retain);
}

function messageSnapshot(row: MessageRow): MessageSnapshot {
  return {
    messageId: row.message_id,
    topic: row.topic,
    payload: new Uint8Array(row.payload.buffer, row.payload.byteOffset, row.payload.byteLength),
    qos: row.qos,
    dup: row.dup === 1,
    retain: row.retain === 1,
    packetId: row.packet_id,
    state: row.state,
  };
}

/** Makes a directory's entries (here: the new `-wal` file's) durable. No-op where directories cannot be opened. */
function syncDirectory(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The ops applied in runs, a few statements at a time (see SqliteStore.apply). */
const IN_RUNS: ReadonlySet<Op['kind']> = new Set([
  'outgoingAdded',
  'outgoingChanged',
  'outgoingRemoved',
  'incomingAdded',
  'incomingRemoved',
]);

/** The ops of one run, by kind, each in its order. */
class RunOps {
  readonly outgoingAdded: Array<Extract<Op, { kind: 'outgoingAdded' }>> = [];
  readonly outgoingChanged: Array<Extract<Op, { kind: 'outgoingChanged' }>> = [];
  readonly outgoingRemoved: Array<Extract<Op, { kind: 'outgoingRemoved' }>> = [];
  readonly incomingAdded: Array<Extract<Op, { kind: 'incomingAdded' }>> = [];
  readonly incomingRemoved: Array<Extract<Op, { kind: 'incomingRemoved' }>> = [];

  add(op: Op): void {
    switch (op.kind) {
      case 'outgoingAdded':
        this.outgoingAdded.push(op);
        break;
      case 'outgoingChanged':
        this.outgoingChanged.push(op);
        break;
      case 'outgoingRemoved':
        this.outgoingRemoved.push(op);
        break;
      case 'incomingAdded':
        this.incomingAdded.push(op);
        break;
      case 'incomingRemoved':
        this.incomingRemoved.push(op);
        break;
      default:
        throw new Error(`${op.kind} is not applied in runs`);
    }
  }
}

/** Groups values of ops by their clientId (insertion order). */
function byClient<T extends { clientId: string }>(
  ops: readonly T[],
  value: (op: T) => number,
): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  for (const op of ops) {
    const group = groups.get(op.clientId);
    if (group === undefined) groups.set(op.clientId, [value(op)]);
    else group.push(value(op));
  }
  return groups;
}

/** Rows per multi-row statement (8 columns × 64 = 512 parameters, far below SQLite's limit). */
const MULTI_ROW = 64;

/** `(?, ?), (?, ?)` for rows × columns. */
function placeholders(rows: number, columns: number): string {
  const row = `(${new Array(columns).fill('?').join(', ')})`;
  return new Array(rows).fill(row).join(', ');
}

/** Checks the file is ours and of a version we read; creates the schema in an empty file. */
function prepareFile(db: Database.Database, file: string): void {
  // The first read of the header: a file that is not a database fails here (SQLITE_NOTADB).
  const version = db.pragma('user_version', { simple: true }) as number;
  const applicationId = db.pragma('application_id', { simple: true }) as number;
  const objectCount = (db.prepare('SELECT count(*) AS n FROM sqlite_schema').get() as { n: number }).n;
  const isEmpty = version === 0 && applicationId === 0 && objectCount === 0;
  if (!isEmpty && applicationId !== SQLITE_APPLICATION_ID) {
    throw new PersistenceError(
      'PERSIST_CORRUPT_FILE',
      `${file} is a SQLite database but not a @broker/persistence store (application_id ${applicationId}); refusing to use or reset it`,
      { file },
    );
  }
  if (version > SQLITE_FORMAT_VERSION) {
    throw new PersistenceError(
      'PERSIST_SCHEMA_UNSUPPORTED',
      `${file} has data format version ${version}; this version of @broker/persistence reads versions 1–${SQLITE_FORMAT_VERSION}. Use a newer version.`,
      { file },
    );
  }
  if (!isEmpty && version < 1) {
    throw new PersistenceError('PERSIST_CORRUPT_FILE', `${file} has no data format version`, { file });
  }
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal')
    throw new PersistenceError('PERSIST_OPEN_FAILED', `${file}: cannot use WAL mode (${String(mode)})`, {
      file,
    });
  // No fsync inside a commit (it would block the event loop); the store fdatasyncs the WAL itself, off
  // the main thread, before resolving a flush. WAL + NORMAL stays consistent: SQLite fsyncs the WAL
  // before a checkpoint and the database after it.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  if (isEmpty) {
    db.transaction(() => {
      db.exec(SCHEMA_V1);
      db.pragma(`application_id = ${SQLITE_APPLICATION_ID}`);
      db.pragma(`user_version = ${SQLITE_FORMAT_VERSION}`);
    }).immediate();
    return;
  }
  if (version < SQLITE_FORMAT_VERSION) {
    db.transaction(() => {
      for (let v = version; v < SQLITE_FORMAT_VERSION; v++) {
        const migrate = MIGRATIONS[v];
        if (migrate === undefined)
          throw new PersistenceError(
            'PERSIST_SCHEMA_UNSUPPORTED',
            `${file}: no migration from version ${v}`,
            { file },
          );
        migrate(db);
      }
      db.pragma(`user_version = ${SQLITE_FORMAT_VERSION}`);
    }).immediate();
  }
  const names = new Set(
    (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as Array<{ name: string }>).map(
      (r) => r.name,
    ),
  );
  const missing = TABLES.filter((t) => !names.has(t));
  if (missing.length > 0) {
    throw new PersistenceError('PERSIST_CORRUPT_FILE', `${file} lacks the table(s) ${missing.join(', ')}`, {
      file,
    });
  }
}

function prepare(db: Database.Database) {
  const messageColumns = 'm.message_id, m.topic, m.payload';
  return {
    allSessionIds: db.prepare('SELECT client_id FROM sessions ORDER BY rowid'),
    maxSeq: db.prepare('SELECT max(seq) AS seq FROM outgoing'),
    allSubscriptions: db.prepare('SELECT client_id, topic_filter, qos FROM subscriptions ORDER BY rowid'),
    allIncoming: db.prepare(
      `SELECT i.client_id, ${messageColumns}, m.qos, m.retain, i.packet_id, i.state, i.dup
       FROM incoming i JOIN messages m ON m.message_id = i.message_id ORDER BY i.rowid`,
    ),
    // In flight (states 2–5) in send order, then queued (state 1) oldest first.
    allOutgoing: db.prepare(
      `SELECT o.client_id, ${messageColumns}, o.qos, o.retain, o.packet_id, o.state, o.dup
       FROM outgoing o JOIN messages m ON m.message_id = o.message_id
       ORDER BY o.client_id, o.state = 1, o.seq`,
    ),
    allRetained: db.prepare(
      `SELECT ${messageColumns}, m.qos FROM retained r JOIN messages m ON m.message_id = r.message_id ORDER BY r.rowid`,
    ),
    insertSession: db.prepare('INSERT OR IGNORE INTO sessions (client_id) VALUES (?)'),
    deleteSession: db.prepare('DELETE FROM sessions WHERE client_id = ?'),
    sessionMessageIds: db.prepare(
      'SELECT message_id FROM outgoing WHERE client_id = ? UNION SELECT message_id FROM incoming WHERE client_id = ?',
    ),
    upsertSubscription: db.prepare(
      `INSERT INTO subscriptions (client_id, topic_filter, qos) VALUES (?, ?, ?)
       ON CONFLICT (client_id, topic_filter) DO UPDATE SET qos = excluded.qos`,
    ),
    deleteSubscription: db.prepare('DELETE FROM subscriptions WHERE client_id = ? AND topic_filter = ?'),
    insertMessage: db.prepare(
      `INSERT INTO messages (message_id, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (message_id) DO NOTHING`,
    ),
    deleteUnreferencedMessages: db.prepare(
      `DELETE FROM messages WHERE message_id IN (SELECT value FROM json_each(?))
       AND NOT EXISTS (SELECT 1 FROM outgoing o WHERE o.message_id = messages.message_id)
       AND NOT EXISTS (SELECT 1 FROM incoming i WHERE i.message_id = messages.message_id)
       AND NOT EXISTS (SELECT 1 FROM retained r WHERE r.message_id = messages.message_id)`,
    ),
    deleteAllUnreferencedMessages: db.prepare(
      `DELETE FROM messages WHERE NOT EXISTS (SELECT 1 FROM outgoing o WHERE o.message_id = messages.message_id)
       AND NOT EXISTS (SELECT 1 FROM incoming i WHERE i.message_id = messages.message_id)
       AND NOT EXISTS (SELECT 1 FROM retained r WHERE r.message_id = messages.message_id)`,
    ),
    // A delivery added again for the same message keeps its place (seq), as a Map.set would.
    upsertOutgoing: db.prepare(
      `INSERT INTO outgoing (client_id, message_id, seq, qos, retain, packet_id, state, dup)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (client_id, message_id) DO UPDATE SET qos = excluded.qos, retain = excluded.retain,
         packet_id = excluded.packet_id, state = excluded.state, dup = excluded.dup`,
    ),
    updateOutgoing: db.prepare(
      `UPDATE outgoing SET qos = ?, retain = ?, packet_id = ?, state = ?, dup = ?
       WHERE client_id = ? AND message_id = ?`,
    ),
    deleteOutgoings: db.prepare(
      'DELETE FROM outgoing WHERE client_id = ? AND message_id IN (SELECT value FROM json_each(?))',
    ),
    upsertIncoming: db.prepare(
      `INSERT INTO incoming (client_id, packet_id, message_id, state, dup) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (client_id, packet_id) DO UPDATE SET message_id = excluded.message_id,
         state = excluded.state, dup = excluded.dup`,
    ),
    incomingMessageIds: db.prepare(
      'SELECT message_id FROM incoming WHERE client_id = ? AND packet_id IN (SELECT value FROM json_each(?))',
    ),
    deleteIncomings: db.prepare(
      'DELETE FROM incoming WHERE client_id = ? AND packet_id IN (SELECT value FROM json_each(?)) RETURNING message_id',
    ),
    retainedMessageId: db.prepare('SELECT message_id FROM retained WHERE topic = ?'),
    upsertRetained: db.prepare(
      `INSERT INTO retained (topic, message_id) VALUES (?, ?)
       ON CONFLICT (topic) DO UPDATE SET message_id = excluded.message_id`,
    ),
    deleteRetained: db.prepare('DELETE FROM retained WHERE topic = ? RETURNING message_id'),
  };
}

/**
 * Drops from a batch what cancels out before it is committed: a delivery (or an incoming QoS 2
 * record) added and removed again within the batch — the common case of an online persistent
 * subscriber that acknowledges within one group commit — and the content of a message that then
 * nothing in the batch refers to any more. The removal itself stays unless the row cannot have existed
 * before the batch (a delivery of content recorded in this batch: content is recorded once, before
 * anything refers to it [Store contract]); an incoming record's removal always stays (its packet id
 * may have been held before). A delivery added and changed (sent, PUBREC received…) but not removed
 * within the batch is written once, by its addition carrying its last state; a delivery added again,
 * or a packet id taken again, is one row in the place of the first. The result commits the same end
 * state with fewer writes (a property test checks it against core's MemoryStore). Nothing spans a
 * session's removal or replacement.
 */
/** @internal Exported for its tests. */
export function compactBatch(ops: readonly Op[]): readonly Op[] {
  /** 1 where ops[i] is dropped. */
  const dropped = new Uint8Array(ops.length);
  let changed = false;
  const drop = (index: number): void => {
    dropped[index] = 1;
    changed = true;
  };
  /** ops[i] written as another op (a later state folded into its place). */
  const replaced = new Map<number, Op>();
  const opAt = (index: number): Op => replaced.get(index) ?? ops[index]!;
  const cancelledMessages = new Set<number>();
  /** clientId → messageId → [index of outgoingAdded, indices of its later changes or re-additions…]. */
  const openOutgoing = new Map<string, Map<number, number[]>>();
  /** clientId → packetId → incomingAdded (its index, the message it now holds). */
  const openIncoming = new Map<string, Map<number, { index: number; messageId: number }>>();
  /** Messages whose content is recorded in this batch (before the op at hand). */
  const newContent = new Set<number>();
  for (let index = 0; index < ops.length; index++) {
    const op = ops[index]!;
    switch (op.kind) {
      case 'messageAdded':
        newContent.add(op.message.messageId);
        break;
      case 'outgoingAdded': {
        let byMessage = openOutgoing.get(op.clientId);
        if (byMessage === undefined) {
          byMessage = new Map();
          openOutgoing.set(op.clientId, byMessage);
        }
        const open = byMessage.get(op.messageId);
        // Added again in the batch: keeps the first one's place, like a change (an upsert).
        if (open === undefined) byMessage.set(op.messageId, [index]);
        else open.push(index);
        break;
      }
      case 'outgoingChanged':
        openOutgoing.get(op.clientId)?.get(op.messageId)?.push(index);
        break;
      case 'outgoingRemoved': {
        const byMessage = openOutgoing.get(op.clientId);
        const open = byMessage?.get(op.messageId);
        if (open === undefined) break;
        for (const i of open) drop(i);
        // The removal stays if the row may have existed before the batch (an addition again of a
        // delivery). It cannot if the content is new in this batch: content is recorded once, before
        // anything refers to it [Store contract] — the common case, which then writes nothing.
        if (newContent.has(op.messageId)) drop(index);
        cancelledMessages.add(op.messageId);
        byMessage!.delete(op.messageId);
        break;
      }
      case 'incomingAdded': {
        let byPacket = openIncoming.get(op.clientId);
        if (byPacket === undefined) {
          byPacket = new Map();
          openIncoming.set(op.clientId, byPacket);
        }
        const open = byPacket.get(op.packetId);
        if (open === undefined) {
          byPacket.set(op.packetId, { index, messageId: op.messageId });
        } else {
          // The packet id taken again in the batch: one row, in the first one's place.
          cancelledMessages.add(open.messageId);
          replaced.set(open.index, op);
          drop(index);
          open.messageId = op.messageId;
        }
        break;
      }
      case 'incomingRemoved': {
        const byPacket = openIncoming.get(op.clientId);
        const open = byPacket?.get(op.packetId);
        if (open === undefined) break;
        // The removal stays: the packet id may have been held before the batch (a replacement).
        drop(open.index);
        cancelledMessages.add(open.messageId);
        byPacket!.delete(op.packetId);
        break;
      }
      case 'sessionRemoved':
      case 'sessionReplaced': {
        const clientId = op.kind === 'sessionRemoved' ? op.clientId : op.snapshot.clientId;
        openOutgoing.delete(clientId);
        openIncoming.delete(clientId);
        break;
      }
      default:
    }
  }
  // Deliveries still open: their changes fold into the addition (same row, same seq, last state).
  for (const byMessage of openOutgoing.values()) {
    for (const indices of byMessage.values()) {
      if (indices.length < 2) continue;
      const first = ops[indices[0]!] as Extract<Op, { kind: 'outgoingAdded' }>;
      const last = ops[indices[indices.length - 1]!] as Extract<
        Op,
        { kind: 'outgoingChanged' | 'outgoingAdded' }
      >;
      replaced.set(indices[0]!, { ...first, delivery: last.delivery });
      for (let i = 1; i < indices.length; i++) drop(indices[i]!);
    }
  }
  if (!changed) return ops;
  // A message's content stays if anything left in the batch may refer to it.
  const stillReferenced = new Set<number>();
  if (cancelledMessages.size > 0) {
    for (let index = 0; index < ops.length; index++) {
      if (dropped[index] === 1) continue;
      const op = opAt(index);
      if (op.kind === 'outgoingAdded' || op.kind === 'outgoingChanged' || op.kind === 'incomingAdded') {
        stillReferenced.add(op.messageId);
      } else if (op.kind === 'retainedSet') {
        stillReferenced.add(op.message.messageId);
      } else if (op.kind === 'sessionReplaced') {
        for (const m of [...op.snapshot.incomingMessages, ...op.snapshot.outgoingMessages])
          stillReferenced.add(m.messageId);
      }
    }
  }
  const result: Op[] = [];
  for (let index = 0; index < ops.length; index++) {
    if (dropped[index] === 1) continue;
    const op = opAt(index);
    if (op.kind === 'messageAdded') {
      const id = op.message.messageId;
      if (cancelledMessages.has(id) && !stillReferenced.has(id)) continue;
    }
    result.push(op);
  }
  return result;
}
