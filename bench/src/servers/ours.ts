/**
 * Our broker for the benchmark: the MqttBroker facade with one TCP listener on 127.0.0.1.
 * Usage: ours.ts <port> [memory | log <dataDir> | sqlite <dataDir>]. Prints "ready <port>" once
 * listening. The durable runs open LogStore (the app's default durable store) or SqliteStore.
 */
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MqttBroker, type MqttBrokerOptions } from '@broker/app';

type Store = NonNullable<MqttBrokerOptions['store']>;

/**
 * A durable store: LogStore or SqliteStore. @broker/persistence is a dependency of @broker/app, not of
 * the bench: resolve it from there.
 */
async function openDurableStore(kind: 'log' | 'sqlite', dataDir: string): Promise<Store> {
  const appRequire = createRequire(fileURLToPath(import.meta.resolve('@broker/app')));
  const path = appRequire.resolve(`@broker/persistence/${kind}`);
  const mod = (await import(pathToFileURL(path).href)) as Record<
    'SqliteStore' | 'LogStore',
    { open(options: { dataDir: string }): Store }
  >;
  // BENCH_OURS_STORE='{"commitIntervalMs":1}': other store options for a diagnosis run (see README).
  const extra = JSON.parse(process.env['BENCH_OURS_STORE'] ?? '{}') as Record<string, unknown>;
  return mod[kind === 'log' ? 'LogStore' : 'SqliteStore'].open({ ...extra, dataDir });
}

const port = Number(process.argv[2]);
const mode = process.argv[3] ?? 'memory';
if (mode !== 'memory' && mode !== 'log' && mode !== 'sqlite') throw new Error(`unknown mode ${mode}`);
const store = mode === 'memory' ? undefined : await openDurableStore(mode, process.argv[4] ?? '');
// BENCH_OURS_LIMITS='{"flowControlBytes":0}': other limits for a diagnosis run (see README).
const extraLimits = JSON.parse(process.env['BENCH_OURS_LIMITS'] ?? '{}') as MqttBrokerOptions['limits'];
const broker = new MqttBroker({
  limits: { maxInflightMessages: 65535, maxQueuedMessages: 1_000_000, ...extraLimits },
  ...(store === undefined ? {} : { store }),
});
broker.on('error', (e) => {
  process.stderr.write(`broker error: ${JSON.stringify(e)}\n`);
});
broker.addListener({ protocol: 'tcp', host: '127.0.0.1', port });
await broker.startListening();
process.stdout.write(`ready ${port}\n`);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  // For diagnosis runs (BENCH_BROKER_OUTPUT): what flow control and the limits did during the run.
  const c = broker.core.counters;
  process.stderr.write(
    `counters: received ${c.messagesReceived} sent ${c.messagesSent} dropped ${c.messagesDropped} ` +
      `publisherHolds ${c.publisherHolds} slowConsumers ${c.slowConsumers}\n`,
  );
  const s = store as { commits?: number; syncs?: number } | undefined;
  if (s?.commits !== undefined) process.stderr.write(`store: commits ${s.commits} syncs ${s.syncs}\n`);
  const timer = setTimeout(() => process.exit(0), 3000);
  broker
    .shutdown()
    .catch((e: unknown) => process.stderr.write(`shutdown: ${String(e)}\n`))
    .finally(() => {
      clearTimeout(timer);
      process.exit(0);
    });
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

// BENCH_OURS_HEAP_SAMPLE=<file>: a sampling heap profile (DevTools .heapprofile) of the objects that
// outlived young-generation GCs (those a full GC collects, and those still live), from 2.5 s to 5.5 s
// after start: what feeds the old generation under load (see README).
const heapSampleFile = process.env['BENCH_OURS_HEAP_SAMPLE'];
if (heapSampleFile !== undefined) {
  const { Session } = await import('node:inspector');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  const post = <T>(method: string, params: object = {}) =>
    new Promise<T>((resolve, reject) =>
      session.post(method, params, (error, result) => (error ? reject(error) : resolve(result as T))),
    );
  await post('HeapProfiler.enable');
  setTimeout(() => {
    const sentBefore = broker.core.counters.messagesSent;
    void post('HeapProfiler.startSampling', {
      samplingInterval: 8192,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: false,
    });
    setTimeout(() => {
      void post<{ profile: unknown }>('HeapProfiler.stopSampling').then(({ profile }) => {
        writeFileSync(heapSampleFile, JSON.stringify(profile));
        process.stderr.write(
          `heap sample written to ${heapSampleFile} (${broker.core.counters.messagesSent - sentBefore} messages sent meanwhile)\n`,
        );
      });
    }, 3000).unref();
  }, 2500).unref();
}
