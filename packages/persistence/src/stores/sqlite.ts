import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type {
  MessageSnapshot,
  MessageState,
  SessionSnapshot,
  StoreContents,
  StoredMessage,
} from '@broker/core';
import Database from 'better-sqlite3';
import { PersistenceError } from '../errors.js';
import {
  type GroupCommitOptions,
  GroupCommitStore,
  PERSISTENCE_ERROR_CHANNEL,
  syncDirectory,
} from './group-commit.js';
import type { Op, RowMessage } from './ops.js';

export { isPersistenceError, PersistenceError, type PersistenceErrorCode } from '../errors.js';
/** @internal Exported for its tests. */
export { compactBatch } from './ops.js';

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

/**
 * Options of {@link SqliteStore.open}; those of the group commit ({@link GroupCommitOptions}:
 * `commitIntervalMs`, `durability`, `onError`) too. A commit is one transaction; with `durability:
 * 'fsync'` its WAL frames are fsync'ed before its flush resolves.
 */
export interface SqliteStoreOptions extends GroupCommitOptions {
  /** Directory of the database; created if missing. */
  dataDir: string;
  /** File name inside `dataDir`. Default `'broker.sqlite'` (plus SQLite's `-wal` and `-shm` files). */
  fileName?: string;
  /** How long a commit waits for a lock held by another connection, in milliseconds. Default 5000. */
  busyTimeoutMs?: number;
}

/** Name of the `node:diagnostics_channel` channel on which a failed commit is published. */
export const SQLITE_ERROR_CHANNEL = PERSISTENCE_ERROR_CHANNEL;

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

/**
 * A durable {@link Store} in one SQLite file (better-sqlite3), for persistent sessions (clean
 * session 0), their subscriptions, in-flight and queued messages, and retained messages.
 *
 * Record methods only append to an in-memory batch. Commits are pipelined group commits
 * ({@link GroupCommitStore}):
 * - the batch is written in ONE transaction on the next macrotask (or after `commitIntervalMs`), in WAL
 *   mode with `synchronous = NORMAL`: the commit only writes the WAL through the OS page cache, it does
 *   not wait for the disk (the main thread never blocks on a per-commit fsync);
 * - then the store makes it durable with an asynchronous `fdatasync` (libuv thread pool) of its own file
 *   descriptor on the `-wal` file, and resolves the batch's `flush()` promise when that completes;
 * - at most one such sync is in flight. Records and flushes that arrive meanwhile form the next batch,
 *   committed and synced as one when the sync in flight completes: under load, batches grow by
 *   themselves (and more of a batch cancels out, see `compactBatch`).
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
export class SqliteStore extends GroupCommitStore {
  private readonly db: Database.Database;
  /** Our descriptor on the `-wal` file, only for fdatasync (never written through). */
  private walFd: number | undefined = undefined;
  /** Sessions known to have a row (so child rows need no INSERT OR IGNORE of their session). */
  private readonly knownSessions = new Set<string>();
  private nextSeq = 1;
  private readonly statements: ReturnType<typeof prepare>;
  private readonly applyBatch: (ops: readonly Op[]) => void;

  private constructor(db: Database.Database, file: string, options: SqliteStoreOptions) {
    super(file, 'fsync of the WAL', options);
    this.db = db;
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
    this.commitPending();
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

  // Group commit: one transaction per batch, the WAL's fsync ------------------------------------------

  protected writeBatch(ops: readonly Op[]): void {
    this.applyBatch(ops);
  }

  protected get syncFd(): number {
    return this.walFd!;
  }

  protected closeFiles(): void {
    if (this.walFd !== undefined) closeSync(this.walFd);
    this.walFd = undefined;
    this.db.close();
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
