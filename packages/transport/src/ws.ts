import http from 'node:http';
import type https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { type WebSocket, WebSocketServer } from 'ws';
import {
  type Connection,
  type ConnectionHandler,
  concatBatch,
  DEFAULT_END_GRACE_MS,
  DEFAULT_HIGH_WATER_MARK_BYTES,
  type Flushable,
  nextConnectionId,
  publishClose,
  publishOpen,
  scheduleFlush,
} from './connection.js';
import { TransportError, toSocketError } from './errors.js';
import { type Admission, formatName, NetListener } from './net-listener.js';
import type { ListenerOptions, TlsDetails, TlsOptions, TransportProtocol } from './options.js';
import { TlsEngine, tlsDetailsOf } from './tls-support.js';

/** MQTT's largest packet (a 268 435 455-byte remaining length plus a 5-byte fixed header). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 268_435_455 + 5;
/** The subprotocols MQTT 3.1.1 (`mqtt`) and 3.1 (`mqttv3.1`) clients offer. */
export const DEFAULT_SUBPROTOCOLS: readonly string[] = ['mqtt', 'mqttv3.1'];

/** WebSocket settings shared by the ws and wss listeners. */
export interface WebSocketOptions {
  /** The only path upgraded; others get 404. Default `'/mqtt'`. */
  path?: string;
  /**
   * Accepted subprotocols. The server answers with the first one the client offered that is listed;
   * a client offering none is accepted, one offering only others is refused (400). Default mqtt, mqttv3.1.
   */
  subprotocols?: readonly string[];
  /** permessage-deflate. Default false: MQTT payloads are often already compact and deflate costs CPU and memory. */
  perMessageDeflate?: boolean;
  /** Largest WebSocket message accepted. Default 268 435 460 (MQTT's maximum packet size). */
  maxPayloadBytes?: number;
  /** When set, a request whose Origin header is not listed is refused with 403. Requests without Origin (non-browser clients) pass. */
  allowedOrigins?: readonly string[];
}

/** Options of a WebSocket listener. */
export interface WsListenerOptions extends ListenerOptions, WebSocketOptions {
  /**
   * Serve upgrades on a server you own (an https server makes the connections `wss`). Then `start()` and
   * `stop()` only attach and detach the upgrade handler, `host`/`port`/TCP options are yours to set,
   * `onConnectionRequest` is asked at the upgrade and the connect timeout starts there.
   */
  server?: http.Server | https.Server;
}

/** Options of a secure WebSocket listener: WebSocket and TLS settings. */
export interface WssListenerOptions extends ListenerOptions, WebSocketOptions, TlsOptions {}

const ACCEPT_CLOSE_CODES = new Set([1000, 1001, 1005, 1006]);

function httpRefusal(status: number, reason: string): string {
  const body = `${reason}\n`;
  return `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Refused'}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** Settings of a WebSocket-backed Connection. */
interface WsConnectionOptions {
  protocol: TransportProtocol;
  tls: TlsDetails | undefined;
  highWaterMarkBytes: number | undefined;
  lingerSeconds: number | undefined;
  connectTimeoutMs: number;
  listenerName: string;
  onClosed: (connection: Connection) => void;
}

/**
 * @internal A Connection over a WebSocket: each binary message is a slice of the MQTT byte stream, and
 * the writes of one event-loop turn leave as one binary message.
 */
export class WsConnection implements Connection, Flushable {
  readonly id: string;
  readonly protocol: TransportProtocol;
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly tls: TlsDetails | undefined;

  private readonly ws: WebSocket;
  private readonly socket: Duplex;
  private readonly raw: Socket;
  private readonly highWater: number;
  private readonly lowWater: number;
  private readonly lingerSeconds: number | undefined;
  private readonly listenerName: string;
  private readonly onClosed: (connection: Connection) => void;
  private handler: ConnectionHandler | undefined = undefined;
  private early: Buffer[] | undefined = undefined;
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private flushPending = false;
  private needDrain = false;
  private ending = false;
  private destroyed = false;
  private wsClosed = false;
  private closeDelivered = false;
  private paused = false;
  private reading = false;
  private closeError: Error | undefined = undefined;
  private connectTimer: NodeJS.Timeout | undefined = undefined;
  private endTimer: NodeJS.Timeout | undefined = undefined;

  constructor(ws: WebSocket, socket: Duplex, raw: Socket, options: WsConnectionOptions) {
    this.id = nextConnectionId();
    this.ws = ws;
    this.socket = socket;
    this.raw = raw;
    this.protocol = options.protocol;
    this.tls = options.tls;
    this.localAddress = raw.localAddress ?? '';
    this.localPort = raw.localPort ?? 0;
    this.remoteAddress = raw.remoteAddress ?? '';
    this.remotePort = raw.remotePort ?? 0;
    this.highWater = options.highWaterMarkBytes ?? DEFAULT_HIGH_WATER_MARK_BYTES;
    this.lowWater = this.highWater >>> 1;
    this.lingerSeconds = options.lingerSeconds;
    this.listenerName = options.listenerName;
    this.onClosed = options.onClosed;
    ws.pause();
    ws.on('message', this.onMessage);
    ws.on('error', this.onWsError);
    ws.on('close', this.onWsClose);
    socket.on('drain', this.onSocketDrain);
    if (options.connectTimeoutMs > 0) {
      this.connectTimer = setTimeout(this.onConnectTimeout, options.connectTimeoutMs);
      this.connectTimer.unref();
    }
    publishOpen(this);
  }

  get bufferedBytes(): number {
    return this.queuedBytes + this.ws.bufferedAmount;
  }

  get isClosed(): boolean {
    return this.ending || this.destroyed || this.wsClosed;
  }

  setHandler(handler: ConnectionHandler): void {
    this.handler = handler;
    if (this.wsClosed) {
      if (!this.closeDelivered) process.nextTick(this.deliverClose);
      return;
    }
    if (this.early !== undefined) process.nextTick(this.replayEarly);
    if (!this.reading) {
      this.reading = true;
      if (!this.paused) this.ws.resume();
    }
  }

  write(bytes: Uint8Array): boolean {
    if (this.ending || this.destroyed || this.wsClosed) return false;
    this.queue.push(bytes);
    this.queuedBytes += bytes.byteLength;
    if (!this.flushPending) {
      this.flushPending = true;
      scheduleFlush(this);
    }
    if (this.queuedBytes + this.ws.bufferedAmount > this.highWater) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** @internal One binary message per turn: a fan-out of many packets must not become a frame each. */
  flush(): void {
    this.flushPending = false;
    const queue = this.queue;
    const count = queue.length;
    if (count === 0) return;
    const total = this.queuedBytes;
    this.queuedBytes = 0;
    if (this.destroyed || this.ws.readyState !== this.ws.OPEN) {
      queue.length = 0;
      return;
    }
    const data = count === 1 ? queue[0]! : concatBatch(queue, total);
    queue.length = 0;
    this.ws.send(data, SEND_OPTIONS);
    if (this.needDrain && this.ws.bufferedAmount <= this.lowWater) this.emitDrain();
  }

  pause(): void {
    this.paused = true;
    if (this.reading) this.ws.pause();
  }

  resume(): void {
    this.paused = false;
    if (this.reading && !this.ending) this.ws.resume();
  }

  end(): void {
    if (this.ending || this.destroyed || this.wsClosed) return;
    this.flush();
    this.ending = true;
    this.clearConnectTimer();
    // The close handshake needs the peer's close frame, so keep reading.
    this.reading = true;
    this.ws.resume();
    this.ws.close(1000);
    const graceMs =
      this.lingerSeconds !== undefined && this.lingerSeconds > 0
        ? this.lingerSeconds * 1000
        : DEFAULT_END_GRACE_MS;
    this.endTimer = setTimeout(this.onEndTimeout, graceMs);
    this.endTimer.unref();
  }

  destroy(error?: Error): void {
    if (this.destroyed || this.wsClosed) return;
    this.destroyed = true;
    if (error !== undefined && this.closeError === undefined) this.closeError = error;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.clearTimers();
    if (this.lingerSeconds === 0) this.reset();
    this.ws.terminate();
  }

  /** Resets the TCP socket; `ws` then sees the close. Not under TLS (see SocketConnection): a plain close there. */
  private reset(): void {
    if (this.raw !== this.socket || this.raw.destroyed) return;
    try {
      this.raw.resetAndDestroy();
    } catch {
      this.raw.destroy();
    }
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

  private deliver(handler: ConnectionHandler, data: Buffer): void {
    try {
      handler.onData(data);
    } catch (error) {
      this.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private readonly onMessage = (data: Buffer, isBinary: boolean): void => {
    if (this.connectTimer !== undefined) this.clearConnectTimer();
    if (this.ending || this.destroyed) return;
    if (!isBinary) {
      this.closeError ??= new TransportError(
        'TRANSPORT_WS_TEXT_FRAME',
        'text frame received: MQTT uses binary frames',
        {
          listener: this.listenerName,
        },
      );
      this.end();
      return;
    }
    const handler = this.handler;
    if (handler === undefined) {
      // ws may emit messages already parsed from the upgrade's chunk before pause() takes effect.
      if (this.early === undefined) this.early = [data];
      else this.early.push(data);
      return;
    }
    this.deliver(handler, data);
  };

  private readonly replayEarly = (): void => {
    const early = this.early;
    this.early = undefined;
    if (early === undefined) return;
    for (const data of early) {
      const handler = this.handler;
      if (handler === undefined || this.destroyed || this.wsClosed || this.ending) return;
      this.deliver(handler, data);
    }
  };

  private readonly onSocketDrain = (): void => {
    if (this.needDrain && this.queuedBytes + this.ws.bufferedAmount <= this.lowWater) this.emitDrain();
  };

  private readonly onWsError = (error: Error): void => {
    if (this.closeError !== undefined) return;
    const code = (error as { code?: unknown }).code;
    this.closeError =
      typeof code === 'string' && code.startsWith('WS_ERR_')
        ? new TransportError('TRANSPORT_WS_PROTOCOL', `WebSocket protocol error: ${error.message}`, {
            listener: this.listenerName,
            cause: error,
          })
        : toSocketError(error, this.listenerName);
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
    if (this.wsClosed) return;
    this.destroyed = true;
    this.reset();
    this.ws.terminate();
  };

  private readonly onWsClose = (code: number): void => {
    if (this.wsClosed) return;
    this.wsClosed = true;
    this.clearTimers();
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.socket.off('drain', this.onSocketDrain);
    if (this.closeError === undefined && !ACCEPT_CLOSE_CODES.has(code)) {
      this.closeError = new TransportError('TRANSPORT_WS_PROTOCOL', `WebSocket closed with code ${code}`, {
        listener: this.listenerName,
      });
    }
    this.onClosed(this);
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

const SEND_OPTIONS = { binary: true, compress: false, fin: true } as const;

function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** What the upgrade needs to know about a socket our own server accepted. */
interface Admitted {
  admission: Admission;
  tls: TlsDetails | undefined;
}

/**
 * @internal WebSocket upgrades for both flavours: on sockets this listener accepted itself (fed to an
 * HTTP server that never listens) or on a server the user owns.
 */
abstract class WebSocketListener extends NetListener {
  private readonly listenerOptions: ListenerOptions;
  private readonly path: string;
  private readonly subprotocols: ReadonlySet<string>;
  private readonly origins: ReadonlySet<string> | undefined;
  private readonly wss: WebSocketServer;
  private readonly http: http.Server;
  private readonly admitted = new Map<Duplex, Admitted>();

  constructor(options: ListenerOptions & WebSocketOptions) {
    super(options);
    this.listenerOptions = options;
    this.path = options.path ?? '/mqtt';
    this.subprotocols = new Set(options.subprotocols ?? DEFAULT_SUBPROTOCOLS);
    this.origins = options.allowedOrigins === undefined ? undefined : new Set(options.allowedOrigins);
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: options.perMessageDeflate ?? false,
      maxPayload: options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES,
      // Text frames are refused anyway, so their UTF-8 need not be checked.
      skipUTF8Validation: true,
      handleProtocols: this.chooseSubprotocol,
    });
    this.wss.on('wsClientError', this.onWsClientError);
    this.http = http.createServer();
    this.http.on('upgrade', this.onUpgrade);
    this.http.on('request', this.onRequest);
    this.http.on('clientError', this.onHttpClientError);
  }

  /** Feeds an admitted socket (TCP, or TLS for wss) to the internal HTTP server. */
  protected toHttp(admission: Admission, socket: Socket, tlsDetails: TlsDetails | undefined): void {
    this.admitted.set(socket, { admission, tls: tlsDetails });
    socket.once('close', () => this.admitted.delete(socket));
    this.http.emit('connection', socket);
    // Sockets accepted paused stay paused until told otherwise, even when the HTTP parser consumes them.
    socket.resume();
  }

  private readonly chooseSubprotocol = (offered: Set<string>): string | false => {
    for (const name of offered) if (this.subprotocols.has(name)) return name;
    return false;
  };

  /** Why this upgrade must be refused, or undefined. */
  private checkUpgrade(request: http.IncomingMessage): { status: number; reason: string } | undefined {
    if (pathOf(request.url) !== this.path)
      return { status: 404, reason: `no WebSocket endpoint at ${request.url}` };
    const origin = request.headers.origin;
    if (this.origins !== undefined && origin !== undefined && !this.origins.has(origin)) {
      return { status: 403, reason: `origin ${origin} not allowed` };
    }
    const offered = request.headers['sec-websocket-protocol'];
    if (offered !== undefined) {
      const names = offered.split(',').map((name) => name.trim());
      if (names.some((name) => name !== '') && !names.some((name) => this.subprotocols.has(name))) {
        return {
          status: 400,
          reason: `unsupported subprotocol ${offered}; use ${[...this.subprotocols].join(' or ')}`,
        };
      }
    }
    return undefined;
  }

  private readonly onUpgrade = (request: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    const admitted = this.admitted.get(socket);
    if (admitted === undefined) return;
    const refusal = this.checkUpgrade(request);
    if (refusal !== undefined) {
      admitted.admission.failWithResponse(
        new TransportError(
          'TRANSPORT_WS_UPGRADE_REFUSED',
          `upgrade refused (${refusal.status}): ${refusal.reason}`,
          {
            listener: this.name,
          },
        ),
        httpRefusal(refusal.status, refusal.reason),
      );
      return;
    }
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      if (admitted.admission.isSettled) {
        ws.terminate();
        return;
      }
      const connectTimeoutMs = admitted.admission.complete();
      this.admitted.delete(socket);
      this.deliver(
        new WsConnection(ws, socket, admitted.admission.socket, {
          protocol: this.protocol,
          tls: admitted.tls,
          highWaterMarkBytes: this.highWaterMarkBytes,
          lingerSeconds: this.lingerSeconds,
          connectTimeoutMs,
          listenerName: this.name,
          onClosed: this.forget,
        }),
      );
    });
  };

  /** Upgrades on a server the user owns: admission happens here, at the upgrade. */
  protected readonly onAttachedUpgrade = (
    request: http.IncomingMessage,
    socket: Duplex,
    head: Buffer,
  ): void => {
    const server = this.attachedServer();
    const refusal = this.checkUpgrade(request);
    if (refusal !== undefined) {
      // Other upgrade handlers on the user's server may own other paths.
      if (refusal.status === 404 && server !== undefined && server.listenerCount('upgrade') > 1) return;
      this.refuseAttached(request, socket, refusal.status, refusal.reason, 'TRANSPORT_WS_UPGRADE_REFUSED');
      return;
    }
    const max = this.listenerOptions.maxConnections;
    if (max !== undefined && this.connections.size >= max) {
      this.refuseAttached(
        request,
        socket,
        503,
        `connection limit of ${max} reached`,
        'TRANSPORT_MAX_CONNECTIONS',
      );
      return;
    }
    const raw = request.socket;
    const proceed = (): void => {
      this.wss.handleUpgrade(request, socket, head, (ws) => {
        const secure = raw instanceof tls.TLSSocket;
        const tlsDetails = secure ? tlsDetailsOf(raw, false) : undefined;
        this.deliver(
          new WsConnection(ws, socket, raw, {
            protocol: secure ? 'wss' : 'ws',
            tls: tlsDetails,
            highWaterMarkBytes: this.highWaterMarkBytes,
            lingerSeconds: this.lingerSeconds,
            connectTimeoutMs: this.connectTimeoutMs,
            listenerName: this.name,
            onClosed: this.forget,
          }),
        );
      });
    };
    const hook = this.listenerOptions.onConnectionRequest;
    if (hook === undefined) {
      proceed();
      return;
    }
    const refuse = (): void =>
      this.refuseAttached(
        request,
        socket,
        403,
        'refused by onConnectionRequest',
        'TRANSPORT_CONNECTION_REFUSED',
      );
    try {
      const verdict = hook({
        remoteAddress: raw.remoteAddress ?? '',
        remotePort: raw.remotePort ?? 0,
        protocol: this.protocol,
      });
      if (typeof verdict === 'boolean') {
        if (verdict) proceed();
        else refuse();
        return;
      }
      Promise.resolve(verdict).then(
        (ok) => (ok === true && !socket.destroyed ? proceed() : refuse()),
        () => refuse(),
      );
    } catch {
      refuse();
    }
  };

  private refuseAttached(
    request: http.IncomingMessage,
    socket: Duplex,
    status: number,
    reason: string,
    code: 'TRANSPORT_WS_UPGRADE_REFUSED' | 'TRANSPORT_MAX_CONNECTIONS' | 'TRANSPORT_CONNECTION_REFUSED',
  ): void {
    socket.on('error', ignore);
    socket.once('finish', () => socket.destroy());
    socket.end(httpRefusal(status, reason));
    const hook = this.listenerOptions.onConnectionRejected;
    if (hook === undefined) return;
    try {
      hook({
        remoteAddress: request.socket.remoteAddress ?? '',
        remotePort: request.socket.remotePort ?? 0,
        protocol: this.protocol,
        error: new TransportError(code, `upgrade refused (${status}): ${reason}`, { listener: this.name }),
      });
    } catch {
      // A reporting hook must not break accepting.
    }
  }

  /** The user's server in attached mode. */
  protected attachedServer(): http.Server | https.Server | undefined {
    return undefined;
  }

  private readonly onWsClientError = (error: Error, socket: Duplex, request: http.IncomingMessage): void => {
    const admitted = this.admitted.get(socket);
    const status = (error as { statusCode?: unknown }).statusCode;
    const code = typeof status === 'number' ? status : 400;
    if (admitted === undefined) {
      this.refuseAttached(request, socket, code, error.message, 'TRANSPORT_WS_UPGRADE_REFUSED');
      return;
    }
    admitted.admission.failWithResponse(
      new TransportError('TRANSPORT_WS_UPGRADE_REFUSED', `upgrade refused (${code}): ${error.message}`, {
        listener: this.name,
        cause: error,
      }),
      httpRefusal(code, error.message),
    );
  };

  private readonly onRequest = (request: http.IncomingMessage, response: http.ServerResponse): void => {
    const onPath = pathOf(request.url) === this.path;
    const status = onPath ? 426 : 404;
    const reason = onPath
      ? 'this endpoint speaks MQTT over WebSocket only'
      : `no WebSocket endpoint at ${request.url}`;
    const admitted = this.admitted.get(request.socket);
    response.writeHead(status, { Connection: 'close', 'Content-Type': 'text/plain' });
    response.end(`${reason}\n`);
    admitted?.admission.failAfterClose(
      new TransportError('TRANSPORT_WS_UPGRADE_REFUSED', `not an upgrade (${status}): ${reason}`, {
        listener: this.name,
      }),
    );
  };

  private readonly onHttpClientError = (error: Error, socket: Duplex): void => {
    const admitted = this.admitted.get(socket);
    if (admitted === undefined) {
      socket.destroy();
      return;
    }
    admitted.admission.failWithResponse(
      new TransportError('TRANSPORT_WS_UPGRADE_REFUSED', `bad HTTP request: ${error.message}`, {
        listener: this.name,
        cause: error,
      }),
      httpRefusal(400, 'bad request'),
    );
  };
}

function ignore(): void {}

/**
 * Accepts MQTT over WebSocket (`ws://host:port/mqtt`), on its own port or on an `http`/`https` server you
 * own (`server` option; an https server makes the connections `wss`).
 */
export class WsListener extends WebSocketListener {
  readonly protocol: 'ws' | 'wss';
  private readonly userServer: http.Server | https.Server | undefined;
  private attached = false;

  constructor(options: WsListenerOptions = {}) {
    super(options);
    this.userServer = options.server;
    this.protocol = options.server instanceof tls.Server ? 'wss' : 'ws';
  }

  override get name(): string {
    if (this.userServer === undefined) return super.name;
    const bound = this.address();
    return formatName(this.protocol, bound?.host ?? this.host, bound?.port ?? this.port);
  }

  override async start(): Promise<void> {
    if (this.userServer === undefined) return super.start();
    if (this.attached) {
      throw new TransportError('TRANSPORT_ALREADY_STARTED', `${this.name}: already started`, {
        listener: this.name,
      });
    }
    this.attached = true;
    this.userServer.on('upgrade', this.onAttachedUpgrade);
  }

  override async stop(): Promise<void> {
    if (this.userServer === undefined) return super.stop();
    this.attached = false;
    this.userServer.off('upgrade', this.onAttachedUpgrade);
  }

  override address(): { host: string; port: number } | null {
    if (this.userServer === undefined) return super.address();
    if (!this.attached) return null;
    const bound = this.userServer.address();
    if (bound === null || typeof bound === 'string') return null;
    return { host: bound.address, port: bound.port };
  }

  protected override attachedServer(): http.Server | https.Server | undefined {
    return this.userServer;
  }

  protected admit(admission: Admission): void {
    this.toHttp(admission, admission.socket, undefined);
  }
}

/** Accepts MQTT over secure WebSocket (`wss://host:port/mqtt`) with the same TLS settings as `TlsListener`. */
export class WssListener extends WebSocketListener {
  readonly protocol = 'wss' as const;
  private readonly engine: TlsEngine;

  constructor(options: WssListenerOptions) {
    super(options);
    this.engine = new TlsEngine(options, this);
  }

  protected override async prepare(): Promise<void> {
    await this.engine.load();
  }

  protected override async release(): Promise<void> {
    await this.engine.close();
  }

  protected admit(admission: Admission): void {
    this.engine.handshake(admission, this.onSecured);
  }

  protected override deliver(connection: Connection): void {
    this.engine.reportNegotiated(connection);
    super.deliver(connection);
  }

  private readonly onSecured = (admission: Admission, socket: tls.TLSSocket, details: TlsDetails): void => {
    this.toHttp(admission, socket, details);
  };
}
