import { once } from 'node:events';
import net from 'node:net';
import type { Connection, ConnectionHandler, Listener } from '../../src/index.js';

/** Records what a server-side Connection receives; optionally echoes it back. */
export class Recorder implements ConnectionHandler {
  readonly chunks: Buffer[] = [];
  drains = 0;
  closeError: Error | undefined = undefined;
  closeCount = 0;
  readonly closed: Promise<Error | undefined>;
  private resolveClosed!: (error: Error | undefined) => void;
  private waiters: Array<() => void> = [];

  constructor(
    readonly connection: Connection,
    private readonly echo = false,
  ) {
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    connection.setHandler(this);
  }

  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  onData(bytes: Uint8Array): void {
    this.chunks.push(Buffer.from(bytes));
    if (this.echo) this.connection.write(bytes);
    this.wake();
  }

  onDrain(): void {
    this.drains += 1;
    this.wake();
  }

  onClose(error: Error | undefined): void {
    this.closeCount += 1;
    this.closeError = error;
    this.resolveClosed(error);
    this.wake();
  }

  /** Resolves once `predicate` holds, checked after every event. */
  async until(predicate: () => boolean): Promise<void> {
    while (!predicate()) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  async receive(byteCount: number): Promise<Buffer> {
    await this.until(() => this.bytes.length >= byteCount);
    return this.bytes;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** Collects the Connections a listener produces, in order. */
export class Accepted {
  private readonly queue: Connection[] = [];
  private waiters: Array<(connection: Connection) => void> = [];
  count = 0;

  constructor(listener: Listener) {
    listener.onConnection = (connection) => {
      this.count += 1;
      const waiter = this.waiters.shift();
      if (waiter) waiter(connection);
      else this.queue.push(connection);
    };
  }

  next(): Promise<Connection> {
    const ready = this.queue.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** Reads from a client socket until `byteCount` bytes arrived. */
export async function readBytes(
  socket: net.Socket | import('node:tls').TLSSocket,
  byteCount: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= byteCount) {
        cleanup();
        resolve(Buffer.concat(chunks));
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`stream ended after ${total} of ${byteCount} bytes`));
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
  });
}

/** Connects a plain TCP client. */
export async function connectTcp(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  const socket = net.connect({ port, host });
  await once(socket, 'connect');
  return socket;
}

/** Resolves when the socket has closed (whatever the reason). */
export function closedOf(socket: net.Socket): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/** The port a started listener is bound to. */
export function portOf(listener: Listener): number {
  const address = listener.address();
  if (address === null) throw new Error(`${listener.name} is not listening`);
  return address.port;
}

/** True when this machine can bind ::1. */
export async function hasIpv6Loopback(): Promise<boolean> {
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '::1', resolve);
    });
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}
