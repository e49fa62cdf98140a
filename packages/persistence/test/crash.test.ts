import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { type CrashStoreKind, startCrashBroker } from './helpers/crash-harness.js';
import { removeDir, tempDir } from './helpers/temp-dir.js';

// The promise under kill -9: a broker process (core + SqliteStore or LogStore on TCP) is killed right
// after it acknowledged every PUBLISH; a new process on the same data directory delivers every one of
// them. Meanwhile a persistent subscriber drains what was queued for it before: with the LogStore
// (which compacts from 4 KiB on in the fixture) that is garbage, so the kill comes after compactions.

const N = 200;
/** Messages drained meanwhile: more garbage than the N + N messages under test are live state. */
const DRAIN = 4 * N;

const children: ChildProcess[] = [];
const clients: MqttClient[] = [];
let dataDir: string | undefined;

afterEach(async () => {
  for (const client of clients.splice(0)) client.end(true);
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  }
  if (dataDir !== undefined) removeDir(dataDir);
  dataDir = undefined;
});

/** Starts the broker process (the harness shared with `pnpm crash-repeat`) and keeps it for afterEach. */
async function startBroker(
  dir: string,
  kind: CrashStoreKind,
): Promise<{ child: ChildProcess; port: number }> {
  const broker = await startCrashBroker(join(dir, 'data'), join(dir, `port-${children.length}`), kind);
  children.push(broker.child);
  return broker;
}

/** Waits for `promise`, failing with what was awaited after `ms` (so a hang names its step). */
async function step<T>(what: string, promise: Promise<T>, ms = 8_000): Promise<T> {
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

function kill9(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

function connect(port: number, clientId: string, clean: boolean): MqttClient {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId,
    clean,
    reconnectPeriod: 0,
    protocolVersion: 4,
  });
  clients.push(client);
  return client;
}

function connected(client: MqttClient): Promise<void> {
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
}

describe.each([
  ['SqliteStore', 'sqlite'],
  ['LogStore', 'log'],
] as const)('%s under kill -9', (_name, kind) => {
  it('delivers every acknowledged message after a SIGKILL: QoS 1 at least once, QoS 2 exactly once, retained kept', async () => {
    dataDir = tempDir('broker-crash-');
    const first = await step('first broker ready', startBroker(dataDir, kind), 12_000);
    let compactions = 0;
    first.child.stdout!.on('data', (chunk: string) => {
      for (const [, n] of chunk.matchAll(/compactions (\d+)/g)) compactions = Number(n);
    });

    // Queued for a persistent subscriber, to be drained while the messages under test come in.
    const drainer = connect(first.port, 'crash-drain', false);
    await step('drainer connected', connected(drainer));
    await step('drainer subscribed', drainer.subscribeAsync('drain/#', { qos: 1 }));
    await step('drainer ended', drainer.endAsync());

    const subscriber = connect(first.port, 'crash-sub', false);
    await step('subscriber connected', connected(subscriber));
    await step('subscribed', subscriber.subscribeAsync('crash/#', { qos: 2 }));
    await step('subscriber ended', subscriber.endAsync());

    const publisher = connect(first.port, 'crash-pub', true);
    await step('publisher connected', connected(publisher));
    await step(
      'drain messages acknowledged',
      Promise.all(
        Array.from({ length: DRAIN }, (_, i) => publisher.publishAsync('drain/x', `d-${i}`, { qos: 1 })),
      ),
    );
    const draining = connect(first.port, 'crash-drain', false);
    let drained = 0;
    draining.on('message', () => drained++);
    const acknowledged: Array<Promise<unknown>> = [];
    for (let i = 0; i < N; i++) {
      acknowledged.push(publisher.publishAsync('crash/q1', `q1-${i}`, { qos: 1 }));
      acknowledged.push(publisher.publishAsync('crash/q2', `q2-${i}`, { qos: 2 }));
    }
    acknowledged.push(publisher.publishAsync('crash/retained/a', 'retained-a', { qos: 1, retain: true }));
    acknowledged.push(publisher.publishAsync('crash/retained/b', 'retained-b', { qos: 2, retain: true }));
    await step('every PUBLISH acknowledged', Promise.all(acknowledged)); // PUBACK / PUBCOMP for each
    await step(
      `drained (and, with the log, compacted)`,
      (async () => {
        while (drained < DRAIN || (kind === 'log' && compactions === 0))
          await new Promise((resolve) => setTimeout(resolve, 5));
      })(),
    ).catch((error: Error) => {
      throw new Error(`${error.message} (${drained}/${DRAIN} drained, ${compactions} compactions)`);
    });
    await step('first broker killed', kill9(first.child)); // at once: no graceful close, no final commit
    publisher.end(true);

    const second = await step('second broker ready', startBroker(dataDir, kind), 12_000);
    const counts = new Map<string, number>();
    const q1 = new Set<string>();
    const q2 = new Set<string>();
    const back = connect(second.port, 'crash-sub', false);
    const allArrived = new Promise<void>((resolve) => {
      back.on('message', (topic, payload) => {
        const text = payload.toString();
        counts.set(text, (counts.get(text) ?? 0) + 1);
        if (topic === 'crash/q1') q1.add(text);
        if (topic === 'crash/q2') q2.add(text);
        if (q1.size === N && q2.size === N && counts.has('retained-a') && counts.has('retained-b')) resolve();
      });
    });
    const sessionPresent = new Promise<boolean>((resolve) =>
      back.once('connect', (connack) => resolve(connack.sessionPresent)),
    );
    await step('every message delivered again', allArrived).catch((error: Error) => {
      throw new Error(`${error.message} (${q1.size}/${N} QoS 1 and ${q2.size}/${N} QoS 2 arrived)`);
    });
    expect(await sessionPresent).toBe(true);
    for (let i = 0; i < N; i++) {
      expect(counts.get(`q1-${i}`) ?? 0).toBeGreaterThanOrEqual(1);
      expect(counts.get(`q2-${i}`)).toBe(1);
    }
    // Let the last PUBCOMPs reach the broker, then make sure no QoS 2 message comes a second time.
    await step('subscriber ended again', back.endAsync());
    expect([...counts].filter(([text, n]) => text.startsWith('q2-') && n !== 1)).toEqual([]);

    const fresh = connect(second.port, 'crash-fresh', true);
    await step('fresh subscriber connected', connected(fresh));
    const retained = new Map<string, boolean>();
    const bothRetained = new Promise<void>((resolve) => {
      fresh.on('message', (topic, payload, packet) => {
        retained.set(`${topic}=${payload.toString()}`, packet.retain);
        if (retained.size === 2) resolve();
      });
    });
    await step('fresh subscribed', fresh.subscribeAsync('crash/retained/#', { qos: 1 }));
    await step('retained messages received', bothRetained);
    expect(Object.fromEntries(retained)).toEqual({
      'crash/retained/a=retained-a': true,
      'crash/retained/b=retained-b': true,
    });
  }, 30_000);

  it('an acknowledgement sent before the commit (every persistent subscriber had acknowledged) loses nothing under kill -9', async () => {
    // Core acknowledges a PUBLISH before its commit once every persistent session it was recorded
    // for acknowledged it: here an online subscriber does so within the fsync. Whatever the
    // publisher saw acknowledged must have reached that subscriber, before the kill or after it.
    dataDir = tempDir('broker-crash-online-');
    const first = await step('first broker ready', startBroker(dataDir, kind), 12_000);
    const counts = new Map<string, number>();
    const count = (payload: Buffer) => {
      const text = payload.toString();
      counts.set(text, (counts.get(text) ?? 0) + 1);
    };
    const online = connect(first.port, 'crash-online', false);
    await step('online subscriber connected', connected(online));
    await step('online subscribed', online.subscribeAsync('online/#', { qos: 1 }));
    online.on('message', (_topic, payload) => count(payload));
    const publisher = connect(first.port, 'crash-pub-online', true);
    await step('publisher connected', connected(publisher));
    const acknowledged = Array.from({ length: N }, (_, i) =>
      publisher.publishAsync('online/q1', `o-${i}`, { qos: 1 }),
    );
    await step('every PUBLISH acknowledged', Promise.all(acknowledged));
    await step('first broker killed', kill9(first.child));
    online.end(true);
    publisher.end(true);

    const second = await step('second broker ready', startBroker(dataDir, kind), 12_000);
    const back = connect(second.port, 'crash-online', false);
    back.on('message', (_topic, payload) => count(payload));
    const missing = () => Array.from({ length: N }, (_, i) => `o-${i}`).filter((text) => !counts.has(text));
    await step('session back', connected(back));
    await step(
      'every acknowledged message received, before or after the kill',
      (async () => {
        while (missing().length > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      })(),
    ).catch((error: Error) => {
      throw new Error(`${error.message} (missing: ${missing().slice(0, 10).join(', ')})`);
    });
    expect(missing()).toEqual([]);
  }, 30_000);
});
