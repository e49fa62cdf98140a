// Acknowledged QoS 1 messages per second into an offline persistent session, through a core Broker
// over in-memory connections: SqliteStore (temp dir, WAL, fdatasync before each acknowledgement) and
// LogStore (the same promise) against core's MemoryStore, interleaved in the same process, median of 3.
// Then the stores alone on the b-like workload: per message messageAdded + outgoingAdded, and
// outgoingRemoved a few batches later; CPU µs per message. Prints markdown tables; asserts nothing.
//
//   pnpm --filter @broker/persistence bench
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker, createConnectionPair, ManualClock, MemoryStore, type Store } from '@broker/core';
import { LogStore } from '@broker/persistence/log';
import { SqliteStore } from '@broker/persistence/sqlite';
import { encodePublish, MiniClient } from '@broker/persistence/testing';

const MESSAGES = Number(process.env['BENCH_MESSAGES'] ?? 40_000);
const IN_FLIGHT = 256;
const PAYLOAD = new Uint8Array(100).fill(0x61);
const ROUNDS = 3;

/** PUBLISH frames for packet ids 1..IN_FLIGHT (a burst waits for its PUBACKs before ids are reused). */
const frames = Array.from({ length: IN_FLIGHT }, (_, i) => encodePublish('bench/data', PAYLOAD, 1, i + 1));

async function run(store: Store): Promise<{ perSecond: number; ms: number }> {
  const broker = new Broker({
    store,
    clock: new ManualClock(0),
    limits: { maxQueuedMessages: 10_000_000 },
  });
  await broker.restore();
  new MiniClient(broker, 'sink', { cleanSession: false }).subscribe('bench/#', 1).drop(); // offline, persistent

  const { connection, peer } = createConnectionPair();
  let acks = 0;
  let target = 0;
  let wake: (() => void) | undefined;
  let connacked = false;
  peer.onData = (bytes) => {
    if (!connacked) {
      connacked = true; // CONNACK: 4 bytes, alone in its chunk
      return;
    }
    acks += bytes.length / 4; // PUBACKs only from here on, 4 bytes each
    if (acks >= target && wake !== undefined) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  broker.accept(connection);
  peer.write(Uint8Array.from([0x10, 12, 0, 4, 77, 81, 84, 84, 4, 2, 0, 0, 0, 0])); // CONNECT, clean, id ""

  const start = process.hrtime.bigint();
  for (let sent = 0; sent < MESSAGES; sent += IN_FLIGHT) {
    const burst = Math.min(IN_FLIGHT, MESSAGES - sent);
    target = sent + burst;
    const done = new Promise<void>((resolve) => {
      wake = resolve;
    });
    for (let i = 0; i < burst; i++) peer.write(frames[i]!);
    if (acks < target) await done;
    else wake = undefined;
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (acks !== MESSAGES) throw new Error(`expected ${MESSAGES} PUBACKs, got ${acks}`);
  await broker.close();
  return { perSecond: (MESSAGES / ms) * 1000, ms };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

type Durable = SqliteStore | LogStore;
const durables: Record<'sqlite' | 'log', (dataDir: string) => Durable> = {
  sqlite: (dataDir) => SqliteStore.open({ dataDir }),
  log: (dataDir) => LogStore.open({ dataDir }),
};

/** Runs `body` on a fresh store of `kind` in a temp dir, removed after. */
async function withStore<T>(kind: keyof typeof durables, body: (store: Durable) => Promise<T>): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'broker-bench-'));
  try {
    return await body(durables[kind](dataDir));
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const results = { memory: [] as number[], sqlite: [] as number[], log: [] as number[] };
const commitsPerRun = { sqlite: [] as number[], log: [] as number[] };
for (let round = 0; round < ROUNDS; round++) {
  results.memory.push((await run(new MemoryStore())).perSecond);
  for (const kind of ['sqlite', 'log'] as const) {
    await withStore(kind, async (store) => {
      results[kind].push((await run(store)).perSecond);
      commitsPerRun[kind].push(store.commits);
    });
  }
}

const memory = median(results.memory);
const sqlite = median(results.sqlite);
const log = median(results.log);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
console.log(
  `\nAcknowledged QoS 1 PUBLISH/s into one offline persistent session (${MESSAGES} messages of ${PAYLOAD.length} bytes, ${IN_FLIGHT} in flight, median of ${ROUNDS}, Node ${process.version})\n`,
);
console.log('| store | msg/s (median) | runs |');
console.log('| --- | ---: | --- |');
console.log(`| MemoryStore (core) | ${fmt(memory)} | ${results.memory.map(fmt).join(', ')} |`);
console.log(
  `| SqliteStore (WAL, synchronous=FULL) | ${fmt(sqlite)} | ${results.sqlite.map(fmt).join(', ')} |`,
);
console.log(`| LogStore (fdatasync) | ${fmt(log)} | ${results.log.map(fmt).join(', ')} |`);
console.log(`| **SQLite / memory** | **${((sqlite / memory) * 100).toFixed(0)} %** | target >= 50 % |`);
console.log(`| **log / memory** | **${((log / memory) * 100).toFixed(0)} %** | target >= 50 % |`);
for (const kind of ['sqlite', 'log'] as const) {
  const commits = commitsPerRun[kind];
  console.log(
    `\n${kind} commits per run: ${commits.join(', ')} (${fmt(MESSAGES / median(commits))} messages per commit)`,
  );
}

// The stores alone --------------------------------------------------------------------------------

/** Messages per batch (one flush each), and how many batches later a delivery is acknowledged. */
const BATCH = 256;
const ACK_AFTER_BATCHES = 3;
const delivery = { qos: 1, retain: false, packetId: 1, state: 2, dup: false } as const;

/** CPU µs (user + system, every thread) per message of store work, and wall µs per message. */
async function storeAlone(store: Durable): Promise<{ cpu: number; wall: number }> {
  store.sessionCreated('sink');
  await store.flush();
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  for (let id = 1; id <= MESSAGES; id++) {
    store.messageAdded({ messageId: id, topic: 'bench/data', payload: PAYLOAD, qos: 1, retain: false });
    store.outgoingAdded('sink', id, delivery);
    const acked = id - ACK_AFTER_BATCHES * BATCH;
    if (acked > 0) store.outgoingRemoved('sink', acked);
    if (id % BATCH === 0) await store.flush();
  }
  await store.flush();
  const used = process.cpuUsage(cpu);
  const wall = Number(process.hrtime.bigint() - start) / 1e3;
  await store.close();
  return { cpu: (used.user + used.system) / MESSAGES, wall: wall / MESSAGES };
}

const alone = {
  sqlite: [] as Array<{ cpu: number; wall: number }>,
  log: [] as Array<{ cpu: number; wall: number }>,
};
for (let round = 0; round < ROUNDS; round++) {
  for (const kind of ['sqlite', 'log'] as const) alone[kind].push(await withStore(kind, storeAlone));
}
console.log(
  `\nThe stores alone: per message messageAdded + outgoingAdded, outgoingRemoved ${ACK_AFTER_BATCHES} batches later; ${BATCH} messages per flush (fdatasync), ${MESSAGES} messages of ${PAYLOAD.length} bytes, median of ${ROUNDS}\n`,
);
console.log('| store | CPU µs / message (median) | wall µs / message | CPU runs |');
console.log('| --- | ---: | ---: | --- |');
for (const kind of ['sqlite', 'log'] as const) {
  const runs = alone[kind];
  console.log(
    `| ${kind === 'sqlite' ? 'SqliteStore' : 'LogStore'} | ${median(runs.map((r) => r.cpu)).toFixed(2)} | ${median(runs.map((r) => r.wall)).toFixed(2)} | ${runs.map((r) => r.cpu.toFixed(2)).join(', ')} |`,
  );
}
