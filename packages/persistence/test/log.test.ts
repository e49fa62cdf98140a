import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, fdatasync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StoreContents, StoredDelivery, StoredMessage } from '@broker/core';
import type { PersistenceError } from '@broker/persistence';
import { LOG_FORMAT_VERSION, LOG_MAGIC, LogStore, type LogStoreOptions } from '@broker/persistence/log';
import { describe, expect, it } from 'vitest';
import { crc32, crc32Portable } from '../src/stores/log-format.js';
import { startTimeOf } from '../src/stores/log-lock.js';
import { againstMemoryStore } from './helpers/against-memory.js';
import { storeFiles } from './helpers/store-files.js';
import { eio, heldSyncs, track } from './helpers/syncs.js';

const files = storeFiles('LogStore', (options: LogStoreOptions) => LogStore.open(options));
const { open, openError } = files;

const logFile = () => join(files.dataDir, 'broker.log');

const message = (
  messageId: number,
  payload: Uint8Array = new Uint8Array([messageId & 0xff]),
): StoredMessage => ({
  messageId,
  topic: `t/${messageId}`,
  payload,
  qos: 1,
  retain: false,
});
const queued: StoredDelivery = { qos: 1, retain: false, packetId: -1, state: 1, dup: false };

/** One commit: a message queued for session `s`. */
async function queue(
  store: LogStore,
  messageId: number,
  payload?: Uint8Array<ArrayBufferLike>,
): Promise<void> {
  store.messageAdded(message(messageId, payload));
  store.outgoingAdded('s', messageId, queued);
  await store.flush();
}

const ids = (contents: StoreContents) =>
  contents.sessions.flatMap((s) => s.outgoingMessages.map((m) => m.messageId));

describe('LogStore file', () => {
  it('creates the directory and a log starting with its magic and format version, and honours fileName', async () => {
    files.dataDir = join(files.dataDir, 'nested', 'dir');
    await open().close();
    const bytes = readFileSync(logFile());
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('MQTBLOG\n');
    expect(bytes.readUInt32LE(8)).toBe(LOG_FORMAT_VERSION);
    expect(bytes.length).toBe(12);
    const other = open({ fileName: 'other.log' });
    other.sessionCreated('x');
    await other.close();
    expect(statSync(join(files.dataDir, 'other.log')).size).toBeGreaterThan(12);
    expect(
      open({ fileName: 'other.log' })
        .load()
        .sessions.map((s) => s.clientId),
    ).toEqual(['x']);
  });

  it('appends one frame per commit, and stores an empty payload and long UTF-8 strings', async () => {
    const store = open();
    store.sessionCreated('s');
    await store.flush();
    const before = store.fileBytes;
    const topic = `ü/${'x'.repeat(300)}/€`;
    store.messageAdded({ ...message(1, new Uint8Array(0)), topic });
    store.outgoingAdded('s', 1, queued);
    await store.flush();
    expect(store.commits).toBe(2);
    expect(statSync(logFile()).size).toBe(store.fileBytes);
    expect(store.fileBytes).toBeGreaterThan(before + 8 + topic.length);
    await store.close();
    const [session] = open().load().sessions;
    expect(session!.outgoingMessages.map((m) => [m.topic, m.payload])).toEqual([[topic, new Uint8Array(0)]]);
  });

  it('PERSIST_CORRUPT_FILE naming the file for a file that is not a log, leaving it untouched', () => {
    const junk = 'this is not a log, it is a text file that happens to be here\n'.repeat(100);
    writeFileSync(logFile(), junk);
    const error = openError();
    expect(error.code).toBe('PERSIST_CORRUPT_FILE');
    expect(error.file).toBe(logFile());
    expect(error.message).toContain(logFile());
    expect(readFileSync(logFile(), 'utf8')).toBe(junk);
    writeFileSync(logFile(), 'MQTB');
    expect(openError().code).toBe('PERSIST_CORRUPT_FILE');
  });

  it('PERSIST_SCHEMA_UNSUPPORTED naming the file for a newer format version', async () => {
    await open().close();
    const bytes = readFileSync(logFile());
    bytes.writeUInt32LE(LOG_FORMAT_VERSION + 1, 8);
    writeFileSync(logFile(), bytes);
    const error = openError();
    expect(error.code).toBe('PERSIST_SCHEMA_UNSUPPORTED');
    expect(error.file).toBe(logFile());
    expect(error.message).toMatch(/format version 2/);
  });

  it('PERSIST_OPEN_FAILED when the directory cannot be created', () => {
    writeFileSync(join(files.dataDir, 'a-file'), '');
    expect(openError({ dataDir: join(files.dataDir, 'a-file', 'sub') }).code).toBe('PERSIST_OPEN_FAILED');
  });

  it('removes a leftover .compact (a compaction a crash interrupted) at open', async () => {
    const store = open();
    await queue(store, 1);
    await store.close();
    writeFileSync(`${logFile()}.compact`, Buffer.concat([LOG_MAGIC, Buffer.from([1, 0, 0, 0, 9, 9])]));
    expect(ids(open().load())).toEqual([1]);
    expect(existsSync(`${logFile()}.compact`)).toBe(false);
  });

  it('the CRC-32 is zlib’s, with or without zlib.crc32', () => {
    const data = Buffer.from('123456789');
    expect(crc32(data)).toBe(0xcbf43926);
    expect(crc32Portable(data)).toBe(0xcbf43926);
  });
});

describe('LogStore recovery', () => {
  /** A log of three commits (messages 1, 2, 3); returns where the last frame starts and ends. */
  async function threeCommits(): Promise<{ lastStart: number; end: number }> {
    const store = open();
    await queue(store, 1);
    await queue(store, 2);
    const lastStart = store.fileBytes;
    await queue(store, 3, new Uint8Array(40).fill(7));
    const end = store.fileBytes;
    await store.close();
    return { lastStart, end };
  }

  it('a torn last frame (cut at every byte) is truncated away and the commits before it are kept', async () => {
    const { lastStart, end } = await threeCommits();
    const whole = readFileSync(logFile());
    expect(whole.length).toBe(end);
    for (let cut = lastStart; cut < end; cut++) {
      writeFileSync(logFile(), whole.subarray(0, cut));
      const store = LogStore.open({ dataDir: files.dataDir, durability: 'os' });
      expect(ids(store.load())).toEqual([1, 2]);
      expect(statSync(logFile()).size).toBe(lastStart);
      await store.close();
    }
    // And the log goes on from there.
    const store = open();
    await queue(store, 4);
    await store.close();
    expect(ids(open().load())).toEqual([1, 2, 4]);
  });

  it('a last frame whose checksum fails, or a tail of zeros, is a torn tail too', async () => {
    const { lastStart, end } = await threeCommits();
    const whole = readFileSync(logFile());
    const damaged = Buffer.from(whole);
    damaged[end - 5]! ^= 0xff;
    writeFileSync(logFile(), damaged);
    const first = open({ durability: 'os' });
    expect(ids(first.load())).toEqual([1, 2]);
    expect(statSync(logFile()).size).toBe(lastStart);
    await first.close();
    writeFileSync(logFile(), Buffer.concat([whole, Buffer.alloc(4096)]));
    expect(ids(open().load())).toEqual([1, 2, 3]);
    expect(statSync(logFile()).size).toBe(end);
  });

  it('PERSIST_CORRUPT_FILE for a damaged frame followed by others (no silent loss of later commits)', async () => {
    const { lastStart } = await threeCommits();
    const damaged = readFileSync(logFile());
    damaged[lastStart - 3]! ^= 0x01; // inside the second commit's frame
    writeFileSync(logFile(), damaged);
    const error = openError();
    expect(error.code).toBe('PERSIST_CORRUPT_FILE');
    expect(error.message).toMatch(/fails its checksum.*refusing to drop/);
    expect(readFileSync(logFile())).toEqual(damaged);
  });

  it('reads frames larger than its read buffer', async () => {
    const store = open();
    const big = new Uint8Array(3 * 1024 * 1024).fill(0x5a);
    await queue(store, 1, big);
    await queue(store, 2);
    await store.close();
    const [session] = open().load().sessions;
    expect(session!.outgoingMessages.map((m) => m.payload.length)).toEqual([big.length, 1]);
    expect(Buffer.from(session!.outgoingMessages[0]!.payload).equals(big)).toBe(true); // not toEqual: slow on 3 MiB
  });
});

/** What a lock file of `pid` holds: the pid and, where /proc has it, its start time. */
function lockText(pid: number): string {
  const start = startTimeOf(pid);
  return start === undefined ? String(pid) : `${pid} ${start}`;
}

describe('LogStore lock file', () => {
  it('refuses a second open of the same log while the first is open (PERSIST_OPEN_FAILED naming the pid), and removes the lock on close', async () => {
    const first = open();
    const error = openError();
    expect(error.code).toBe('PERSIST_OPEN_FAILED');
    expect(error.message).toContain(`in use by pid ${process.pid}`);
    expect(readFileSync(`${logFile()}.lock`, 'utf8').trim()).toBe(lockText(process.pid));
    await first.close();
    expect(existsSync(`${logFile()}.lock`)).toBe(false);
    await open().close();
  });

  it('takes over a stale lock (its process is gone)', async () => {
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(`${logFile()}.lock`, `${gone}\n`);
    const store = open();
    expect(readFileSync(`${logFile()}.lock`, 'utf8').trim()).toBe(lockText(process.pid));
    await store.close();
  });

  it('refuses a lock held by another live process', () => {
    // pid 1 (init) is alive on any Unix; it is not us.
    writeFileSync(`${logFile()}.lock`, '1\n');
    expect(openError().message).toContain('in use by pid 1');
    writeFileSync(`${logFile()}.lock`, `${lockText(process.ppid)}\n`);
    expect(openError().message).toContain(`in use by pid ${process.ppid}`);
  });

  it.runIf(startTimeOf(process.pid) !== undefined)(
    'takes over a lock whose pid is alive but is another process than the one that took it (a restarted container reuses pids)',
    async () => {
      // The parent is alive, but it did not start at tick 1: a process that once had its pid did.
      writeFileSync(`${logFile()}.lock`, `${process.ppid} 1\n`);
      const store = open();
      expect(readFileSync(`${logFile()}.lock`, 'utf8').trim()).toBe(lockText(process.pid));
      await store.close();
    },
  );
});

describe('LogStore compaction', () => {
  it('rewrites the log as the live state once it passes compactMinBytes and twice the state: the file shrinks, the contents stay', async () => {
    const store = open({ compactMinBytes: 4096 });
    store.sessionCreated('s');
    store.subscriptionAdded('s', 'a/#', 1);
    store.retainedSet({ ...message(1000), retain: true });
    const payload = new Uint8Array(200).fill(1);
    let largest = 0;
    for (let i = 1; i <= 200; i++) {
      store.messageAdded(message(i, payload));
      store.outgoingAdded('s', i, queued);
      if (i > 5) store.outgoingRemoved('s', i - 5); // five stay queued
      await store.flush();
      largest = Math.max(largest, store.fileBytes);
    }
    expect(store.compactions).toBeGreaterThan(0);
    expect(largest).toBeLessThan(3 * 4096);
    const before = store.load();
    expect(ids(before)).toEqual([196, 197, 198, 199, 200]);
    expect(store.storedMessageIds.sort((a, b) => a - b)).toEqual([196, 197, 198, 199, 200, 1000]);
    await store.close(); // waits for a compaction in flight
    expect(statSync(logFile()).size).toBe(store.fileBytes);
    expect(existsSync(`${logFile()}.compact`)).toBe(false);
    const reopened = open();
    expect(reopened.load()).toEqual(before);
  });

  it('a state larger than a frame is written as several frames and read back the same', async () => {
    const store = open({ compactMinBytes: 1 });
    const payload = new Uint8Array(64 * 1024).fill(3);
    for (let i = 1; i <= 90; i++) {
      await queue(store, i, payload); // 30 of 64 KiB stay: about 2 MiB of state, two frames or more
      if (i % 3 !== 1) store.outgoingRemoved('s', i);
    }
    await store.close();
    expect(store.compactions).toBeGreaterThan(0);
    expect(store.fileBytes).toBeLessThan(2 * 30 * payload.length + 4096);
    const reopened = open();
    expect(ids(reopened.load())).toEqual(Array.from({ length: 30 }, (_, i) => 3 * i + 1));
  });

  /** A log of mostly garbage (nothing compacted it): 50 messages queued and done, one left. */
  async function garbage(): Promise<void> {
    const store = open();
    for (let i = 1; i <= 50; i++) {
      await queue(store, i, new Uint8Array(100));
      store.outgoingRemoved('s', i);
    }
    await queue(store, 51);
    await store.close();
  }

  it('never runs with a sync in flight, holds the next commit until done, and a commit meanwhile (load) reaches the new log', async () => {
    await garbage();
    const syncs = heldSyncs();
    const store = open({ compactMinBytes: 1, syncFile: syncs.syncFile });
    store.sessionCreated('t');
    const first = store.flush();
    await syncs.started(1);
    expect(existsSync(`${logFile()}.compact`)).toBe(false);
    syncs.calls[0]!.release();
    await first;
    // The compaction started after that sync: its own sync (of .compact) is the one in flight now.
    await syncs.started(2);
    expect(existsSync(`${logFile()}.compact`)).toBe(true);
    store.sessionCreated('during');
    const waiting = track(store.flush());
    expect(store.load().sessions.map((s) => s.clientId)).toEqual(['s', 't', 'during']);
    await new Promise<void>((r) => setImmediate(r));
    expect([waiting.state, store.compactions]).toEqual(['pending', 0]);
    syncs.calls[1]!.release();
    await syncs.started(3); // the sync of the commit made meanwhile, after the compaction
    expect(store.compactions).toBe(1);
    expect(existsSync(`${logFile()}.compact`)).toBe(false);
    syncs.calls[2]!.release();
    await store.close();
    expect(syncs.counts.maxInFlight).toBe(1);
    expect(store.fileBytes).toBeLessThan(300);
    const reopened = open();
    expect(reopened.load().sessions.map((s) => s.clientId)).toEqual(['s', 't', 'during']);
    expect(ids(reopened.load())).toEqual([51]);
  });

  it('a failed compaction stops the store (PERSIST_WRITE_FAILED) and leaves the old log whole', async () => {
    await garbage();
    let logFd: number | undefined;
    const errors: PersistenceError[] = [];
    const store = open({
      compactMinBytes: 1,
      onError: (e) => errors.push(e),
      syncFile: (fd, callback) => {
        logFd ??= fd;
        // The log's syncs pass; the sync of `.compact` fails.
        if (fd === logFd) fdatasync(fd, callback);
        else callback(eio());
      },
    });
    await queue(store, 52);
    await expect(store.flush()).rejects.toThrow(/compaction failed.*EIO/);
    expect(errors.map((e) => e.code)).toEqual(['PERSIST_WRITE_FAILED']);
    await store.close().catch(() => {});
    expect(existsSync(`${logFile()}.compact`)).toBe(false);
    expect(ids(open().load())).toEqual([51, 52]);
  });
});

describe('LogStore commits (pipelined group commit)', () => {
  it('flush returns the same promise until the commit; one sync in flight; the next group commits after it', async () => {
    const syncs = heldSyncs();
    const store = open({ syncFile: syncs.syncFile });
    store.sessionCreated('a');
    const firstPromise = store.flush();
    expect(store.flush()).toBe(firstPromise);
    const first = track(firstPromise);
    await syncs.started(1);
    store.sessionCreated('b');
    const second = track(store.flush());
    await new Promise<void>((r) => setImmediate(r));
    expect([first.state, second.state, store.commits]).toEqual(['pending', 'pending', 1]);
    syncs.calls[0]!.release();
    await syncs.started(2);
    expect([first.state, second.state, store.commits]).toEqual(['resolved', 'pending', 2]);
    syncs.calls[1]!.release();
    await store.flush();
    expect([second.state, store.syncs, syncs.counts.maxInFlight]).toEqual(['resolved', 2, 1]);
  });

  it('a failed sync rejects its flushes and every later one with PERSIST_WRITE_FAILED, reports once, no retry', async () => {
    const syncs = heldSyncs();
    const errors: PersistenceError[] = [];
    const store = open({ syncFile: syncs.syncFile, onError: (e) => errors.push(e) });
    store.sessionCreated('a');
    const first = store.flush();
    await syncs.started(1);
    store.sessionCreated('b');
    const behind = store.flush();
    syncs.calls[0]!.release(eio());
    await expect(first).rejects.toThrow(/fsync of the log failed.*EIO/);
    await expect(behind).rejects.toMatchObject({ code: 'PERSIST_WRITE_FAILED' });
    store.sessionCreated('later');
    await expect(store.flush()).rejects.toMatchObject({ code: 'PERSIST_WRITE_FAILED' });
    expect(errors.map((e) => e.code)).toEqual(['PERSIST_WRITE_FAILED']);
    expect(syncs.calls).toHaveLength(1);
  });

  it('a failed write (the descriptor gone, as an I/O error) stops the store; the log keeps what was committed before', async () => {
    let fd = -1;
    const store = open({
      syncFile: (f, callback) => {
        fd = f;
        fdatasync(f, callback);
      },
    });
    await queue(store, 1);
    closeSync(fd);
    store.messageAdded(message(2));
    store.outgoingAdded('s', 2, queued);
    await expect(store.flush()).rejects.toMatchObject({ code: 'PERSIST_WRITE_FAILED' });
    expect(store.failed?.message).toMatch(/commit failed/);
    await store.close().catch(() => {});
    expect(ids(open().load())).toEqual([1]);
  });

  it('close() commits and syncs what is pending; flush and load after close are refused with PERSIST_CLOSED', async () => {
    const store = open();
    store.sessionCreated('pending');
    await store.close();
    expect(store.syncs).toBe(1);
    await expect(store.flush()).rejects.toMatchObject({ code: 'PERSIST_CLOSED' });
    expect(() => store.load()).toThrow(expect.objectContaining({ code: 'PERSIST_CLOSED' }));
    expect(
      open()
        .load()
        .sessions.map((s) => s.clientId),
    ).toEqual(['pending']);
  });

  it("durability 'os' resolves flush after the write, with no sync", async () => {
    const store = open({
      durability: 'os',
      syncFile: () => {
        throw new Error('no sync expected');
      },
    });
    await queue(store, 1);
    await store.close();
    expect(store.syncs).toBe(0);
    expect(ids(open().load())).toEqual([1]);
  });

  it('writes nothing for a delivery added and removed within one commit', async () => {
    const store = open();
    store.sessionCreated('s');
    await store.flush();
    const size = store.fileBytes;
    store.messageAdded(message(1));
    store.outgoingAdded('s', 1, queued);
    store.outgoingRemoved('s', 1);
    await store.flush();
    expect(store.fileBytes).toBe(size);
    expect(store.storedMessageIds).toEqual([]);
  });
});

/** The live state's size, counted as records come (the compaction threshold), equals a walk of it. */
const liveSizeAgrees = (store: unknown) => {
  const { counted, walked } = (store as LogStore).liveStateSizes;
  expect(counted).toBe(walked);
};

againstMemoryStore('LogStore', {
  open: (dir) => LogStore.open({ dataDir: dir, durability: 'os' }),
  storedMessageIds: (_dir, reopened) => (reopened as LogStore).storedMessageIds,
  check: liveSizeAgrees,
});

againstMemoryStore(
  'LogStore compacting after commits',
  {
    open: (dir) => LogStore.open({ dataDir: dir, durability: 'os', compactMinBytes: 1 }),
    storedMessageIds: (_dir, reopened) => (reopened as LogStore).storedMessageIds,
    check: liveSizeAgrees,
  },
  100,
);
