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
  const highWaterMarkBytes = options.highWaterMarkBytes ?? 64 * 1024;
  let handler: ConnectionHandler | undefined;
  let isPaused = false;
  let isClosed = false;
  let isPeerReading = true;
  let unread: Uint8Array[] = [];
  let unreadBytes = 0;
  let isAboveHighWater = false;
  let inbound: Uint8Array[] = []; // client -> broker, while paused or before setHandler

  const closeBoth = (error: Error | undefined) => {
    if (isClosed) return;
    isClosed = true;
    unread = [];
    unreadBytes = 0;
    inbound = [];
    peer.onClose?.();
    handler?.onClose(error);
  };

  const deliverInbound = () => {
    while (!isPaused && handler !== undefined && inbound.length > 0 && !isClosed) {
      handler.onData(inbound.shift()!);
    }
  };

  const connection: Connection = {
    id: options.id ?? `mem${nextPairId++}`,
    protocol: options.protocol ?? 'memory',
    remoteAddress: options.remoteAddress ?? '127.0.0.1',
    remotePort: options.remotePort ?? 50000,
    localAddress: '127.0.0.1',
    localPort: 1883,
    setHandler(h) {
      handler = h;
      deliverInbound();
    },
    write(bytes) {
      if (isClosed) return false;
      if (isPeerReading) {
        peer.onData?.(bytes);
        return true;
      }
      unread.push(bytes);
      unreadBytes += bytes.length;
      if (unreadBytes > highWaterMarkBytes) isAboveHighWater = true;
      return !isAboveHighWater;
    },
    get bufferedBytes() {
      return unreadBytes;
    },
    pause() {
      isPaused = true;
    },
    resume() {
      isPaused = false;
      deliverInbound();
    },
    end() {
      // Like a socket's end(): what is queued is still delivered, then the stream closes.
      isPeerReading = true;
      flushUnread();
      closeBoth(undefined);
    },
    destroy(error) {
      closeBoth(error);
    },
  };

  const flushUnread = () => {
    const chunks = unread;
    unread = [];
    unreadBytes = 0;
    for (const chunk of chunks) peer.onData?.(chunk);
  };

  const peer: MemoryPeer = {
    onData: undefined,
    onClose: undefined,
    write(bytes) {
      if (isClosed) return;
      inbound.push(bytes);
      deliverInbound();
    },
    stopReading() {
      isPeerReading = false;
    },
    startReading() {
      isPeerReading = true;
      flushUnread();
      if (isAboveHighWater && !isClosed) {
        isAboveHighWater = false;
        handler?.onDrain();
      }
    },
    close() {
      closeBoth(undefined);
    },
    get isClosed() {
      return isClosed;
    },
  };
  return { connection, peer };
}
