/**
 * The ports core talks through (ARCHITECTURE.md). Core opens no socket, file or timer itself: a
 * transport supplies Connections, the app supplies a Clock (or uses the system one) and a Store.
 */

/** What a connection calls on its receiver. */
export interface ConnectionHandler {
  onData(bytes: Uint8Array): void;
  onDrain(): void;
  onClose(error: Error | undefined): void;
}

/**
 * A byte stream to one client, as a transport hands it over. `@broker/transport`'s Connection
 * satisfies it; so does an in-memory pair (`createConnectionPair`) or any custom transport.
 */
export interface Connection {
  readonly id: string;
  readonly protocol: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** Attaches the receiver; no data flows before. */
  setHandler(handler: ConnectionHandler): void;
  /** Queues bytes; false when the outgoing buffer is above its high-water mark (onDrain follows). */
  write(bytes: Uint8Array): boolean;
  /** Bytes accepted by write() and not yet sent. */
  readonly bufferedBytes: number;
  pause(): void;
  resume(): void;
  /** Sends what is queued, then closes. */
  end(): void;
  /** Closes at once. */
  destroy(error?: Error): void;
}

/** Time, as an input: keep-alive, idle and connect timeouts are tested with a manual clock. */
export interface Clock {
  /** Milliseconds, monotonic enough for timeouts. */
  now(): number;
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(callback: () => void, intervalMs: number): unknown;
  clearInterval(handle: unknown): void;
}
