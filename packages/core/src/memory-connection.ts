import type { Connection, ConnectionHandler } from './ports.js';

let nextPairId = 1;

/** The client's end of an in-memory connection. */
export interface MemoryPeer {
  /** Bytes to the broker. */
  write(bytes: Uint8Array): void;
  /** Called with each chunk the broker writes, while reading. */
  onData: ((bytes: Uint8Array) => void) | undefined;
  /** Called once when the connection closes, from either side. */
  onClose: (() => void) | undefined;
  /** Stops taking the broker's bytes: they pile up on the broker's side (backpressure). */
  stopReading(): void;
  /** Takes the piled-up bytes and reads on. */
  startReading(): void;
  /** Closes the connection from the client's side, as a socket close. */
  close(): void;
  readonly isClosed: boolean;
}

export interface ConnectionPairOptions {
  id?: string;
  protocol?: string;
  remoteAddress?: string;
  remotePort?: number;
  /** write() returns false above this many unread bytes. Default 64 KiB. */
  highWaterMarkBytes?: number;
}

/**
 * Two ends of an in-memory byte stream: a `Connection` for the broker and a `MemoryPeer` for a
 * client in the same process. Bytes move synchronously, which makes transcripts deterministic; the
 * broker's side keeps the Connection contract (no data before setHandler, pause/resume, backpressure).
 */
export function createConnectionPair(options: ConnectionPairOptions = {}): {
  connection: Connection;
  peer: MemoryPeer;
} {
  const connection = new MemoryConnection(options);
  return { connection, peer: connection.peer };
}

/**
 * The broker's end; it holds the state of the pair. Two small classes rather than closures, so that
 * a test or benchmark with many pairs measures the engine rather than the pairs.
 */
class MemoryConnection implements Connection {
  readonly id: string;
  readonly protocol: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress = '127.0.0.1';
  readonly localPort = 1883;
  readonly peer: PeerEnd;
  handler: ConnectionHandler | undefined = undefined;
  isClosed = false;
  isPeerReading = true;
  isAboveHighWater = false;
  private readonly highWaterMarkBytes: number;
  private isPaused = false;
  private unread: Uint8Array[] = [];
  private unreadBytes = 0;
  /** Client -> broker, while paused or before setHandler. */
  private inbound: Uint8Array[] = [];

  constructor(options: ConnectionPairOptions) {
    this.id = options.id ?? `mem${nextPairId++}`;
    this.protocol = options.protocol ?? 'memory';
    this.remoteAddress = options.remoteAddress ?? '127.0.0.1';
    this.remotePort = options.remotePort ?? 50000;
    this.highWaterMarkBytes = options.highWaterMarkBytes ?? 64 * 1024;
    this.peer = new PeerEnd(this);
  }

  setHandler(handler: ConnectionHandler): void {
    this.handler = handler;
    this.deliverInbound();
  }

  write(bytes: Uint8Array): boolean {
    if (this.isClosed) return false;
    if (this.isPeerReading) {
      this.peer.onData?.(bytes);
      return true;
    }
    this.unread.push(bytes);
    this.unreadBytes += bytes.length;
    if (this.unreadBytes > this.highWaterMarkBytes) this.isAboveHighWater = true;
    return !this.isAboveHighWater;
  }

  get bufferedBytes(): number {
    return this.unreadBytes;
  }

  pause(): void {
    this.isPaused = true;
  }

  resume(): void {
    this.isPaused = false;
    this.deliverInbound();
  }

  end(): void {
    // Like a socket's end(): what is queued is still delivered, then the stream closes.
    this.isPeerReading = true;
    this.flushUnread();
    this.closeBoth(undefined);
  }

  destroy(error?: Error): void {
    this.closeBoth(error);
  }

  /** From the peer: bytes to the broker. */
  receive(bytes: Uint8Array): void {
    if (this.isClosed) return;
    this.inbound.push(bytes);
    this.deliverInbound();
  }

  closeBoth(error: Error | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.unread = [];
    this.unreadBytes = 0;
    this.inbound = [];
    this.peer.onClose?.();
    this.handler?.onClose(error);
  }

  flushUnread(): void {
    const chunks = this.unread;
    this.unread = [];
    this.unreadBytes = 0;
    for (const chunk of chunks) this.peer.onData?.(chunk);
  }

  private deliverInbound(): void {
    while (!this.isPaused && this.handler !== undefined && this.inbound.length > 0 && !this.isClosed) {
      this.handler.onData(this.inbound.shift()!);
    }
  }
}

/** The client's end. */
class PeerEnd implements MemoryPeer {
  onData: ((bytes: Uint8Array) => void) | undefined = undefined;
  onClose: (() => void) | undefined = undefined;

  constructor(private readonly connection: MemoryConnection) {}

  write(bytes: Uint8Array): void {
    this.connection.receive(bytes);
  }

  stopReading(): void {
    this.connection.isPeerReading = false;
  }

  startReading(): void {
    const connection = this.connection;
    connection.isPeerReading = true;
    connection.flushUnread();
    if (connection.isAboveHighWater && !connection.isClosed) {
      connection.isAboveHighWater = false;
      connection.handler?.onDrain();
    }
  }

  close(): void {
    this.connection.closeBoth(undefined);
  }

  get isClosed(): boolean {
    return this.connection.isClosed;
  }
}
