import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type tls from 'node:tls';
import type { Connection, Listener } from './connection.js';
import { TransportError, toSocketError } from './errors.js';
import type { ListenerOptions, TlsDetails, TransportProtocol } from './options.js';

/** @internal Default `connectTimeoutMs`. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;

/** @internal Formats `proto://host:port`, bracketing IPv6 hosts. */
export function formatName(protocol: TransportProtocol, host: string, port: number): string {
  return `${protocol}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The admission a socket is in, while it watches the socket (see `Admission.watch`). */
const ADMISSION = Symbol('admission');

interface AdmittedSocket extends net.Socket {
  [ADMISSION]: Admission | undefined;
}

/**
 * @internal A socket between accept and becoming a Connection: it runs the connect timeout, catches the
 * socket's errors and closes, and reports a failure exactly once. Most admissions complete in the turn
 * they start (plain TCP, a synchronous decision); only one that is still pending afterwards (a
 * handshake, an asynchronous decision) starts its timer and listeners: see `watch()`.
 */
export class Admission {
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The socket layered on top of `socket` (the TLS socket), once there is one. */
  upper: net.Socket | undefined = undefined;
  private settled = false;
  private watching = false;
  private readonly deadline: number;
  private timer: NodeJS.Timeout | undefined = undefined;
  private lastError: Error | undefined = undefined;
  private closeReason: TransportError | undefined = undefined;

  constructor(
    private readonly listener: NetListener,
    readonly socket: net.Socket,
  ) {
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    const timeoutMs = listener.connectTimeoutMs;
    this.deadline = timeoutMs > 0 ? performance.now() + timeoutMs : 0;
  }

  /**
   * Starts the connect timer and watching the socket's errors and close; for an admission still
   * pending at the end of the turn it started in. Nothing can be missed before: a socket reports
   * errors and its close asynchronously.
   */
  watch(): void {
    if (this.settled || this.watching) return;
    this.watching = true;
    if (this.deadline > 0) {
      const remainingMs = Math.max(1, Math.ceil(this.deadline - performance.now()));
      this.timer = setTimeout(Admission.onTimeout, remainingMs, this);
      this.timer.unref();
    }
    const socket = this.socket as AdmittedSocket;
    socket[ADMISSION] = this;
    socket.on('error', Admission.onError);
    socket.on('close', Admission.onClose);
  }

  get isSettled(): boolean {
    return this.settled;
  }

  /** Closes the socket and reports `error` through `onConnectionRejected`. */
  fail(error: TransportError): void {
    if (this.settled) return;
    this.release();
    // Once TLS wraps the socket, only the TLS socket may close it: destroying the TCP socket under a
    // live TLS wrap (here, inside its 'secureConnection' callback) crashes Node.
    if (this.upper === undefined) this.listener.destroySocket(this.socket);
    else this.upper.destroy();
    this.listener.reportRejected(this, error);
  }

  /** Like `fail`, but first sends `response` (an HTTP refusal) and closes gracefully. */
  failWithResponse(error: TransportError, response: string): void {
    if (this.settled) return;
    const socket = this.upper ?? this.socket;
    this.release();
    // The socket must keep an error listener until it is gone, or a late reset would be uncaught.
    socket.on('error', ignore);
    socket.once('finish', () => socket.destroy());
    socket.end(response);
    this.listener.reportRejected(this, error);
  }

  /** Reports `error` (instead of a plain close) once the socket closes, e.g. after an HTTP refusal. */
  failAfterClose(error: TransportError): void {
    this.closeReason ??= error;
  }

  /** Hands the socket over; returns what is left of the connect timeout (0 = none). */
  complete(): number {
    this.release();
    if (this.deadline === 0) return 0;
    return Math.max(1, Math.ceil(this.deadline - performance.now()));
  }

  private release(): void {
    this.settled = true;
    if (this.watching) {
      this.watching = false;
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
      const socket = this.socket as AdmittedSocket;
      socket.off('error', Admission.onError);
      socket.off('close', Admission.onClose);
      socket[ADMISSION] = undefined;
    }
    this.listener.forgetAdmission(this);
  }

  // Shared by all admissions: the timer gets the admission, the socket listeners find it on the socket.

  private static onTimeout(admission: Admission): void {
    admission.timer = undefined;
    admission.fail(
      new TransportError('TRANSPORT_CONNECT_TIMEOUT', 'handshake not finished within the connect timeout', {
        listener: admission.listener.name,
      }),
    );
  }

  private static readonly onError = function (this: net.Socket, error: Error): void {
    const admission = (this as AdmittedSocket)[ADMISSION];
    if (admission !== undefined) admission.lastError ??= error;
  };

  private static readonly onClose = function (this: net.Socket): void {
    const admission = (this as AdmittedSocket)[ADMISSION];
    if (admission === undefined) return;
    const error =
      admission.closeReason ??
      (admission.lastError === undefined
        ? new TransportError('TRANSPORT_CLOSED', 'the peer closed before the connection was established', {
            listener: admission.listener.name,
          })
        : toSocketError(admission.lastError, admission.listener.name));
    admission.fail(error);
  };
}

function ignore(): void {}

/** @internal Receives a socket whose handshake finished: the TLS socket and what it negotiated. */
export type SecuredCallback = (admission: Admission, socket: tls.TLSSocket, details: TlsDetails) => void;

/**
 * @internal A handshake between admission and the Connection (TLS: `TlsEngine`). Its material is loaded
 * in `start()` and released in `stop()`.
 */
export interface Handshake {
  load(): Promise<void>;
  close(): Promise<void>;
  /** Runs the handshake; `onSecured` follows on success, otherwise it fails the admission. */
  handshake(admission: Admission, onSecured: SecuredCallback): void;
  /** Reports what a delivered connection negotiated. */
  reportNegotiated(connection: Connection): void;
}

/** What a listener owning a handshake needs to make one. */
export type HandshakeFactory = (owner: NetListener) => Handshake;

/**
 * @internal The part shared by listeners that accept TCP sockets themselves: binding, admission
 * (maxConnections, onConnectionRequest, connect timeout) and the set of live connections.
 */
export abstract class NetListener implements Listener {
  abstract readonly protocol: TransportProtocol;
  onConnection: ((connection: Connection) => void) | undefined = undefined;
  readonly connectTimeoutMs: number;
  protected readonly host: string;
  protected readonly port: number;
  protected readonly highWaterMarkBytes: number | undefined;
  protected readonly lingerSeconds: number | undefined;
  private readonly options: ListenerOptions;
  private server: net.Server | undefined = undefined;
  private boundName: string | undefined = undefined;
  /** While listening on one address (not a wildcard): the local end of every connection accepted. */
  protected boundLocalAddress: string | undefined = undefined;
  protected boundLocalPort: number | undefined = undefined;
  private readonly live = new Set<Connection>();
  private readonly admissions = new Set<Admission>();
  private readonly secure: Handshake | undefined;

  /** `handshake` (TLS) runs on every admitted socket before `admit()`. */
  constructor(options: ListenerOptions, handshake?: HandshakeFactory) {
    this.options = options;
    this.secure = handshake?.(this);
    this.host = options.host ?? '0.0.0.0';
    this.port = options.port ?? 0;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.highWaterMarkBytes = options.highWaterMarkBytes;
    this.lingerSeconds = options.lingerSeconds;
  }

  get name(): string {
    // Built once while listening: every connection keeps it (listenerName), and a string built per
    // connection would be a copy per connection.
    if (this.server === undefined) return this.formatBoundName();
    this.boundName ??= this.formatBoundName();
    return this.boundName;
  }

  private formatBoundName(): string {
    const bound = this.address();
    return formatName(this.protocol, bound?.host ?? this.host, bound?.port ?? this.port);
  }

  get connections(): ReadonlySet<Connection> {
    return this.live;
  }

  /** The underlying `net.Server` while listening (for diagnostics: do not attach to it). */
  get netServer(): net.Server | undefined {
    return this.server;
  }

  async start(): Promise<void> {
    if (this.server !== undefined) {
      throw new TransportError('TRANSPORT_ALREADY_STARTED', `${this.name}: already started`, {
        listener: this.name,
      });
    }
    await this.prepare();
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
    server.on('connection', this.onSocket);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const listenOptions: net.ListenOptions = { host: this.host, port: this.port };
        if (this.options.backlog !== undefined) listenOptions.backlog = this.options.backlog;
        if (this.options.ipv6Only !== undefined) listenOptions.ipv6Only = this.options.ipv6Only;
        server.listen(listenOptions, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      server.off('connection', this.onSocket);
      await this.release();
      const message = error instanceof Error ? error.message : String(error);
      const name = formatName(this.protocol, this.host, this.port);
      throw new TransportError('TRANSPORT_LISTEN_FAILED', `${name}: cannot listen: ${message}`, {
        listener: name,
        cause: error,
      });
    }
    // A listening server can still report errors (e.g. EMFILE on accept); they must not crash the process.
    server.on('error', ignore);
    this.server = server;
    const bound = this.address();
    if (bound !== null && bound.host !== '0.0.0.0' && bound.host !== '::') {
      this.boundLocalAddress = bound.host;
      this.boundLocalPort = bound.port;
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    this.boundName = undefined;
    this.boundLocalAddress = undefined;
    this.boundLocalPort = undefined;
    // close() stops accepting at once; its callback would wait for every connection, which stay open.
    server.close();
    server.off('connection', this.onSocket);
    await this.release();
  }

  closeConnections(): void {
    for (const admission of [...this.admissions]) {
      admission.fail(
        new TransportError('TRANSPORT_CLOSED', 'listener closed its connections', { listener: this.name }),
      );
    }
    for (const connection of [...this.live]) connection.destroy();
  }

  address(): { host: string; port: number } | null {
    const bound = this.server?.address();
    if (bound === null || bound === undefined || typeof bound === 'string') return null;
    return { host: bound.address, port: bound.port };
  }

  /** Loads what `start()` needs before binding (certificates); throws TransportError. */
  protected async prepare(): Promise<void> {
    await this.secure?.load();
  }

  /** Frees what `prepare()` made, on `stop()` or a failed `start()`. */
  protected async release(): Promise<void> {
    await this.secure?.close();
  }

  /**
   * Turns an admitted socket into a Connection, or fails the admission. `socket` is the TLS socket and
   * `tls` what it negotiated when the listener has a handshake; otherwise `admission.socket` and undefined.
   */
  protected abstract admit(admission: Admission, socket: net.Socket, tls: TlsDetails | undefined): void;

  /** Registers `connection` and hands it to `onConnection`. */
  protected deliver(connection: Connection): void {
    this.secure?.reportNegotiated(connection);
    this.live.add(connection);
    const onConnection = this.onConnection;
    if (onConnection === undefined) {
      connection.destroy(
        new TransportError('TRANSPORT_CLOSED', 'listener has no onConnection', { listener: this.name }),
      );
      return;
    }
    try {
      onConnection(connection);
    } catch (error) {
      connection.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Bound once: removes a closed connection from `connections`. */
  protected readonly forget = (connection: Connection): void => {
    this.live.delete(connection);
  };

  /** @internal */
  forgetAdmission(admission: Admission): void {
    this.admissions.delete(admission);
  }

  /** @internal Closes a socket that will not become a Connection, with an RST when lingerSeconds is 0. */
  destroySocket(socket: net.Socket): void {
    if (this.lingerSeconds === 0 && !socket.destroyed) {
      try {
        socket.resetAndDestroy();
        return;
      } catch {
        // fall through to a plain close
      }
    }
    socket.destroy();
  }

  /** @internal */
  reportRejected(admission: Admission, error: TransportError): void {
    const hook = this.options.onConnectionRejected;
    if (hook === undefined) return;
    try {
      hook({
        remoteAddress: admission.remoteAddress,
        remotePort: admission.remotePort,
        protocol: this.protocol,
        error,
      });
    } catch {
      // A reporting hook must not break accepting.
    }
  }

  /** Applies the per-socket TCP options. */
  protected configureSocket(socket: net.Socket): void {
    socket.setNoDelay(this.options.noDelay ?? true);
    const keepAlive = this.options.keepAlive;
    if (keepAlive !== undefined) socket.setKeepAlive(keepAlive.enabled, keepAlive.initialDelayMs ?? 0);
  }

  /** Admission passed: the handshake, if any, then `admit()`. */
  private accept(admission: Admission): void {
    const secure = this.secure;
    if (secure === undefined) this.admit(admission, admission.socket, undefined);
    else secure.handshake(admission, this.onSecured);
  }

  private readonly onSecured = (admission: Admission, socket: tls.TLSSocket, details: TlsDetails): void => {
    this.admit(admission, socket, details);
  };

  private readonly onSocket = (socket: net.Socket): void => {
    if (socket.remoteAddress === undefined) {
      // Already gone between accept and now.
      socket.destroy();
      return;
    }
    const admission = new Admission(this, socket);
    const max = this.options.maxConnections;
    if (max !== undefined && this.live.size + this.admissions.size >= max) {
      admission.fail(
        new TransportError('TRANSPORT_MAX_CONNECTIONS', `connection limit of ${max} reached`, {
          listener: this.name,
        }),
      );
      return;
    }
    this.admissions.add(admission);
    this.configureSocket(socket);
    this.dispatch(admission);
    // Still pending (a handshake, an asynchronous decision): from now on it needs its timer and listeners.
    admission.watch();
  };

  /** Asks `onConnectionRequest`, if any, then accepts or refuses. */
  private dispatch(admission: Admission): void {
    const request = this.options.onConnectionRequest;
    if (request === undefined) {
      this.accept(admission);
      return;
    }
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = request({
        remoteAddress: admission.remoteAddress,
        remotePort: admission.remotePort,
        protocol: this.protocol,
      });
    } catch (error) {
      this.refuse(admission, error);
      return;
    }
    if (typeof verdict === 'boolean') {
      if (verdict) this.accept(admission);
      else this.refuse(admission, undefined);
      return;
    }
    Promise.resolve(verdict).then(
      (accepted) => {
        if (admission.isSettled) return;
        if (accepted === true) this.accept(admission);
        else this.refuse(admission, undefined);
      },
      (error: unknown) => this.refuse(admission, error),
    );
  }

  private refuse(admission: Admission, cause: unknown): void {
    admission.fail(
      new TransportError('TRANSPORT_CONNECTION_REFUSED', 'refused by onConnectionRequest', {
        listener: this.name,
        cause,
      }),
    );
  }
}
