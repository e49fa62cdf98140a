/**
 * Engine throughput over in-memory connections, in one process: delivered messages/s for fan-in
 * and fan-out at QoS 0, 1 and 2. The clients are minimal: pre-encoded PUBLISH packets written in
 * bursts (one write per burst, as a socket read would deliver them), acknowledgements batched per
 * round like a client answering once per event-loop turn. Prints numbers; asserts nothing.
 *
 *   pnpm --filter @broker/core bench        (BENCH_SECONDS=1 ROUNDS=3 to change the effort)
 */
import { CodecError, encode, encodePublishFrame, PacketDecoder, type QoS } from '@broker/codec';
import { Broker, createConnectionPair, type MemoryPeer } from '@broker/core';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 1);
const ROUNDS = Number(process.env['ROUNDS'] ?? 3);
const BURST = 64; // messages per publisher per round: also the publisher's in-flight window
const PAYLOAD = new Uint8Array(64).fill(0x61);

class BenchClient {
  readonly peer: MemoryPeer;
  private readonly decoder = new PacketDecoder({ protocolLevel: 4 });
  private acks: Uint8Array[] = [];
  delivered = 0;

  constructor(broker: Broker, clientId: string) {
    const { connection, peer } = createConnectionPair();
    this.peer = peer;
    peer.onData = (bytes) => this.onData(bytes);
    broker.accept(connection);
    peer.write(
      encode({
        type: 'connect',
        protocolName: 'MQTT',
        protocolLevel: 4,
        clientId,
        cleanSession: true,
        keepaliveSeconds: 0,
      }),
    );
  }

  private onData(bytes: Uint8Array): void {
    this.decoder.push(bytes);
    for (;;) {
      const p = this.decoder.next();
      if (p === undefined) return;
      if (p instanceof CodecError) throw p;
      switch (p.type) {
        case 'publish':
          this.delivered++;
          if (p.qos === 1) this.acks.push(encode({ type: 'puback', packetId: p.packetId! }));
          else if (p.qos === 2) this.acks.push(encode({ type: 'pubrec', packetId: p.packetId! }));
          break;
        case 'pubrec':
          this.acks.push(encode({ type: 'pubrel', packetId: p.packetId }));
          break;
        case 'pubrel':
          this.acks.push(encode({ type: 'pubcomp', packetId: p.packetId }));
          break;
        default:
      }
    }
  }

  /** Sends the acknowledgements gathered since the last call, in one write; returns how many. */
  flushAcks(): number {
    const n = this.acks.length;
    if (n === 0) return 0;
    const total = this.acks.reduce((sum, a) => sum + a.length, 0);
    const out = new Uint8Array(total);
    let pos = 0;
    for (const a of this.acks) {
      out.set(a, pos);
      pos += a.length;
    }
    this.acks = [];
    this.peer.write(out);
    return n;
  }
}

/** A burst of BURST pre-encoded PUBLISH packets on one topic, packet ids 1..BURST. */
function burst(topic: string, qos: QoS): Uint8Array {
  const frame = encodePublishFrame({ topic, payload: PAYLOAD, qos, retain: false });
  const out = new Uint8Array(frame.bytes.length * BURST);
  for (let i = 0; i < BURST; i++) frame.writeInto(out, i * frame.bytes.length, i + 1);
  return out;
}

interface Scenario {
  name: string;
  publishers: number;
  subscribers: number;
  filters: (i: number) => string;
  topic: (publisher: number) => string;
}

const scenarios: Scenario[] = [
  {
    name: 'fan-in 10 -> 1',
    publishers: 10,
    subscribers: 1,
    filters: () => 'bench/in/#',
    topic: (p) => `bench/in/${p}`,
  },
  {
    name: 'fan-out 1 -> 100, exact',
    publishers: 1,
    subscribers: 100,
    filters: () => 'bench/out/t',
    topic: () => 'bench/out/t',
  },
  {
    name: 'fan-out 1 -> 100, wildcards',
    publishers: 1,
    subscribers: 100,
    filters: (i) => (i % 5 < 2 ? 'bench/#' : i % 5 < 3 ? 'bench/+/t' : 'bench/out/t'),
    topic: () => 'bench/out/t',
  },
];

function run(scenario: Scenario, qos: QoS): number {
  const broker = new Broker({ limits: { maxInflightMessages: 1024, maxQueuedMessages: 100_000 } });
  const subscribers: BenchClient[] = [];
  for (let i = 0; i < scenario.subscribers; i++) {
    const c = new BenchClient(broker, `sub-${i}`);
    c.peer.write(
      encode({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: scenario.filters(i), qos }] }),
    );
    subscribers.push(c);
  }
  const publishers: Array<{ client: BenchClient; bytes: Uint8Array }> = [];
  for (let p = 0; p < scenario.publishers; p++) {
    publishers.push({ client: new BenchClient(broker, `pub-${p}`), bytes: burst(scenario.topic(p), qos) });
  }
  const all = [...subscribers, ...publishers.map((p) => p.client)];
  const settle = () => {
    let n: number;
    do {
      n = 0;
      for (const c of all) n += c.flushAcks();
    } while (n > 0);
  };
  settle();
  for (const c of subscribers) c.delivered = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(SECONDS * 1e9));
  let elapsed = 0n;
  while (elapsed < budget) {
    for (const p of publishers) p.client.peer.write(p.bytes);
    settle();
    elapsed = process.hrtime.bigint() - start;
  }
  const delivered = subscribers.reduce((sum, c) => sum + c.delivered, 0);
  broker.close();
  return delivered / (Number(elapsed) / 1e9);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 0 });

console.log(
  `@broker/core over in-memory connections — node ${process.version}; 64 B payloads, bursts of ${BURST}`,
);
console.log(`median of ${ROUNDS} runs of ${SECONDS} s each\n`);
console.log('| scenario | QoS 0 delivered/s | QoS 1 delivered/s | QoS 2 delivered/s |');
console.log('| --- | ---: | ---: | ---: |');
for (const s of scenarios) {
  const cells: string[] = [];
  for (const qos of [0, 1, 2] as const) {
    run(s, qos); // warm-up
    const results: number[] = [];
    for (let r = 0; r < ROUNDS; r++) results.push(run(s, qos));
    cells.push(fmt(median(results)));
  }
  console.log(`| ${s.name} | ${cells.join(' | ')} |`);
}
