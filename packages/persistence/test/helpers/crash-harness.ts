/**
 * Repeated kill -9 of a broker process (core + SqliteStore or LogStore, test/fixtures/crash-broker.ts) under
 * continuous QoS 1 and QoS 2 load, restarted each time on the same data directory. Offline persistent
 * subscribers (clean session 0) reconnect at the end and drain: every acknowledged message must
 * arrive (zero loss) and no QoS 2 message may arrive twice.
 *
 * Used by test/crash-repeat.test.ts (3 kills) and by scripts/crash-repeat.mjs, which runs this file
 * as a program: node --conditions=@broker/source --import tsx test/helpers/crash-harness.ts --kills 20
 *
 * Bounded by the broker's queue: each offline session keeps at most maxQueuedMessages (default 1,000)
 * messages and drops newer ones by design, so the load is spread over SESSIONS subscriber sessions and
 * each broker life publishes at most a budget that keeps every session under QUEUE_BUDGET in total.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { removeDir, tempDir } from './temp-dir.js';

const packageDir = fileURLToPath(new URL('../..', import.meta.url));
const brokerScript = fileURLToPath(new URL('../fixtures/crash-broker.ts', import.meta.url));

/** Subscriber sessions; message n goes to session n % SESSIONS. */
const SESSIONS = 4;
/** Stay under the default maxQueuedMessages (1,000) per offline session, with room for in-doubt ones. */
const QUEUE_BUDGET = 900;
/** Messages each publisher keeps in flight. */
const WINDOW = 8;

export interface CrashRepeatOptions {
  kills: number;
  /** Seed of the random kill moments (timing still varies run to run). */
  seed?: number;
  /** Progress lines (per kill stats); default: nothing. */
  log?: (line: string) => void;
  /** Time allowed for the final drain. Default 20 s. */
  drainMs?: number;
  /** The durable store of the broker process. Default 'sqlite'. */
  store?: CrashStoreKind;
}

export interface KillStats {
  kill: number;
  /** How the kill was triggered: right after the n-th acknowledgement, or after a delay. */
  trigger: string;
  port: number;
  /** Milliseconds from spawn to "ready" for this broker life. */
  startMs: number;
  /** Milliseconds the broker was under load before the kill. */
  uptimeMs: number;
  sent: { q1: number; q2: number };
  acked: { q1: number; q2: number };
}

export interface CrashRepeatResult {
  seed: number;
  kills: KillStats[];
  /** Messages acknowledged to publishers (PUBACK / PUBCOMP) over all broker lives. */
  acknowledged: { q1: number; q2: number };
  /** Sent but not acknowledged before a kill: may or may not arrive. */
  inDoubt: { sent: number; delivered: number };
  /** Distinct messages delivered, and deliveries in all. */
  delivered: { distinct: number; total: number };
  /** Acknowledged messages that never arrived. Must be empty. */
  lost: string[];
  /** QoS 2 messages that arrived more than once. Must be empty. */
  duplicatesQos2: string[];
  /** QoS 1 messages that arrived more than once (allowed: at least once). */
  duplicatesQos1: number;
  /** Deliveries of messages nobody published. Must be empty. */
  unexpected: string[];
  /** Whether every subscriber session was found again (CONNACK session present 1). */
  sessionsPresent: boolean;
}

/** A seeded PRNG (mulberry32): kill moments are reproducible given the seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Waits for `promise`, failing with what was awaited after `ms` (so a hang names its step). */
async function step<T>(what: string, promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface BrokerProcess {
  child: ChildProcess;
  port: number;
  startMs: number;
}

/** The durable stores the crash fixture runs: `log` compacts from 4 KiB on, to crash amid compactions. */
export type CrashStoreKind = 'sqlite' | 'log';

/** Spawns test/fixtures/crash-broker.ts on `dataDir`; resolves once it printed "ready <port>". */
export function startCrashBroker(
  dataDir: string,
  portFile: string,
  store: CrashStoreKind = 'sqlite',
): Promise<BrokerProcess> {
  const started = performance.now();
  const child = spawn(
    process.execPath,
    ['--conditions=@broker/source', '--import', 'tsx', brokerScript, dataDir, portFile, store],
    { cwd: packageDir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    let stdout = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.includes('\n') && stdout.startsWith('ready')) {
        const port = Number(readFileSync(portFile, 'utf8'));
        if (`ready ${port}` !== stdout.split('\n')[0]) reject(new Error(`unexpected output: ${stdout}`));
        else resolve({ child, port, startMs: Math.round(performance.now() - started) });
      }
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`broker exited early (${code ?? signal}): ${stderr}`)),
    );
  });
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function exited(child: ChildProcess): Promise<void> {
  return isRunning(child) ? new Promise((resolve) => child.once('exit', () => resolve())) : Promise.resolve();
}

function connect(port: number, clientId: string, clean: boolean, clients: MqttClient[]): MqttClient {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId,
    clean,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
  });
  client.on('error', () => undefined); // a killed broker is expected here
  clients.push(client);
  return client;
}

function connected(client: MqttClient): Promise<boolean> {
  return new Promise((resolve, reject) => {
    client.once('connect', (connack) => resolve(connack.sessionPresent));
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

/** Runs the whole scenario; always kills what it started and removes its data directory. */
export async function runCrashRepeat(options: CrashRepeatOptions): Promise<CrashRepeatResult> {
  const kills = Math.max(1, Math.floor(options.kills));
  const seed = options.seed ?? (Math.random() * 0x7fffffff) | 0;
  const rand = random(seed);
  const log = options.log ?? (() => undefined);
  const dir = tempDir('broker-crash-repeat-');
  const dataDir = join(dir, 'data');
  const children: ChildProcess[] = [];
  const clients: MqttClient[] = [];
  let starts = 0;
  const start = async () => {
    const broker = await step(
      'broker ready',
      startCrashBroker(dataDir, join(dir, `port-${starts++}`), options.store).then((b) => {
        children.push(b.child);
        return b;
      }),
      20_000,
    );
    return broker;
  };

  // Per broker life, this many messages at most: every session stays under QUEUE_BUDGET in total.
  const perLife = Math.max(WINDOW * 2 + 4, Math.floor((QUEUE_BUDGET * SESSIONS) / kills));
  const published = new Map<string, 1 | 2>(); // payload → QoS, every message ever sent
  const acked = new Set<string>();
  const stats: KillStats[] = [];

  try {
    // 1. The persistent subscribers: subscribe once, then go offline.
    let broker = await start();
    for (let s = 0; s < SESSIONS; s++) {
      const sub = connect(broker.port, `crash-repeat-sub-${s}`, false, clients);
      await step(`subscriber ${s} connected`, connected(sub));
      await step(`subscriber ${s} subscribed`, sub.subscribeAsync(`load/${s}/#`, { qos: 2 }));
      await step(`subscriber ${s} ended`, sub.endAsync());
    }

    // 2. Load, kill -9, restart on the same data directory; `kills` times.
    for (let kill = 1; kill <= kills; kill++) {
      const pubs = {
        q1: connect(broker.port, `crash-repeat-pub-q1`, true, clients),
        q2: connect(broker.port, `crash-repeat-pub-q2`, true, clients),
      };
      await step('publishers connected', Promise.all([connected(pubs.q1), connected(pubs.q2)]));
      const life: KillStats = {
        kill,
        trigger: '',
        port: broker.port,
        startMs: broker.startMs,
        uptimeMs: 0,
        sent: { q1: 0, q2: 0 },
        acked: { q1: 0, q2: 0 },
      };
      const child = broker.child;
      const loadStarted = performance.now();
      // Half the kills come right after the n-th acknowledgement (inside its callback, before any
      // other I/O is handled); the others after a random delay, wherever the flows happen to be.
      const afterAck = rand() < 0.5;
      const killAtAck = 1 + Math.floor(rand() * (perLife - 2 * WINDOW));
      const killAfterMs = 5 + Math.floor(rand() * 90); // mostly before the budget is spent
      life.trigger = afterAck ? `after ack #${killAtAck}` : `after ${killAfterMs} ms`;
      const doKill = () => {
        if (isRunning(child)) {
          life.uptimeMs = Math.round(performance.now() - loadStarted);
          child.kill('SIGKILL');
        }
      };
      let seq = 0;
      const send = (qos: 1 | 2) => {
        const key = qos === 1 ? 'q1' : 'q2';
        const client = pubs[key];
        if (!isRunning(child) || seq >= perLife || !client.connected) return;
        const n = seq++;
        const payload = `${key}-${kill}-${n}`;
        published.set(payload, qos);
        life.sent[key]++;
        client.publish(`load/${n % SESSIONS}/${key}`, payload, { qos }, (error) => {
          if (error) return;
          acked.add(payload);
          life.acked[key]++;
          if (afterAck && life.acked.q1 + life.acked.q2 === killAtAck) doKill();
          else send(qos);
        });
      };
      for (let i = 0; i < WINDOW; i++) {
        send(1);
        send(2);
      }
      const timer = afterAck ? undefined : setTimeout(doKill, killAfterMs);
      // Whatever triggered, the kill happens: at the latest when this life's budget is spent.
      await step(
        `kill ${kill}`,
        (async () => {
          while (isRunning(child) && performance.now() - loadStarted < 8_000) {
            if (afterAck && seq >= perLife && life.acked.q1 + life.acked.q2 >= killAtAck) break;
            await sleep(5);
          }
          doKill();
          await exited(child);
        })(),
        15_000,
      );
      clearTimeout(timer);
      pubs.q1.end(true);
      pubs.q2.end(true);
      const restarted = await start();
      log(
        `kill ${String(kill).padStart(3)}: ${life.trigger.padEnd(16)} up ${String(life.uptimeMs).padStart(4)} ms, sent ${life.sent.q1}+${life.sent.q2}, acked ${life.acked.q1} QoS 1 + ${life.acked.q2} QoS 2; restart ${restarted.startMs} ms`,
      );
      stats.push(life);
      broker = restarted;
    }

    // 3. The subscribers come back and drain; then again, to catch late redeliveries.
    const counts = new Map<string, number>();
    const unexpected: string[] = [];
    let sessionsPresent = true;
    const drain = async (quietMs: number, untilAllAcked: boolean) => {
      const subs: MqttClient[] = [];
      for (let s = 0; s < SESSIONS; s++) {
        const sub = connect(broker.port, `crash-repeat-sub-${s}`, false, clients);
        sub.on('message', (_topic, payload) => {
          const text = payload.toString();
          if (!published.has(text)) unexpected.push(text);
          counts.set(text, (counts.get(text) ?? 0) + 1);
        });
        subs.push(sub);
      }
      const present = await step('subscribers reconnected', Promise.all(subs.map(connected)));
      if (present.some((p) => !p)) sessionsPresent = false;
      const deadline = performance.now() + (options.drainMs ?? 20_000);
      let lastTotal = -1;
      let quietSince = performance.now();
      for (;;) {
        const total = [...counts.values()].reduce((a, b) => a + b, 0);
        if (total !== lastTotal) {
          lastTotal = total;
          quietSince = performance.now();
        }
        const allAcked = !untilAllAcked || [...acked].every((p) => counts.has(p));
        if (allAcked && performance.now() - quietSince >= quietMs) break;
        if (performance.now() > deadline) break;
        await sleep(20);
      }
      // A graceful end lets the last PUBACK / PUBCOMP reach the broker.
      await step('subscribers ended', Promise.all(subs.map((sub) => sub.endAsync())));
    };
    await drain(1000, true);
    await drain(1000, false);

    const lost = [...acked].filter((p) => !counts.has(p));
    const duplicatesQos2 = [...counts].filter(([p, n]) => published.get(p) === 2 && n > 1).map(([p]) => p);
    const duplicatesQos1 = [...counts].filter(([p, n]) => published.get(p) === 1 && n > 1).length;
    const inDoubt = [...published.keys()].filter((p) => !acked.has(p));
    return {
      seed,
      kills: stats,
      acknowledged: {
        q1: [...acked].filter((p) => published.get(p) === 1).length,
        q2: [...acked].filter((p) => published.get(p) === 2).length,
      },
      inDoubt: { sent: inDoubt.length, delivered: inDoubt.filter((p) => counts.has(p)).length },
      delivered: { distinct: counts.size, total: [...counts.values()].reduce((a, b) => a + b, 0) },
      lost,
      duplicatesQos2,
      duplicatesQos1,
      unexpected,
      sessionsPresent,
    };
  } finally {
    for (const client of clients.splice(0)) client.end(true);
    for (const child of children) {
      if (isRunning(child)) {
        const done = exited(child);
        child.kill('SIGKILL');
        await done;
      }
    }
    removeDir(dir);
  }
}

/** A one-paragraph summary of a result. */
export function summarize(r: CrashRepeatResult): string {
  return [
    `${r.kills.length} kill(s) -9, seed ${r.seed}`,
    `acknowledged: ${r.acknowledged.q1} QoS 1 + ${r.acknowledged.q2} QoS 2 = ${r.acknowledged.q1 + r.acknowledged.q2}`,
    `in doubt (sent, not acknowledged before a kill): ${r.inDoubt.sent}, of which delivered ${r.inDoubt.delivered}`,
    `delivered: ${r.delivered.distinct} distinct, ${r.delivered.total} deliveries; QoS 1 duplicates (allowed): ${r.duplicatesQos1}`,
    `LOST acknowledged: ${r.lost.length}${r.lost.length > 0 ? ` (${r.lost.slice(0, 10).join(', ')}${r.lost.length > 10 ? ', …' : ''})` : ''}`,
    `QoS 2 DUPLICATES: ${r.duplicatesQos2.length}${r.duplicatesQos2.length > 0 ? ` (${r.duplicatesQos2.slice(0, 10).join(', ')})` : ''}`,
    `unexpected: ${r.unexpected.length}; sessions present after restart: ${r.sessionsPresent}`,
  ].join('\n');
}

export function passed(r: CrashRepeatResult): boolean {
  return (
    r.lost.length === 0 && r.duplicatesQos2.length === 0 && r.unexpected.length === 0 && r.sessionsPresent
  );
}

// As a program (scripts/crash-repeat.mjs): --kills N [--seed S] [--store sqlite|log]; exit 1 on loss or
// duplicate.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      kills: { type: 'string', default: '20' },
      seed: { type: 'string' },
      store: { type: 'string', default: 'sqlite' },
    },
  });
  if (values.store !== 'sqlite' && values.store !== 'log') {
    console.error(`--store ${values.store}: sqlite or log`);
    process.exit(2);
  }
  const started = performance.now();
  const result = await runCrashRepeat({
    kills: Number(values.kills),
    ...(values.seed === undefined ? {} : { seed: Number(values.seed) }),
    store: values.store,
    log: (line) => console.log(line),
  });
  console.log(`\n${summarize(result)}`);
  console.log(`took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const ok = passed(result);
  console.log(ok ? 'PASS' : 'FAIL');
  process.exit(ok ? 0 : 1);
}
