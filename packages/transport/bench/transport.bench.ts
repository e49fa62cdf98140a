// Many small writes per event-loop turn over real loopback sockets: a transport Connection (which
// batches the writes of one turn into one socket write, or one WebSocket message) against the plain
// socket doing one `socket.write()` / `ws.send()` per packet. The sender (and its server) runs on the
// main thread; the receiving client runs in a worker thread with its own event loop, so it reads as
// the bytes arrive and its 'data' count (one per read that returned data) shows how many writes the
// sender's syscalls turned into. Prints a markdown table; asserts nothing. Bounded to about 15 s.
//
//   pnpm --filter @broker/transport bench
//   BENCH_SECONDS=0.5 BENCH_ROUNDS=1 pnpm exec tsx bench/transport.bench.ts   (quicker)
import { once } from 'node:events';
import { createRequire } from 'node:module';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import type { Connection } from '../src/index.js';
import { TcpListener } from '../src/tcp.js';
import { WsListener } from '../src/ws.js';

const PACKET_BYTES = 64;
const WRITES_PER_TURN = 100;
/** How long each measured run keeps writing. */
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 1);
/** Runs per scenario, interleaved; the table shows the median. */
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const WARMUP_SECONDS = 0.25;
/** The plain senders wait once this much is buffered, like the Connection's default high-water mark. */
const HIGH_WATER = 64 * 1024;

const packet = Buffer.alloc(PACKET_BYTES, 0x30);

/** What the receiving worker counted during one run. */
interface Counts {
  /** Payload bytes: TCP bytes, or WebSocket message bytes (frame headers excluded). */
  payload: number;
  /** 'data' events of the TCP socket. */
  dataEvents: number;
  /** WebSocket messages. */
  messages: number;
}

// The receiving client, in a worker thread. Plain JavaScript: an eval'd worker is not run through tsx.
const RECEIVER_SOURCE = `
const net = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
const WebSocket = require(workerData.wsPath);
const counts = { payload: 0, dataEvents: 0, messages: 0 };
let expected = Infinity;
function check() {
  if (counts.payload >= expected) {
    expected = Infinity;
    parentPort.postMessage({ type: 'done', counts: { ...counts } });
  }
}
let close = () => {};
parentPort.on('message', (message) => {
  if (message.type === 'connect' && message.kind === 'tcp') {
    const socket = net.connect({ host: '127.0.0.1', port: message.port });
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      counts.dataEvents += 1;
      counts.payload += chunk.length;
      check();
    });
    socket.once('connect', () => parentPort.postMessage({ type: 'connected' }));
    close = () => socket.destroy();
  } else if (message.type === 'connect') {
    const ws = new WebSocket(message.url, 'mqtt', { perMessageDeflate: false });
    ws.on('error', () => {});
    ws.on('message', (data) => {
      counts.messages += 1;
      counts.payload += data.length;
      check();
    });
    ws.once('open', () => {
      ws._socket.on('data', () => {
        counts.dataEvents += 1;
      });
      parentPort.postMessage({ type: 'connected' });
    });
    close = () => ws.terminate();
  } else if (message.type === 'reset') {
    counts.payload = 0;
    counts.dataEvents = 0;
    counts.messages = 0;
    parentPort.postMessage({ type: 'reset' });
  } else if (message.type === 'expect') {
    expected = message.payload;
    check();
  } else if (message.type === 'close') {
    close();
    parentPort.close();
  }
});
`;

/** The main thread's handle on a receiving worker. */
class Receiver {
  private readonly worker: Worker;

  constructor() {
    const wsPath = createRequire(import.meta.url).resolve('ws');
    this.worker = new Worker(RECEIVER_SOURCE, { eval: true, workerData: { wsPath } });
  }

  private async request(message: object, reply: string): Promise<{ counts?: Counts }> {
    const answer = new Promise<{ type: string; counts?: Counts }>((resolve) => {
      const onMessage = (value: { type: string; counts?: Counts }) => {
        if (value.type !== reply) return;
        this.worker.off('message', onMessage);
        resolve(value);
      };
      this.worker.on('message', onMessage);
    });
    this.worker.postMessage(message);
    return answer;
  }

  async connect(target: { kind: 'tcp'; port: number } | { kind: 'ws'; url: string }): Promise<void> {
    await this.request({ type: 'connect', ...target }, 'connected');
  }

  async reset(): Promise<void> {
    await this.request({ type: 'reset' }, 'reset');
  }

  async waitFor(payload: number): Promise<Counts> {
    const { counts } = await this.request({ type: 'expect', payload }, 'done');
    return counts!;
  }

  async close(): Promise<void> {
    this.worker.postMessage({ type: 'close' });
    await once(this.worker, 'exit');
  }
}

/** A sender: one turn's worth of writes, and a way to wait until it may write again. */
interface Sender {
  /** Writes `count` packets; returns false when the sender should wait before the next turn. */
  turn(count: number): boolean;
  waitWritable(): Promise<void>;
  stop(): Promise<void>;
}

const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function connectionSender(connection: Connection, stop: () => Promise<void>): Sender {
  let drained: (() => void) | undefined;
  connection.setHandler({
    onData: () => {},
    onDrain: () => {
      const wake = drained;
      drained = undefined;
      wake?.();
    },
    onClose: () => {},
  });
  return {
    turn(count) {
      let ok = true;
      for (let i = 0; i < count; i++) ok = connection.write(packet);
      return ok;
    },
    waitWritable: () =>
      new Promise<void>((resolve) => {
        drained = resolve;
      }),
    stop,
  };
}

async function transportTcp(receiver: Receiver): Promise<Sender> {
  const listener = new TcpListener({ host: '127.0.0.1', port: 0, connectTimeoutMs: 0 });
  const accepted = new Promise<Connection>((resolve) => {
    listener.onConnection = resolve;
  });
  await listener.start();
  await receiver.connect({ kind: 'tcp', port: listener.address()!.port });
  return connectionSender(await accepted, async () => {
    listener.closeConnections();
    await listener.stop();
  });
}

async function plainTcp(receiver: Receiver): Promise<Sender> {
  const server = net.createServer({ noDelay: true });
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await receiver.connect({ kind: 'tcp', port: (server.address() as net.AddressInfo).port });
  const socket = await accepted;
  socket.setNoDelay(true);
  socket.on('error', () => {});
  return {
    turn(count) {
      let ok = true;
      for (let i = 0; i < count; i++) ok = socket.write(packet);
      return ok && socket.writableLength <= HIGH_WATER;
    },
    waitWritable: async () => {
      await once(socket, 'drain');
    },
    stop: async () => {
      socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function transportWs(receiver: Receiver): Promise<Sender> {
  const listener = new WsListener({ host: '127.0.0.1', port: 0, connectTimeoutMs: 0 });
  const accepted = new Promise<Connection>((resolve) => {
    listener.onConnection = resolve;
  });
  await listener.start();
  await receiver.connect({ kind: 'ws', url: `ws://127.0.0.1:${listener.address()!.port}/mqtt` });
  return connectionSender(await accepted, async () => {
    listener.closeConnections();
    await listener.stop();
  });
}

async function plainWs(receiver: Receiver): Promise<Sender> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(server, 'listening');
  const accepted = new Promise<WebSocket>((resolve) => server.once('connection', resolve));
  await receiver.connect({
    kind: 'ws',
    url: `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/`,
  });
  const ws = await accepted;
  (ws as unknown as { _socket: net.Socket })._socket.setNoDelay(true);
  ws.on('error', () => {});
  return {
    turn(count) {
      for (let i = 0; i < count; i++) ws.send(packet, { binary: true, compress: false });
      return ws.bufferedAmount <= HIGH_WATER;
    },
    waitWritable: async () => {
      while (ws.bufferedAmount > HIGH_WATER / 2) await immediate();
    },
    stop: async () => {
      ws.terminate();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

interface Result extends Counts {
  packets: number;
  seconds: number;
}

/** Writes WRITES_PER_TURN packets per setImmediate turn for `seconds`, then waits for the receiver. */
async function drive(sender: Sender, receiver: Receiver, seconds: number): Promise<Result> {
  await receiver.reset();
  const start = process.hrtime.bigint();
  const until = start + BigInt(Math.round(seconds * 1e9));
  let packets = 0;
  while (process.hrtime.bigint() < until) {
    const ok = sender.turn(WRITES_PER_TURN);
    packets += WRITES_PER_TURN;
    if (ok) await immediate();
    else await sender.waitWritable();
  }
  const counts = await receiver.waitFor(packets * PACKET_BYTES);
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  return { ...counts, packets, seconds: elapsed };
}

const scenarios: Array<{ name: string; ws: boolean; make: (receiver: Receiver) => Promise<Sender> }> = [
  { name: 'TCP: TcpListener Connection (batched)', ws: false, make: transportTcp },
  { name: 'TCP: plain net, socket.write per packet', ws: false, make: plainTcp },
  { name: 'WS: WsListener Connection (batched)', ws: true, make: transportWs },
  { name: 'WS: plain ws, ws.send per packet', ws: true, make: plainWs },
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const runs = [];
  for (const scenario of scenarios) {
    const receiver = new Receiver();
    const sender = await scenario.make(receiver);
    await drive(sender, receiver, WARMUP_SECONDS);
    runs.push({ scenario, sender, receiver, results: [] as Result[] });
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const run of runs) run.results.push(await drive(run.sender, run.receiver, SECONDS));
  }
  for (const run of runs) {
    await run.receiver.close();
    await run.sender.stop();
  }

  const fmt = (n: number, digits = 0) =>
    n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  console.log(
    `\n${WRITES_PER_TURN} × ${PACKET_BYTES}-byte writes per setImmediate turn, ${SECONDS} s per run, median of ${ROUNDS}; Node ${process.version}, loopback, receiver in a worker thread\n`,
  );
  console.log(
    '| scenario | MB/s | writes/s | receiver data events / 1,000 packets | WS messages / 1,000 packets |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const { scenario, results } of runs) {
    const mbps = median(results.map((r) => (r.packets * PACKET_BYTES) / r.seconds / 1e6));
    const writes = median(results.map((r) => r.packets / r.seconds));
    const events = median(results.map((r) => (r.dataEvents / r.packets) * 1000));
    const messages = scenario.ws ? fmt(median(results.map((r) => (r.messages / r.packets) * 1000)), 1) : '–';
    console.log(`| ${scenario.name} | ${fmt(mbps, 1)} | ${fmt(writes)} | ${fmt(events, 1)} | ${messages} |`);
  }
}

await main();
