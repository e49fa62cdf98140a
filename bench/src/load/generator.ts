/**
 * The load generator: one process (pinned to its own CPU by the orchestrator) that opens raw TCP
 * sockets, publishes pre-encoded packets patched in place, checks what the subscribers receive,
 * and prints one JSON result line. Usage: generator.ts '<LoadSpec JSON>'.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  connectPacket,
  DISCONNECT,
  FrameReader,
  PAYLOAD_PUBLISHER,
  PAYLOAD_SEQUENCE,
  PAYLOAD_TIME,
  type PublishTemplate,
  publishTemplate,
  subscribePacket,
  TYPE_CONNACK,
  TYPE_PUBACK,
  TYPE_PUBCOMP,
  TYPE_PUBLISH,
  TYPE_PUBREC,
  TYPE_PUBREL,
  TYPE_SUBACK,
  writeAck,
} from './protocol.js';
import type {
  IdleResult,
  IdleSpec,
  LatencyResult,
  LoadSpec,
  ThroughputResult,
  ThroughputSpec,
} from './spec.js';
import { correctness, SubscriberTrack } from './tracker.js';

const errors: string[] = [];
function error(message: string): void {
  if (errors.length < 20 && !errors.includes(message)) errors.push(message);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Packets at or above this size are sent as a patched head plus a shared tail (no copy). */
const LARGE_PACKET = 64 * 1024;
/** QoS 0: bytes one publisher writes per event-loop turn, and the unsent bytes it allows. */
const BATCH_BYTES = 16 * 1024;

interface Counters {
  sent: number;
  acked: number;
  delivered: number;
  deliveredBytes: number;
}
const counters: Counters = { sent: 0, acked: 0, delivered: 0, deliveredBytes: 0 };

/** Latency window (performance.now() ms): samples of messages sent inside it are kept. */
let latencyFrom = Number.POSITIVE_INFINITY;
let latencyTo = Number.POSITIVE_INFINITY;
const latencySamples: number[] = [];

/** Every subscriber's tracks, for QoS 0 end-to-end flow control. */
const subscriberTracks: SubscriberTrack[] = [];
/** QoS 0 publishers waiting for deliveries before they send more. */
const blocked = new Set<Publisher>();
function wakeBlocked(): void {
  if (blocked.size === 0) return;
  for (const p of blocked) p.schedule();
  blocked.clear();
}

function connectSocket(host: string, port: number, localAddress?: string): net.Socket {
  const socket = net.connect({ host, port, ...(localAddress === undefined ? {} : { localAddress }) });
  socket.setNoDelay(true);
  return socket;
}

class Publisher {
  readonly socket: net.Socket;
  seq = 0;
  inflight = 0;
  private nextId = 1;
  /** Per packet id: 0 free, 1 awaiting PUBACK/PUBREC, 2 awaiting PUBCOMP. */
  private readonly state = new Uint8Array(65536);
  private readonly reader: FrameReader;
  private readonly template: PublishTemplate;
  private readonly large: boolean;
  private readonly batch: number;
  private readonly highWater: number;
  private acks: number[] = [];
  stopped = true;
  closedEarly = false;
  private scheduled = false;
  private startedAt = 0;
  connected!: Promise<void>;

  constructor(
    private readonly spec: ThroughputSpec,
    readonly index: number,
  ) {
    this.template = publishTemplate(spec.topic, spec.qos, spec.payloadBytes);
    this.large = this.template.bytes.length >= LARGE_PACKET;
    this.batch = Math.max(1, Math.floor(BATCH_BYTES / this.template.bytes.length));
    this.highWater = this.large ? 4 * this.template.bytes.length : 16 * BATCH_BYTES;
    this.reader = new FrameReader((buf, start, body) => this.onFrame(buf, start, body));
    this.socket = connectSocket(spec.host, spec.port);
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', () => this.socket.write(connectPacket(`bench-pub-${index}`, true)));
      this.onConnack = resolve;
      this.socket.once('error', reject);
    });
    this.socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.flushAcks();
      if (this.spec.qos > 0 && this.spec.rate === undefined) this.pump();
    });
    this.socket.on('error', (e) => error(`publisher ${index}: ${e.message}`));
    this.socket.on('close', () => {
      if (!this.stopped || this.inflight > 0) {
        this.closedEarly = true;
        error(`publisher ${index}: connection closed by the broker`);
      }
    });
  }

  private onConnack: () => void = () => undefined;

  private onFrame(buf: Buffer, start: number, body: number): void {
    const type = buf[start]! >> 4;
    if (type === TYPE_CONNACK) {
      if (buf[body + 1] !== 0) error(`publisher ${this.index}: CONNACK ${buf[body + 1]}`);
      else this.onConnack();
      return;
    }
    const id = buf.readUInt16BE(body);
    if (type === TYPE_PUBACK) {
      if (this.spec.qos !== 1 || this.state[id] !== 1) {
        error(`publisher ${this.index}: unexpected PUBACK ${id}`);
        return;
      }
      this.state[id] = 0;
      this.inflight--;
      counters.acked++;
    } else if (type === TYPE_PUBREC) {
      if (this.spec.qos !== 2 || this.state[id] === 0) {
        error(`publisher ${this.index}: unexpected PUBREC ${id}`);
        return;
      }
      this.state[id] = 2;
      this.acks.push(id);
    } else if (type === TYPE_PUBCOMP) {
      if (this.state[id] !== 2) {
        error(`publisher ${this.index}: unexpected PUBCOMP ${id}`);
        return;
      }
      this.state[id] = 0;
      this.inflight--;
      counters.acked++;
    } else {
      error(`publisher ${this.index}: unexpected packet type ${type}`);
    }
  }

  private flushAcks(): void {
    if (this.acks.length === 0) return;
    const out = Buffer.allocUnsafe(this.acks.length * 4);
    let off = 0;
    for (const id of this.acks) off = writeAck(out, off, 0x62, id);
    this.acks = [];
    this.socket.write(out);
  }

  start(): void {
    this.stopped = false;
    this.startedAt = performance.now();
    this.pump();
  }

  private allocId(): number {
    let id = this.nextId;
    while (this.state[id] !== 0) id = id === 65535 ? 1 : id + 1;
    this.nextId = id === 65535 ? 1 : id + 1;
    this.state[id] = 1;
    this.inflight++;
    return id;
  }

  /** Sends what flow control allows now; QoS 0 and fixed-rate sending reschedule themselves. */
  pump = (): void => {
    this.scheduled = false;
    if (this.stopped || this.socket.destroyed) return;
    const { qos, rate, window } = this.spec;
    let n: number;
    if (rate !== undefined) {
      const due = Math.floor(((performance.now() - this.startedAt) * rate) / 1000) - this.seq;
      n = qos > 0 ? Math.min(due, window - this.inflight) : due;
      if (n > 0) this.send(n);
      this.schedule();
      return;
    }
    if (qos > 0) {
      n = window - this.inflight;
      if (n > 0) this.send(n);
      return;
    }
    n = this.batch;
    if (this.spec.qos0Window > 0 && subscriberTracks.length > 0) {
      let lowest = Number.POSITIVE_INFINITY;
      for (const t of subscriberTracks) {
        const h = t.publishers[this.index]!.highest;
        if (h < lowest) lowest = h;
      }
      const room = this.spec.qos0Window - (this.seq - 1 - lowest);
      if (room <= 0 && !this.force) {
        blocked.add(this);
        // A broker may drop QoS 0 messages: never wait for them for more than 200 ms.
        this.blockTimer ??= setTimeout(() => {
          this.blockTimer = undefined;
          this.force = true;
          this.schedule();
        }, 200);
        return;
      }
      n = Math.max(1, Math.min(n, room));
      this.force = false;
    }
    if (this.socket.writableLength >= this.highWater) {
      if (!this.scheduled) {
        this.scheduled = true;
        this.socket.once('drain', this.pump);
      }
      return;
    }
    this.send(n);
    this.schedule();
  };

  private force = false;
  private blockTimer: NodeJS.Timeout | undefined;

  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.pump);
  }

  private send(n: number): void {
    const t = this.template;
    const now = performance.now();
    if (this.large) {
      const headLength = t.payloadOffset + 14;
      const tail = t.bytes.subarray(headLength);
      this.socket.cork();
      for (let i = 0; i < n; i++) {
        const head = Buffer.allocUnsafe(headLength);
        t.bytes.copy(head, 0, 0, headLength);
        this.patch(head, 0, now);
        this.socket.write(head);
        this.socket.write(tail);
      }
      this.socket.uncork();
      return;
    }
    const size = t.bytes.length;
    const out = Buffer.allocUnsafe(size * n);
    for (let i = 0, off = 0; i < n; i++, off += size) {
      t.bytes.copy(out, off);
      this.patch(out, off, now);
    }
    this.socket.write(out);
  }

  private patch(out: Buffer, off: number, now: number): void {
    const t = this.template;
    if (t.packetIdOffset >= 0) {
      const id = this.allocId();
      out[off + t.packetIdOffset] = id >>> 8;
      out[off + t.packetIdOffset + 1] = id & 0xff;
    }
    const p = off + t.payloadOffset;
    out.writeUInt16LE(this.index, p + PAYLOAD_PUBLISHER);
    out.writeUInt32LE(this.seq++, p + PAYLOAD_SEQUENCE);
    out.writeDoubleLE(now, p + PAYLOAD_TIME);
    counters.sent++;
  }
}

class Subscriber {
  readonly socket: net.Socket;
  readonly track: SubscriberTrack;
  private readonly reader: FrameReader;
  private ackBuf = Buffer.allocUnsafe(64 * 1024);
  private ackLen = 0;
  private now = 0;
  closing = false;
  ready!: Promise<void>;
  private onReady: () => void = () => undefined;

  constructor(
    spec: ThroughputSpec,
    readonly index: number,
    private readonly filter: string,
  ) {
    this.track = new SubscriberTrack(spec.publishers);
    subscriberTracks.push(this.track);
    this.reader = new FrameReader((buf, start, body, end) => this.onFrame(buf, start, body, end));
    this.socket = connectSocket(spec.host, spec.port);
    this.ready = new Promise((resolve, reject) => {
      this.onReady = resolve;
      this.socket.once('error', reject);
    });
    this.socket.once('connect', () =>
      this.socket.write(connectPacket(`bench-sub-${index}`, spec.cleanSession)),
    );
    this.socket.on('data', (chunk: Buffer) => {
      this.now = performance.now();
      this.reader.push(chunk);
      if (this.ackLen > 0) {
        this.socket.write(Buffer.from(this.ackBuf.subarray(0, this.ackLen)));
        this.ackLen = 0;
      }
      wakeBlocked();
    });
    this.socket.on('error', (e) => error(`subscriber ${index}: ${e.message}`));
    this.socket.on('close', () => {
      if (!this.closing) error(`subscriber ${index}: connection closed by the broker`);
    });
  }

  private ack(firstByte: number, id: number): void {
    if (this.ackLen + 4 > this.ackBuf.length) {
      const grown = Buffer.allocUnsafe(this.ackBuf.length * 2);
      this.ackBuf.copy(grown, 0, 0, this.ackLen);
      this.ackBuf = grown;
    }
    this.ackLen = writeAck(this.ackBuf, this.ackLen, firstByte, id);
  }

  private onFrame(buf: Buffer, start: number, body: number, end: number): void {
    const first = buf[start]!;
    const type = first >> 4;
    if (type === TYPE_PUBLISH) {
      const qos = (first >> 1) & 3;
      let p = body + 2 + buf.readUInt16BE(body);
      if (qos > 0) {
        this.ack(qos === 1 ? 0x40 : 0x50, buf.readUInt16BE(p));
        p += 2;
      }
      this.track.record(buf.readUInt16LE(p + PAYLOAD_PUBLISHER), buf.readUInt32LE(p + PAYLOAD_SEQUENCE));
      counters.delivered++;
      counters.deliveredBytes += end - p;
      const sentAt = buf.readDoubleLE(p + PAYLOAD_TIME);
      if (sentAt >= latencyFrom && sentAt < latencyTo) latencySamples.push(this.now - sentAt);
    } else if (type === TYPE_PUBREL) {
      this.ack(0x70, buf.readUInt16BE(body));
    } else if (type === TYPE_CONNACK) {
      if (buf[body + 1] !== 0) error(`subscriber ${this.index}: CONNACK ${buf[body + 1]}`);
      else this.socket.write(subscribePacket(1, this.filter, 2));
    } else if (type === TYPE_SUBACK) {
      if (buf[body + 2] === 0x80) error(`subscriber ${this.index}: SUBACK refused ${this.filter}`);
      else this.onReady();
    } else {
      error(`subscriber ${this.index}: unexpected packet type ${type}`);
    }
  }
}

function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref(),
    ),
  ]);
}

async function runThroughput(spec: ThroughputSpec): Promise<ThroughputResult> {
  const subscribers = spec.subscribers.map((filter, i) => new Subscriber(spec, i, filter));
  await withTimeout(Promise.all(subscribers.map((s) => s.ready)), 20_000, 'subscribers');
  const publishers: Publisher[] = [];
  for (let i = 0; i < spec.publishers; i++) publishers.push(new Publisher(spec, i));
  await withTimeout(Promise.all(publishers.map((p) => p.connected)), 20_000, 'publishers');

  for (const p of publishers) p.start();
  await sleep(spec.warmupMs);
  const t0 = performance.now();
  if (spec.rate !== undefined) latencyFrom = t0;
  const c0 = { ...counters };
  const cpu0 = process.cpuUsage();
  const broker0 = cpuSeconds(spec.brokerPid);
  await sleep(spec.durationMs);
  const t1 = performance.now();
  const broker1 = cpuSeconds(spec.brokerPid);
  const cpu1 = process.cpuUsage(cpu0);
  latencyTo = t1;
  const c1 = { ...counters };
  for (const p of publishers) p.stopped = true;

  // Drain: wait for the last deliveries and acknowledgements, or until nothing moves.
  const drainStart = performance.now();
  let last = -1;
  let lastChange = drainStart;
  for (;;) {
    const expected = counters.sent * subscribers.length;
    const inflight = publishers.reduce((sum, p) => sum + p.inflight, 0);
    if (inflight === 0 && counters.delivered >= expected) break;
    const progress = counters.delivered + counters.acked;
    const now = performance.now();
    if (progress !== last) {
      last = progress;
      lastChange = now;
    } else if (now - lastChange > 2000) break;
    if (now - drainStart > spec.drainMs) break;
    await sleep(20);
  }

  const seconds = (t1 - t0) / 1000;
  const sortedLatency = latencySamples.sort((a, b) => a - b);
  const latencyUs: LatencyResult | undefined =
    spec.rate === undefined
      ? undefined
      : {
          count: sortedLatency.length,
          p50: percentile(sortedLatency, 0.5) * 1000,
          p90: percentile(sortedLatency, 0.9) * 1000,
          p99: percentile(sortedLatency, 0.99) * 1000,
          max: (sortedLatency[sortedLatency.length - 1] ?? Number.NaN) * 1000,
        };
  for (const s of subscribers) s.closing = true;
  for (const sock of [...publishers.map((p) => p.socket), ...subscribers.map((s) => s.socket)]) {
    if (!sock.destroyed) sock.end(DISCONNECT);
  }
  return {
    mode: 'throughput',
    publishRate: (c1.sent - c0.sent) / seconds,
    ackRate: (c1.acked - c0.acked) / seconds,
    deliveryRate: (c1.delivered - c0.delivered) / seconds,
    deliveryMiBps: (c1.deliveredBytes - c0.deliveredBytes) / seconds / (1024 * 1024),
    sent: counters.sent,
    correctness: correctness(
      subscribers.map((s) => s.track),
      publishers.map((p) => p.seq),
    ),
    unacknowledged: publishers.reduce((sum, p) => sum + p.inflight, 0),
    ...(latencyUs === undefined ? {} : { latencyUs }),
    brokerCpu: (broker1 - broker0) / seconds,
    generatorCpu: (cpu1.user + cpu1.system) / 1e6 / seconds,
    errors,
  };
}

/** utime + stime of a process in seconds (clock ticks of 100 Hz), NaN if unknown. */
function cpuSeconds(pid: number): number {
  if (pid <= 0) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

function readRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

async function runIdle(spec: IdleSpec): Promise<IdleResult> {
  const rssBefore = readRss(spec.brokerPid);
  const sockets: net.Socket[] = [];
  let started = 0;
  let outstanding = 0;
  let connected = 0;
  let failed = 0;
  const t0 = performance.now();
  let t1 = t0;
  await withTimeout(
    new Promise<void>((resolve) => {
      const settle = (ok: boolean): void => {
        if (ok) connected++;
        else failed++;
        outstanding--;
        if (connected + failed === spec.connections) {
          t1 = performance.now();
          resolve();
        } else next();
      };
      const open = (i: number): void => {
        const localAddress = spec.sourceAddresses[i % spec.sourceAddresses.length];
        const socket = connectSocket(spec.host, spec.port, localAddress);
        sockets.push(socket);
        let settled = false;
        socket.once('connect', () =>
          socket.write(connectPacket(`bench-idle-${i}`, true, spec.keepaliveSeconds)),
        );
        socket.on('data', (chunk: Buffer) => {
          if (settled) return;
          settled = true;
          const ok = chunk.length >= 4 && chunk[0] === 0x20 && chunk[3] === 0;
          if (!ok) error(`idle ${i}: bad CONNACK ${chunk.subarray(0, 4).toString('hex')}`);
          settle(ok);
        });
        socket.on('error', (e) => {
          error(`idle: ${e.message}`);
          if (!settled) {
            settled = true;
            settle(false);
          }
        });
      };
      const next = (): void => {
        while (outstanding < spec.concurrency && started < spec.connections) {
          outstanding++;
          open(started++);
        }
      };
      next();
    }),
    spec.timeoutMs,
    `${spec.connections} connections`,
  );
  await sleep(1000);
  const rssAfter = readRss(spec.brokerPid);
  const open = sockets.filter((s) => !s.destroyed).length;
  if (open !== connected)
    error(`idle: ${connected - open} acknowledged connections closed before the RSS reading`);
  for (const s of sockets) s.destroy();
  return {
    mode: 'idle',
    connected,
    failed,
    connectsPerSec: connected / ((t1 - t0) / 1000),
    rssBeforeBytes: rssBefore,
    rssAfterBytes: rssAfter,
    rssPerConnectionBytes: connected > 0 ? (rssAfter - rssBefore) / connected : Number.NaN,
    errors,
  };
}

async function main(): Promise<void> {
  const arg = process.argv[2];
  if (arg === undefined) throw new Error("usage: generator.ts '<LoadSpec JSON>'");
  const spec = JSON.parse(arg) as LoadSpec;
  const result = spec.mode === 'idle' ? await runIdle(spec) : await runThroughput(spec);
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

main().catch((e: unknown) => {
  process.stderr.write(`generator: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
