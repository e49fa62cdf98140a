/** Starting the brokers, the null sink and the load generator as pinned child processes. */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult, LoadSpec } from './load/spec.js';

export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const MOSQUITTO = '/usr/sbin/mosquitto';
export const BROKER_CPU = 0;
export const GENERATOR_CPU = 1;

export type BrokerKind = 'ours' | 'ours-log' | 'ours-sqlite' | 'mosquitto' | 'aedes' | 'null-sink';

/** Our broker, in memory or with one of its durable stores. */
export function isOurs(kind: BrokerKind): kind is 'ours' | 'ours-log' | 'ours-sqlite' {
  return kind === 'ours' || kind === 'ours-log' || kind === 'ours-sqlite';
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function hasCommand(name: string): boolean {
  try {
    execFileSync('bash', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const HAS_TASKSET = hasCommand('taskset');

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Spawns `command` through bash with a raised open-files limit and pinned to `cpu`; `exec` keeps
 * the pid, so the returned child's pid is the program's own (for /proc readings).
 */
export function spawnPinned(cpu: number, command: string[], env?: NodeJS.ProcessEnv): ChildProcess {
  const pin = HAS_TASKSET ? `taskset -c ${cpu} ` : '';
  const line = `ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${pin}${command.map(quote).join(' ')}`;
  return spawn('bash', ['-c', line], {
    cwd: BENCH_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(env === undefined ? {} : { env: { ...process.env, ...env } }),
  });
}

const NODE_TS = [process.execPath, '--conditions=@broker/source', '--import', 'tsx'];

/** Keeps the last few KiB of a stream, for error reports. */
function tail(child: ChildProcess): () => string {
  let text = '';
  // BENCH_BROKER_OUTPUT=<file>: every broker's output is also appended there (diagnosis, e.g. --trace-gc).
  const copyTo = process.env['BENCH_BROKER_OUTPUT'];
  const keep = (chunk: Buffer): void => {
    text = (text + chunk.toString()).slice(-4000);
    if (copyTo !== undefined) appendFileSync(copyTo, chunk);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => text;
}

export interface RunningBroker {
  kind: BrokerKind;
  pid: number;
  port: number;
  log(): string;
  stop(): Promise<void>;
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`exited (${child.exitCode ?? child.signalCode})`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`not listening on ${port} after ${timeoutMs} ms`);
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  if (await waitExit(child, 5000)) return;
  child.kill('SIGKILL');
  await waitExit(child, 2000);
}

export interface BrokerOptions {
  /** Extra node flags for our broker (e.g. --cpu-prof). */
  oursNodeFlags?: string[];
}

/** Starts a fresh broker on `port`, pinned to the broker CPU, and waits until it accepts connections. */
export async function startBroker(
  kind: BrokerKind,
  port: number,
  options: BrokerOptions = {},
): Promise<RunningBroker> {
  const dir = mkdtempSync(join(tmpdir(), `bench-${kind}-`));
  let command: string[];
  switch (kind) {
    case 'ours':
      command = [...NODE_TS, ...(options.oursNodeFlags ?? []), 'src/servers/ours.ts', String(port), 'memory'];
      break;
    case 'ours-log':
    case 'ours-sqlite':
      command = [
        ...NODE_TS,
        ...(options.oursNodeFlags ?? []),
        'src/servers/ours.ts',
        String(port),
        kind === 'ours-log' ? 'log' : 'sqlite',
        dir,
      ];
      break;
    case 'aedes':
      command = [
        ...NODE_TS,
        ...(process.env['BENCH_AEDES_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== ''),
        'src/servers/aedes.ts',
        String(port),
      ];
      break;
    case 'null-sink':
      command = [...NODE_TS, 'src/servers/null-sink.ts', String(port)];
      break;
    case 'mosquitto': {
      const conf = join(dir, 'mosquitto.conf');
      writeFileSync(
        conf,
        [
          `listener ${port} 127.0.0.1`,
          'allow_anonymous true',
          'persistence false',
          // 0 = no maximum (mosquitto.conf(5), 2.0.11): nothing is dropped for queue or in-flight limits.
          'max_queued_messages 0',
          'max_queued_bytes 0',
          'max_inflight_messages 0',
          'max_connections -1',
          'set_tcp_nodelay true',
          'log_dest stderr',
          'log_type error',
          'log_type warning',
          '',
        ].join('\n'),
      );
      command = [MOSQUITTO, '-c', conf];
      break;
    }
  }
  const child = spawnPinned(BROKER_CPU, command);
  const log = tail(child);
  try {
    await waitForPort(port, child, 30_000);
  } catch (e) {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${kind} did not start: ${e instanceof Error ? e.message : String(e)}\n${log()}`);
  }
  return {
    kind,
    pid: child.pid ?? 0,
    port,
    log,
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * glibc malloc settings for the generator: no trimming of the heap's top. Node allocates a buffer for
 * every socket read (64 KiB under load); with glibc's default trimming the heap top is given back and
 * taken again all the time, and every read then copies into fresh pages and page-faults. In f (1 MiB
 * payloads) that made the generator, not the broker, the limit in some repetitions (its kernel time,
 * `_copy_to_iter` with the faults, took 0.9-1.0 CPU while its JS thread idled), for every broker.
 * The brokers run with the defaults, as their users run them.
 */
function generatorTunables(): string {
  const noTrim = 'glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=268435456';
  const inherited = process.env['GLIBC_TUNABLES'];
  return inherited === undefined || inherited === '' ? noTrim : `${inherited}:${noTrim}`;
}

/** Runs the load generator pinned to its CPU; resolves with its JSON result. */
export async function runGenerator(spec: LoadSpec, timeoutMs: number): Promise<LoadResult> {
  // BENCH_GEN_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/gen": node flags for the generator (diagnosis).
  const flags = (process.env['BENCH_GEN_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
  const child = spawnPinned(
    GENERATOR_CPU,
    [NODE_TS[0]!, ...flags, ...NODE_TS.slice(1), 'src/load/generator.ts', JSON.stringify(spec)],
    { GLIBC_TUNABLES: generatorTunables() },
  );
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  const exited = await waitExit(child, timeoutMs);
  if (!exited) {
    await stopChild(child);
    throw new Error(`generator timed out after ${timeoutMs} ms\n${stderr}`);
  }
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as LoadResult;
  } catch {
    throw new Error(`generator failed (exit ${child.exitCode}): ${stderr || stdout}`);
  }
}
