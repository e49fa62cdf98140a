/**
 * JavaScript heap held per idle connection by the engine: N clients connect (clean session,
 * keep-alive 60) over in-memory connections and stay idle. Includes the in-memory connection pair
 * (a few closures); a real transport's socket costs come on top. Prints a number; asserts nothing.
 *
 *   node --expose-gc --conditions=@broker/source --import tsx bench/memory.bench.ts   (N=20000)
 */
import { encode } from '@broker/codec';
import { Broker, createConnectionPair, type MemoryPeer } from '@broker/core';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');
const N = Number(process.env['N'] ?? 20_000);

const broker = new Broker();
const peers: MemoryPeer[] = [];
gc();
gc();
const before = process.memoryUsage().heapUsed;
for (let i = 0; i < N; i++) {
  const { connection, peer } = createConnectionPair();
  peer.onData = () => {};
  broker.accept(connection);
  peer.write(
    encode({
      type: 'connect',
      protocolName: 'MQTT',
      protocolLevel: 4,
      clientId: `idle-${i}`,
      cleanSession: true,
      keepaliveSeconds: 60,
    }),
  );
  peers.push(peer);
}
gc();
gc();
const perConnection = (process.memoryUsage().heapUsed - before) / N;
console.log(
  `\nengine heap per idle connection (${N.toLocaleString('en-US')} clients, in-memory pair included): ${Math.round(perConnection)} bytes`,
);
await broker.close();
