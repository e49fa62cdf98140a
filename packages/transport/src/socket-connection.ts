import type { Socket } from 'node:net';
import { BufferedConnection, concatBatch } from './buffered-connection.js';
import { toSocketError } from './errors.js';
import type { TlsDetails, TransportProtocol } from './options.js';

// Below this a batch is copied into one buffer (cheaper than a writev entry per packet for small MQTT
// packets); above it the chunks go out corked, as one writev, without copying.
const CONCAT_LIMIT_BYTES = 16 * 1024;

/**
 * The connection a socket carries. The socket's listeners are the same functions for every socket and
 * find their connection through it, so a connection holds no bound closures (each would cost a function,
 * its context and a listener of its own, per connection).
 */
const CONNECTION = Symbol('connection');

interface OwnedSocket extends Socket {
  [CONNECTION]: SocketConnection;
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
  /** The local address and port when known without asking the socket (a listener bound to one address). */
  localAddress?: string | undefined;
  localPort?: number | undefined;
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
      localAddress: options.localAddress,
      localPort: options.localPort,
    });
    this.socket = socket;
    (socket as OwnedSocket)[CONNECTION] = this;
    const on = SocketConnection.on;
    socket.on('data', on.data);
    socket.on('end', on.end);
    socket.on('drain', on.drain);
    socket.on('error', on.error);
    socket.on('close', on.close);
    if (socket.destroyed) {
      this.destroyed = true;
      process.nextTick(SocketConnection.closeLater, this);
    }
    this.opened(options.connectTimeoutMs ?? 0);
  }

  protected get reader(): Socket {
    return this.socket;
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

  /** The socket's listeners, shared by all sockets: `this` is the socket (EventEmitter calls listeners on it). */
  private static readonly on = {
    data(this: OwnedSocket, chunk: Buffer): void {
      this[CONNECTION].receive(chunk);
    },
    end(this: OwnedSocket): void {
      // The peer has finished sending: send what is queued, then close our side too.
      const connection = this[CONNECTION];
      if (!connection.ending && !connection.destroyed) connection.end();
    },
    drain(this: OwnedSocket): void {
      this[CONNECTION].streamDrained();
    },
    error(this: OwnedSocket, error: Error): void {
      const connection = this[CONNECTION];
      connection.noteError(toSocketError(error, connection.listenerName));
    },
    close(this: OwnedSocket): void {
      this[CONNECTION].streamClosed();
    },
  };

  private static closeLater(connection: SocketConnection): void {
    connection.streamClosed();
  }
}
