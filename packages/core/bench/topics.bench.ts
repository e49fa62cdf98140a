/**
 * FilterTree / RetainedTree vs qlobber (the matcher Aedes uses), in one process, interleaved rounds,
 * median of 5. Prints a markdown table; asserts nothing.
 *
 *   cd packages/core && pnpm exec tsx --conditions=@broker/source bench/topics.bench.ts
 *
 * Baselines:
 * - match: plain `Qlobber.match` configured for MQTT (match_empty_levels). It returns one entry per matching
 *   (filter, value), WITHOUT dedup by subscriber nor max QoS, so it does less work than FilterTree.match.
 *   It has no result cache; the "cache on" rows compare our cache against the same plain qlobber.
 * - churn: Qlobber.add + Qlobber.remove(filter, value).
 * - retained: what aedes-persistence's memory store does for a SUBSCRIBE: a QlobberTrue holding the filter,
 *   tested against every retained topic (a full scan).
 */
import { createRequire } from 'node:module';
import type { QoS } from '@broker/codec';
import { FilterTree } from '../src/topics/filter-tree.js';
import { RetainedTree } from '../src/topics/retained-tree.js';

interface QlobberLike {
  add(topic: string, value: unknown): unknown;
  remove(topic: string, value?: unknown): unknown;
  match(topic: string): unknown[];
  test(topic: string, value?: unknown): boolean;
}
type QlobberCtor = new (options: Record<string, unknown>) => QlobberLike;
const require = createRequire(import.meta.url);
const { Qlobber, QlobberTrue } = require('qlobber') as { Qlobber: QlobberCtor; QlobberTrue: QlobberCtor };
const QLOBBER_MQTT = { separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true };

// ---------------------------------------------------------------------------------------------------------
// Deterministic data

let seed = 0x9e3779b9;
function random(): number {
  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (n: number): number => Math.floor(random() * n);

const TENANTS = 1000;
const DEVICES = 20;
const METRICS = ['temp', 'humidity', 'battery', 'rssi', 'status', 'pressure', 'co2', 'lux', 'door', 'motion'];
const SUBSCRIPTIONS = 100_000;
const CLIENTS = 20_000;

interface Client {
  readonly id: string;
}
const clients: Client[] = Array.from({ length: CLIENTS }, (_, i) => ({ id: `client-${i}` }));
const randomTopic = (): string =>
  `tenant/t${pick(TENANTS)}/device/d${pick(DEVICES)}/${METRICS[pick(METRICS.length)]}`;

function randomFilter(): string {
  const r = random();
  const t = `t${pick(TENANTS)}`;
  const d = `d${pick(DEVICES)}`;
  const m = METRICS[pick(METRICS.length)];
  if (r < 0.8) return `tenant/${t}/device/${d}/${m}`; // 80% exact
  if (r < 0.875) return `tenant/${t}/device/+/${m}`; // 15% single-level wildcard
  if (r < 0.95) return `tenant/${t}/device/${d}/+`;
  if (r < 0.99) return `tenant/${t}/device/${d}/#`; // 5% multi-level wildcard
  return `tenant/${t}/#`;
}

interface Sub {
  readonly filter: string;
  readonly client: Client;
  readonly qos: QoS;
}
const subs: Sub[] = Array.from({ length: SUBSCRIPTIONS }, () => ({
  filter: randomFilter(),
  client: clients[pick(CLIENTS)]!,
  qos: pick(3) as QoS,
}));

// ---------------------------------------------------------------------------------------------------------
// Timing: interleaved rounds, each case runs for ~ROUND_MS, median of ROUNDS.

const ROUNDS = 5;
const ROUND_MS = 150;
let sink = 0;

/** Runs `op(i)` in batches until ROUND_MS elapsed; returns ops/s. */
function measure(op: (i: number) => number, batch: number): number {
  let ops = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(ROUND_MS) * 1_000_000n;
  let elapsed = 0n;
  do {
    for (let i = 0; i < batch; i++) sink += op(ops + i);
    ops += batch;
    elapsed = process.hrtime.bigint() - start;
  } while (elapsed < budget);
  return ops / (Number(elapsed) / 1e9);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Row {
  name: string;
  ours: number;
  theirs: number;
  note: string;
}
const rows: Row[] = [];

function compare(
  name: string,
  ours: (i: number) => number,
  theirs: (i: number) => number,
  batch: number,
  note = '',
): void {
  measure(ours, batch); // warm-up
  measure(theirs, batch);
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    if (r % 2 === 0) {
      a.push(measure(ours, batch));
      b.push(measure(theirs, batch));
    } else {
      b.push(measure(theirs, batch));
      a.push(measure(ours, batch));
    }
  }
  rows.push({ name, ours: median(a), theirs: median(b), note });
  process.stderr.write(`  done: ${name}\n`);
}

// ---------------------------------------------------------------------------------------------------------
// (a) match

const t0 = performance.now();
const uncached = new FilterTree<Client>({ cacheSize: 0 });
const cached = new FilterTree<Client>(); // default cacheSize 10,000
const qlobber = new Qlobber(QLOBBER_MQTT);
for (const s of subs) {
  uncached.add(s.filter, s.client, s.qos);
  cached.add(s.filter, s.client, s.qos);
  qlobber.add(s.filter, s); // value = the subscription (client + qos), like Aedes' per-client entries
}
process.stderr.write(
  `setup: ${SUBSCRIPTIONS} subscriptions (${uncached.size} distinct pairs, ${uncached.nodeCount} nodes) ` +
    `in ${(performance.now() - t0).toFixed(0)} ms\n`,
);

const STREAM = 1 << 16;
const stream: string[] = Array.from({ length: STREAM }, randomTopic);
let total = 0;
let max = 0;
for (const t of stream) {
  const n = uncached.match(t).subscribers.length;
  total += n;
  if (n > max) max = n;
  const q = qlobber.match(t).length;
  if (q < n) throw new Error(`qlobber disagrees on ${t}`);
}
const avg = total / STREAM;

compare(
  'match, cache off, random topics',
  (i) => uncached.match(stream[i & (STREAM - 1)]!).subscribers.length,
  (i) => qlobber.match(stream[i & (STREAM - 1)]!).length,
  1024,
  `${avg.toFixed(2)} subscribers/topic avg, max ${max}`,
);

const WORKING_SET = 2048;
const working: string[] = Array.from({ length: WORKING_SET }, randomTopic);
compare(
  'match, cache on, 2,048-topic working set',
  (i) => cached.match(working[i & (WORKING_SET - 1)]!).subscribers.length,
  (i) => qlobber.match(working[i & (WORKING_SET - 1)]!).length,
  1024,
  'same topic strings reused (hash cached)',
);

// Topics as they come off the wire: a fresh string per PUBLISH (its hash is not cached yet). Both sides pay
// the decode.
const workingBuffers: Buffer[] = working.map((t) => Buffer.from(t, 'utf8'));
compare(
  'match, cache on, working set, fresh strings',
  (i) => cached.match(workingBuffers[i & (WORKING_SET - 1)]!.toString('utf8')).subscribers.length,
  (i) => qlobber.match(workingBuffers[i & (WORKING_SET - 1)]!.toString('utf8')).length,
  1024,
  'topic decoded from a Buffer per op',
);
const streamBuffers: Buffer[] = stream.map((t) => Buffer.from(t, 'utf8'));
compare(
  'match, cache off, random topics, fresh strings',
  (i) => uncached.match(streamBuffers[i & (STREAM - 1)]!.toString('utf8')).subscribers.length,
  (i) => qlobber.match(streamBuffers[i & (STREAM - 1)]!.toString('utf8')).length,
  1024,
  'topic decoded from a Buffer per op',
);

// (b) churn: add + remove of a new pair with 100,000 in place.
const CHURN = 4096;
const churn: Sub[] = Array.from({ length: CHURN }, () => ({
  filter: randomFilter(),
  client: { id: 'churner' },
  qos: 1 as QoS,
}));
compare(
  'subscribe+unsubscribe churn (pairs/s)',
  (i) => {
    const s = churn[i & (CHURN - 1)]!;
    cached.add(s.filter, s.client, s.qos);
    return cached.remove(s.filter, s.client) ? 1 : 0;
  },
  (i) => {
    const s = churn[i & (CHURN - 1)]!;
    qlobber.add(s.filter, s);
    qlobber.remove(s.filter, s);
    return 1;
  },
  256,
  'pairs not already present: creates and prunes nodes',
);
if (cached.size !== uncached.size) throw new Error('churn leaked subscriptions');

// (c) retained: 100,000 retained topics.
const retained = new RetainedTree<string>();
const retainedTopics = new Map<string, string>(); // what aedes-persistence keeps: topic -> packet
for (let t = 0; t < TENANTS; t++) {
  for (let d = 0; d < DEVICES; d++) {
    for (let m = 0; m < 5; m++) {
      const topic = `tenant/t${t}/device/d${d}/${METRICS[m]}`;
      retained.set(topic, topic);
      retainedTopics.set(topic, topic);
    }
  }
}

function scan(filter: string): number {
  // aedes-persistence memory store: QlobberTrue with the filter, test every retained topic.
  const q = new QlobberTrue(QLOBBER_MQTT);
  q.add(filter, true);
  let n = 0;
  for (const topic of retainedTopics.keys()) if (q.test(topic)) n++;
  return n;
}

const hashFilters = Array.from({ length: 256 }, () => `tenant/t${pick(TENANTS)}/#`);
const plusFilters = Array.from(
  { length: 256 },
  () => `tenant/t${pick(TENANTS)}/device/+/${METRICS[pick(5)]}`,
);
const widePlusFilters = Array.from(
  { length: 256 },
  () => `tenant/+/device/d${pick(DEVICES)}/${METRICS[pick(5)]}`,
);
for (const f of [...hashFilters.slice(0, 8), ...plusFilters.slice(0, 8), ...widePlusFilters.slice(0, 2)]) {
  if (retained.match(f).length !== scan(f)) throw new Error(`retained disagrees on ${f}`);
}
compare(
  `retained match tenant/<t>/# (${retained.match(hashFilters[0]!).length} msgs)`,
  (i) => retained.match(hashFilters[i & 255]!).length,
  (i) => scan(hashFilters[i & 255]!),
  1,
  '100,000 retained; qlobber = full scan',
);
compare(
  `retained match tenant/<t>/device/+/<m> (${retained.match(plusFilters[0]!).length} msgs)`,
  (i) => retained.match(plusFilters[i & 255]!).length,
  (i) => scan(plusFilters[i & 255]!),
  1,
  '100,000 retained; qlobber = full scan',
);
compare(
  `retained match tenant/+/device/<d>/<m> (${retained.match(widePlusFilters[0]!).length} msgs)`,
  (i) => retained.match(widePlusFilters[i & 255]!).length,
  (i) => scan(widePlusFilters[i & 255]!),
  1,
  '+ over 1,000 tenants; qlobber = full scan',
);

// ---------------------------------------------------------------------------------------------------------

const fmt = (n: number): string =>
  n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toLocaleString('en-US', { maximumFractionDigits: 1 });
console.log(`\nnode ${process.version}, median of ${ROUNDS} interleaved rounds of ~${ROUND_MS} ms\n`);
console.log('| case | ours ops/s | qlobber ops/s | ratio | note |');
console.log('| --- | ---: | ---: | ---: | --- |');
for (const r of rows) {
  console.log(
    `| ${r.name} | ${fmt(r.ours)} | ${fmt(r.theirs)} | ${(r.ours / r.theirs).toFixed(2)}x | ${r.note} |`,
  );
}
console.log(`\n(total bench time ${((performance.now() - t0) / 1000).toFixed(1)} s; sink ${sink % 10})`);
