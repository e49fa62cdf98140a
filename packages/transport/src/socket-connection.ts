import type { Socket } from 'node:net';
import { BufferedConnection, concatBatch } from './buffered-connection.js';
import { toSocketError } from './errors.js';
import type { TlsDetails, TransportProtocol } from './options.js';

// Below this a batch is copied into one buffer (cheaper than a writev entry per packet for small MQTT
// packets); above it the chunks go out corked, as one writev, without copying.
const CONCAT_LIMIT_BYTES = 16 * 1024;

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
export class SocketConnection extends BufferedConnection {
  private readonly socket: Socket;

  constructor(socket: Socket, options: SocketConnectionOptions) {
    const raw = options.rawSocket ?? socket;
    super({
      protocol: options.protocol,
      tls: options.tls,
      raw,
      rawIsWrapped: raw !== socket,
      reader: socket,
      highWaterMarkBytes: options.highWaterMarkBytes,
      lingerSeconds: options.lingerSeconds,
      listenerName: options.listenerName,
      // Only ever called with this connection, which is a SocketConnection.
      onClosed: options.onClosed as ((connection: BufferedConnection) => void) | undefined,
    });
    this.socket = socket;
    socket.on('data', this.receive);
    socket.on('end', this.onSocketEnd);
    socket.on('drain', this.onStreamDrain);
    socket.on('error', this.onSocketError);
    socket.on('close', this.streamClosed);
    if (socket.destroyed) {
      this.destroyed = true;
      process.nextTick(this.streamClosed);
    }
    this.opened(options.connectTimeoutMs ?? 0);
  }

  protected streamBufferedBytes(): number {
    return this.socket.writableLength;
  }

  protected canSend(): boolean {
    const socket = this.socket;
    return !socket.destroyed && !socket.writableEnded;
  }

  protected send(queue: readonly Uint8Array[], count: number, total: number): void {
    const socket = this.socket;
    if (count === 1) {
      socket.write(queue[0]!);
    } else if (total <= CONCAT_LIMIT_BYTES) {
      socket.write(concatBatch(queue, total));
    } else {
      socket.cork();
      for (let i = 0; i < count; i++) socket.write(queue[i]!);
      socket.uncork();
    }
  }

  protected endStream(): void {
    this.socket.end();
  }

  protected destroyStream(): void {
    this.socket.destroy();
  }

  private readonly onSocketEnd = (): void => {
    // The peer has finished sending: send what is queued, then close our side too.
    if (!this.ending && !this.destroyed) this.end();
  };

  private readonly onSocketError = (error: Error): void => {
    this.noteError(toSocketError(error, this.listenerName));
  };
}
