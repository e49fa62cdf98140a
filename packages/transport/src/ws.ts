import http from 'node:http';
import type https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { type WebSocket, WebSocketServer } from 'ws';
import { BufferedConnection, concatBatch } from './buffered-connection.js';
import type { Connection, ConnectionHandler } from './connection.js';
import { TransportError, toSocketError } from './errors.js';
import { type Admission, formatName, type HandshakeFactory, NetListener } from './net-listener.js';
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

/** The connection a WebSocket (and its socket) carries: the listeners are shared, see `WsConnection.on`. */
const CONNECTION = Symbol('connection');

interface OwnedWebSocket extends WebSocket {
  [CONNECTION]: WsConnection;
}

interface OwnedDuplex extends Duplex {
  [CONNECTION]: WsConnection;
}

/**
 * @internal A Connection over a WebSocket: each binary message is a slice of the MQTT byte stream, and
 * the writes of one event-loop turn leave as one binary message.
 */
export class WsConnection extends BufferedConnection {
  private readonly ws: WebSocket;
  private readonly socket: Duplex;
  private early: Buffer[] | undefined = undefined;

  constructor(ws: WebSocket, socket: Duplex, raw: Socket, options: WsConnectionOptions) {
    super({
      protocol: options.protocol,
      tls: options.tls,
      raw,
      rawIsWrapped: raw !== socket,
      reader: ws,
      highWaterMarkBytes: options.highWaterMarkBytes,
      lingerSeconds: options.lingerSeconds,
      listenerName: options.listenerName,
      onClosed: options.onClosed,
    });
    this.ws = ws;
    this.socket = socket;
    (ws as OwnedWebSocket)[CONNECTION] = this;
    (socket as OwnedDuplex)[CONNECTION] = this;
    const on = WsConnection.on;
    ws.on('message', on.message);
    ws.on('error', on.error);
    ws.on('close', on.close);
    socket.on('drain', on.drain);
    this.opened(options.connectTimeoutMs);
  }

  override setHandler(handler: ConnectionHandler): void {
    // Before super resumes reading: messages parsed from the upgrade's chunk come first.
    if (this.early !== undefined && !this.hasClosed) process.nextTick(WsConnection.replayEarly, this);
    super.setHandler(handler);
  }

  protected get reader(): WebSocket {
    return this.ws;
  }

  protected streamBufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  protected canSend(): boolean {
    return this.ws.readyState === this.ws.OPEN;
  }

  /** One binary message per turn: a fan-out of many packets must not become a frame each. */
  protected send(queue: readonly Uint8Array[], count: number, total: number): void {
    this.ws.send(count === 1 ? queue[0]! : concatBatch(queue, total), SEND_OPTIONS);
  }

  protected endStream(): void {
    // The close handshake needs the peer's close frame: the base keeps reading.
    this.ws.close(1000);
  }

  protected destroyStream(): void {
    this.ws.terminate();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary && this.handler !== undefined) {
      this.receive(data);
      return;
    }
    this.clearConnectTimer();
    if (this.ending || this.destroyed) return;
    if (!isBinary) {
      this.noteError(
        new TransportError('TRANSPORT_WS_TEXT_FRAME', 'text frame received: MQTT uses binary frames', {
          listener: this.listenerName,
        }),
      );
      this.end();
      return;
    }
    // ws may emit messages already parsed from the upgrade's chunk before pause() takes effect.
    if (this.early === undefined) this.early = [data];
    else this.early.push(data);
  }

  private static replayEarly(connection: WsConnection): void {
    const early = connection.early;
    connection.early = undefined;
    if (early === undefined) return;
    for (const data of early) {
      if (
        connection.handler === undefined ||
        connection.destroyed ||
        connection.hasClosed ||
        connection.ending
      )
        return;
      connection.receive(data);
    }
  }

  private onWsError(error: Error): void {
    if (this.closeError !== undefined) return;
    const code = (error as { code?: unknown }).code;
    this.noteError(
      typeof code === 'string' && code.startsWith('WS_ERR_')
        ? new TransportError('TRANSPORT_WS_PROTOCOL', `WebSocket protocol error: ${error.message}`, {
            listener: this.listenerName,
            cause: error,
          })
        : toSocketError(error, this.listenerName),
    );
  }

  private onWsClose(code: number): void {
    if (this.hasClosed) return;
    this.socket.off('drain', WsConnection.on.drain);
    if (this.closeError === undefined && !ACCEPT_CLOSE_CODES.has(code)) {
      this.noteError(
        new TransportError('TRANSPORT_WS_PROTOCOL', `WebSocket closed with code ${code}`, {
          listener: this.listenerName,
        }),
      );
    }
    this.streamClosed();
  }

  /**
   * The listeners, shared by all connections: `this` is the WebSocket or the socket (emitters call
   * listeners on themselves), which carries its connection. No bound closures per connection.
   */
  private static readonly on = {
    message(this: WebSocket, data: Buffer, isBinary: boolean): void {
      (this as OwnedWebSocket)[CONNECTION].onMessage(data, isBinary);
    },
    error(this: WebSocket, error: Error): void {
      (this as OwnedWebSocket)[CONNECTION].onWsError(error);
    },
    close(this: WebSocket, code: number): void {
      (this as OwnedWebSocket)[CONNECTION].onWsClose(code);
    },
    drain(this: OwnedDuplex): void {
      this[CONNECTION].streamDrained();
    },
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

  constructor(options: ListenerOptions & WebSocketOptions, handshake?: HandshakeFactory) {
    super(options, handshake);
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
  protected admit(admission: Admission, socket: Socket, tlsDetails: TlsDetails | undefined): void {
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
        // The user's server did the handshake: whether it asked for a client certificate is its setting.
        const requested = (server as { requestCert?: unknown } | undefined)?.requestCert === true;
        const tlsDetails = secure ? tlsDetailsOf(raw, requested) : undefined;
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
}

/** Accepts MQTT over secure WebSocket (`wss://host:port/mqtt`) with the same TLS settings as `TlsListener`. */
export class WssListener extends WebSocketListener {
  readonly protocol = 'wss' as const;

  constructor(options: WssListenerOptions) {
    super(options, (owner) => new TlsEngine(options, owner));
  }
}
