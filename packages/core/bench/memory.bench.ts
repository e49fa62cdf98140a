/**
 * JavaScript heap held per idle connection by the engine: N clients connect (clean session,
 * keep-alive 60) over in-memory connections and stay idle. The in-memory connection pair's own
 * heap (its closures), measured first with N pairs and no broker, is subtracted; a real transport's
 * socket costs come on top. Prints numbers; asserts nothing.
 *
 *   node --expose-gc --conditions=@broker/source --import tsx bench/memory.bench.ts   (N=20000)
 */
import { encode } from '@broker/codec';
import { Broker, createConnectionPair, type MemoryPeer } from '@broker/core';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');
const N = Number(process.env['N'] ?? 20_000);

const idleHandler = { onData() {}, onDrain() {}, onClose() {} };
function heapUsed(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

// The pairs alone: what an in-memory connection costs without the engine.
let pairs: MemoryPeer[] = [];
const pairsBefore = heapUsed();
for (let i = 0; i < N; i++) {
  const { connection, peer } = createConnectionPair();
  peer.onData = () => {};
  connection.setHandler(idleHandler);
  pairs.push(peer);
}
// Divided by pairs.length, not N: the array must be read after the measurement, or nothing holds the pairs.
const perPair = (heapUsed() - pairsBefore) / pairs.length;
pairs = [];

const broker = new Broker();
const peers: MemoryPeer[] = [];
const before = heapUsed();
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
const perConnection = (heapUsed() - before) / N;
console.log(
  `\nengine heap per idle connection (${N.toLocaleString('en-US')} clients): ${Math.round(perConnection - perPair)} bytes` +
    ` (${Math.round(perConnection)} with the in-memory pair, which alone takes ${Math.round(perPair)})`,
);
await broker.close();
