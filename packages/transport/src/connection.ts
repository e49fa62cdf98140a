import diagnostics from 'node:diagnostics_channel';
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

/** Default `highWaterMarkBytes`. */
export const DEFAULT_HIGH_WATER_MARK_BYTES = 64 * 1024;
