/**
 * Decode and encode throughput of @broker/codec side by side with mqtt-packet (the codec of MQTT.js
 * and Aedes), measured in one process, interleaved round by round so machine drift hits both alike.
 * Prints packets/s, MB/s and the ratio ours / mqtt-packet per row. Numbers only: nothing asserts.
 *
 *   pnpm --filter @broker/codec bench            (ROUNDS=5 MS=400 to change the effort)
 */
import { createRequire } from 'node:module';
import { encode, encodePublishFrame, type Packet, PacketDecoder, type PublishPacket } from '@broker/codec';

const require = createRequire(import.meta.url);
const mqttPacket = require('mqtt-packet') as {
  parser(options?: object): {
    on(event: string, listener: (p: unknown) => void): void;
    parse(b: Buffer): number;
  };
  generate(packet: object): Buffer;
  writeToStream(packet: object, stream: object): boolean;
};

const ROUNDS = Number(process.env['ROUNDS'] ?? 5);
const MS = Number(process.env['MS'] ?? 400);

interface Case {
  name: string;
  ours: Packet;
  theirs: Record<string, unknown>;
}

const payload = (n: number) => Buffer.alloc(n, 0x61);
const cases: Case[] = [
  {
    name: 'PUBLISH QoS 0, 64 B',
    ours: {
      type: 'publish',
      topic: 'bench/sensors/device-17/temp',
      payload: payload(64),
      qos: 0,
      retain: false,
      dup: false,
    },
    theirs: {
      cmd: 'publish',
      topic: 'bench/sensors/device-17/temp',
      payload: payload(64),
      qos: 0,
      retain: false,
      dup: false,
    },
  },
  {
    name: 'PUBLISH QoS 1, 1 KB',
    ours: {
      type: 'publish',
      topic: 'bench/sensors/device-17/temp',
      payload: payload(1024),
      qos: 1,
      retain: false,
      dup: false,
      packetId: 4242,
    },
    theirs: {
      cmd: 'publish',
      topic: 'bench/sensors/device-17/temp',
      payload: payload(1024),
      qos: 1,
      retain: false,
      dup: false,
      messageId: 4242,
    },
  },
  {
    name: 'PUBLISH QoS 0, 64 KB',
    ours: {
      type: 'publish',
      topic: 'bench/blob',
      payload: payload(65536),
      qos: 0,
      retain: false,
      dup: false,
    },
    theirs: {
      cmd: 'publish',
      topic: 'bench/blob',
      payload: payload(65536),
      qos: 0,
      retain: false,
      dup: false,
    },
  },
  {
    name: 'SUBSCRIBE, 10 filters',
    ours: {
      type: 'subscribe',
      packetId: 7,
      subscriptions: Array.from({ length: 10 }, (_, i) => ({
        topicFilter: `bench/+/device-${i}/#`,
        qos: (i % 3) as 0 | 1 | 2,
      })),
    },
    theirs: {
      cmd: 'subscribe',
      messageId: 7,
      subscriptions: Array.from({ length: 10 }, (_, i) => ({ topic: `bench/+/device-${i}/#`, qos: i % 3 })),
    },
  },
  {
    name: 'CONNECT, will + credentials',
    ours: {
      type: 'connect',
      protocolName: 'MQTT',
      protocolLevel: 4,
      clientId: 'bench-client-000042',
      cleanSession: false,
      keepaliveSeconds: 60,
      will: { topic: 'bench/clients/000042/status', payload: payload(16), qos: 1, retain: true },
      username: 'bench-user',
      password: payload(24),
    },
    theirs: {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: 'bench-client-000042',
      clean: false,
      keepalive: 60,
      will: { topic: 'bench/clients/000042/status', payload: payload(16), qos: 1, retain: true },
      username: 'bench-user',
      password: payload(24),
    },
  },
];

/** Runs `fn` repeatedly for about MS milliseconds; returns operations per second. */
function measure(fn: () => number): number {
  let ops = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(MS) * 1_000_000n;
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < 64; i++) ops += fn();
    elapsed = process.hrtime.bigint() - start;
  }
  return ops / (Number(elapsed) / 1e9);
}

interface Row {
  name: string;
  bytes: number; // bytes per operation's packet
  ours: number[];
  theirs: number[];
}

function decodeRows(): Array<{ row: Row; ours: () => number; theirs: () => number }> {
  const out: Array<{ row: Row; ours: () => number; theirs: () => number }> = [];
  for (const c of cases) {
    const bytes = encode(c.ours);
    const buffer = Buffer.from(bytes);
    const decoder = new PacketDecoder();
    const parser = mqttPacket.parser();
    let parsed = 0;
    parser.on('packet', () => parsed++);
    parser.on('error', (e) => {
      throw e;
    });
    out.push({
      row: { name: c.name, bytes: bytes.length, ours: [], theirs: [] },
      ours: () => {
        decoder.push(buffer);
        return decoder.next() === undefined ? 0 : 1;
      },
      theirs: () => {
        parsed = 0;
        parser.parse(buffer);
        return parsed;
      },
    });
  }
  // A mixed stream as a broker sees it, cut into 1,500-byte chunks (one Ethernet MTU each).
  const mixed: Packet[] = [];
  for (let i = 0; i < 400; i++) {
    mixed.push({
      type: 'publish',
      topic: `bench/sensors/device-${i % 50}/temp`,
      payload: payload(16 + (i % 7) * 40),
      qos: (i % 3) as 0 | 1 | 2,
      retain: false,
      dup: false,
      packetId: i % 3 === 0 ? undefined : 1 + i,
    });
    if (i % 3 === 1) mixed.push({ type: 'puback', packetId: 1 + i });
    if (i % 50 === 0) mixed.push({ type: 'pingreq' });
  }
  const stream = Buffer.concat(mixed.map((p) => encode(p)));
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i += 1500) chunks.push(stream.subarray(i, i + 1500));
  const decoder = new PacketDecoder();
  const parser = mqttPacket.parser();
  let parsed = 0;
  parser.on('packet', () => parsed++);
  out.push({
    row: {
      name: `mixed stream, 1,500 B chunks (${mixed.length} packets)`,
      bytes: stream.length / mixed.length,
      ours: [],
      theirs: [],
    },
    ours: () => {
      let n = 0;
      for (const chunk of chunks) {
        decoder.push(chunk);
        while (decoder.next() !== undefined) n++;
      }
      return n;
    },
    theirs: () => {
      parsed = 0;
      for (const chunk of chunks) parser.parse(chunk);
      return parsed;
    },
  });
  return out;
}

// Results are folded into `sink` and printed, so the JIT cannot drop the work as dead code.
let sink = 0;

function encodeRows(): Array<{ row: Row; ours: () => number; theirs: () => number }> {
  const rows = cases.map((c) => ({
    row: { name: c.name, bytes: encode(c.ours).length, ours: [], theirs: [] as number[] },
    ours: () => {
      sink = (sink + encode(c.ours).length) | 0;
      return 1;
    },
    theirs: () => {
      sink = (sink + mqttPacket.generate(c.theirs).length) | 0;
      return 1;
    },
  }));
  // How a broker sends a large message: without building one contiguous buffer. Ours encodes the
  // head and keeps the payload by reference (encodePublishFrame); mqtt-packet's writeToStream writes
  // header and payload to the stream separately. Both sides hand the bytes to a stream that drops them.
  const big = cases.find((c) => c.name === 'PUBLISH QoS 0, 64 KB')!;
  const bigOurs = big.ours as PublishPacket;
  const nullStream = {
    write(chunk: Uint8Array): boolean {
      sink = (sink + chunk.length) | 0;
      return true;
    },
    cork() {},
    uncork() {},
  };
  rows.push({
    row: {
      name: 'PUBLISH QoS 0, 64 KB, written as head + payload (no copy)',
      bytes: encode(bigOurs).length,
      ours: [],
      theirs: [],
    },
    ours: () => {
      const frame = encodePublishFrame(bigOurs);
      nullStream.write(frame.head);
      nullStream.write(frame.payload);
      return 1;
    },
    theirs: () => {
      mqttPacket.writeToStream(big.theirs, nullStream);
      return 1;
    },
  });
  return rows;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 0 });

function runTable(title: string, rows: Array<{ row: Row; ours: () => number; theirs: () => number }>): void {
  for (const r of rows) {
    // warm both up so the JIT has settled before anything counts
    measure(r.ours);
    measure(r.theirs);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const r of rows) {
      r.row.ours.push(measure(r.ours));
      r.row.theirs.push(measure(r.theirs));
    }
  }
  console.log(`\n### ${title} (median of ${ROUNDS} rounds of ${MS} ms)\n`);
  console.log(
    '| case | ours packets/s | ours MB/s | mqtt-packet packets/s | mqtt-packet MB/s | ours / mqtt-packet |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const { row } of rows) {
    const ours = median(row.ours);
    const theirs = median(row.theirs);
    console.log(
      `| ${row.name} | ${fmt(ours)} | ${((ours * row.bytes) / 1e6).toFixed(1)} | ${fmt(theirs)} | ${((theirs * row.bytes) / 1e6).toFixed(1)} | ${(ours / theirs).toFixed(2)} |`,
    );
  }
}

console.log(`@broker/codec vs mqtt-packet — node ${process.version}, ${process.platform}/${process.arch}`);
runTable('Decode', decodeRows());
runTable('Encode', encodeRows());
console.log(`\n(checksum ${sink})`);
