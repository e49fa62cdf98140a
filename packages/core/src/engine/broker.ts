import {
  type ConnackReturnCode,
  type ConnectPacket,
  copyBytes,
  encode,
  encodeAck,
  type PublishFrame,
  type PublishPacket,
  type QoS,
  type SubscribePacket,
  topicNameProblem,
  type UnsubscribePacket,
  utf8Length,
} from '@broker/codec';
import { systemClock } from '../clock.js';
import { BrokerCounters } from '../counters.js';
import { CoreError, type CoreErrorCode } from '../errors.js';
import {
  BrokerEmitter,
  type BrokerEventName,
  type BrokerEvents,
  type LogLevel,
  type LogType,
} from '../events.js';
import { Message, MessageState } from '../message.js';
import {
  type BrokerHooks,
  type BrokerLimits,
  type BrokerOptions,
  DEFAULT_LIMITS,
  type Decision,
  type SessionDecision,
} from '../options.js';
import type { Clock, Connection } from '../ports.js';
import { type OutboundDelivery, Session } from '../session.js';
import { restoreSession, type SessionSnapshot, snapshotSession } from '../snapshot.js';
import type { Store, StoredDelivery } from '../store.js';
import { FilterTree } from '../topics/filter-tree.js';
import { RetainedTree } from '../topics/retained-tree.js';
import { Client } from './client.js';

/** A connection as the read-only `connections` view shows it (the reference's MQTTBrokerConnection). */
export interface ConnectionInfo {
  connectionId: string;
  clientId: string | undefined;
  protocol: string;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  username: string | undefined;
  keepaliveSeconds: number;
  state: Client['state'];
}

/** A session as the read-only `sessions` view shows it (the reference's MQTTBrokerSession). */
export interface SessionInfo {
  clientId: string;
  isConnected: boolean;
  isClean: boolean;
  subscriptions: Array<{ topicFilter: string; qos: QoS }>;
  /** Incoming QoS 2 messages not yet released. */
  incomingMessages: number;
  /** Outgoing messages in flight or queued. */
  outgoingMessages: number;
}

/** A retained message as the `retained` view shows it (the reference's Messages property). */
export interface RetainedMessageInfo {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  messageId: number;
}

interface TeardownOptions {
  publishWill: boolean;
  statusCode: number;
  description: string;
  /** Close at once rather than flush what is queued first. */
  isAbrupt?: boolean;
}

/** A subscriber's hold on publishers (publisher flow control). */
interface FlowHold {
  readonly publishers: Client[];
  readonly sinceMs: number;
}

/**
 * The MQTT 3.1.1 broker engine. It accepts Connections from any transport, runs the protocol for
 * each, and keeps sessions, subscriptions and retained messages. It does no I/O of its own.
 */
export class Broker {
  private currentLimits: Readonly<BrokerLimits>;
  readonly clock: Clock;
  /** The clock's time as last read (per received chunk and per sweep): coarse, and free to read. */
  recentNowMs = 0;
  /** Running totals (messages, bytes, clients), for statistics without per-message events. */
  readonly counters = new BrokerCounters();
  /** Decisions of the embedding program; may be replaced at any time. */
  hooks: BrokerHooks;
  private readonly emitter = new BrokerEmitter();
  private readonly clients = new Map<string, Client>();
  private readonly sessionsByClientId = new Map<string, Session>();
  private readonly subscriptionTree = new FilterTree<Session>();
  private readonly retainedTree = new RetainedTree<Message>();
  private readonly assignedClientIdPrefix: string;
  private nextMessageId = 1;
  private nextAssignedClientId = 1;
  private sweepTimer: unknown = undefined;
  private isClosed = false;
  /** Where persistent sessions and retained messages are made durable; none keeps all in memory only. */
  private readonly store: Store | undefined;
  /** Counts store records, so a PUBLISH handler can tell whether it recorded something to wait for. */
  private storeRecords = 0;
  /** The client whose PUBLISH is being routed: publisher flow control may hold it. */
  private publishingClient: Client | undefined = undefined;
  /** Subscribers whose backlog holds publishers, with the publishers held and since when. */
  private readonly flowHolds = new Map<Session, FlowHold>();
  /** Subscribers that held publishers too long: they hold nobody until their backlog has drained. */
  private readonly slowConsumers = new Set<Session>();

  constructor(options: BrokerOptions = {}) {
    this.currentLimits = Object.freeze({ ...DEFAULT_LIMITS, ...options.limits });
    this.clock = options.clock ?? systemClock;
    this.hooks = { ...options.hooks };
    this.assignedClientIdPrefix = options.assignedClientIdPrefix ?? 'auto-';
    this.store = options.store;
    this.recentNowMs = this.nowMs();
  }

  /** The limits in force. */
  get limits(): Readonly<BrokerLimits> {
    return this.currentLimits;
  }

  /**
   * Changes limits at run time (the reference's DefaultIdleTimeout, for one). Timeouts apply from the
   * next sweep; maxPacketBytes applies to connections accepted afterwards.
   */
  setLimits(limits: Partial<BrokerLimits>): void {
    this.currentLimits = Object.freeze({ ...this.currentLimits, ...limits });
  }

  /**
   * Loads the persistent sessions and retained messages from the store. Call once, before the first
   * connection is accepted.
   */
  async restore(): Promise<void> {
    if (this.store === undefined) return;
    const contents = await this.store.load();
    const noteId = (id: number) => {
      if (id >= this.nextMessageId) this.nextMessageId = id + 1;
    };
    for (const snapshot of contents.sessions) {
      const session = restoreSession(snapshot, noteId);
      this.sessionsByClientId.set(session.clientId, session);
      for (const [filter, qos] of session.subscriptions) this.subscriptionTree.add(filter, session, qos);
    }
    for (const m of contents.retained) {
      noteId(m.messageId);
      this.retainedTree.set(m.topic, new Message(m.messageId, m.topic, m.payload, m.qos, true, true));
    }
  }

  // Store records: only persistent sessions and retained messages are recorded ----------------

  /**
   * Notes one more store record that refers to `message`, recording its content first when no record
   * refers to it (the store may have dropped it with its last reference, or never had it).
   */
  private referStored(message: Message): void {
    if (message.storeReferences++ > 0) return;
    this.store!.messageAdded({
      messageId: message.id,
      topic: message.topic,
      payload: message.own().payload,
      qos: message.qos,
      retain: message.retain,
    });
  }

  private recordDelivery(session: Session, delivery: OutboundDelivery, isNew: boolean): void {
    const store = this.store;
    if (store === undefined || session.isClean) return;
    this.storeRecords++;
    const stored: StoredDelivery = {
      qos: delivery.qos,
      retain: delivery.retain,
      packetId: delivery.packetId === 0 ? -1 : delivery.packetId,
      state: delivery.state,
      dup: delivery.dup,
    };
    if (isNew) {
      this.referStored(delivery.message);
      delivery.message.unsettledDeliveries++;
      store.outgoingAdded(session.clientId, delivery.message.id, stored);
    } else if (delivery.state === MessageState.Done) {
      delivery.message.storeReferences--;
      store.outgoingRemoved(session.clientId, delivery.message.id);
      settleDelivery(delivery.message);
    } else {
      store.outgoingChanged(session.clientId, delivery.message.id, stored);
    }
  }

  /** The store could not commit: acknowledging would promise what was not stored, so the client is closed. */
  storeFailed(client: Client, error: unknown): void {
    const description = `the store failed to commit (${String(error)}); not acknowledging`;
    this.log(client.id, 1, 'Info', description);
    if (this.emitter.has('error')) {
      this.emitter.emit('error', {
        connectionId: client.id,
        errorCode: 600,
        code: 'CORE_STORE_FAILED',
        description,
      });
    }
    this.teardown(client, { publishWill: true, statusCode: 600, description, isAbrupt: true });
  }

  // Events --------------------------------------------------------------------------------------

  on<K extends BrokerEventName>(name: K, listener: (event: BrokerEvents[K]) => void): this {
    this.emitter.on(name, listener);
    return this;
  }

  off<K extends BrokerEventName>(name: K, listener: (event: BrokerEvents[K]) => void): this {
    this.emitter.off(name, listener);
    return this;
  }

  private log(connectionId: string, level: LogLevel, type: LogType, message: string): void {
    if (this.emitter.has('log')) this.emitter.emit('log', { connectionId, level, type, message });
  }

  /**
   * @internal The clock in whole milliseconds. Every client keeps a few times; whole numbers are small integers
   * to V8, stored in the client itself, where a fraction would cost a separate heap number per field.
   */
  nowMs(): number {
    return Math.floor(this.clock.now());
  }

  /** Whether anyone listens to 'log': asked before building a message on a path every connection takes. */
  private get isLogging(): boolean {
    return this.emitter.has('log');
  }

  // Connections ---------------------------------------------------------------------------------

  /**
   * Takes a new connection. The connectionRequest decision runs first; nothing is read from the
   * connection before it accepts.
   */
  accept(connection: Connection): void {
    if (this.isClosed) {
      connection.destroy(new CoreError('CORE_BROKER_CLOSED', 'the broker is closed'));
      return;
    }
    if (this.clients.size >= this.limits.maxConnections) {
      this.log(connection.id, 1, 'Info', `refused: ${this.clients.size} connections is the limit`);
      connection.destroy(new CoreError('CORE_CONNECTION_LIMIT', 'too many connections'));
      return;
    }
    const hook = this.hooks.connectionRequest;
    if (hook === undefined) {
      this.attach(connection);
      return;
    }
    const request = {
      connectionId: connection.id,
      remoteAddress: connection.remoteAddress,
      remotePort: connection.remotePort,
      protocol: connection.protocol,
    };
    this.decide(hook, request, false, 'connectionRequest', connection.id, undefined, (isAccepted) => {
      // The limit is checked again: other connections may have been attached while this decision was pending.
      if (isAccepted && !this.isClosed && this.clients.size < this.limits.maxConnections) {
        this.attach(connection);
      } else {
        this.log(connection.id, 1, 'Info', `connection from ${connection.remoteAddress} refused`);
        connection.destroy();
      }
    });
  }

  private attach(connection: Connection): void {
    const client = new Client(this, connection, this.nowMs());
    this.clients.set(connection.id, client);
    this.startSweep();
    if (this.isLogging) {
      this.log(
        connection.id,
        2,
        'Info',
        `${connection.protocol} connection from ${connection.remoteAddress}:${connection.remotePort}`,
      );
    }
    connection.setHandler(client);
  }

  /** Runs a decision hook, synchronously when it answers at once, else suspending the client. */
  private decide<Request, Answer>(
    hook: (request: Request) => Decision<Answer>,
    request: Request,
    refusal: Answer,
    name: string,
    connectionId: string,
    client: Client | undefined,
    then: (answer: Answer) => void,
  ): void {
    let answer: Decision<Answer>;
    try {
      answer = hook(request);
    } catch (error) {
      this.hookFailed(connectionId, name, 'CORE_HOOK_FAILED', `threw: ${String(error)}`);
      then(refusal);
      return;
    }
    if (!isPromiseLike(answer)) {
      then(answer);
      return;
    }
    client?.suspend();
    let isSettled = false;
    const settle = (value: Answer) => {
      if (isSettled) return;
      isSettled = true;
      this.clock.clearTimeout(timer);
      if (client?.state === 'closed') return;
      client?.release();
      then(value);
      client?.resume();
    };
    const timer = this.clock.setTimeout(() => {
      this.hookFailed(
        connectionId,
        name,
        'CORE_HOOK_TIMEOUT',
        `gave no answer in ${this.limits.hookTimeoutMs} ms`,
      );
      settle(refusal);
    }, this.limits.hookTimeoutMs);
    answer.then(settle, (error: unknown) => {
      this.hookFailed(connectionId, name, 'CORE_HOOK_FAILED', `rejected: ${String(error)}`);
      settle(refusal);
    });
  }

  private hookFailed(connectionId: string, name: string, code: CoreErrorCode, what: string): void {
    const description = `the ${name} decision ${what}; refusing`;
    this.log(connectionId, 1, 'Info', description);
    if (this.emitter.has('error'))
      this.emitter.emit('error', { connectionId, errorCode: 600, code, description });
  }

  /** Closes a connection for a protocol error: logged, reported, and the will published [MQTT-3.1.2-8]. */
  protocolError(
    client: Client,
    code: string,
    description: string,
    referenceCode = 600,
    isAbrupt = true,
  ): void {
    this.log(client.id, 1, 'Info', `closing: ${description}`);
    if (this.emitter.has('error')) {
      this.emitter.emit('error', { connectionId: client.id, errorCode: referenceCode, code, description });
    }
    this.teardown(client, { publishWill: true, statusCode: referenceCode, description, isAbrupt });
  }

  /** Ends a client's connection and, for a clean session, its session. Safe to call twice. */
  teardown(client: Client, options: TeardownOptions): void {
    if (client.state === 'closed') return;
    const wasConnected = client.state === 'connected';
    if (wasConnected) this.counters.clientsConnected--;
    client.state = 'closed';
    this.clients.delete(client.id);
    const session = client.session;
    if (session !== undefined && session.client === client) {
      session.client = undefined;
      // An offline subscriber's backlog no longer moves: it holds nobody.
      this.slowConsumers.delete(session);
      this.releaseHold(session);
      // [MQTT-3.1.2-6] a clean session ends with its connection.
      if (session.isClean) this.removeSession(session);
    }
    const will = client.will;
    client.will = undefined;
    const willPublished = options.publishWill && wasConnected && will !== undefined;
    if (willPublished) {
      this.route(new Message(this.nextMessageId++, will.topic, will.payload, will.qos, will.retain, true));
    }
    if (options.isAbrupt === true) client.connection.destroy();
    else client.connection.end();
    if (this.isLogging) this.log(client.id, 1, 'Session', `disconnected (${options.description})`);
    if (this.emitter.has('disconnected')) {
      this.emitter.emit('disconnected', {
        connectionId: client.id,
        clientId: client.clientId,
        statusCode: options.statusCode,
        description: options.description,
        willPublished,
      });
    }
    if (this.clients.size === 0) this.stopSweep();
  }

  private removeSession(session: Session): void {
    if (this.store !== undefined && !session.isClean) {
      this.store.sessionRemoved(session.clientId);
      for (const d of session.inflight.values()) {
        d.message.storeReferences--;
        settleDelivery(d.message);
      }
      for (const d of session.queued()) {
        d.message.storeReferences--;
        settleDelivery(d.message);
      }
      for (const r of session.incoming.values()) r.message.storeReferences--;
    }
    for (const filter of session.subscriptions.keys()) this.subscriptionTree.remove(filter, session);
    session.clearSubscriptions();
    session.clearQueue();
    session.clearInflight();
    session.clearIncoming();
    if (this.sessionsByClientId.get(session.clientId) === session)
      this.sessionsByClientId.delete(session.clientId);
    if (this.emitter.has('sessionRemoved'))
      this.emitter.emit('sessionRemoved', { clientId: session.clientId });
  }

  // Timeouts: one sweep for every connection, not a timer per client -------------------------

  private startSweep(): void {
    if (this.sweepTimer === undefined) {
      this.sweepTimer = this.clock.setInterval(() => this.sweep(), this.limits.sweepIntervalMs);
    }
  }

  private stopSweep(): void {
    if (this.sweepTimer !== undefined) {
      this.clock.clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /** Closes connections past their connect, keep-alive, idle or drain deadline. */
  sweep(): void {
    const now = this.nowMs();
    this.recentNowMs = now;
    const { connectTimeoutMs, idleTimeoutSeconds, drainTimeoutMs } = this.limits;
    if (this.flowHolds.size > 0) this.sweepFlowHolds(now);
    for (const client of this.clients.values()) {
      if (client.state === 'connecting' || client.state === 'authenticating') {
        if (
          connectTimeoutMs > 0 &&
          // Nothing whole was received yet: lastReceivedAtMs is still when the connection was accepted.
          now - client.lastReceivedAtMs >= connectTimeoutMs &&
          client.state === 'connecting'
        ) {
          this.timeout(
            client,
            'CORE_CONNECT_TIMEOUT',
            `no CONNECT within ${connectTimeoutMs} ms [MQTT-3.1.0-1]`,
          );
        }
        continue;
      }
      // [MQTT-3.1.2-24] silent for one and a half times the keep-alive: disconnect. Not while held by
      // flow control: then the broker is not reading what it sends.
      if (
        client.keepaliveSeconds > 0 &&
        now - client.lastReceivedAtMs > client.keepaliveSeconds * 1500 &&
        !client.isHeld
      ) {
        this.timeout(
          client,
          'CORE_KEEPALIVE_TIMEOUT',
          `nothing received for 1.5 x keep-alive (${client.keepaliveSeconds} s) [MQTT-3.1.2-24]`,
        );
      } else if (idleTimeoutSeconds > 0 && now - client.lastActivityAtMs > idleTimeoutSeconds * 1000) {
        this.timeout(client, 'CORE_IDLE_TIMEOUT', `idle for ${idleTimeoutSeconds} s (DefaultIdleTimeout)`);
      } else if (client.blockedSinceMs >= 0 && now - client.blockedSinceMs > drainTimeoutMs) {
        this.timeout(client, 'CORE_DRAIN_TIMEOUT', `its output stayed blocked for ${drainTimeoutMs} ms`);
      }
    }
  }

  private timeout(client: Client, code: CoreErrorCode, description: string): void {
    this.log(client.id, 1, 'Session', `closing: ${description}`);
    if (this.emitter.has('error')) {
      this.emitter.emit('error', { connectionId: client.id, errorCode: 600, code, description });
    }
    this.teardown(client, { publishWill: true, statusCode: 600, description, isAbrupt: true });
  }

  // CONNECT -------------------------------------------------------------------------------------

  handleConnect(client: Client, packet: ConnectPacket): void {
    let clientId = packet.clientId;
    if (clientId.length === 0) {
      if (!packet.cleanSession) {
        // [MQTT-3.1.3-8] an empty client id needs clean session 1.
        this.refuseConnect(client, 2, 'empty client identifier with clean session 0 [MQTT-3.1.3-8]');
        return;
      }
      // [MQTT-3.1.3-6] the server assigns a unique identifier.
      do {
        clientId = `${this.assignedClientIdPrefix}${(this.nextAssignedClientId++).toString(36)}`;
      } while (this.sessionsByClientId.has(clientId));
    } else if (utf8Length(clientId) > this.limits.maxClientIdBytes) {
      this.refuseConnect(client, 2, `client identifier longer than ${this.limits.maxClientIdBytes} bytes`);
      return;
    }
    client.clientId = clientId;
    const hook = this.hooks.authenticate;
    if (hook === undefined) {
      this.acceptConnect(client, packet, clientId);
      return;
    }
    const request = {
      connectionId: client.id,
      clientId,
      username: packet.username,
      password: packet.password === undefined ? undefined : copyBytes(packet.password),
      isNew: packet.cleanSession,
      hasStoredSession: this.sessionsByClientId.has(clientId),
      remoteAddress: client.connection.remoteAddress,
      protocol: client.connection.protocol,
    };
    this.decide<typeof request, SessionDecision>(
      hook,
      request,
      5,
      'authenticate',
      client.id,
      client,
      (answer) => {
        if (answer === true || answer === 0) this.acceptConnect(client, packet, clientId);
        else {
          const code = typeof answer === 'number' && answer >= 1 && answer <= 5 ? answer : 5;
          this.refuseConnect(client, code, `session request refused with CONNACK ${code}`);
        }
      },
    );
  }

  private refuseConnect(client: Client, returnCode: ConnackReturnCode, description: string): void {
    // [MQTT-3.2.2-4] a refusal carries session present 0; [MQTT-3.2.2-5] then the connection closes.
    client.sendPacket({ type: 'connack', sessionPresent: false, returnCode });
    this.log(client.id, 1, 'Session', `CONNECT refused: ${description}`);
    client.state = 'connecting'; // not connected: no will is published
    this.teardown(client, { publishWill: false, statusCode: 600, description });
  }

  private acceptConnect(client: Client, packet: ConnectPacket, clientId: string): void {
    if (client.state !== 'authenticating') return;
    let session = this.sessionsByClientId.get(clientId);
    const previous = session?.client;
    if (previous !== undefined) {
      // [MQTT-3.1.4-2] the existing connection with this client id is closed; its will is published.
      this.log(previous.id, 1, 'Session', `client ${clientId} taken over by connection ${client.id}`);
      this.teardown(previous, {
        publishWill: true,
        statusCode: 600,
        description: `session taken over by connection ${client.id} [MQTT-3.1.4-2]`,
        isAbrupt: true,
      });
      session = this.sessionsByClientId.get(clientId);
    }
    let sessionPresent = false;
    if (packet.cleanSession) {
      // [MQTT-3.1.2-6] discard any previous session and start a new one; [MQTT-3.2.2-1] present = 0.
      if (session !== undefined) this.removeSession(session);
      session = new Session(clientId, true);
    } else if (session !== undefined) {
      // [MQTT-3.1.2-4] resume the stored session; [MQTT-3.2.2-2] present = 1.
      session.isClean = false;
      sessionPresent = true;
    } else {
      // [MQTT-3.2.2-3] no stored session: present = 0.
      session = new Session(clientId, false);
      this.store?.sessionCreated(clientId);
    }
    this.sessionsByClientId.set(clientId, session);
    session.client = client;
    client.session = session;
    client.state = 'connected';
    const counters = this.counters;
    if (++counters.clientsConnected > counters.clientsMaximum)
      counters.clientsMaximum = counters.clientsConnected;
    // [MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-3] the two CONNACKs of an accepted connection are encoded once.
    client.send(sessionPresent ? CONNACK_SESSION_PRESENT : CONNACK_NEW_SESSION);
    if (this.isLogging) {
      this.log(
        client.id,
        1,
        'Session',
        `client ${clientId} connected (clean session ${packet.cleanSession ? 1 : 0})`,
      );
    }
    if (this.emitter.has('connected')) {
      this.emitter.emit('connected', {
        connectionId: client.id,
        clientId,
        statusCode: 0,
        description: 'OK',
        sessionPresent,
      });
    }
    if (sessionPresent) this.resumeDeliveries(client, session);
  }

  /**
   * Re-sends what was in flight when the session's last connection ended, in the original order,
   * PUBLISH with DUP=1 and PUBREL as they were [MQTT-4.4.0-1], then sends what is queued.
   */
  private resumeDeliveries(client: Client, session: Session): void {
    for (const delivery of session.inflight.values()) {
      if (delivery.state === MessageState.AwaitingPuback || delivery.state === MessageState.AwaitingPubrec) {
        delivery.dup = true;
        sendPublish(client, delivery.message.frame(delivery.qos, delivery.retain), delivery.packetId, true);
        this.outgoingEvent(client, session, delivery, 'messageSending');
      } else {
        delivery.state = MessageState.AwaitingPubcomp;
        client.send(encodeAck('pubrel', delivery.packetId));
        this.outgoingStatus(session, delivery);
        this.recordDelivery(session, delivery, false);
      }
    }
    this.pump(session);
  }

  // PUBLISH from a client -----------------------------------------------------------------------

  handlePublish(client: Client, packet: PublishPacket): void {
    const session = client.session!;
    const { topic, qos } = packet;
    if (!this.isTopicWithinLimits(topic)) {
      this.protocolError(
        client,
        'CORE_PROTOCOL_VIOLATION',
        `topic "${truncate(topic)}" exceeds the topic limits`,
        601,
      );
      return;
    }
    if (qos === 2 && session.incoming.has(packet.packetId!)) {
      // [MQTT-4.3.3-2] a re-sent QoS 2 PUBLISH is not delivered again: only PUBREC is repeated.
      client.sendAck(encodeAck('pubrec', packet.packetId!), undefined);
      return;
    }
    const hook = this.hooks.authorizePublish;
    if (hook === undefined) {
      this.acceptPublish(client, session, packet, true);
      return;
    }
    const request = {
      connectionId: client.id,
      clientId: session.clientId,
      username: client.username,
      topic,
      payload: packet.payload,
      qos,
      retain: packet.retain,
    };
    this.decide(hook, request, false, 'authorizePublish', client.id, client, (isAllowed) =>
      this.acceptPublish(client, session, packet, isAllowed),
    );
  }

  private acceptPublish(client: Client, session: Session, packet: PublishPacket, isAllowed: boolean): void {
    const { qos } = packet;
    const message = new Message(
      this.nextMessageId++,
      packet.topic,
      // A large payload that arrived over several chunks stays in parts: sent without a copy.
      packet.payloadParts ?? packet.payload,
      qos,
      packet.retain,
      false,
    );
    const packetId = packet.packetId ?? -1;
    if (this.emitter.has('messageReceiving')) {
      this.emitter.emit(
        'messageReceiving',
        this.incomingEvent(client, session, message, packet.dup, packetId),
      );
    }
    if (qos > 0) {
      this.incomingStatus(client, session, message, packet.dup, packetId, qos === 1 ? 6 : 7);
    }
    const recordsBefore = this.storeRecords;
    if (isAllowed) {
      this.counters.messagesReceived++;
      this.publishingClient = client;
      this.route(message);
      this.publishingClient = undefined;
    } else {
      this.log(client.id, 1, 'Info', `publish to "${truncate(packet.topic)}" not authorized; dropped`);
      this.dropped(session, message, qos, 'not-authorized');
    }
    if (qos === 1) {
      // [MQTT-4.3.2-2] acknowledge with PUBACK carrying the same packet identifier, once what it
      // promises is stored.
      client.sendAck(encodeAck('puback', packetId), this.commitSince(recordsBefore), message);
      this.incomingStatus(client, session, message, packet.dup, packetId, MessageState.Done);
    } else if (qos === 2) {
      // [MQTT-4.3.3-2] remember the identifier until PUBREL, answer PUBREC.
      session.addIncoming({
        message: message.own(),
        packetId,
        dup: packet.dup,
        state: MessageState.AwaitingPubrel,
      });
      if (this.store !== undefined && !session.isClean) {
        this.storeRecords++;
        this.referStored(message);
        this.store.incomingAdded(
          session.clientId,
          message.id,
          packetId,
          MessageState.AwaitingPubrel,
          packet.dup,
        );
      }
      client.sendAck(encodeAck('pubrec', packetId), this.commitSince(recordsBefore), message);
      this.incomingStatus(client, session, message, packet.dup, packetId, MessageState.AwaitingPubrel);
    }
    if (qos < 2 && this.emitter.has('messageReceived')) {
      this.emitter.emit(
        'messageReceived',
        this.incomingEvent(client, session, message, packet.dup, packetId),
      );
    }
  }

  /** A commit to wait for before acknowledging, when something was recorded since `recordsBefore`. */
  private commitSince(recordsBefore: number): Promise<void> | undefined {
    return this.store !== undefined && this.storeRecords !== recordsBefore ? this.store.flush() : undefined;
  }

  handlePubrel(client: Client, packetId: number): void {
    const session = client.session!;
    const record = session.incoming.get(packetId);
    const recordsBefore = this.storeRecords;
    if (record !== undefined) {
      record.state = MessageState.PubrelReceived;
      this.incomingStatus(client, session, record.message, record.dup, packetId, MessageState.PubrelReceived);
      session.removeIncoming(packetId);
      if (this.store !== undefined && !session.isClean) {
        this.storeRecords++;
        this.store.incomingRemoved(session.clientId, packetId);
        record.message.storeReferences--;
      }
    }
    // [MQTT-4.3.3-2] answer PUBREL with PUBCOMP, also for an identifier no longer known; for a
    // persistent session once the store has forgotten the identifier: PUBCOMP frees it for the
    // client's next message, which a restart still holding it would take for a re-send and drop.
    client.sendAck(encodeAck('pubcomp', packetId), this.commitSince(recordsBefore));
    if (record !== undefined) {
      this.incomingStatus(client, session, record.message, record.dup, packetId, MessageState.Done);
      if (this.emitter.has('messageReceived')) {
        this.emitter.emit(
          'messageReceived',
          this.incomingEvent(client, session, record.message, record.dup, packetId),
        );
      }
    }
  }

  // Routing and delivery ----------------------------------------------------------------------

  /**
   * Sends a message to every session with a matching subscription, once each, at
   * min(published, granted) QoS [MQTT-3.8.4-6]; stores or clears it as retained first.
   */
  private route(message: Message): void {
    if (message.retain) {
      if (message.payloadLength === 0) {
        // [MQTT-3.3.1-10] an empty retained message clears the topic; [MQTT-3.3.1-11] it is not stored.
        if (this.retainedTree.delete(message.topic) && this.store !== undefined) {
          this.storeRecords++;
          this.store.retainedCleared(message.topic);
        }
      } else {
        // [MQTT-3.3.1-5] store it, replacing any retained message on the topic.
        this.retainedTree.set(message.topic, message.own());
        this.recordRetained(message);
      }
    }
    const match = this.subscriptionTree.match(message.topic);
    const { subscribers, qos } = match;
    const published = message.qos;
    const publisher = this.limits.flowControlBytes > 0 ? this.publishingClient : undefined;
    for (let i = 0; i < subscribers.length; i++) {
      const granted = qos[i]!;
      // [MQTT-3.3.1-9] RETAIN is 0 when forwarding to an established subscription.
      this.deliver(subscribers[i]!, message, Math.min(granted, published) as QoS, false);
      if (publisher !== undefined) this.holdIfBacklogged(publisher, subscribers[i]!);
    }
    // The encoded frames served this fan-out; a later send (from a queue, a retransmission after a
    // reconnect) encodes again. Kept for the message's life, every in-flight message held its
    // encoded copy until acknowledged: under load that was a third of what outlived young-generation
    // GCs, and with it the old-generation collections that halve throughput.
    message.releaseFrames();
  }

  private recordRetained(message: Message): void {
    if (this.store === undefined) return;
    this.storeRecords++;
    this.store.retainedSet({
      messageId: message.id,
      topic: message.topic,
      payload: message.payload,
      qos: message.qos,
      retain: true,
    });
  }

  /** Delivers one message to one session, now or through its queue. */
  private deliver(session: Session, message: Message, qos: QoS, retain: boolean): void {
    const filter = this.hooks.filterDelivery;
    if (filter !== undefined) {
      const rewritten = this.filterDelivery(filter, session, message, qos, retain);
      if (rewritten === undefined) return;
      message = rewritten;
    }
    const client = session.client;
    const isOnline = client !== undefined && client.state === 'connected';
    if (qos === 0) {
      // QoS 0 is not queued for offline sessions (the standard allows either; Mosquitto's default).
      if (!isOnline) return;
      if (client.connection.bufferedBytes > this.limits.maxOutgoingBufferBytes) {
        this.dropped(session, message, 0, 'backpressure');
        return;
      }
      if (session.queuedCount > 0) {
        // Keep the order of messages on the way to this client [MQTT-4.6.0-5], within the same
        // queue limit as QoS 1 and 2: a client that does not read must not grow it without bound.
        if (session.queuedCount >= this.limits.maxQueuedMessages) {
          this.dropped(session, message, 0, 'queue-full');
          return;
        }
        session.enqueue({
          message: message.own(),
          qos,
          retain,
          packetId: 0,
          state: MessageState.Queued,
          dup: false,
        });
        return;
      }
      this.sendQos0(client, session, message, retain);
      return;
    }
    const delivery: OutboundDelivery = {
      message: message.own(),
      qos,
      retain,
      packetId: 0,
      state: MessageState.Queued,
      dup: false,
    };
    if (
      isOnline &&
      session.queuedCount === 0 &&
      session.inflight.size < this.limits.maxInflightMessages &&
      !client.isBlocked
    ) {
      this.sendDelivery(client, session, delivery);
    } else if (session.queuedCount >= this.limits.maxQueuedMessages) {
      this.dropped(session, message, qos, 'queue-full');
      return;
    } else {
      session.enqueue(delivery);
      this.outgoingStatus(session, delivery);
    }
    this.recordDelivery(session, delivery, true);
  }

  private filterDelivery(
    filter: NonNullable<BrokerHooks['filterDelivery']>,
    session: Session,
    message: Message,
    qos: QoS,
    retain: boolean,
  ): Message | undefined {
    let answer: ReturnType<typeof filter>;
    try {
      answer = filter({
        clientId: session.clientId,
        topic: message.topic,
        payload: message.payload,
        qos,
        retain,
      });
    } catch (error) {
      this.hookFailed(
        session.client?.id ?? '',
        'filterDelivery',
        'CORE_HOOK_FAILED',
        `threw: ${String(error)}`,
      );
      answer = false;
    }
    if (answer === undefined || answer === true) return message;
    if (answer === false) {
      this.dropped(session, message, qos, 'filtered');
      return undefined;
    }
    const topic = answer.topic ?? message.topic;
    if (topicNameProblem(topic) !== undefined) {
      this.hookFailed(
        session.client?.id ?? '',
        'filterDelivery',
        'CORE_HOOK_FAILED',
        `gave invalid topic "${topic}"`,
      );
      this.dropped(session, message, qos, 'filtered');
      return undefined;
    }
    const payload = answer.payload ?? message.payload;
    return new Message(this.nextMessageId++, topic, copyBytes(payload), message.qos, message.retain, true);
  }

  private sendQos0(client: Client, session: Session, message: Message, retain: boolean): void {
    sendPublish(client, message.frame(0, retain), 0, false);
    this.counters.messagesSent++;
    if (this.emitter.has('messageSending') || this.emitter.has('messageSent')) {
      const event = {
        connectionId: client.id,
        clientId: session.clientId,
        messageId: message.id,
        dup: false,
        qos: 0 as QoS,
        retain,
        packetId: -1,
        topic: message.topic,
      };
      this.emitter.emit('messageSending', event);
      this.emitter.emit('messageSent', event);
    }
  }

  private sendDelivery(client: Client, session: Session, delivery: OutboundDelivery): void {
    const packetId = session.allocatePacketId();
    delivery.packetId = packetId;
    delivery.state = delivery.qos === 1 ? MessageState.AwaitingPuback : MessageState.AwaitingPubrec;
    session.addInflight(delivery);
    sendPublish(client, delivery.message.frame(delivery.qos, delivery.retain), packetId, delivery.dup);
    this.outgoingEvent(client, session, delivery, 'messageSending');
    this.outgoingStatus(session, delivery);
    delivery.dup = true;
  }

  /** Sends queued messages while the in-flight window and the connection allow. */
  pump(session: Session): void {
    const client = session.client;
    if (client === undefined || client.state !== 'connected') return;
    const maxInflight = this.limits.maxInflightMessages;
    while (!client.isBlocked) {
      const next = session.peek();
      if (next === undefined || (next.qos > 0 && session.inflight.size >= maxInflight)) break;
      session.dequeue();
      if (next.qos === 0) this.sendQos0(client, session, next.message, next.retain);
      else {
        this.sendDelivery(client, session, next);
        this.recordDelivery(session, next, false);
      }
    }
    if (this.flowHolds.has(session) || this.slowConsumers.has(session))
      this.releaseIfDrained(session, client);
  }

  // Publisher flow control ---------------------------------------------------------------------

  /**
   * Holds the publisher of the message just delivered to `session` if that subscriber is backlogged:
   * it is not read until the backlog halves. A client never holds itself, and a slow consumer holds
   * nobody.
   */
  private holdIfBacklogged(publisher: Client, session: Session): void {
    const client = session.client;
    // Only a subscriber whose output waits (queued, or its connection above its high-water mark) can
    // hold: its drain or next acknowledgement pumps it, which is when a hold is released.
    if (client === undefined || client === publisher || (session.queuedCount === 0 && !client.isBlocked))
      return;
    if (!this.isBacklogged(session, client, 1)) return;
    if (client.state !== 'connected' || publisher.state === 'closed' || this.slowConsumers.has(session))
      return;
    let hold = this.flowHolds.get(session);
    if (hold === undefined) {
      hold = { publishers: [], sinceMs: this.recentNowMs };
      this.flowHolds.set(session, hold);
    } else if (hold.publishers.includes(publisher)) {
      return;
    }
    hold.publishers.push(publisher);
    this.counters.publisherHolds++;
    publisher.hold();
  }

  /**
   * Whether a subscriber's backlog is over a flow-control threshold divided by `divisor` (1 to hold,
   * 2 to release, for hysteresis): flowControlBytes of queued and buffered bytes, or half of a limit
   * past which its messages would be dropped (maxQueuedMessages, maxOutgoingBufferBytes), so that a
   * subscriber that keeps up on average gets backpressure instead of losses.
   */
  private isBacklogged(session: Session, client: Client, divisor: 1 | 2): boolean {
    const { flowControlBytes, maxQueuedMessages, maxOutgoingBufferBytes } = this.limits;
    const buffered = client.connection.bufferedBytes;
    return (
      (session.queuedBytes + buffered) * divisor > flowControlBytes ||
      session.queuedCount * 2 * divisor > maxQueuedMessages ||
      buffered * 2 * divisor > maxOutgoingBufferBytes
    );
  }

  /** After a subscriber's output moved: releases its publishers once its backlog has halved. */
  private releaseIfDrained(session: Session, client: Client): void {
    if (this.isBacklogged(session, client, 2)) return;
    this.slowConsumers.delete(session);
    this.releaseHold(session);
  }

  /** Lets every publisher held by this subscriber read again. */
  private releaseHold(session: Session): void {
    const hold = this.flowHolds.get(session);
    if (hold === undefined) return;
    this.flowHolds.delete(session);
    // Unholding reads and routes the publishers' waiting packets, which may hold them again.
    for (const publisher of hold.publishers) publisher.unhold();
  }

  /** Sweep: a subscriber that held publishers longer than flowControlMaxHoldMs is a slow consumer. */
  private sweepFlowHolds(now: number): void {
    const maxHoldMs = this.limits.flowControlMaxHoldMs;
    for (const [session, hold] of this.flowHolds) {
      if (now - hold.sinceMs < maxHoldMs) continue;
      this.slowConsumers.add(session);
      this.counters.slowConsumers++;
      this.log(
        session.client?.id ?? '',
        1,
        'Session',
        `slow consumer: its backlog held publishers for over ${maxHoldMs} ms; its messages now queue under maxQueuedMessages`,
      );
      this.releaseHold(session);
    }
  }

  private dropped(
    session: Session,
    message: Message,
    qos: QoS,
    reason: 'queue-full' | 'backpressure' | 'filtered' | 'not-authorized',
  ): void {
    const counters = this.counters;
    counters.messagesDropped++;
    if (reason === 'queue-full') counters.droppedQueueFull++;
    else if (reason === 'backpressure') counters.droppedBackpressure++;
    else if (reason === 'filtered') counters.droppedFiltered++;
    else counters.droppedNotAuthorized++;
    if (this.emitter.has('messageDropped')) {
      this.emitter.emit('messageDropped', {
        clientId: session.clientId,
        messageId: message.id,
        topic: message.topic,
        qos,
        reason,
      });
    }
  }

  // Acknowledgements of what the broker sent -------------------------------------------------

  /** PUBACK completes a QoS 1 delivery [MQTT-4.3.2-1]. */
  handlePuback(client: Client, packetId: number): void {
    this.completeIfAwaiting(client, packetId, MessageState.AwaitingPuback, 'PUBACK');
  }

  handlePubrec(client: Client, packetId: number): void {
    const session = client.session!;
    const delivery = session.inflight.get(packetId);
    if (delivery !== undefined && delivery.state === MessageState.AwaitingPubrec) {
      delivery.state = MessageState.PubrecReceived;
      this.outgoingStatus(session, delivery);
    }
    // [MQTT-4.3.3-1] answer PUBREC with PUBREL (a repeated PUBREC gets the PUBREL again).
    client.send(encodeAck('pubrel', packetId));
    if (delivery !== undefined && delivery.state === MessageState.PubrecReceived) {
      delivery.state = MessageState.AwaitingPubcomp;
      this.outgoingStatus(session, delivery);
      this.recordDelivery(session, delivery, false);
    }
  }

  /** PUBCOMP completes a QoS 2 delivery [MQTT-4.3.3-1]. */
  handlePubcomp(client: Client, packetId: number): void {
    this.completeIfAwaiting(client, packetId, MessageState.AwaitingPubcomp, 'PUBCOMP');
  }

  /** Completes the in-flight delivery with this packet id if it is waiting for this acknowledgement. */
  private completeIfAwaiting(client: Client, packetId: number, awaiting: MessageState, name: string): void {
    const session = client.session!;
    const delivery = session.inflight.get(packetId);
    if (delivery === undefined || delivery.state !== awaiting) {
      this.log(client.id, 3, 'Frame', `${name} for packet ${packetId}, which is not awaiting one; ignored`);
      return;
    }
    this.complete(client, session, delivery);
  }

  private complete(client: Client, session: Session, delivery: OutboundDelivery): void {
    session.removeInflight(delivery.packetId);
    this.counters.messagesSent++;
    delivery.state = MessageState.Done;
    this.outgoingStatus(session, delivery);
    this.recordDelivery(session, delivery, false);
    this.outgoingEvent(client, session, delivery, 'messageSent');
    this.pump(session);
  }

  // SUBSCRIBE and UNSUBSCRIBE ---------------------------------------------------------------

  handleSubscribe(client: Client, packet: SubscribePacket): void {
    const returnCodes: number[] = new Array(packet.subscriptions.length);
    this.decideSubscription(client, packet, returnCodes, 0);
  }

  /** Decides the subscriptions of one SUBSCRIBE in order, then answers SUBACK. */
  private decideSubscription(
    client: Client,
    packet: SubscribePacket,
    returnCodes: number[],
    index: number,
  ): void {
    const session = client.session!;
    const hook = this.hooks.authorizeSubscribe;
    for (let i = index; i < packet.subscriptions.length; i++) {
      const { topicFilter, qos } = packet.subscriptions[i]!;
      if (!this.isTopicWithinLimits(topicFilter)) {
        returnCodes[i] = 0x80;
        continue;
      }
      if (
        session.subscriptions.size + i >= this.limits.maxSubscriptionsPerClient &&
        !session.subscriptions.has(topicFilter) &&
        this.isSubscriptionLimitReached(session, packet, returnCodes, i)
      ) {
        this.log(client.id, 1, 'Info', `subscription limit ${this.limits.maxSubscriptionsPerClient} reached`);
        returnCodes[i] = 0x80;
        continue;
      }
      if (hook === undefined) {
        returnCodes[i] = qos;
        continue;
      }
      const request = {
        connectionId: client.id,
        clientId: session.clientId,
        username: client.username,
        topicFilter,
        requestedQos: qos,
      };
      let isDecided = false;
      let isWaiting = false;
      this.decide(hook, request, 0x80, 'authorizeSubscribe', client.id, client, (answer) => {
        // The hook may lower the QoS or refuse; it cannot grant more than was asked.
        returnCodes[i] = answer === 0 || answer === 1 || answer === 2 ? Math.min(answer, qos) : 0x80;
        isDecided = true;
        if (isWaiting) this.decideSubscription(client, packet, returnCodes, i + 1);
      });
      if (!isDecided) {
        isWaiting = true; // the rest continues when the decision arrives
        return;
      }
    }
    this.finishSubscribe(client, session, packet, returnCodes);
  }

  /** Whether a new filter at `index` exceeds the limit, counting new filters granted earlier in the same SUBSCRIBE. */
  private isSubscriptionLimitReached(
    session: Session,
    packet: SubscribePacket,
    returnCodes: number[],
    index: number,
  ): boolean {
    const added = new Set<string>();
    for (let j = 0; j < index; j++) {
      const filter = packet.subscriptions[j]!.topicFilter;
      if (returnCodes[j] !== 0x80 && !session.subscriptions.has(filter)) added.add(filter);
    }
    if (added.has(packet.subscriptions[index]!.topicFilter)) return false;
    return session.subscriptions.size + added.size >= this.limits.maxSubscriptionsPerClient;
  }

  private finishSubscribe(
    client: Client,
    session: Session,
    packet: SubscribePacket,
    returnCodes: number[],
  ): void {
    for (let i = 0; i < packet.subscriptions.length; i++) {
      const code = returnCodes[i]!;
      const { topicFilter, qos } = packet.subscriptions[i]!;
      if (code !== 0x80) {
        // [MQTT-3.8.4-3] a subscription to an existing filter replaces it.
        session.subscribe(topicFilter, code as QoS);
        this.subscriptionTree.add(topicFilter, session, code as QoS);
        if (this.store !== undefined && !session.isClean) {
          this.store.subscriptionAdded(session.clientId, topicFilter, code as QoS);
        }
      }
      if (this.emitter.has('subscribed')) {
        this.emitter.emit('subscribed', {
          connectionId: client.id,
          clientId: session.clientId,
          topicFilter,
          requestedQos: qos,
          returnCode: code,
        });
      }
    }
    // [MQTT-3.8.4-1] SUBACK with [MQTT-3.8.4-4] the same packet identifier and [MQTT-3.8.4-5] one code per filter, in order.
    client.sendPacket({
      type: 'suback',
      packetId: packet.packetId,
      returnCodes: returnCodes as Array<0 | 1 | 2 | 0x80>,
    });
    // [MQTT-3.3.1-6] retained messages matching a new (or replaced [MQTT-3.8.4-3]) subscription are sent, RETAIN set [MQTT-3.3.1-8].
    for (let i = 0; i < packet.subscriptions.length; i++) {
      const granted = returnCodes[i]!;
      if (granted === 0x80) continue;
      for (const retained of this.retainedTree.match(packet.subscriptions[i]!.topicFilter)) {
        // A copy with its own MessageId: the session may still hold an earlier delivery of the
        // same retained message (a repeated SUBSCRIBE), and a MessageId names one delivery per session.
        const copy = new Message(
          this.nextMessageId++,
          retained.topic,
          retained.payload,
          retained.qos,
          true,
          true,
        );
        this.deliver(session, copy, Math.min(retained.qos, granted) as QoS, true);
      }
    }
  }

  handleUnsubscribe(client: Client, packet: UnsubscribePacket): void {
    const session = client.session!;
    for (const filter of packet.topicFilters) {
      // [MQTT-3.10.4-1] filters are compared character by character; [MQTT-3.10.4-2] no new deliveries.
      if (session.unsubscribe(filter)) {
        this.subscriptionTree.remove(filter, session);
        if (this.store !== undefined && !session.isClean)
          this.store.subscriptionRemoved(session.clientId, filter);
      }
      if (this.emitter.has('unsubscribed')) {
        this.emitter.emit('unsubscribed', {
          connectionId: client.id,
          clientId: session.clientId,
          topicFilter: filter,
        });
      }
    }
    // [MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK, even when nothing matched.
    client.sendPacket({ type: 'unsuback', packetId: packet.packetId });
  }

  private isTopicWithinLimits(topic: string): boolean {
    if (topic.length * 3 > this.limits.maxTopicBytes && utf8Length(topic) > this.limits.maxTopicBytes)
      return false;
    let levels = 1;
    for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 0x2f) levels++;
    return levels <= this.limits.maxTopicLevels;
  }

  // Events of message state ---------------------------------------------------------------------

  private incomingEvent(client: Client, session: Session, message: Message, dup: boolean, packetId: number) {
    return {
      connectionId: client.id,
      clientId: session.clientId,
      messageId: message.id,
      dup,
      qos: message.qos,
      retain: message.retain,
      packetId,
      topic: message.topic,
    };
  }

  private incomingStatus(
    client: Client,
    session: Session,
    message: Message,
    dup: boolean,
    packetId: number,
    state: MessageState,
  ): void {
    if (!this.emitter.has('incomingMessageStatus')) return;
    this.emitter.emit('incomingMessageStatus', {
      ...this.incomingEvent(client, session, message, dup, packetId),
      state,
    });
  }

  private outgoingEvent(
    client: Client,
    session: Session,
    delivery: OutboundDelivery,
    name: 'messageSending' | 'messageSent',
  ): void {
    if (!this.emitter.has(name)) return;
    this.emitter.emit(name, {
      connectionId: client.id,
      clientId: session.clientId,
      messageId: delivery.message.id,
      dup: delivery.dup,
      qos: delivery.qos,
      retain: delivery.retain,
      packetId: delivery.packetId === 0 ? -1 : delivery.packetId,
      topic: delivery.message.topic,
    });
  }

  private outgoingStatus(session: Session, delivery: OutboundDelivery): void {
    if (!this.emitter.has('outgoingMessageStatus')) return;
    this.emitter.emit('outgoingMessageStatus', {
      connectionId: session.client?.id ?? '',
      clientId: session.clientId,
      messageId: delivery.message.id,
      dup: delivery.dup,
      qos: delivery.qos,
      retain: delivery.retain,
      packetId: delivery.packetId === 0 ? -1 : delivery.packetId,
      topic: delivery.message.topic,
      state: delivery.state,
    });
  }

  // The embedding program's API -----------------------------------------------------------------

  /**
   * Publishes a message from the server side, as if a client had.
   * @throws CoreError CORE_INVALID_ARGUMENT (referenceCode 601) for an invalid topic name.
   */
  publish(message: { topic: string; payload: Uint8Array | string; qos?: QoS; retain?: boolean }): void {
    const problem = topicNameProblem(message.topic);
    if (problem !== undefined) {
      throw new CoreError('CORE_INVALID_ARGUMENT', `invalid topic "${message.topic}": ${problem}`, {
        referenceCode: 601,
      });
    }
    const qos = message.qos ?? 0;
    if (qos !== 0 && qos !== 1 && qos !== 2)
      throw new CoreError('CORE_INVALID_ARGUMENT', `QoS ${String(qos)} is not 0, 1 or 2`);
    const payload =
      typeof message.payload === 'string' ? textEncoder.encode(message.payload) : copyBytes(message.payload);
    this.route(new Message(this.nextMessageId++, message.topic, payload, qos, message.retain ?? false, true));
  }

  /**
   * Disconnects a client by connection id or client id. Its will is published: a server-side
   * disconnect is an abnormal end for the client [MQTT-3.1.2-8]. Returns whether one was found.
   */
  disconnect(id: string): boolean {
    const client = this.clients.get(id) ?? this.sessionsByClientId.get(id)?.client;
    if (client === undefined) return false;
    this.teardown(client, { publishWill: true, statusCode: 0, description: 'disconnected by the server' });
    return true;
  }

  /**
   * Disconnects everyone (wills are not published: the broker is going away), stops the sweep, and
   * commits and closes the store.
   */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const client of [...this.clients.values()]) {
      this.teardown(client, { publishWill: false, statusCode: 0, description: 'broker shutting down' });
    }
    this.stopSweep();
    if (this.store !== undefined) {
      await this.store.flush();
      await this.store.close();
    }
  }

  /** The connections, as a read-only snapshot. */
  get connections(): ConnectionInfo[] {
    return [...this.clients.values()].map((client) => ({
      connectionId: client.id,
      clientId: client.clientId,
      protocol: client.connection.protocol,
      localAddress: client.connection.localAddress,
      localPort: client.connection.localPort,
      remoteAddress: client.connection.remoteAddress,
      remotePort: client.connection.remotePort,
      username: client.username,
      keepaliveSeconds: client.keepaliveSeconds,
      state: client.state,
    }));
  }

  /** The sessions, connected or stored, as a read-only snapshot. */
  get sessions(): SessionInfo[] {
    return [...this.sessionsByClientId.values()].map((session) => ({
      clientId: session.clientId,
      isConnected: session.client !== undefined,
      isClean: session.isClean,
      subscriptions: [...session.subscriptions].map(([topicFilter, qos]) => ({ topicFilter, qos })),
      incomingMessages: session.incoming.size,
      outgoingMessages: session.inflight.size + session.queuedCount,
    }));
  }

  /** The retained messages (the reference's Messages property): list, add, change and remove. */
  readonly retained = {
    list: (): RetainedMessageInfo[] =>
      [...this.retainedTree].map(([topic, message]) => ({
        topic,
        payload: message.payload,
        qos: message.qos,
        messageId: message.id,
      })),
    get: (topic: string): RetainedMessageInfo | undefined => {
      const message = this.retainedTree.get(topic);
      return message === undefined
        ? undefined
        : { topic, payload: message.payload, qos: message.qos, messageId: message.id };
    },
    /** Adds or replaces the retained message of a topic. It is not sent to current subscribers. */
    set: (topic: string, payload: Uint8Array | string, qos: QoS = 0): void => {
      const problem = topicNameProblem(topic);
      if (problem !== undefined)
        throw new CoreError('CORE_INVALID_ARGUMENT', `invalid topic "${topic}": ${problem}`, {
          referenceCode: 601,
        });
      const bytes = typeof payload === 'string' ? textEncoder.encode(payload) : copyBytes(payload);
      if (bytes.length === 0) {
        if (this.retainedTree.delete(topic)) this.store?.retainedCleared(topic);
        return;
      }
      const message = new Message(this.nextMessageId++, topic, bytes, qos, true, true);
      this.retainedTree.set(topic, message);
      this.recordRetained(message);
    },
    delete: (topic: string): boolean => {
      const isDeleted = this.retainedTree.delete(topic);
      if (isDeleted) this.store?.retainedCleared(topic);
      return isDeleted;
    },
  };

  /** The number of retained messages. */
  get retainedCount(): number {
    return this.retainedTree.size;
  }

  /**
   * A plain snapshot of a session (subscriptions, incoming and outgoing messages with their states),
   * for `@broker/persistence` to turn into the reference's JSON.
   * @throws CoreError CORE_SESSION_NOT_FOUND when there is no session for the client id.
   */
  saveSession(clientId: string): SessionSnapshot {
    const session = this.sessionsByClientId.get(clientId);
    if (session === undefined)
      throw new CoreError('CORE_SESSION_NOT_FOUND', `no session for client "${clientId}"`);
    return snapshotSession(session);
  }

  /**
   * Restores a session from a snapshot, replacing a stored session of that client id. A session whose
   * client is connected right now is not replaced: the call throws and changes nothing.
   * @throws CoreError CORE_INVALID_ARGUMENT for an invalid snapshot or a connected client.
   */
  loadSession(snapshot: SessionSnapshot): void {
    const existing = this.sessionsByClientId.get(snapshot.clientId);
    if (existing?.client !== undefined) {
      throw new CoreError(
        'CORE_INVALID_ARGUMENT',
        `client "${snapshot.clientId}" is connected; its session cannot be replaced`,
      );
    }
    const session = restoreSession(snapshot, (id) => {
      if (id >= this.nextMessageId) this.nextMessageId = id + 1;
    });
    if (existing !== undefined) this.removeSession(existing);
    this.sessionsByClientId.set(session.clientId, session);
    for (const [filter, qos] of session.subscriptions) this.subscriptionTree.add(filter, session, qos);
    this.store?.sessionReplaced(snapshotSession(session));
  }
}

/**
 * Writes one PUBLISH to a client: the shared frame at QoS 0, else a copy with this receiver's packet
 * identifier. A large payload is never copied: its own head goes first and the shared payload after
 * it, and the transport sends both in one writev.
 */
function sendPublish(client: Client, frame: PublishFrame, packetId: number, dup: boolean): void {
  if (!frame.isSplit) {
    client.send(packetId === 0 ? frame.bytes : frame.withPacketId(packetId, dup));
    return;
  }
  client.send(packetId === 0 ? frame.head : frame.headWithPacketId(packetId, dup));
  const parts = frame.payloadParts;
  for (let i = 0; i < parts.length; i++) client.send(parts[i]!);
}

const textEncoder = new TextEncoder();
const CONNACK_NEW_SESSION = encode({ type: 'connack', sessionPresent: false, returnCode: 0 });
const CONNACK_SESSION_PRESENT = encode({ type: 'connack', sessionPresent: true, returnCode: 0 });

function isPromiseLike<T>(value: Decision<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

function truncate(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * One recorded delivery of `message` completed or dropped: when it was the last, the publisher's
 * acknowledgement held for it may go (see `Client.sendAck`).
 */
function settleDelivery(message: Message): void {
  if (message.unsettledDeliveries > 0 && --message.unsettledDeliveries === 0)
    message.ackWaiter?.releaseAcks();
}
