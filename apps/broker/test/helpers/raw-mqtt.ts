/**
 * Hand-made MQTT 3.1.1 bytes on raw TCP sockets, for the conformance and hostile-input suites: a
 * client library refuses to send most of what these tests need. The encoder and decoder here are
 * deliberately independent of @broker/codec, so the server's codec is not checked against itself.
 */
import type { Socket } from 'node:net';
import type { RunningServer } from '../../src/server.js';
import { rawSocket, waitUntil, withTimeout } from './clients.js';

// ---------------------------------------------------------------- encoding

/** Remaining Length as the variable byte integer of 2.2.3. */
export function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** A UTF-8 string with its two-byte length; `raw` bytes are taken as they are (for invalid UTF-8). */
export function str(value: string | Buffer): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** A packet from its first byte and body. */
export function packet(first: number, ...body: Buffer[]): Buffer {
  const b = Buffer.concat(body);
  return Buffer.concat([Buffer.from([first]), varint(b.length), b]);
}

export interface ConnectOptions {
  clientId?: string | Buffer;
  cleanSession?: boolean;
  keepAlive?: number;
  protocolName?: string | Buffer;
  protocolLevel?: number;
  will?: { topic: string | Buffer; payload?: Buffer | string; qos?: number; retain?: boolean };
  username?: string | Buffer;
  password?: Buffer | string;
  /** Bits OR-ed into the connect flags after they are computed (e.g. 0x01, the reserved bit). */
  extraFlags?: number;
  /** Flags used as they are, ignoring the fields above. */
  flags?: number;
  /** The first byte; 0x10 by default. */
  first?: number;
}

export function connectPacket(o: ConnectOptions = {}): Buffer {
  let flags = 0;
  if (o.cleanSession ?? true) flags |= 0x02;
  if (o.will) {
    flags |= 0x04 | ((o.will.qos ?? 0) << 3);
    if (o.will.retain) flags |= 0x20;
  }
  if (o.password !== undefined) flags |= 0x40;
  if (o.username !== undefined) flags |= 0x80;
  flags |= o.extraFlags ?? 0;
  if (o.flags !== undefined) flags = o.flags;
  const parts = [
    str(o.protocolName ?? 'MQTT'),
    Buffer.from([o.protocolLevel ?? 4, flags]),
    u16(o.keepAlive ?? 0),
    str(o.clientId ?? ''),
  ];
  if (o.will) {
    parts.push(str(o.will.topic));
    const payload = o.will.payload ?? '';
    parts.push(str(typeof payload === 'string' ? Buffer.from(payload) : payload));
  }
  if (o.username !== undefined) parts.push(str(o.username));
  if (o.password !== undefined)
    parts.push(str(typeof o.password === 'string' ? Buffer.from(o.password) : o.password));
  return packet(o.first ?? 0x10, ...parts);
}

export interface PublishOptions {
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  packetId?: number;
  /** The first byte as it is (overrides qos/retain/dup). */
  first?: number;
}

export function publishPacket(
  topic: string | Buffer,
  payload: string | Buffer = '',
  o: PublishOptions = {},
): Buffer {
  const qos = o.qos ?? 0;
  const first = o.first ?? 0x30 | (o.dup ? 0x08 : 0) | (qos << 1) | (o.retain ? 0x01 : 0);
  const parts = [str(topic)];
  if (((first >> 1) & 0x03) > 0 || o.packetId !== undefined) parts.push(u16(o.packetId ?? 1));
  parts.push(typeof payload === 'string' ? Buffer.from(payload) : payload);
  return packet(first, ...parts);
}

export function subscribePacket(
  packetId: number,
  filters: Array<[string | Buffer, number]>,
  first = 0x82,
): Buffer {
  return packet(first, u16(packetId), ...filters.flatMap(([f, q]) => [str(f), Buffer.from([q])]));
}

export function unsubscribePacket(packetId: number, filters: Array<string | Buffer>, first = 0xa2): Buffer {
  return packet(first, u16(packetId), ...filters.map((f) => str(f)));
}

export const puback = (id: number) => packet(0x40, u16(id));
export const pubrec = (id: number) => packet(0x50, u16(id));
export const pubrel = (id: number, first = 0x62) => packet(first, u16(id));
export const pubcomp = (id: number) => packet(0x70, u16(id));
export const pingreq = () => Buffer.from([0xc0, 0x00]);
export const disconnect = () => Buffer.from([0xe0, 0x00]);

// ---------------------------------------------------------------- decoding

export type Received =
  | { type: 'connack'; sessionPresent: boolean; returnCode: number; flags: number; raw: Buffer }
  | {
      type: 'publish';
      topic: string;
      topicBytes: Buffer;
      payload: Buffer;
      qos: number;
      dup: boolean;
      retain: boolean;
      packetId?: number;
      flags: number;
      raw: Buffer;
    }
  | { type: 'puback'; packetId: number; flags: number; raw: Buffer }
  | { type: 'pubrec'; packetId: number; flags: number; raw: Buffer }
  | { type: 'pubrel'; packetId: number; flags: number; raw: Buffer }
  | { type: 'pubcomp'; packetId: number; flags: number; raw: Buffer }
  | { type: 'unsuback'; packetId: number; flags: number; raw: Buffer }
  | { type: 'suback'; packetId: number; returnCodes: number[]; flags: number; raw: Buffer }
  | { type: 'pingresp'; flags: number; raw: Buffer }
  | { type: 'other'; packetType: number; flags: number; raw: Buffer };

const NAMES: Record<number, Received['type']> = {
  2: 'connack',
  3: 'publish',
  4: 'puback',
  5: 'pubrec',
  6: 'pubrel',
  7: 'pubcomp',
  9: 'suback',
  11: 'unsuback',
  13: 'pingresp',
};

function decodeOne(raw: Buffer, bodyStart: number): Received {
  const first = raw[0]!;
  const type = first >> 4;
  const flags = first & 0x0f;
  const body = raw.subarray(bodyStart);
  switch (NAMES[type]) {
    case 'connack':
      return { type: 'connack', sessionPresent: (body[0]! & 1) === 1, returnCode: body[1]!, flags, raw };
    case 'publish': {
      const qos = (flags >> 1) & 3;
      const tlen = body.readUInt16BE(0);
      const topicBytes = body.subarray(2, 2 + tlen);
      let at = 2 + tlen;
      let packetId: number | undefined;
      if (qos > 0) {
        packetId = body.readUInt16BE(at);
        at += 2;
      }
      return {
        type: 'publish',
        topic: topicBytes.toString('utf8'),
        topicBytes,
        payload: body.subarray(at),
        qos,
        dup: (flags & 8) !== 0,
        retain: (flags & 1) !== 0,
        ...(packetId === undefined ? {} : { packetId }),
        flags,
        raw,
      };
    }
    case 'suback':
      return {
        type: 'suback',
        packetId: body.readUInt16BE(0),
        returnCodes: [...body.subarray(2)],
        flags,
        raw,
      };
    case 'pingresp':
      return { type: 'pingresp', flags, raw };
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
    case 'unsuback':
      return { type: NAMES[type] as 'puback', packetId: body.readUInt16BE(0), flags, raw };
    default:
      return { type: 'other', packetType: type, flags, raw };
  }
}

// ---------------------------------------------------------------- the client

/**
 * A raw TCP connection that decodes what the server sends. `received` holds every packet in order;
 * `next()` takes them one by one.
 */
export class RawClient {
  readonly received: Received[] = [];
  private cursor = 0;
  private buffer = Buffer.alloc(0);
  closed = false;
  readonly closedAt: Promise<void>;
  /** Bytes the server sent that did not decode (there should be none). */
  garbage = false;
  /** Answer QoS 1/2 deliveries (PUBACK, PUBREC, PUBCOMP) automatically. */
  autoAck = false;
  /** Keep decoded packets in `received` (false: count them only, for floods). */
  record = true;
  /** Packets decoded so far, recorded or not. */
  count = 0;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    this.closedAt = new Promise((resolve) => {
      socket.once('close', () => {
        this.closed = true;
        resolve();
      });
    });
  }

  static async open(port: number): Promise<RawClient> {
    const socket = await rawSocket(port);
    socket.setNoDelay(true);
    return new RawClient(socket);
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.buffer.length < 2) return;
      let len = 0;
      let mul = 1;
      let i = 1;
      for (; i < 5; i++) {
        if (i >= this.buffer.length) return;
        const b = this.buffer[i]!;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) break;
      }
      if (i === 5) {
        this.garbage = true;
        return;
      }
      const total = i + 1 + len;
      if (this.buffer.length < total) return;
      const raw = Buffer.from(this.buffer.subarray(0, total));
      this.buffer = this.buffer.subarray(total);
      let p: Received;
      try {
        p = decodeOne(raw, i + 1);
      } catch {
        this.garbage = true;
        continue;
      }
      this.count++;
      if (this.record) this.received.push(p);
      if (this.autoAck) {
        if (p.type === 'publish' && p.qos === 1) this.send(puback(p.packetId!));
        else if (p.type === 'publish' && p.qos === 2) this.send(pubrec(p.packetId!));
        else if (p.type === 'pubrel') this.send(pubcomp(p.packetId));
      }
    }
  }

  send(...bytes: Buffer[]): void {
    if (!this.socket.destroyed) this.socket.write(Buffer.concat(bytes));
  }

  /** The next packet not yet taken (optionally of a type), waiting up to `ms`. */
  async next<T extends Received['type']>(type?: T, ms = 3000): Promise<Extract<Received, { type: T }>> {
    await waitUntil(
      () => this.received.length > this.cursor || this.closed,
      ms,
      `a packet${type ? ` (${type})` : ''} from the server`,
    );
    const p = this.received[this.cursor];
    if (p === undefined) throw new Error(`connection closed while waiting for ${type ?? 'a packet'}`);
    this.cursor++;
    if (type !== undefined && p.type !== type)
      throw new Error(`expected ${type}, got ${p.type} (${p.raw.toString('hex')})`);
    return p as Extract<Received, { type: T }>;
  }

  /** Packets not yet taken. */
  pending(): Received[] {
    return this.received.slice(this.cursor);
  }

  /** Takes every pending packet. */
  drain(): Received[] {
    const out = this.received.slice(this.cursor);
    this.cursor = this.received.length;
    return out;
  }

  /** Waits until `count` PUBLISH packets are pending-or-taken after the cursor, returns and takes them. */
  async publishes(count: number, ms = 3000): Promise<Extract<Received, { type: 'publish' }>[]> {
    const out: Extract<Received, { type: 'publish' }>[] = [];
    while (out.length < count) {
      const p = await this.next(undefined, ms);
      if (p.type === 'publish') out.push(p);
    }
    return out;
  }

  /** Resolves when the server has closed the connection; rejects after `ms`. */
  async expectClosed(ms = 3000): Promise<void> {
    await withTimeout(this.closedAt, ms, 'the server to close the connection');
  }

  /** Resolves true if the connection is still open after `ms`. */
  async staysOpen(ms: number): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return !this.closed;
  }

  /** Sends CONNECT and returns the CONNACK. */
  async connect(o: ConnectOptions = {}): Promise<Extract<Received, { type: 'connack' }>> {
    this.send(connectPacket(o));
    return this.next('connack');
  }

  /** SUBSCRIBE and its SUBACK. */
  async subscribe(packetId: number, filters: Array<[string | Buffer, number]>) {
    this.send(subscribePacket(packetId, filters));
    return this.next('suback');
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Opens a raw connection and completes CONNECT with return code 0. */
export async function connected(port: number, o: ConnectOptions = {}): Promise<RawClient> {
  const c = await RawClient.open(port);
  const ack = await c.connect({ clientId: `raw-${Math.random().toString(36).slice(2, 10)}`, ...o });
  if (ack.returnCode !== 0) throw new Error(`CONNACK ${ack.returnCode}`);
  return c;
}

/** Raw clients a test opened; `closeAll()` in afterEach. */
export class RawPool {
  private readonly clients: RawClient[] = [];
  async open(port: number): Promise<RawClient> {
    const c = await RawClient.open(port);
    this.clients.push(c);
    return c;
  }
  async connected(port: number, o: ConnectOptions = {}): Promise<RawClient> {
    const c = await connected(port, o);
    this.clients.push(c);
    return c;
  }
  closeAll(): void {
    for (const c of this.clients.splice(0)) c.close();
  }
}

/** The broker's connection id for a raw socket (matched by the client's local port). */
export async function connectionIdOf(server: RunningServer, client: RawClient, ms = 2000): Promise<string> {
  let id: string | undefined;
  await waitUntil(
    () => {
      for (const c of server.broker.connections.values()) {
        if (c.remotePort === client.socket.localPort) id = c.connectionId;
      }
      return id !== undefined;
    },
    ms,
    `the broker to list the connection from port ${client.socket.localPort}`,
  );
  return id!;
}
