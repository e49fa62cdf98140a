import { fdatasync, fstatSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Broker, ManualClock } from '@broker/core';
import type { PersistenceError } from '@broker/persistence';
import {
  compactBatch,
  SQLITE_APPLICATION_ID,
  SQLITE_FORMAT_VERSION,
  SqliteStore,
} from '@broker/persistence/sqlite';
import { MiniClient } from '@broker/persistence/testing';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { againstMemoryStore } from './helpers/against-memory.js';
import { storeFiles } from './helpers/store-files.js';
import { eio, heldSyncs, track } from './helpers/syncs.js';

const files = storeFiles('SqliteStore', (options: Parameters<typeof SqliteStore.open>[0]) =>
  SqliteStore.open(options),
);
const { open, openError } = files;

/** A second, independent connection to the store's file (what an operator's sqlite3 would see). */
function inspect<T>(fn: (db: Database.Database) => T, fileName = 'broker.sqlite'): T {
  const db = new Database(join(files.dataDir, fileName));
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

const count = (table: string) =>
  inspect((db) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n);

const settle = async () => {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
};

describe('SqliteStore file', () => {
  it('creates the directory and a WAL-mode file marked with our application id and format version', async () => {
    files.dataDir = join(files.dataDir, 'nested', 'dir');
    const store = open();
    await store.close();
    inspect((db) => {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBe(SQLITE_FORMAT_VERSION);
      expect(db.pragma('application_id', { simple: true })).toBe(SQLITE_APPLICATION_ID);
    });
  });

  it('honours fileName', async () => {
    const store = open({ fileName: 'other.db' });
    store.sessionCreated('x');
    await store.close();
    expect(inspect((db) => db.prepare('SELECT client_id FROM sessions').all(), 'other.db')).toEqual([
      { client_id: 'x' },
    ]);
  });

  it('PERSIST_CORRUPT_FILE naming the file for a file that is not a SQLite database, leaving it untouched', () => {
    const file = join(files.dataDir, 'broker.sqlite');
    const junk = 'this is not a database, it is a text file that happens to be here\n'.repeat(100);
    writeFileSync(file, junk);
    const error = openError();
    expect(error.code).toBe('PERSIST_CORRUPT_FILE');
    expect(error.file).toBe(file);
    expect(error.message).toContain(file);
    expect(readFileSync(file, 'utf8')).toBe(junk);
  });

  it('PERSIST_CORRUPT_FILE for a SQLite database that is not ours (no silent reset)', () => {
    inspect((db) => db.exec("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('alice')"));
    const error = openError();
    expect(error.code).toBe('PERSIST_CORRUPT_FILE');
    expect(error.message).toMatch(/not a @broker\/persistence store/);
    expect(inspect((db) => db.prepare('SELECT name FROM users').all())).toEqual([{ name: 'alice' }]);
  });

  it('PERSIST_CORRUPT_FILE for our file with a table missing', async () => {
    await open().close();
    inspect((db) => db.exec('DROP TABLE retained'));
    const error = openError();
    expect(error.code).toBe('PERSIST_CORRUPT_FILE');
    expect(error.message).toMatch(/lacks the table\(s\) retained/);
  });

  it('PERSIST_SCHEMA_UNSUPPORTED naming the file for a newer format version', async () => {
    await open().close();
    inspect((db) => db.pragma(`user_version = ${SQLITE_FORMAT_VERSION + 1}`));
    const error = openError();
    expect(error.code).toBe('PERSIST_SCHEMA_UNSUPPORTED');
    expect(error.file).toBe(join(files.dataDir, 'broker.sqlite'));
    expect(error.message).toMatch(/format version 2/);
  });

  it('PERSIST_OPEN_FAILED when the directory cannot be created', () => {
    writeFileSync(join(files.dataDir, 'a-file'), '');
    const error = openError({ dataDir: join(files.dataDir, 'a-file', 'sub') });
    expect(error.code).toBe('PERSIST_OPEN_FAILED');
  });
});

describe('SqliteStore rows', () => {
  it('stores a fanned-out message once and drops it when its last reference goes', async () => {
    const store = open();
    const broker = new Broker({ store, clock: new ManualClock(0) });
    await broker.restore();
    for (const id of ['a', 'b', 'c'])
      new MiniClient(broker, id, { cleanSession: false }).subscribe('fan', 1).drop();
    new MiniClient(broker, 'p').publish('fan', 'x', 1, { packetId: 1 });
    await store.flush();
    expect([count('messages'), count('outgoing')]).toEqual([1, 3]);
    // Two receive and acknowledge it; the row stays for the third.
    for (const id of ['a', 'b']) {
      const c = new MiniClient(broker, id, { cleanSession: false });
      const [m] = c.takePublishes();
      c.puback(m!.packetId!);
      c.drop();
    }
    await store.flush();
    expect([count('messages'), count('outgoing')]).toEqual([1, 1]);
    // The third session is discarded [MQTT-3.1.2-6]: nothing refers to the message any more.
    new MiniClient(broker, 'c', { cleanSession: true }).disconnect();
    await store.flush();
    expect([count('messages'), count('outgoing'), count('sessions')]).toEqual([0, 0, 2]);
    await broker.close();
  });

  it('writes nothing for a delivery added and completed within one commit (an online persistent subscriber)', async () => {
    const store = open();
    const broker = new Broker({ store, clock: new ManualClock(0) });
    await broker.restore();
    const sub = new MiniClient(broker, 'online', { cleanSession: false });
    sub.subscribe('live', 1);
    await store.flush();
    const commitsBefore = store.commits;
    // Delivered and acknowledged in the same turn: added, changed and removed before the commit.
    new MiniClient(broker, 'p').publish('live', 'x', 1, { packetId: 1 });
    const [m] = sub.takePublishes();
    sub.puback(m!.packetId!);
    await store.flush();
    expect(store.commits).toBe(commitsBefore + 1);
    expect([count('messages'), count('outgoing')]).toEqual([0, 0]);
    // A delivery still open at the commit is written as usual.
    new MiniClient(broker, 'p2').publish('live', 'y', 1, { packetId: 1 });
    await store.flush();
    expect([count('messages'), count('outgoing')]).toEqual([1, 1]);
    await broker.close();
    const reopened = open();
    expect(reopened.load().sessions[0]!.outgoingMessages.map((o) => o.topic)).toEqual(['live']);
  });

  it('keeps a retained message as one row shared with the sessions it went to', async () => {
    const store = open();
    const broker = new Broker({ store, clock: new ManualClock(0) });
    await broker.restore();
    new MiniClient(broker, 'sub', { cleanSession: false }).subscribe('r', 1).drop();
    const pub = new MiniClient(broker, 'p');
    pub.publish('r', 'retained', 1, { packetId: 1, retain: true });
    await store.flush();
    expect([count('messages'), count('retained'), count('outgoing')]).toEqual([1, 1, 1]);
    pub.publish('r', '', 0, { retain: true }); // cleared; the queued delivery still refers to it
    await store.flush();
    expect([count('messages'), count('retained')]).toEqual([1, 0]);
    const sub = new MiniClient(broker, 'sub', { cleanSession: false });
    sub.puback(sub.takePublishes()[0]!.packetId!);
    await store.flush();
    expect(count('messages')).toBe(0);
    await broker.close();
  });

  it('stores an empty payload', async () => {
    const store = open();
    store.sessionCreated('s');
    store.messageAdded({ messageId: 1, topic: 't', payload: new Uint8Array(0), qos: 1, retain: false });
    store.outgoingAdded('s', 1, { qos: 1, retain: false, packetId: -1, state: 1, dup: false });
    await store.close();
    const [session] = open().load().sessions;
    expect(session!.outgoingMessages[0]!.payload).toEqual(new Uint8Array(0));
  });
});

describe('SqliteStore commits', () => {
  it('groups everything recorded in one event-loop turn into one transaction', async () => {
    const store = open();
    const before = store.commits;
    store.sessionCreated('s');
    const first = store.flush();
    for (let i = 1; i <= 200; i++) {
      store.messageAdded({
        messageId: i,
        topic: 't',
        payload: new Uint8Array([i & 0xff]),
        qos: 1,
        retain: false,
      });
      store.outgoingAdded('s', i, { qos: 1, retain: false, packetId: -1, state: 1, dup: false });
      expect(store.flush()).toBe(first);
    }
    expect(count('outgoing')).toBe(0); // nothing written yet: records only append to the batch
    await first;
    expect(store.commits - before).toBe(1);
    expect(count('outgoing')).toBe(200);
  });

  it('writes long runs of deliveries and removals (several multi-row statements) in order, for interleaved sessions', async () => {
    const store = open();
    const n = 150; // more than two statements' worth of rows
    for (let id = 1; id <= n; id++) {
      store.messageAdded({
        messageId: id,
        topic: `t/${id}`,
        payload: new Uint8Array([id & 0xff]),
        qos: 1,
        retain: false,
      });
      for (const client of ['x', 'y'])
        store.outgoingAdded(client, id, { qos: 1, retain: false, packetId: id, state: 2, dup: id % 2 === 0 });
    }
    await store.flush();
    for (let id = 1; id <= n; id += 2) store.outgoingRemoved('x', id);
    for (let id = 1; id <= n; id += 3) store.outgoingRemoved('y', id);
    await store.close();
    const sessions = open().load().sessions;
    const ids = (clientId: string) =>
      sessions.find((s) => s.clientId === clientId)!.outgoingMessages.map((m) => m.messageId);
    const all = Array.from({ length: n }, (_, i) => i + 1);
    expect(ids('x')).toEqual(all.filter((id) => id % 2 === 0));
    expect(ids('y')).toEqual(all.filter((id) => id % 3 !== 1));
    const m = sessions.find((s) => s.clientId === 'y')!.outgoingMessages.at(-1)!;
    expect([m.topic, [...m.payload], m.packetId, m.dup]).toEqual([`t/${n}`, [n & 0xff], n, true]);
    // Content only 'y' still refers to stays; content neither refers to is gone.
    expect(count('messages')).toBe(all.filter((id) => id % 2 === 0 || id % 3 !== 1).length);
  });

  it('with commitIntervalMs, groups the records of several turns', async () => {
    const store = open({ commitIntervalMs: 30 });
    store.sessionCreated('a');
    const first = store.flush();
    await new Promise<void>((r) => setImmediate(r));
    store.sessionCreated('b');
    expect(store.flush()).toBe(first);
    await first;
    expect(store.commits).toBe(1);
    expect(count('sessions')).toBe(2);
  });

  it('close() commits what is pending; flush after close rejects with PERSIST_CLOSED', async () => {
    const store = open();
    store.sessionCreated('pending');
    await store.close();
    await expect(store.flush()).rejects.toMatchObject({ code: 'PERSIST_CLOSED' });
    expect(() => store.load()).toThrow(expect.objectContaining({ code: 'PERSIST_CLOSED' }));
    expect(
      open()
        .load()
        .sessions.map((s) => s.clientId),
    ).toEqual(['pending']);
  });

  it('a failed commit rejects that flush and every later one with PERSIST_WRITE_FAILED, and reports once', async () => {
    const errors: PersistenceError[] = [];
    const store = open({ onError: (e) => errors.push(e) });
    store.sessionCreated('s');
    await store.flush();
    // Another connection makes every insert into outgoing fail, as a full disk would.
    inspect((db) =>
      db.exec(
        `CREATE TRIGGER fail BEFORE INSERT ON outgoing BEGIN SELECT RAISE(ABORT, 'simulated disk full'); END`,
      ),
    );
    store.messageAdded({ messageId: 1, topic: 't', payload: new Uint8Array([1]), qos: 1, retain: false });
    store.outgoingAdded('s', 1, { qos: 1, retain: false, packetId: -1, state: 1, dup: false });
    const failed = store.flush();
    await expect(failed).rejects.toMatchObject({ code: 'PERSIST_WRITE_FAILED' });
    await expect(failed).rejects.toThrow(/simulated disk full/);
    // Records keep not throwing; flushes keep failing.
    store.sessionCreated('later');
    await expect(store.flush()).rejects.toMatchObject({ code: 'PERSIST_WRITE_FAILED' });
    expect(errors.map((e) => e.code)).toEqual(['PERSIST_WRITE_FAILED']);
    expect(store.failed?.code).toBe('PERSIST_WRITE_FAILED');
    // The failed batch was rolled back as a whole.
    expect(count('messages')).toBe(0);
  });

  it('through a broker: a failed commit means no PUBACK and the publisher is closed (CORE_STORE_FAILED)', async () => {
    const store = open();
    const broker = new Broker({ store, clock: new ManualClock(0) });
    const codes: string[] = [];
    broker.on('error', (e) => codes.push(e.code));
    await broker.restore();
    new MiniClient(broker, 'sub', { cleanSession: false }).subscribe('t', 1).drop();
    await store.flush();
    inspect((db) =>
      db.exec(
        `CREATE TRIGGER fail BEFORE INSERT ON outgoing BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END`,
      ),
    );
    const pub = new MiniClient(broker, 'pub');
    pub.publish('t', 'not stored', 1, { packetId: 1 });
    await settle();
    expect(pub.take()).toEqual([]);
    expect(pub.peer.isClosed).toBe(true);
    expect(codes).toContain('CORE_STORE_FAILED');
  });
});

describe('batch compaction', () => {
  const message = (messageId: number) => ({
    kind: 'messageAdded',
    message: { messageId, topic: 't', payload: Buffer.alloc(0), qos: 1, retain: 0 },
  });
  const delivery = { qos: 1, retain: 0, packetId: 1, state: 2, dup: 0 };
  const kinds = (ops: readonly unknown[]) => ops.map((op) => (op as { kind: string }).kind);

  it('cancels a delivery added, changed and removed in the batch, and its content new in the batch', () => {
    const ops = [
      message(7),
      { kind: 'outgoingAdded', clientId: 'a', messageId: 7, delivery },
      { kind: 'outgoingChanged', clientId: 'a', messageId: 7, delivery },
      { kind: 'outgoingRemoved', clientId: 'a', messageId: 7 },
    ];
    expect(compactBatch(ops as never)).toEqual([]);
  });

  it('keeps the removal of a delivery added and removed in the batch when its content is older (the row may predate the batch)', () => {
    const ops = [
      { kind: 'outgoingAdded', clientId: 'a', messageId: 7, delivery },
      { kind: 'outgoingRemoved', clientId: 'a', messageId: 7 },
    ];
    expect(compactBatch(ops as never)).toEqual([ops[1]]);
  });

  it('keeps the content while another delivery in the batch refers to it', () => {
    const ops = [
      message(7),
      { kind: 'outgoingAdded', clientId: 'a', messageId: 7, delivery },
      { kind: 'outgoingAdded', clientId: 'b', messageId: 7, delivery },
      { kind: 'outgoingRemoved', clientId: 'a', messageId: 7 },
    ];
    expect(kinds(compactBatch(ops as never))).toEqual(['messageAdded', 'outgoingAdded']);
  });

  it('keeps a removal whose addition was committed earlier, and never cancels across a session removal', () => {
    const earlier = [{ kind: 'outgoingRemoved', clientId: 'a', messageId: 3 }];
    expect(kinds(compactBatch(earlier as never))).toEqual(['outgoingRemoved']);
    const acrossRemoval = [
      { kind: 'outgoingAdded', clientId: 'a', messageId: 3, delivery },
      { kind: 'sessionRemoved', clientId: 'a' },
      { kind: 'outgoingRemoved', clientId: 'a', messageId: 3 },
    ];
    expect(kinds(compactBatch(acrossRemoval as never))).toEqual([
      'outgoingAdded',
      'sessionRemoved',
      'outgoingRemoved',
    ]);
  });

  it('folds the changes of a delivery still open at the end of the batch into its addition (last state), keeping the order', () => {
    const sent = { ...delivery, state: 3 };
    const pubrecReceived = { ...delivery, state: 4 };
    const ops = [
      message(7),
      { kind: 'outgoingAdded', clientId: 'a', messageId: 7, delivery: { ...delivery, state: 1 } },
      message(8),
      { kind: 'outgoingAdded', clientId: 'a', messageId: 8, delivery: { ...delivery, state: 1 } },
      { kind: 'outgoingChanged', clientId: 'a', messageId: 7, delivery: sent },
      { kind: 'outgoingChanged', clientId: 'a', messageId: 7, delivery: pubrecReceived },
      { kind: 'outgoingChanged', clientId: 'b', messageId: 9, delivery: sent }, // added in an earlier batch
    ];
    expect(compactBatch(ops as never)).toEqual([
      ops[0],
      { kind: 'outgoingAdded', clientId: 'a', messageId: 7, delivery: pubrecReceived },
      ops[2],
      ops[3],
      ops[6],
    ]);
  });

  it('drops an incoming QoS 2 record held and released within the batch, keeping only the removal', () => {
    const ops = [
      message(9),
      { kind: 'incomingAdded', clientId: 'a', messageId: 9, packetId: 4, state: 8, dup: 0 },
      { kind: 'incomingRemoved', clientId: 'a', packetId: 4 },
    ];
    expect(compactBatch(ops as never)).toEqual([ops[2]]);
  });

  it('a delivery re-added, or a packet id taken again, and removed in a later batch leaves no row and no content (found by the property test below)', async () => {
    const store = open();
    const content = (messageId: number) => ({
      messageId,
      topic: 't',
      payload: new Uint8Array([messageId]),
      qos: 2 as const,
      retain: false,
    });
    const d = { qos: 2 as const, retain: false, packetId: 5, state: 3 as const, dup: false };
    store.sessionCreated('a');
    store.messageAdded(content(1));
    store.outgoingAdded('a', 1, d);
    store.messageAdded(content(2));
    store.incomingAdded('a', 2, 4, 8, false);
    await store.flush();
    store.outgoingAdded('a', 1, { ...d, dup: true }); // again: an upsert of the row committed above
    store.outgoingRemoved('a', 1);
    store.messageAdded(content(3));
    store.incomingAdded('a', 3, 4, 8, false); // packet id 4 now holds message 3
    store.incomingRemoved('a', 4);
    await store.close();
    const [session] = open().load().sessions;
    expect([session!.outgoingMessages, session!.incomingMessages]).toEqual([[], []]);
    expect(count('messages')).toBe(0);
  });
});

describe('SqliteStore durability (pipelined group commit)', () => {
  it('syncs the -wal file SQLite writes (the same inode, still linked) across checkpoints that restart it', async () => {
    const syncs = heldSyncs();
    const store = open({ syncFile: syncs.syncFile });
    expect(store.syncs).toBe(0);
    store.sessionCreated('s');
    // Enough content to pass the autocheckpoint threshold (1000 pages) several times: SQLite then
    // restarts the WAL from its start; it must stay the file our descriptor points at.
    const payload = new Uint8Array(16 * 1024);
    for (let round = 1; round <= 4; round++) {
      for (let i = 0; i < 100; i++) {
        const id = round * 1000 + i;
        store.messageAdded({ messageId: id, topic: 't', payload, qos: 1, retain: false });
        store.outgoingAdded('s', id, { qos: 1, retain: false, packetId: -1, state: 1, dup: false });
      }
      const flushed = store.flush();
      await syncs.started(round);
      const { fd, release } = syncs.calls[round - 1]!;
      expect(fstatSync(fd).ino).toBe(statSync(join(files.dataDir, 'broker.sqlite-wal')).ino);
      expect(fstatSync(fd).nlink).toBe(1);
      release();
      await flushed;
    }
    expect(store.syncs).toBe(4);
    expect(count('outgoing')).toBe(400);
    // A checkpoint did run (the main file only grows by one) and the WAL was reused, not appended to.
    expect(statSync(join(files.dataDir, 'broker.sqlite')).size).toBeGreaterThan(4 * 1024 * 1024);
    expect(statSync(join(files.dataDir, 'broker.sqlite-wal')).size).toBeLessThan(400 * 16 * 1024);
  });

  it('starts the sync only after the commit is written: in the sync, another connection sees the batch', async () => {
    let seen: number | undefined;
    const store = open({
      syncFile: (fd, callback) => {
        seen = count('sessions');
        fdatasync(fd, callback);
      },
    });
    store.sessionCreated('a');
    store.sessionCreated('b');
    await store.flush();
    expect(seen).toBe(2);
    expect(store.syncs).toBe(1);
  });

  it('a flush recorded while a sync is in flight resolves only after the next sync, which covers its batch', async () => {
    const syncs = heldSyncs();
    const store = open({ syncFile: syncs.syncFile });
    store.sessionCreated('a');
    const first = track(store.flush());
    await syncs.started(1);
    // The first batch is committed and its sync in flight; the next records wait for it.
    store.sessionCreated('b');
    const secondPromise = store.flush();
    const second = track(secondPromise);
    store.sessionCreated('c');
    expect(store.flush()).toBe(secondPromise);
    await settle();
    expect([first.state, second.state, store.commits, count('sessions')]).toEqual([
      'pending',
      'pending',
      1,
      1,
    ]);
    syncs.calls[0]!.release();
    await syncs.started(2); // the completion commits b and c in one transaction and syncs them
    expect([first.state, second.state, store.commits, count('sessions')]).toEqual([
      'resolved',
      'pending',
      2,
      3,
    ]);
    await settle();
    expect(second.state).toBe('pending');
    syncs.calls[1]!.release();
    await secondPromise;
    expect(store.syncs).toBe(2);
    expect(syncs.counts.maxInFlight).toBe(1);
  });

  it('a failed sync rejects the flushes it covers and every later one with PERSIST_WRITE_FAILED, and reports once', async () => {
    const syncs = heldSyncs();
    const errors: PersistenceError[] = [];
    const store = open({ syncFile: syncs.syncFile, onError: (e) => errors.push(e) });
    store.sessionCreated('a');
    const first = store.flush();
    await syncs.started(1);
    store.sessionCreated('b');
    const waitingBehind = store.flush();
    syncs.calls[0]!.release(eio());
    await expect(first).rejects.toMatchObject({ code: 'PERSIST_WRITE_FAILED' });
    await expect(first).rejects.toThrow(/fsync of the WAL failed.*EIO/);
    await expect(waitingBehind).rejects.toMatchObject({ code: 'PERSIST_WRITE_FAILED' });
    store.sessionCreated('later');
    await expect(store.flush()).rejects.toMatchObject({ code: 'PERSIST_WRITE_FAILED' });
    expect(errors.map((e) => e.code)).toEqual(['PERSIST_WRITE_FAILED']);
    expect(store.failed?.code).toBe('PERSIST_WRITE_FAILED');
    expect(syncs.calls).toHaveLength(1); // no retry after a failed fsync
  });

  it('through a broker: a failed sync means no PUBACK and the publisher is closed (CORE_STORE_FAILED)', async () => {
    let failSyncs = false;
    const store = open({
      syncFile: (fd, callback) => (failSyncs ? callback(eio()) : fdatasync(fd, callback)),
    });
    const broker = new Broker({ store, clock: new ManualClock(0) });
    const codes: string[] = [];
    broker.on('error', (e) => codes.push(e.code));
    await broker.restore();
    new MiniClient(broker, 'sub', { cleanSession: false }).subscribe('t', 1).drop();
    await store.flush();
    failSyncs = true;
    const pub = new MiniClient(broker, 'pub');
    pub.publish('t', 'committed but not synced', 1, { packetId: 1 });
    await store.flush().catch(() => {});
    await settle();
    expect(pub.take()).toEqual([]);
    expect(pub.peer.isClosed).toBe(true);
    expect(codes).toContain('CORE_STORE_FAILED');
  });

  it('close() waits for the sync in flight, then commits and syncs what is pending, then closes', async () => {
    const syncs = heldSyncs();
    const store = open({ syncFile: syncs.syncFile });
    store.sessionCreated('a');
    const first = track(store.flush());
    await syncs.started(1);
    store.sessionCreated('b');
    const pendingFlush = track(store.flush());
    const closedPromise = store.close();
    const closed = track(closedPromise);
    await settle();
    expect([first.state, pendingFlush.state, closed.state]).toEqual(['pending', 'pending', 'pending']);
    syncs.calls[0]!.release();
    await syncs.started(2); // the final sync, covering b
    expect([first.state, pendingFlush.state, closed.state]).toEqual(['resolved', 'pending', 'pending']);
    syncs.calls[1]!.release();
    await closedPromise;
    expect(pendingFlush.state).toBe('resolved');
    expect(store.syncs).toBe(2);
    expect(syncs.counts.maxInFlight).toBe(1); // the final sync did not start before the first completed
    expect(
      open()
        .load()
        .sessions.map((s) => s.clientId),
    ).toEqual(['a', 'b']);
  });

  it('close() rejects with PERSIST_WRITE_FAILED when the final sync fails', async () => {
    const store = open({ syncFile: (_fd, callback) => callback(eio()) });
    store.sessionCreated('a');
    await expect(store.close()).rejects.toMatchObject({ code: 'PERSIST_WRITE_FAILED' });
  });

  it("durability 'os' resolves flush after the commit without any sync of the WAL", async () => {
    const store = open({
      durability: 'os',
      syncFile: () => {
        throw new Error('no sync expected');
      },
    });
    store.sessionCreated('a');
    await store.flush();
    await store.close();
    expect(store.syncs).toBe(0);
    expect(count('sessions')).toBe(1);
  });
});

againstMemoryStore('SqliteStore', {
  open: (dir) => SqliteStore.open({ dataDir: dir, durability: 'os' }),
  // Exactly the content something refers to is kept (the rows of the messages table).
  storedMessageIds: (dir) => {
    const db = new Database(join(dir, 'broker.sqlite'));
    try {
      return (db.prepare('SELECT message_id FROM messages').all() as Array<{ message_id: number }>).map(
        (row) => row.message_id,
      );
    } finally {
      db.close();
    }
  },
});
