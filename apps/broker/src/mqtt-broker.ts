/**
 * MqttBroker: the reference component's API (listeners, decisions as events, sessions, retained
 * messages, SaveSession/LoadSession, Config) over @broker/core, @broker/transport and
 * @broker/persistence. Names follow TypeScript custom (camelCase); the README maps each to the
 * reference.
 */
import type { QoS } from '@broker/codec';
import { Broker, type BrokerEvents, type BrokerLimits, type ConnectionInfo, type Store } from '@broker/core';
import { sessionFromJson, sessionToJson } from '@broker/persistence';
import type {
  Connection,
  TlsCertificate,
  Listener as TransportListener,
  TransportProtocol,
} from '@broker/transport';
import { TcpListener } from '@broker/transport/tcp';
import { TlsListener, type TlsListenerOptions } from '@broker/transport/tls';
import { WsListener, WssListener } from '@broker/transport/ws';
import { applyConfig, type BrokerSettings, DEFAULT_SETTINGS, enabledTlsProtocols } from './settings.js';

/** The reference's MQTTBrokerProtocols numbers. */
export const BrokerProtocol = { mbpTCP: 0, mbpTLS: 1, mbpWS: 2, mbpWSS: 3 } as const;
const PROTOCOL_BY_NUMBER: readonly TransportProtocol[] = ['tcp', 'tls', 'ws', 'wss'];

/** The reference's CertStoreTypes that apply: PFX file, PFX blob, PEM files. */
export const CertStoreType = { cstPFXFile: 2, cstPFXBlob: 3, cstPEMKeyFile: 6 } as const;

export interface ListenerConfig {
  protocol: TransportProtocol;
  /** Default '0.0.0.0' ('::' with UseIPv6). */
  host?: string;
  /** 0 picks a free port; read it from `listeners` after startListening(). */
  port: number;
  /** TLS and WSS: the server certificate. */
  certificate?: TlsCertificate;
  /** The reference's SSLAuthenticateClients: ask clients for a certificate. */
  authenticateClients?: boolean;
  /** Refuse clients without a valid certificate (unless the sslClientAuthentication decision accepts). */
  requireClientCertificate?: boolean;
  /** WS and WSS: the HTTP path. Default '/mqtt'. */
  path?: string;
  /** WS and WSS: accepted Origin headers; unset accepts any. */
  allowedOrigins?: string[];
}

export interface ListenerInfo {
  protocol: TransportProtocol;
  host: string;
  /** The bound port once listening. */
  port: number;
  isListening: boolean;
  authenticateClients: boolean;
}

/** A connection as the reference's MQTTBrokerConnection describes it. */
export interface BrokerConnection {
  connectionId: string;
  clientId: string;
  localHost: string;
  localPort: number;
  remoteHost: string;
  remotePort: number;
  /** The reference's protocol number: 0 TCP, 1 TLS, 2 WS, 3 WSS. */
  protocol: number;
  userName: string;
  /** Keep-alive of the client's CONNECT, in seconds. */
  keepAlive: number;
}

/** A session as the reference's MQTTBrokerSession describes it. */
export interface BrokerSession {
  clientId: string;
  subTopicFilters: string[];
  subGrantedQoS: QoS[];
  incomingMessages: number;
  outgoingMessages: number;
  isConnected: boolean;
}

/** A retained message (the reference's MQTTBrokerMessage). */
export interface BrokerMessage {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
}

// Decision events: listeners may change `accept` (or `returnCode`), and may be async.
export interface ConnectionRequestEvent {
  address: string;
  port: number;
  protocol: TransportProtocol;
  accept: boolean;
}
export interface SessionRequestEvent {
  connectionId: string;
  clientId: string;
  userName: string;
  /** The password as text (UTF-8); `passwordBytes` holds it as sent. */
  password: string;
  passwordBytes: Uint8Array | undefined;
  /** The clean-session flag (the reference's IsNew). */
  isNew: boolean;
  accept: boolean;
  /** CONNACK code for a refusal: 4 bad user name or password, 5 not authorized (default). */
  returnCode: 1 | 2 | 3 | 4 | 5;
}
export interface SubscribeEvent {
  connectionId: string;
  clientId: string;
  userName: string;
  topicFilter: string;
  requestedQoS: QoS;
  /** Granted QoS (may be lowered) or 0x80 to refuse. */
  returnCode: number;
}
export interface PublishRequestEvent {
  connectionId: string;
  clientId: string;
  userName: string;
  topic: string;
  qos: QoS;
  retain: boolean;
  payload: Uint8Array;
  accept: boolean;
}
export interface SslClientAuthenticationEvent {
  remoteAddress: string;
  remotePort: number;
  /** DER bytes of the client's certificate, base64. */
  certEncoded: string;
  certSubject: string;
  certIssuer: string;
  /** "OK", or why verification failed. */
  status: string;
  accept: boolean;
}
export interface SslStatusEvent {
  connectionId: string;
  remoteAddress: string;
  message: string;
}

interface DecisionEvents {
  connectionRequest: ConnectionRequestEvent;
  sessionRequest: SessionRequestEvent;
  subscribe: SubscribeEvent;
  publishRequest: PublishRequestEvent;
  sslClientAuthentication: SslClientAuthenticationEvent;
}

/** Every event of the facade: the reference's, plus publishRequest and messageDropped. */
export interface MqttBrokerEvents extends DecisionEvents {
  connected: BrokerEvents['connected'];
  disconnected: BrokerEvents['disconnected'];
  error: BrokerEvents['error'];
  log: BrokerEvents['log'];
  messageReceiving: BrokerEvents['messageReceiving'];
  messageReceived: BrokerEvents['messageReceived'];
  messageSending: BrokerEvents['messageSending'];
  messageSent: BrokerEvents['messageSent'];
  incomingMessageStatus: BrokerEvents['incomingMessageStatus'];
  outgoingMessageStatus: BrokerEvents['outgoingMessageStatus'];
  messageDropped: BrokerEvents['messageDropped'];
  sessionRemoved: BrokerEvents['sessionRemoved'];
  unsubscribe: BrokerEvents['unsubscribed'];
  sslStatus: SslStatusEvent;
}
export type MqttBrokerEventName = keyof MqttBrokerEvents;
type EventListener<K extends MqttBrokerEventName> = (event: MqttBrokerEvents[K]) => void | Promise<void>;

const CORE_EVENT: Partial<Record<MqttBrokerEventName, keyof BrokerEvents>> = {
  connected: 'connected',
  disconnected: 'disconnected',
  error: 'error',
  log: 'log',
  messageReceiving: 'messageReceiving',
  messageReceived: 'messageReceived',
  messageSending: 'messageSending',
  messageSent: 'messageSent',
  incomingMessageStatus: 'incomingMessageStatus',
  outgoingMessageStatus: 'outgoingMessageStatus',
  messageDropped: 'messageDropped',
  sessionRemoved: 'sessionRemoved',
  unsubscribe: 'unsubscribed',
};

export interface MqttBrokerOptions {
  /** Durable store for persistent sessions and retained messages; default: memory only. */
  store?: Store;
  /** Engine limits (see @broker/core). */
  limits?: Partial<BrokerLimits>;
  /** Initial Config settings. */
  settings?: Partial<BrokerSettings>;
}

const textDecoder = new TextDecoder();

export class MqttBrokerError extends Error {
  override readonly name = 'MqttBrokerError';
  readonly code: 'APP_INVALID_LISTENER' | 'APP_LISTENING' | 'APP_SHUT_DOWN';
  constructor(code: MqttBrokerError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * An MQTT 3.1.1 broker with the reference component's API. Add listeners, attach events, then
 * `await startListening()`.
 */
export class MqttBroker {
  /** The engine, for what the facade does not cover. */
  readonly core: Broker;
  private readonly settings: BrokerSettings;
  private readonly specs: ListenerConfig[] = [];
  private running: Array<{ spec: ListenerConfig; listener: TransportListener }> = [];
  private readonly listenersByName: { [K in MqttBrokerEventName]?: Array<EventListener<K>> } = {};
  private isRestored = false;
  private isShutDown = false;

  constructor(options: MqttBrokerOptions = {}) {
    this.settings = { ...DEFAULT_SETTINGS, ...options.settings };
    this.core = new Broker({
      // The reference's ConnectionTimeout seeds the engine's connect timeout; an explicit engine
      // limit wins, and config('ConnectionTimeout=…') later changes both.
      limits: { connectTimeoutMs: this.settings.ConnectionTimeout * 1000, ...options.limits },
      ...(options.store === undefined ? {} : { store: options.store }),
    });
  }

  // Events ----------------------------------------------------------------------------------

  /** Adds an event listener. Decision listeners may be async; the broker waits for them per connection. */
  on<K extends MqttBrokerEventName>(name: K, listener: EventListener<K>): this {
    let list = this.listenersByName[name] as Array<EventListener<K>> | undefined;
    if (list === undefined) {
      list = [];
      (this.listenersByName as Record<string, unknown>)[name] = list;
      this.wire(name);
    }
    list.push(listener);
    return this;
  }

  off<K extends MqttBrokerEventName>(name: K, listener: EventListener<K>): this {
    const list = this.listenersByName[name] as Array<EventListener<K>> | undefined;
    const index = list?.indexOf(listener) ?? -1;
    if (index >= 0) list!.splice(index, 1);
    return this;
  }

  /** Connects a facade event to its source the first time someone listens, so idle events cost nothing. */
  private wire(name: MqttBrokerEventName): void {
    if (name === 'log') {
      // The reference's LogLevel setting (0 none … 3 debug) decides which log events are fired.
      this.core.on('log', (event) => {
        if (event.level <= this.settings.LogLevel) this.emit('log', event);
      });
      return;
    }
    const coreName = CORE_EVENT[name];
    if (coreName !== undefined) {
      this.core.on(coreName, (event) => this.emit(name, event as never));
      return;
    }
    if (name === 'sessionRequest') {
      this.core.hooks.authenticate = (request) => {
        const event: SessionRequestEvent = {
          connectionId: request.connectionId,
          clientId: request.clientId,
          userName: request.username ?? '',
          password: request.password === undefined ? '' : textDecoder.decode(request.password),
          passwordBytes: request.password,
          isNew: request.isNew,
          accept: true,
          returnCode: 5,
        };
        return this.decide('sessionRequest', event, (e) => (e.accept ? true : e.returnCode));
      };
    } else if (name === 'subscribe') {
      this.core.hooks.authorizeSubscribe = (request) =>
        this.decide(
          'subscribe',
          {
            connectionId: request.connectionId,
            clientId: request.clientId,
            userName: request.username ?? '',
            topicFilter: request.topicFilter,
            requestedQoS: request.requestedQos,
            returnCode: request.requestedQos,
          },
          (e) => e.returnCode,
        );
    } else if (name === 'publishRequest') {
      this.core.hooks.authorizePublish = (request) =>
        this.decide(
          'publishRequest',
          {
            connectionId: request.connectionId,
            clientId: request.clientId,
            userName: request.username ?? '',
            topic: request.topic,
            qos: request.qos,
            retain: request.retain,
            payload: request.payload,
            accept: true,
          },
          (e) => e.accept,
        );
    }
  }

  private emit<K extends MqttBrokerEventName>(name: K, event: MqttBrokerEvents[K]): void {
    const list = this.listenersByName[name] as Array<EventListener<K>> | undefined;
    if (list === undefined) return;
    for (const listener of list) {
      try {
        const result = listener(event);
        if (result instanceof Promise) result.catch((error) => this.listenerFailed(name, error));
      } catch (error) {
        this.listenerFailed(name, error);
      }
    }
  }

  private listenerFailed(name: string, error: unknown): void {
    if (name === 'error') return;
    this.emit('error', {
      connectionId: '',
      errorCode: 600,
      code: 'APP_LISTENER_FAILED',
      description: `a '${name}' listener threw: ${String(error)}`,
    });
  }

  /**
   * Runs the listeners of a decision event over `event` and answers with `answer(event)`; waits for
   * async listeners. A listener that throws makes the decision a refusal (core logs it).
   */
  private decide<K extends keyof DecisionEvents, T>(
    name: K,
    event: DecisionEvents[K],
    answer: (event: DecisionEvents[K]) => T,
  ): T | Promise<T> {
    const list = this.listenersByName[name] as Array<EventListener<K>> | undefined;
    if (list === undefined) return answer(event);
    let pending: Array<Promise<void>> | undefined;
    for (const listener of list) {
      const result = listener(event as MqttBrokerEvents[K]);
      if (result instanceof Promise) {
        pending ??= [];
        pending.push(result);
      }
    }
    return pending === undefined ? answer(event) : Promise.all(pending).then(() => answer(event));
  }

  // Listeners ---------------------------------------------------------------------------------

  /** Adds a listener (the reference's AddBrokerListener); takes effect at startListening(). */
  addListener(config: ListenerConfig): void {
    if (this.isShutDown) throw new MqttBrokerError('APP_SHUT_DOWN', 'the broker was shut down');
    if ((config.protocol === 'tls' || config.protocol === 'wss') && config.certificate === undefined) {
      throw new MqttBrokerError('APP_INVALID_LISTENER', `a ${config.protocol} listener needs a certificate`);
    }
    if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65_535) {
      throw new MqttBrokerError('APP_INVALID_LISTENER', `port ${config.port} is not 0–65535`);
    }
    this.specs.push({ ...config });
  }

  /**
   * The reference's AddBrokerListener signature: protocol 0–3 (BrokerProtocol), a certificate store
   * type (CertStoreType: 2 PFX file, 3 PFX blob), the store (file name or bytes) and its password.
   * The subject selects a certificate inside a store in the reference; a PFX here holds one, so
   * the subject is accepted and not used ("*" in the reference's examples).
   */
  addBrokerListener(
    localHost: string,
    localPort: number,
    protocol: number,
    certStoreType = 0,
    certStore: string | Uint8Array | null = null,
    certStorePassword: string | null = null,
    _certSubject: string | null = null,
  ): void {
    const kind = PROTOCOL_BY_NUMBER[protocol];
    if (kind === undefined)
      throw new MqttBrokerError('APP_INVALID_LISTENER', `protocol ${protocol} is not 0–3`);
    let certificate: TlsCertificate | undefined;
    if (certStore !== null) {
      const password = certStorePassword ?? undefined;
      if (certStoreType === CertStoreType.cstPFXBlob || certStore instanceof Uint8Array) {
        const blob = typeof certStore === 'string' ? Buffer.from(certStore, 'base64') : certStore;
        certificate = { kind: 'pfx', blob, ...(password === undefined ? {} : { password }) };
      } else if (certStoreType === CertStoreType.cstPFXFile) {
        certificate = { kind: 'pfx', file: certStore, ...(password === undefined ? {} : { password }) };
      } else {
        throw new MqttBrokerError(
          'APP_INVALID_LISTENER',
          `certificate store type ${certStoreType} is not supported (2 PFX file, 3 PFX blob)`,
        );
      }
    }
    this.addListener({
      protocol: kind,
      host: localHost,
      port: localPort,
      ...(certificate === undefined ? {} : { certificate }),
    });
  }

  /** The listeners, with their bound ports while listening (the reference's Listeners). */
  get listeners(): ListenerInfo[] {
    return this.specs.map((spec) => {
      const running = this.running.find((r) => r.spec === spec);
      const address = running?.listener.address();
      return {
        protocol: spec.protocol,
        host: address?.host ?? spec.host ?? this.defaultHost(),
        port: address?.port ?? spec.port,
        isListening: address !== undefined && address !== null,
        authenticateClients: spec.authenticateClients ?? false,
      };
    });
  }

  /** Whether the listeners are accepting connections (the reference's Listening). */
  get listening(): boolean {
    return this.running.length > 0;
  }

  private defaultHost(): string {
    return this.settings.UseIPv6 ? '::' : '0.0.0.0';
  }

  /**
   * Loads the store (the first time) and starts every listener. If one fails to start, those
   * started are stopped again and the error (naming the listener and file) is thrown.
   */
  async startListening(): Promise<void> {
    if (this.isShutDown) throw new MqttBrokerError('APP_SHUT_DOWN', 'the broker was shut down');
    if (this.running.length > 0) return;
    if (!this.isRestored) {
      await this.core.restore();
      this.isRestored = true;
    }
    const started: Array<{ spec: ListenerConfig; listener: TransportListener }> = [];
    try {
      for (const spec of this.specs) {
        const listener = this.createListener(spec);
        listener.onConnection = (connection: Connection) => this.core.accept(connection);
        await listener.start();
        started.push({ spec, listener });
      }
    } catch (error) {
      await Promise.all(started.map((r) => r.listener.stop()));
      throw error;
    }
    this.running = started;
  }

  /** Stops accepting connections; connected clients stay (the reference's StopListening). */
  async stopListening(): Promise<void> {
    const running = this.running;
    this.running = [];
    await Promise.all(running.map((r) => r.listener.stop()));
    this.stopped.push(...running.map((r) => r.listener));
  }

  private stopped: TransportListener[] = [];

  /**
   * Stops listening, disconnects every client, commits and closes the store (the reference's
   * Shutdown). The broker cannot be started again.
   */
  async shutdown(): Promise<void> {
    if (this.isShutDown) return;
    this.isShutDown = true;
    const listeners = this.running.map((r) => r.listener);
    await this.stopListening();
    await this.core.close();
    for (const listener of [...listeners, ...this.stopped]) listener.closeConnections();
  }

  private createListener(spec: ListenerConfig): TransportListener {
    const s = this.settings;
    const common = {
      host: spec.host ?? this.defaultHost(),
      port: spec.port,
      noDelay: s.TcpNoDelay,
      keepAlive: { enabled: s.TCPKeepAlive, initialDelayMs: s.KeepAliveTime },
      ...(s.Linger ? {} : { lingerSeconds: s.LingerTime }),
      highWaterMarkBytes: s.OutBufferSize,
      connectTimeoutMs: s.ConnectionTimeout * 1000,
      onConnectionRequest: (request: {
        remoteAddress: string;
        remotePort: number;
        protocol: TransportProtocol;
      }) =>
        // No listener (the usual case): accepted without building the event.
        this.listenersByName.connectionRequest === undefined ||
        this.decide(
          'connectionRequest',
          {
            address: request.remoteAddress,
            port: request.remotePort,
            protocol: request.protocol,
            accept: true,
          },
          (e) => e.accept,
        ),
    };
    const webSocket = {
      ...(spec.path === undefined ? {} : { path: spec.path }),
      ...(spec.allowedOrigins === undefined ? {} : { allowedOrigins: spec.allowedOrigins }),
      maxPayloadBytes: this.core.limits.maxPacketBytes,
    };
    switch (spec.protocol) {
      case 'tcp':
        return new TcpListener(common);
      case 'ws':
        return new WsListener({ ...common, ...webSocket });
      case 'tls':
        return new TlsListener({ ...common, ...this.tlsOptions(spec) });
      case 'wss':
        return new WssListener({ ...common, ...webSocket, ...this.tlsOptions(spec) });
      default:
        throw new MqttBrokerError('APP_INVALID_LISTENER', `unknown protocol ${String(spec.protocol)}`);
    }
  }

  private tlsOptions(spec: ListenerConfig): Omit<TlsListenerOptions, 'port' | 'host'> {
    const s = this.settings;
    const askForCertificate = spec.authenticateClients === true || spec.requireClientCertificate === true;
    return {
      certificate: spec.certificate!,
      enabledProtocols: enabledTlsProtocols(s),
      ...(s.SSLEnabledCipherSuites === '' ? {} : { ciphers: s.SSLEnabledCipherSuites }),
      ...(s.SSLClientCACerts === '' ? {} : { clientCA: [s.SSLClientCACerts] }),
      ...(s.SSLKeyLogFile === '' ? {} : { keyLogFile: s.SSLKeyLogFile }),
      requestClientCertificate: askForCertificate,
      requireClientCertificate: spec.requireClientCertificate === true,
      ...(askForCertificate
        ? {
            onClientCertificate: (info) =>
              this.decide(
                'sslClientAuthentication',
                {
                  remoteAddress: info.remoteAddress,
                  remotePort: info.remotePort,
                  certEncoded:
                    info.certificate === null ? '' : Buffer.from(info.certificate.encoded).toString('base64'),
                  certSubject: info.certificate?.subject ?? '',
                  certIssuer: info.certificate?.issuer ?? '',
                  status: info.isAuthorized ? 'OK' : (info.authorizationError ?? 'no certificate'),
                  accept:
                    info.isAuthorized ||
                    (info.certificate === null && spec.requireClientCertificate !== true),
                },
                (e) => e.accept,
              ),
          }
        : {}),
      onTlsStatus: (event) =>
        this.emit('sslStatus', {
          connectionId: event.connectionId ?? '',
          remoteAddress: event.remoteAddress,
          message: event.message,
        }),
    };
  }

  // The reference's methods and properties -----------------------------------------------------

  /** Disconnects a client by connection id (or client id); its will is published. */
  disconnect(connectionId: string): boolean {
    return this.core.disconnect(connectionId);
  }

  /** Connected clients by connection id (the reference's Connections). */
  get connections(): Map<string, BrokerConnection> {
    const map = new Map<string, BrokerConnection>();
    for (const c of this.core.connections) map.set(c.connectionId, toBrokerConnection(c));
    return map;
  }

  /** Sessions, connected or stored (the reference's Sessions). */
  get sessions(): BrokerSession[] {
    return this.core.sessions.map((s) => ({
      clientId: s.clientId,
      subTopicFilters: s.subscriptions.map((x) => x.topicFilter),
      subGrantedQoS: s.subscriptions.map((x) => x.qos),
      incomingMessages: s.incomingMessages,
      outgoingMessages: s.outgoingMessages,
      isConnected: s.isConnected,
    }));
  }

  /** Retained messages (the reference's Messages): list, add, change and remove. */
  readonly messages = {
    list: (): BrokerMessage[] =>
      this.core.retained.list().map(({ topic, payload, qos }) => ({ topic, payload, qos })),
    get: (topic: string): BrokerMessage | undefined => {
      const m = this.core.retained.get(topic);
      return m === undefined ? undefined : { topic: m.topic, payload: m.payload, qos: m.qos };
    },
    /** Adds or changes the retained message of a topic; an empty payload removes it. */
    set: (topic: string, payload: Uint8Array | string, qos: QoS = 0): void =>
      this.core.retained.set(topic, payload, qos),
    remove: (topic: string): boolean => this.core.retained.delete(topic),
  };

  /** Seconds after which clients that sent and received nothing are disconnected; 0 = never. */
  get defaultIdleTimeout(): number {
    return this.core.limits.idleTimeoutSeconds;
  }

  set defaultIdleTimeout(seconds: number) {
    if (!Number.isInteger(seconds) || seconds < 0)
      throw new RangeError(`defaultIdleTimeout must be a whole number >= 0`);
    this.core.setLimits({ idleTimeoutSeconds: seconds });
  }

  /** The session of a client as the reference's JSON (SaveSession). */
  saveSession(clientId: string): string {
    return sessionToJson(this.core.saveSession(clientId));
  }

  /** Restores a session from the reference's JSON (LoadSession); refused for a connected client. */
  loadSession(json: string): void {
    this.core.loadSession(sessionFromJson(json));
  }

  /** Publishes a message from the server side. */
  publish(topic: string, payload: Uint8Array | string, qos: QoS = 0, retain = false): void {
    this.core.publish({
      topic,
      payload, // core encodes a string as UTF-8
      qos,
      retain,
    });
  }

  /**
   * Sets (`'Name=Value'`) or reads (`'Name'`) a setting, as the reference's Config. Listener settings
   * apply to listeners started afterwards.
   * @throws SettingError APP_UNKNOWN_SETTING, APP_READ_ONLY_SETTING or APP_INVALID_SETTING_VALUE.
   */
  config(command: string): string {
    const result = applyConfig(this.settings, command);
    if (command.includes('=') && command.split('=')[0]!.trim().toLowerCase() === 'connectiontimeout') {
      this.core.setLimits({ connectTimeoutMs: this.settings.ConnectionTimeout * 1000 });
    }
    return result;
  }

  /** The current value of every setting. */
  get settingsSnapshot(): Readonly<BrokerSettings> {
    return { ...this.settings };
  }
}

function toBrokerConnection(c: ConnectionInfo): BrokerConnection {
  return {
    connectionId: c.connectionId,
    clientId: c.clientId ?? '',
    localHost: c.localAddress,
    localPort: c.localPort,
    remoteHost: c.remoteAddress,
    remotePort: c.remotePort,
    protocol: Math.max(0, PROTOCOL_BY_NUMBER.indexOf(c.protocol as TransportProtocol)),
    userName: c.username ?? '',
    keepAlive: c.keepaliveSeconds,
  };
}
