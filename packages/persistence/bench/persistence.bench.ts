// Acknowledged QoS 1 messages per second into an offline persistent session, through a core Broker
// over in-memory connections: SqliteStore (temp dir, WAL, fdatasync before each acknowledgement) against core's
// MemoryStore, interleaved in the same process, median of 3. Prints a markdown table; asserts nothing.
//
//   pnpm --filter @broker/persistence bench
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker, createConnectionPair, ManualClock, MemoryStore, type Store } from '@broker/core';
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

const results = { memory: [] as number[], sqlite: [] as number[] };
const commitsPerRun: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  results.memory.push((await run(new MemoryStore())).perSecond);
  const dataDir = mkdtempSync(join(tmpdir(), 'broker-bench-'));
  try {
    const store = SqliteStore.open({ dataDir });
    results.sqlite.push((await run(store)).perSecond);
    commitsPerRun.push(store.commits);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const memory = median(results.memory);
const sqlite = median(results.sqlite);
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
console.log(`| **durable / memory** | **${((sqlite / memory) * 100).toFixed(0)} %** | target >= 50 % |`);
console.log(
  `\nSQLite commits per run: ${commitsPerRun.join(', ')} (${fmt(MESSAGES / median(commitsPerRun))} messages per commit)`,
);
