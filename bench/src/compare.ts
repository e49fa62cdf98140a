/**
 * Side-by-side benchmark: our broker, Mosquitto and Aedes under the same load generator.
 *
 *   pnpm bench:compare                 # 3 repetitions, ~5 s per measurement (~12 min)
 *   pnpm bench:compare --quick         # 1 repetition, short runs (~2 min)
 *   pnpm bench:compare --only a,c      # some scenarios (a b c d e f g)
 *   pnpm bench:compare --profile       # also writes a --cpu-prof of our broker per run to bench/profiles
 *   pnpm bench:compare --no-write      # print only, do not overwrite docs/benchmarks.md
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { IdleResult, IdleSpec, LoadResult, Qos, ThroughputResult, ThroughputSpec } from './load/spec.js';
import {
  BENCH_DIR,
  type BrokerKind,
  HAS_TASKSET,
  isOurs,
  MOSQUITTO,
  runGenerator,
  startBroker,
} from './processes.js';

// ---------------------------------------------------------------- options

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const profile = argv.includes('--profile');
const write = !argv.includes('--no-write');
const onlyArg = argv[argv.indexOf('--only') + 1];
const only = argv.includes('--only') && onlyArg !== undefined ? new Set(onlyArg.split(',')) : undefined;
const brokersArg = argv[argv.indexOf('--brokers') + 1];
/** --brokers ours,aedes: run only these (development runs; a table for docs wants all three). */
const onlyBrokers =
  argv.includes('--brokers') && brokersArg !== undefined ? new Set(brokersArg.split(',')) : undefined;
/** BENCH_OURS_NODE_FLAGS="--trace-gc ...": extra node flags for our broker (diagnosis; see README). */
const oursExtraFlags = (process.env['BENCH_OURS_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
const repsArg = argv.includes('--reps') ? Number(argv[argv.indexOf('--reps') + 1]) : undefined;
const reps = repsArg ?? (quick ? 1 : 3);
const timing = quick
  ? { warmupMs: 500, durationMs: 2000, drainMs: 5000 }
  : { warmupMs: 1000, durationMs: 5000, drainMs: 10_000 };
const IDLE_CONNECTIONS = 10_000;
const SOURCE_ADDRESSES = [
  '127.0.0.2',
  '127.0.0.3',
  '127.0.0.4',
  '127.0.0.5',
  '127.0.0.6',
  '127.0.0.7',
  '127.0.0.8',
  '127.0.0.9',
];
const REPO_ROOT = join(BENCH_DIR, '..');
const PROFILE_DIR = join(BENCH_DIR, 'profiles');

// ---------------------------------------------------------------- scenarios

type Brokers = 'ours' | 'mosquitto' | 'aedes';
const BROKERS: Brokers[] = ['ours', 'mosquitto', 'aedes'];
/** Our broker with a durable store: rows of these count as "ours". */
const DURABLE = ['ours-log', 'ours-sqlite'] as const;

interface Run {
  /** Key of a table row group. */
  id: string;
  letter: string;
  title: string;
  brokers: BrokerKind[];
  spec(port: number, brokerPid: number): ThroughputSpec | IdleSpec;
  /** Publishers only against the null sink: the generator's ceiling for this load. */
  ceiling?: (result: ThroughputResult) => number;
}

function throughput(
  port: number,
  brokerPid: number,
  o: Partial<ThroughputSpec> & Pick<ThroughputSpec, 'publishers' | 'qos' | 'subscribers'>,
): ThroughputSpec {
  return {
    mode: 'throughput',
    host: '127.0.0.1',
    port,
    brokerPid,
    payloadBytes: 64,
    topic: 'bench/x/t',
    window: 64,
    qos0Window: 500,
    cleanSession: true,
    ...timing,
    ...o,
  };
}

const fanOutFilters = [
  ...Array<string>(40).fill('bench/#'),
  ...Array<string>(20).fill('bench/+/t'),
  ...Array<string>(40).fill('bench/x/t'),
];
const fanIn =
  (qos: Qos) =>
  (port: number, pid: number, durable = false) =>
    throughput(port, pid, { publishers: 10, qos, subscribers: ['bench/#'], cleanSession: !durable });
const fanOut = (port: number, pid: number, durable = false) =>
  throughput(port, pid, { publishers: 1, qos: 0, subscribers: fanOutFilters, cleanSession: !durable });
/** f: 1 MiB payloads; QoS 1 with 8 in flight (see README: QoS 0 overruns the brokers' buffers). */
const F_QOS: Qos = 1;
const bigPayload = (port: number, pid: number) =>
  throughput(port, pid, {
    publishers: 1,
    qos: F_QOS,
    window: 8,
    payloadBytes: 1024 * 1024,
    subscribers: ['bench/#'],
  });

const ALL: Brokers[] = BROKERS;
const RUNS: Run[] = [
  {
    id: 'a',
    letter: 'a',
    title: 'fan-in 10→1, QoS 0, 64 B',
    brokers: ALL,
    spec: fanIn(0),
    ceiling: (r) => r.publishRate,
  },
  {
    id: 'b1',
    letter: 'b',
    title: 'fan-in 10→1, QoS 1, 64 in flight',
    brokers: ALL,
    spec: fanIn(1),
    ceiling: (r) => r.ackRate,
  },
  {
    id: 'b2',
    letter: 'b',
    title: 'fan-in 10→1, QoS 2, 64 in flight',
    brokers: ALL,
    spec: fanIn(2),
    ceiling: (r) => r.ackRate,
  },
  {
    id: 'c',
    letter: 'c',
    title: 'fan-out 1→100, QoS 0',
    brokers: ALL,
    spec: fanOut,
    ceiling: (r) => r.publishRate,
  },
  {
    id: 'd',
    letter: 'd',
    title: 'latency 1→1, QoS 1 at 5,000 msg/s',
    brokers: ALL,
    spec: (port, pid) =>
      throughput(port, pid, { publishers: 1, qos: 1, subscribers: ['bench/#'], rate: 5000 }),
  },
  {
    id: 'e',
    letter: 'e',
    title: `${IDLE_CONNECTIONS.toLocaleString('en')} idle connections`,
    brokers: ALL,
    spec: (port, pid) => ({
      mode: 'idle',
      host: '127.0.0.1',
      port,
      connections: IDLE_CONNECTIONS,
      sourceAddresses: SOURCE_ADDRESSES,
      concurrency: 200,
      keepaliveSeconds: 60,
      brokerPid: pid,
      timeoutMs: 120_000,
    }),
  },
  {
    id: 'f',
    letter: 'f',
    title: `1 MiB payloads 1→1, QoS ${F_QOS}${F_QOS > 0 ? ', 8 in flight' : ''}`,
    brokers: ALL,
    spec: bigPayload,
    ceiling: (r) => (F_QOS > 0 ? r.ackRate : r.publishRate),
  },
  {
    id: 'g1',
    letter: 'g',
    title: 'durable: b at QoS 1 (log store)',
    brokers: ['ours-log'],
    spec: (p, pid) => fanIn(1)(p, pid, true),
  },
  {
    id: 'g1s',
    letter: 'g',
    title: 'durable: b at QoS 1 (SQLite store)',
    brokers: ['ours-sqlite'],
    spec: (p, pid) => fanIn(1)(p, pid, true),
  },
  {
    id: 'g2',
    letter: 'g',
    title: 'durable: b at QoS 2 (log store)',
    brokers: ['ours-log'],
    spec: (p, pid) => fanIn(2)(p, pid, true),
  },
  {
    id: 'g2s',
    letter: 'g',
    title: 'durable: b at QoS 2 (SQLite store)',
    brokers: ['ours-sqlite'],
    spec: (p, pid) => fanIn(2)(p, pid, true),
  },
  {
    id: 'gc',
    letter: 'g',
    title: 'durable: c (log store)',
    brokers: ['ours-log'],
    spec: (p, pid) => fanOut(p, pid, true),
  },
  {
    id: 'gcs',
    letter: 'g',
    title: 'durable: c (SQLite store)',
    brokers: ['ours-sqlite'],
    spec: (p, pid) => fanOut(p, pid, true),
  },
];

// ---------------------------------------------------------------- table rows

interface Row {
  run: string;
  label: string;
  unit: string;
  higherIsBetter: boolean;
  value(result: LoadResult): number;
  /** Target text and check, given medians by broker. */
  target?: { text: string; met(m: Partial<Record<Brokers, number>>, memory?: number): boolean | undefined };
  /** Durable rows: compared with this row of ours in memory. */
  memoryRow?: string;
}

const tp = (r: LoadResult): ThroughputResult => r as ThroughputResult;
const idle = (r: LoadResult): IdleResult => r as IdleResult;
const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0
    ? undefined
    : a / b;
const atLeast = (x: number | undefined, min: number): boolean | undefined =>
  x === undefined ? undefined : x >= min;

const delivered = (r: LoadResult): number => tp(r).deliveryRate;
const ROWS: Row[] = [
  {
    run: 'a',
    label: 'a fan-in 10→1 QoS 0 (delivered msg/s)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    target: {
      text: '≥1.0× Mosq, ≥2.5× Aedes',
      met: (m) => both(atLeast(ratio(m.ours, m.mosquitto), 1), atLeast(ratio(m.ours, m.aedes), 2.5)),
    },
  },
  {
    run: 'b1',
    label: 'b fan-in 10→1 QoS 1 (delivered msg/s)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    target: { text: '≥1.0× Mosq', met: (m) => atLeast(ratio(m.ours, m.mosquitto), 1) },
  },
  {
    run: 'b2',
    label: 'b fan-in 10→1 QoS 2 (delivered msg/s)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    target: { text: '≥1.0× Mosq', met: (m) => atLeast(ratio(m.ours, m.mosquitto), 1) },
  },
  {
    run: 'c',
    label: 'c fan-out 1→100 QoS 0 (delivered msg/s, all subscribers)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    target: {
      text: '≥1.0× Mosq, ≥2.5× Aedes',
      met: (m) => both(atLeast(ratio(m.ours, m.mosquitto), 1), atLeast(ratio(m.ours, m.aedes), 2.5)),
    },
  },
  {
    run: 'd',
    label: 'd latency p50 (µs)',
    unit: 'µs',
    higherIsBetter: false,
    value: (r) => tp(r).latencyUs?.p50 ?? Number.NaN,
    target: {
      text: '≤ Mosquitto',
      met: (m) => (m.ours === undefined || m.mosquitto === undefined ? undefined : m.ours <= m.mosquitto),
    },
  },
  {
    run: 'd',
    label: 'd latency p90 (µs)',
    unit: 'µs',
    higherIsBetter: false,
    value: (r) => tp(r).latencyUs?.p90 ?? Number.NaN,
  },
  {
    run: 'd',
    label: 'd latency p99 (µs)',
    unit: 'µs',
    higherIsBetter: false,
    value: (r) => tp(r).latencyUs?.p99 ?? Number.NaN,
  },
  {
    run: 'e',
    label: 'e connects/s (10,000 connections)',
    unit: '/s',
    higherIsBetter: true,
    value: (r) => idle(r).connectsPerSec,
    target: { text: '≥2× Aedes', met: (m) => atLeast(ratio(m.ours, m.aedes), 2) },
  },
  {
    run: 'e',
    label: 'e RSS growth per idle connection (bytes)',
    unit: 'B',
    higherIsBetter: false,
    value: (r) => idle(r).rssPerConnectionBytes,
    target: { text: '≤ 4 KB (4,096 B)', met: (m) => (m.ours === undefined ? undefined : m.ours <= 4096) },
  },
  {
    run: 'f',
    label: `f 1 MiB payloads 1→1 QoS ${F_QOS} (MiB/s)`,
    unit: 'MiB/s',
    higherIsBetter: true,
    value: (r) => tp(r).deliveryMiBps,
    target: { text: '≥1.0× Aedes', met: (m) => atLeast(ratio(m.ours, m.aedes), 1) },
  },
  {
    run: 'g1',
    label: 'g durable (log) b QoS 1 (delivered msg/s)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    memoryRow: 'b1',
    target: { text: '≥50% of memory', met: (m, mem) => atLeast(ratio(m.ours, mem), 0.5) },
  },
  {
    run: 'g1s',
    label: 'g durable (SQLite) b QoS 1 (delivered msg/s)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    memoryRow: 'b1',
  },
  {
    run: 'g2',
    label: 'g durable (log) b QoS 2 (delivered msg/s)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    memoryRow: 'b2',
    target: { text: '≥50% of memory', met: (m, mem) => atLeast(ratio(m.ours, mem), 0.5) },
  },
  {
    run: 'g2s',
    label: 'g durable (SQLite) b QoS 2 (delivered msg/s)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    memoryRow: 'b2',
  },
  {
    run: 'gc',
    label: 'g durable (log) c fan-out (delivered msg/s)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    memoryRow: 'c',
  },
  {
    run: 'gcs',
    label: 'g durable (SQLite) c fan-out (delivered msg/s)',
    unit: 'msg/s',
    higherIsBetter: true,
    value: delivered,
    memoryRow: 'c',
  },
];

function both(x: boolean | undefined, y: boolean | undefined): boolean | undefined {
  return x === undefined || y === undefined ? undefined : x && y;
}

// ---------------------------------------------------------------- running

interface Outcome {
  run: string;
  broker: BrokerKind;
  rep: number;
  result?: LoadResult;
  error?: string;
}

let nextPort = 21_000 + (process.pid % 50) * 100;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function generatorTimeout(spec: ThroughputSpec | IdleSpec): number {
  return spec.mode === 'idle'
    ? spec.timeoutMs + 30_000
    : spec.warmupMs + spec.durationMs + spec.drainMs + 60_000;
}

function summary(r: LoadResult): string {
  if (r.mode === 'idle') {
    return `${r.connected} connected, ${Math.round(r.connectsPerSec)}/s, ${Math.round(r.rssPerConnectionBytes)} B/conn`;
  }
  const c = r.correctness;
  const lat =
    r.latencyUs === undefined
      ? ''
      : ` p50 ${r.latencyUs.p50.toFixed(0)} µs p99 ${r.latencyUs.p99.toFixed(0)} µs`;
  return (
    `${Math.round(r.deliveryRate)} delivered/s (pub ${Math.round(r.publishRate)}/s)${lat} ` +
    `lost ${c.lost}/${c.expected} dup ${c.duplicates} ooo ${c.outOfOrder} ` +
    `cpu broker ${r.brokerCpu.toFixed(2)} gen ${r.generatorCpu.toFixed(2)}`
  );
}

async function runOne(run: Run, broker: BrokerKind, rep: number): Promise<Outcome> {
  const port = nextPort++;
  const ours = isOurs(broker);
  // One directory per run: Node writes one profile per thread (tsx's loader runs in a worker).
  const profileDir = join(PROFILE_DIR, `${run.id}-${broker}-${rep + 1}`);
  if (profile && ours) mkdirSync(profileDir, { recursive: true });
  const flags = ours
    ? [...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), ...oursExtraFlags]
    : [];
  let started: Awaited<ReturnType<typeof startBroker>> | undefined;
  try {
    try {
      started = await startBroker(broker, port, { oursNodeFlags: flags });
    } catch (e) {
      // Our broker runs from sources that others may be editing: retry once after a pause.
      if (!ours) throw e;
      log(
        `  ${run.id} ${broker}: did not start, retrying in 5 s: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`,
      );
      await new Promise((resolve) => setTimeout(resolve, 5000));
      started = await startBroker(broker, nextPort++, { oursNodeFlags: flags });
    }
    const spec = run.spec(started.port, started.pid);
    const result = await runGenerator(spec, generatorTimeout(spec));
    log(
      `  ${run.id} ${broker.padEnd(12)} rep ${rep + 1}: ${summary(result)}${result.errors.length > 0 ? ` errors: ${result.errors.join('; ')}` : ''}`,
    );
    return { run: run.id, broker, rep, result };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    log(`  ${run.id} ${broker} rep ${rep + 1}: FAILED ${message}\n${started?.log() ?? ''}`);
    return { run: run.id, broker, rep, error: message.split('\n')[0] ?? message };
  } finally {
    await started?.stop();
  }
}

function ensureMosquitto(): boolean {
  if (existsSync(MOSQUITTO)) return true;
  if (process.getuid?.() === 0) {
    log('mosquitto missing: apt-get install -y mosquitto');
    try {
      execFileSync('apt-get', ['install', '-y', 'mosquitto'], {
        stdio: 'inherit',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    } catch {
      log('apt-get install failed');
    }
  }
  return existsSync(MOSQUITTO);
}

function machine(): Record<string, string> {
  const cpuModel =
    /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? '?';
  let mosquittoVersion = 'not installed';
  try {
    mosquittoVersion =
      execFileSync(MOSQUITTO, ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split(
        '\n',
      )[0] ?? '?';
  } catch (e) {
    const out = (e as { stdout?: string }).stdout ?? '';
    mosquittoVersion = out.split('\n')[0]?.replace('mosquitto version ', '') ?? '?';
  }
  const aedesVersion = (
    JSON.parse(readFileSync(join(BENCH_DIR, 'node_modules/aedes/package.json'), 'utf8')) as {
      version: string;
    }
  ).version;
  return {
    CPU: cpuModel.trim(),
    Cores: String(cpus().length),
    Node: process.version,
    Mosquitto: mosquittoVersion.replace(/^mosquitto version /, ''),
    Aedes: aedesVersion,
    Date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    'Load average at start (1/5/15 min)': loadavg()
      .map((x) => x.toFixed(2))
      .join(' / '),
    Pinning: HAS_TASKSET ? 'broker on CPU 0, load generator on CPU 1 (taskset)' : 'none (taskset missing)',
    Mode: `${quick ? 'quick' : 'full'}: ${reps} repetition(s), ${timing.warmupMs} ms warm-up + ${timing.durationMs} ms measured per run`,
  };
}

// ---------------------------------------------------------------- report

function median(xs: number[]): number | undefined {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function fmt(x: number | undefined, unit = ''): string {
  if (x === undefined || !Number.isFinite(x)) return '—';
  if (unit === 'MiB/s') return x.toFixed(0);
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString('en');
  return x.toFixed(1);
}

function fmtRatio(x: number | undefined): string {
  return x === undefined ? '—' : `${x.toFixed(2)}×`;
}

function rowMedians(row: Row, outcomes: Outcome[]): Partial<Record<Brokers, number>> {
  const m: Partial<Record<Brokers, number>> = {};
  for (const b of [...BROKERS, ...DURABLE]) {
    const values = outcomes
      .filter((o) => o.run === row.run && o.broker === b && o.result !== undefined)
      .map((o) => row.value(o.result!));
    const med = median(values);
    if (med !== undefined) m[isOurs(b) ? 'ours' : b] = med;
  }
  return m;
}

function report(outcomes: Outcome[], ceilings: Map<string, number>, info: Record<string, string>): string {
  const lines: string[] = [];
  lines.push(
    '| Scenario | gen. ceiling | ours | Mosquitto | Aedes | ours/Mosquitto | ours/Aedes | target | met |',
  );
  lines.push('|---|--:|--:|--:|--:|--:|--:|---|:-:|');
  const ran = new Set(outcomes.map((o) => o.run));
  const memoryMedians = new Map<string, number | undefined>();
  for (const row of ROWS) {
    if (row.memoryRow === undefined && row.value === delivered)
      memoryMedians.set(row.run, rowMedians(row, outcomes).ours);
  }
  for (const row of ROWS) {
    if (!ran.has(row.run)) continue;
    const m = rowMedians(row, outcomes);
    const memory = row.memoryRow === undefined ? undefined : memoryMedians.get(row.memoryRow);
    const met = row.target?.met(m, memory);
    const ceiling = ceilings.get(row.run);
    const durableNote =
      row.memoryRow === undefined ? '' : ` (memory: ${fmt(memory)}, ${fmtRatio(ratio(m.ours, memory))})`;
    lines.push(
      `| ${row.label} | ${ceiling === undefined ? '' : fmt(ceiling, row.unit)} | ` +
        `${fmt(m.ours, row.unit)}${durableNote} | ${row.memoryRow === undefined ? fmt(m.mosquitto, row.unit) : '—'} | ` +
        `${row.memoryRow === undefined ? fmt(m.aedes, row.unit) : '—'} | ` +
        `${row.memoryRow === undefined ? fmtRatio(ratio(m.ours, m.mosquitto)) : '—'} | ` +
        `${row.memoryRow === undefined ? fmtRatio(ratio(m.ours, m.aedes)) : '—'} | ` +
        `${row.target?.text ?? ''} | ${met === undefined ? (row.target === undefined ? '' : '?') : met ? 'yes' : '**no**'} |`,
    );
  }

  // Efficiency: deliveries per CPU-second the broker actually got (the machine is shared).
  const eff: string[] = [];
  eff.push('| Scenario | ours | Mosquitto | Aedes | broker CPU used (cores): ours / Mosq / Aedes |');
  eff.push('|---|--:|--:|--:|---|');
  for (const row of ROWS) {
    if (!ran.has(row.run) || (row.value !== delivered && row.run !== 'f') || row.run === 'd') continue;
    const per: Partial<Record<Brokers, number>> = {};
    const cpu: Partial<Record<Brokers, number>> = {};
    for (const b of [...BROKERS, ...DURABLE]) {
      const rs = outcomes.filter(
        (o) => o.run === row.run && o.broker === b && o.result?.mode === 'throughput',
      );
      const key = isOurs(b) ? 'ours' : b;
      const e = median(rs.map((o) => row.value(o.result!) / tp(o.result!).brokerCpu));
      const c = median(rs.map((o) => tp(o.result!).brokerCpu));
      if (e !== undefined) per[key] = e;
      if (c !== undefined) cpu[key] = c;
    }
    eff.push(
      `| ${row.label.replace(/ \([^()]*\)$/, '')} (${row.unit} per broker CPU-second) | ${fmt(per.ours, row.unit)} | ${fmt(per.mosquitto, row.unit)} | ${fmt(per.aedes, row.unit)} | ` +
        `${[cpu.ours, cpu.mosquitto, cpu.aedes].map((x) => (x === undefined ? '—' : x.toFixed(2))).join(' / ')} |`,
    );
  }

  // Correctness over all repetitions.
  const corr: string[] = [];
  corr.push('| Run | broker | reps | expected | lost | duplicates | out of order | errors |');
  corr.push('|---|---|--:|--:|--:|--:|--:|---|');
  for (const run of RUNS) {
    for (const b of run.brokers) {
      const os = outcomes.filter((o) => o.run === run.id && o.broker === b);
      if (os.length === 0) continue;
      let expected = 0;
      let lost = 0;
      let dup = 0;
      let ooo = 0;
      const errs = new Set<string>();
      for (const o of os) {
        if (o.error !== undefined) errs.add(`run failed: ${o.error}`);
        const r = o.result;
        if (r === undefined) continue;
        for (const e of r.errors) errs.add(e);
        if (r.mode === 'idle') {
          if (r.failed > 0) errs.add(`${r.failed} connections failed`);
          continue;
        }
        expected += r.correctness.expected;
        lost += r.correctness.lost;
        dup += r.correctness.duplicates;
        ooo += r.correctness.outOfOrder;
        if (r.unacknowledged > 0) errs.add(`${r.unacknowledged} publishes never acknowledged`);
      }
      const qos0 = run.id === 'a' || run.id === 'c' || run.id === 'gc' || (run.id === 'f' && F_QOS === 0);
      const lostText =
        lost === 0
          ? '0'
          : `${lost.toLocaleString('en')} (${((100 * lost) / Math.max(1, expected)).toFixed(1)}%)${qos0 ? ' QoS 0' : ' **LOSS**'}`;
      corr.push(
        `| ${run.id} ${run.title} | ${b} | ${os.length} | ${run.id === 'e' ? '—' : expected.toLocaleString('en')} | ${run.id === 'e' ? '—' : lostText} | ` +
          `${dup === 0 ? '0' : `**${dup}**`} | ${ooo === 0 ? '0' : `**${ooo}**`} | ${[...errs].join('; ').replace(/\|/g, '/')} |`,
      );
    }
  }

  const infoLines = Object.entries(info).map(([k, v]) => `- ${k}: ${v}`);
  return [
    '## Machine',
    '',
    ...infoLines,
    '',
    '## Results (medians)',
    '',
    ...lines,
    '',
    '"gen. ceiling": the same publishers against a null sink (a trivial server on the broker CPU that discards',
    'and acknowledges); for a and c it is the publish rate, for b and f the acknowledged rate. c delivers each',
    'message to 100 subscribers, so its delivered rate can exceed the publish ceiling.',
    '',
    '## Efficiency (deliveries per CPU-second the broker process used)',
    '',
    'The machine is shared; this divides the delivered rate by the CPU time the broker process actually got',
    'during the measured window (utime + stime from /proc), which is less sensitive to other load.',
    '',
    ...eff,
    '',
    '## Correctness (all repetitions)',
    '',
    ...corr,
    '',
  ].join('\n');
}

const METHOD = `# Benchmarks: ours vs Mosquitto vs Aedes

Generated by \`pnpm bench:compare\` (package \`bench/\`; see bench/README.md). Method, in short:

- Every broker runs as its own process pinned to CPU 0; the load generator (Node, raw TCP sockets,
  pre-encoded packets patched per send, no MQTT library, glibc heap trimming off so that its reads do
  not page-fault) runs pinned to CPU 1. Only loopback is used.
- Every run starts a fresh broker; repetitions interleave brokers (rep → scenario → broker); the table
  shows medians. Each measurement follows a warm-up; rates count only the measured window.
- Our broker runs from its TypeScript sources through tsx (esbuild transpilation at load; the code
  that runs is the same JavaScript a build would emit), with \`maxInflightMessages: 65535\` and
  \`maxQueuedMessages: 1,000,000\`, in-memory store (g: LogStore, the app's default durable store, and SqliteStore for comparison;
  both with \`durability: 'fsync'\`: an acknowledgement waits for the fdatasync of what it promises, or
  for the persistent subscriber's acknowledgement of that message if that comes first). Mosquitto runs with
  \`max_queued_messages 0\`, \`max_queued_bytes 0\`, \`max_inflight_messages 0\` (no maximum),
  \`persistence false\`, \`set_tcp_nodelay true\`. Aedes runs with its defaults behind \`net.createServer\`.
- The subscribers check every delivery: counts, duplicates and order per publisher (sequence numbers
  in the payload). QoS 0 loss is a number, not an error.
- The machine is a shared 2-core VM: other work competes for both CPUs, so absolute numbers move
  between runs; compare columns within one run, and see the efficiency table.
`;

async function main(): Promise<void> {
  const haveMosquitto = ensureMosquitto();
  if (!HAS_TASKSET) log('warning: taskset not found; running unpinned');
  const info = machine();
  log(
    Object.entries(info)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\n'),
  );
  const runs = RUNS.filter((r) => only === undefined || only.has(r.letter) || only.has(r.id));
  const outcomes: Outcome[] = [];

  // The generator's own ceiling, once: the same publishers against the null sink.
  const ceilings = new Map<string, number>();
  log('\ngenerator ceiling (null sink):');
  for (const run of runs) {
    if (run.ceiling === undefined) continue;
    const o = await runOne(
      { ...run, spec: (port, pid) => ({ ...(run.spec(port, pid) as ThroughputSpec), subscribers: [] }) },
      'null-sink',
      0,
    );
    if (o.result?.mode === 'throughput') ceilings.set(run.id, run.ceiling(o.result));
  }

  const t0 = Date.now();
  for (let rep = 0; rep < reps; rep++) {
    log(`\nrepetition ${rep + 1}/${reps}`);
    for (const run of runs) {
      const order = run.brokers.filter(
        (b) =>
          (b !== 'mosquitto' || haveMosquitto) &&
          (onlyBrokers === undefined || onlyBrokers.has(isOurs(b) ? 'ours' : b)),
      );
      // Rotate the broker order per repetition so no broker always runs first.
      const rotated = order.map((_, i) => order[(i + rep) % order.length]!);
      for (const broker of rotated) outcomes.push(await runOne(run, broker, rep));
    }
  }
  log(`\nbenchmark took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  const body = report(outcomes, ceilings, info);
  process.stdout.write(`\n${body}\n`);
  if (write) {
    const out = join(REPO_ROOT, 'docs', 'benchmarks.md');
    mkdirSync(join(REPO_ROOT, 'docs'), { recursive: true });
    writeFileSync(out, `${METHOD}\n${body}`);
    log(`written: ${out}`);
  }
  writeFileSync(
    join(BENCH_DIR, 'last-run.json'),
    `${JSON.stringify({ info, outcomes, ceilings: [...ceilings] }, null, 1)}\n`,
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
