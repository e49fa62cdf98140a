import diagnostics from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { TransportError, toSocketError } from './errors.js';
import type { TlsDetails, TransportProtocol } from './options.js';

/** What the engine gives a connection to receive its events: plain method calls, no EventEmitter. */
export interface ConnectionHandler {
  /** A chunk of the inbound byte stream, sliced anywhere. The buffer is the transport's own: keep or parse it, no copy was made. */
  onData(bytes: Uint8Array): void;
  /** `bufferedBytes` fell to half the high-water mark or less after `write()` returned false. */
  onDrain(): void;
  /** Called exactly once, last. `error` is undefined for an orderly close. */
  onClose(error: Error | undefined): void;
}

/** One client's byte stream, whatever the wire. Implement it to add a transport. */
export interface Connection {
  /** Unique in the process (`c1`, `c2` …), from one counter shared by all listeners: see `nextConnectionId()`. */
  readonly id: string;
  readonly protocol: TransportProtocol;
  readonly localAddress: string;
  readonly localPort: number;
  /** The TCP peer's address (for WebSocket too, proxies are not unwrapped). */
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Set for tls and wss. */
  readonly tls: TlsDetails | undefined;
  /**
   * Attaches the receiver. Until then nothing is read from the socket, so no byte is lost. If the
   * connection closed before, `onClose` follows on the next tick.
   */
  setHandler(handler: ConnectionHandler): void;
  /**
   * Queues bytes. All writes of one event-loop turn leave together in one batch. Returns false when
   * `bufferedBytes` exceeds the high-water mark; `onDrain` follows. The bytes are not copied: do not
   * change them after the call. Writes after `end()`/`destroy()` are dropped and return false.
   */
  write(bytes: Uint8Array): boolean;
  /** Bytes accepted by `write()` and not yet handed to the kernel. */
  readonly bufferedBytes: number;
  /** Stops reading (inbound flow control). */
  pause(): void;
  resume(): void;
  /** Sends what is queued, then closes. */
  end(): void;
  /** Closes at once, dropping what is queued. `error` becomes the argument of `onClose`. */
  destroy(error?: Error): void;
  /** True once `end()` or `destroy()` was called or the peer closed: writes are no longer accepted. */
  readonly isClosed: boolean;
}

/** A source of Connections. */
export interface Listener {
  readonly protocol: TransportProtocol;
  /** For logs and errors, e.g. `tls://0.0.0.0:8883` (the real port once bound). */
  readonly name: string;
  /** Binds. Rejects with a TransportError naming the listener (and the file, for certificates). */
  start(): Promise<void>;
  /** Stops accepting; existing connections stay open. */
  stop(): Promise<void>;
  /** Destroys every connection this listener produced. */
  closeConnections(): void;
  /** The bound address (port 0 resolved to the real port), or null when not listening. */
  address(): { host: string; port: number } | null;
  /** Receives each new Connection. Set it before `start()`. Without it, connections are closed. */
  onConnection: ((connection: Connection) => void) | undefined;
  /** Open connections produced by this listener. */
  readonly connections: ReadonlySet<Connection>;
}

let lastConnectionId = 0;

/** The next process-wide connection id (`c1`, `c2` …). Custom transports should use it too. */
export function nextConnectionId(): string {
  lastConnectionId += 1;
  return `c${lastConnectionId}`;
}

/** Diagnostics channel names; messages are `{ connection }` and `{ connection, error }`. */
export const CONNECTION_OPEN_CHANNEL = 'broker:transport:connection:open';
export const CONNECTION_CLOSE_CHANNEL = 'broker:transport:connection:close';
const openChannel = diagnostics.channel(CONNECTION_OPEN_CHANNEL);
const closeChannel = diagnostics.channel(CONNECTION_CLOSE_CHANNEL);

/** @internal */
export function publishOpen(connection: Connection): void {
  if (openChannel.hasSubscribers) openChannel.publish({ connection });
}

/** @internal */
export function publishClose(connection: Connection, error: Error | undefined): void {
  if (closeChannel.hasSubscribers) closeChannel.publish({ connection, error });
}

/** @internal Something with a write queue to hand to the socket. */
export interface Flushable {
  flush(): void;
  destroy(error?: Error): void;
}

// One setImmediate for all connections, not one per connection: a fan-out to 10 000 subscribers
// schedules a single callback. setImmediate rather than process.nextTick because it runs after the
// poll phase, so the writes caused by every socket read in that phase (several inbound packets, each
// fanned out) join one batch per connection; nextTick would flush after each single read callback.
let dirty: Flushable[] = [];
let spare: Flushable[] = [];
let flushScheduled = false;

function flushAll(): void {
  flushScheduled = false;
  const list = dirty;
  dirty = spare;
  for (let i = 0; i < list.length; i++) {
    const item = list[i]!;
    try {
      item.flush();
    } catch (error) {
      // One broken connection must not keep the others from being flushed.
      item.destroy(toSocketError(error, undefined));
    }
  }
  list.length = 0;
  spare = list;
}

/** @internal Queues `item.flush()` for the end of this event-loop turn. */
export function scheduleFlush(item: Flushable): void {
  dirty.push(item);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushAll);
  }
}

// Below this a batch is copied into one buffer (cheaper than a writev entry per packet for small MQTT
// packets); above it the chunks go out corked, as one writev, without copying.
const CONCAT_LIMIT_BYTES = 16 * 1024;
/** Default `highWaterMarkBytes`. */
export const DEFAULT_HIGH_WATER_MARK_BYTES = 64 * 1024;
/** How long `end()` waits for the peer to close when `lingerSeconds` is unset. */
export const DEFAULT_END_GRACE_MS = 5000;

/** @internal Concatenates a batch. */
export function concatBatch(queue: readonly Uint8Array[], total: number): Uint8Array {
  return Buffer.concat(queue as Uint8Array[], total);
}

/** Settings of a socket-backed Connection. */
export interface SocketConnectionOptions {
  protocol: TransportProtocol;
  /** For tls: what was negotiated. */
  tls?: TlsDetails | undefined;
  /** The TCP socket under `socket` when `socket` is a TLS socket: addresses and resets use it. */
  rawSocket?: Socket | undefined;
  highWaterMarkBytes?: number | undefined;
  lingerSeconds?: number | undefined;
  /** Destroy the connection with TRANSPORT_CONNECT_TIMEOUT if no byte arrives within this time; 0 = off. */
  connectTimeoutMs?: number | undefined;
  /** Named in errors. */
  listenerName?: string | undefined;
  /** Called once when the socket has closed, before `onClose` (listener bookkeeping). */
  onClosed?: ((connection: SocketConnection) => void) | undefined;
}

/**
 * A Connection over a `net.Socket` (TCP, or TLS through `tls.TLSSocket`, or any stream socket such as a
 * unix domain socket). The socket must be paused (e.g. accepted with `pauseOnConnect`) and should allow
 * half-open so that queued bytes still go out when the peer ends first.
 */
export class SocketConnection implements Connection, Flushable {
  readonly id: string;
  readonly protocol: TransportProtocol;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly tls: TlsDetails | undefined;

  private readonly socket: Socket;
  private readonly raw: Socket;
  private readonly highWater: number;
  private readonly lowWater: number;
  private readonly lingerSeconds: number | undefined;
  private readonly listenerName: string | undefined;
  private readonly onClosed: ((connection: SocketConnection) => void) | undefined;
  private handler: ConnectionHandler | undefined = undefined;
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private flushPending = false;
  private needDrain = false;
  private ending = false;
  private destroyed = false;
  private socketClosed = false;
  private closeDelivered = false;
  private paused = false;
  private reading = false;
  private closeError: Error | undefined = undefined;
  private connectTimer: NodeJS.Timeout | undefined = undefined;
  private endTimer: NodeJS.Timeout | undefined = undefined;

  constructor(socket: Socket, options: SocketConnectionOptions) {
    this.id = nextConnectionId();
    this.socket = socket;
    this.raw = options.rawSocket ?? socket;
    this.protocol = options.protocol;
    this.tls = options.tls;
    this.localAddress = this.raw.localAddress ?? '';
    this.localPort = this.raw.localPort ?? 0;
    this.remoteAddress = this.raw.remoteAddress ?? '';
    this.remotePort = this.raw.remotePort ?? 0;
    this.highWater = options.highWaterMarkBytes ?? DEFAULT_HIGH_WATER_MARK_BYTES;
    this.lowWater = this.highWater >>> 1;
    this.lingerSeconds = options.lingerSeconds;
    this.listenerName = options.listenerName;
    this.onClosed = options.onClosed;
    socket.on('data', this.onSocketData);
    socket.on('end', this.onSocketEnd);
    socket.on('drain', this.onSocketDrain);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
    // Attaching 'data' does not start a socket accepted with pauseOnConnect; make sure of it anyway.
    socket.pause();
    const timeout = options.connectTimeoutMs ?? 0;
    if (timeout > 0) {
      this.connectTimer = setTimeout(this.onConnectTimeout, timeout);
      this.connectTimer.unref();
    }
    if (socket.destroyed) {
      this.destroyed = true;
      process.nextTick(this.onSocketClose);
    }
    publishOpen(this);
  }

  get bufferedBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  get isClosed(): boolean {
    return this.ending || this.destroyed || this.socketClosed;
  }

  setHandler(handler: ConnectionHandler): void {
    this.handler = handler;
    if (this.socketClosed) {
      if (!this.closeDelivered) process.nextTick(this.deliverClose);
      return;
    }
    if (!this.reading) {
      this.reading = true;
      if (!this.paused) this.socket.resume();
    }
  }

  write(bytes: Uint8Array): boolean {
    if (this.ending || this.destroyed || this.socketClosed) return false;
    this.queue.push(bytes);
    this.queuedBytes += bytes.byteLength;
    if (!this.flushPending) {
      this.flushPending = true;
      scheduleFlush(this);
    }
    if (this.queuedBytes + this.socket.writableLength > this.highWater) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** @internal Hands the queued batch to the socket; called once per turn by the scheduler. */
  flush(): void {
    this.flushPending = false;
    const queue = this.queue;
    const count = queue.length;
    if (count === 0) return;
    const total = this.queuedBytes;
    this.queuedBytes = 0;
    const socket = this.socket;
    if (this.destroyed || socket.destroyed || socket.writableEnded) {
      queue.length = 0;
      return;
    }
    if (count === 1) {
      socket.write(queue[0]!);
    } else if (total <= CONCAT_LIMIT_BYTES) {
      socket.write(concatBatch(queue, total));
    } else {
      socket.cork();
      for (let i = 0; i < count; i++) socket.write(queue[i]!);
      socket.uncork();
    }
    queue.length = 0;
    // The kernel may take the whole batch at once, in which case no 'drain' event will come.
    if (this.needDrain && socket.writableLength <= this.lowWater) this.emitDrain();
  }

  pause(): void {
    this.paused = true;
    if (this.reading) this.socket.pause();
  }

  resume(): void {
    this.paused = false;
    if (this.reading && !this.ending) this.socket.resume();
  }

  end(): void {
    if (this.ending || this.destroyed || this.socketClosed) return;
    this.flush();
    this.ending = true;
    this.clearConnectTimer();
    this.socket.end();
    // Keep reading (and discarding) so the peer's FIN is seen and unread input does not turn our close
    // into an RST that could discard the bytes just sent.
    this.reading = true;
    this.socket.resume();
    const graceMs =
      this.lingerSeconds !== undefined && this.lingerSeconds > 0
        ? this.lingerSeconds * 1000
        : DEFAULT_END_GRACE_MS;
    this.endTimer = setTimeout(this.onEndTimeout, graceMs);
    this.endTimer.unref();
  }

  destroy(error?: Error): void {
    if (this.destroyed || this.socketClosed) return;
    this.destroyed = true;
    if (error !== undefined && this.closeError === undefined) this.closeError = error;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.clearTimers();
    if (this.lingerSeconds === 0) this.reset();
    else this.socket.destroy();
  }

  /**
   * Closes with an RST. Only for plain TCP: resetting the TCP socket under a TLS socket that still has
   * work queued (a session ticket, say) crashes Node 20, so under TLS this is a normal close.
   */
  private reset(): void {
    if (this.raw === this.socket && !this.raw.destroyed) {
      try {
        this.raw.resetAndDestroy();
      } catch {
        // Not a TCP handle (e.g. a unix socket): a plain close is the best there is.
        this.raw.destroy();
      }
    }
    this.socket.destroy();
  }

  private emitDrain(): void {
    this.needDrain = false;
    this.handler?.onDrain();
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== undefined) {
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
    }
  }

  private clearTimers(): void {
    this.clearConnectTimer();
    if (this.endTimer !== undefined) {
      clearTimeout(this.endTimer);
      this.endTimer = undefined;
    }
  }

  private readonly onSocketData = (chunk: Buffer): void => {
    if (this.connectTimer !== undefined) this.clearConnectTimer();
    if (this.ending || this.destroyed) return;
    const handler = this.handler;
    if (handler === undefined) return;
    try {
      handler.onData(chunk);
    } catch (error) {
      // A throwing receiver closes its own connection, never the listener or the process.
      this.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  };

  private readonly onSocketEnd = (): void => {
    // The peer has finished sending: send what is queued, then close our side too.
    if (!this.ending && !this.destroyed) this.end();
  };

  private readonly onSocketDrain = (): void => {
    if (this.needDrain && this.queuedBytes + this.socket.writableLength <= this.lowWater) this.emitDrain();
  };

  private readonly onSocketError = (error: Error): void => {
    if (this.closeError === undefined) this.closeError = toSocketError(error, this.listenerName);
  };

  private readonly onConnectTimeout = (): void => {
    this.connectTimer = undefined;
    this.destroy(
      new TransportError('TRANSPORT_CONNECT_TIMEOUT', 'no data received within the connect timeout', {
        listener: this.listenerName,
      }),
    );
  };

  private readonly onEndTimeout = (): void => {
    this.endTimer = undefined;
    if (this.socketClosed) return;
    this.destroyed = true;
    this.reset();
  };

  private readonly onSocketClose = (): void => {
    if (this.socketClosed) return;
    this.socketClosed = true;
    this.clearTimers();
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.onClosed?.(this);
    publishClose(this, this.closeError);
    if (this.handler !== undefined) this.deliverClose();
  };

  private readonly deliverClose = (): void => {
    if (this.closeDelivered) return;
    const handler = this.handler;
    if (handler === undefined) return;
    this.closeDelivered = true;
    handler.onClose(this.closeError);
  };
}
