import type { ConnackReturnCode, QoS } from '@broker/codec';
import type { Clock } from './ports.js';
import type { Store } from './store.js';

/** Limits and timeouts of the engine. Every one has a default; see the README's table. */
export interface BrokerLimits {
  /** Largest packet accepted, fixed header included. Default 16 MiB (the protocol allows 256 MiB). */
  maxPacketBytes: number;
  /** QoS 1 and 2 messages sent to one client and not yet acknowledged. Default 64. */
  maxInflightMessages: number;
  /** Messages waiting per session (offline, or beyond the in-flight window). Default 1,000; new ones beyond are dropped. */
  maxQueuedMessages: number;
  /** Bytes a topic name or filter may take. Default 65,535. */
  maxTopicBytes: number;
  /** Levels a topic name or filter may have. Default 128. */
  maxTopicLevels: number;
  /** Subscriptions one session may hold; further ones get SUBACK 0x80. Default 10,000. */
  maxSubscriptionsPerClient: number;
  /** Simultaneous connections; more are closed at once. Default unlimited (Infinity). */
  maxConnections: number;
  /** Bytes a client identifier may take; a longer one gets CONNACK 0x02. Default 65,535. */
  maxClientIdBytes: number;
  /** A connection that has not completed CONNECT in this time is closed [MQTT-3.1.0-1]. Default 10 s. */
  connectTimeoutMs: number;
  /** The reference's DefaultIdleTimeout: close clients that sent and received nothing for this long. 0 = off (default). */
  idleTimeoutSeconds: number;
  /** QoS 0 messages are dropped for a client whose unsent output exceeds this. Default 1 MiB. */
  maxOutgoingBufferBytes: number;
  /** A client whose output stays above the high-water mark this long is disconnected. Default 60 s. */
  drainTimeoutMs: number;
  /**
   * Publisher flow control: when a message goes to a connected subscriber whose backlog (bytes queued
   * for it in the broker plus bytes buffered in its connection) exceeds this, the connection that
   * published it is not read until that backlog has halved. Fast publishers then run at the pace of
   * the subscribers that keep up, instead of the broker buffering the difference. 0 turns it off.
   * Default 256 KiB.
   */
  flowControlBytes: number;
  /**
   * A subscriber that has held publishers this long is a slow consumer: it holds nobody until its
   * backlog has drained, and its messages queue (and are dropped) under maxQueuedMessages and
   * maxOutgoingBufferBytes. So one slow subscriber cannot slow everyone down. Default 1 s.
   */
  flowControlMaxHoldMs: number;
  /** An async decision that takes longer refuses. Default 10 s. */
  hookTimeoutMs: number;
  /** How often the single sweep checks timeouts. Default 1 s. */
  sweepIntervalMs: number;
}

export const DEFAULT_LIMITS: Readonly<BrokerLimits> = Object.freeze({
  maxPacketBytes: 16 * 1024 * 1024,
  maxInflightMessages: 64,
  maxQueuedMessages: 1000,
  maxTopicBytes: 65_535,
  maxTopicLevels: 128,
  maxSubscriptionsPerClient: 10_000,
  maxConnections: Number.POSITIVE_INFINITY,
  maxClientIdBytes: 65_535,
  connectTimeoutMs: 10_000,
  idleTimeoutSeconds: 0,
  maxOutgoingBufferBytes: 1024 * 1024,
  drainTimeoutMs: 60_000,
  flowControlBytes: 4 * 1024 * 1024,
  flowControlMaxHoldMs: 1000,
  hookTimeoutMs: 10_000,
  sweepIntervalMs: 1000,
});

/** A decision may be given at once or later: authentication may query a database. */
export type Decision<T> = T | Promise<T>;

export interface ConnectionRequest {
  connectionId: string;
  remoteAddress: string;
  remotePort: number;
  protocol: string;
}

/** The reference's SessionRequest: credentials of a CONNECT, before it is accepted. */
export interface SessionRequest {
  connectionId: string;
  clientId: string;
  username: string | undefined;
  password: Uint8Array | undefined;
  /** The clean-session flag of the CONNECT (the reference's IsNew). */
  isNew: boolean;
  /** Whether a stored session exists for this client id. */
  hasStoredSession: boolean;
  remoteAddress: string;
  protocol: string;
}

/**
 * The answer to a session request: true accepts; false refuses with CONNACK 0x05 (not authorized);
 * a number refuses with that CONNACK return code (0x01–0x05).
 */
export type SessionDecision = boolean | ConnackReturnCode;

export interface SubscribeRequest {
  connectionId: string;
  clientId: string;
  username: string | undefined;
  topicFilter: string;
  requestedQos: QoS;
}

export interface PublishRequest {
  connectionId: string;
  clientId: string;
  username: string | undefined;
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
}

export interface DeliveryRequest {
  clientId: string;
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
}

/** What a delivery filter may answer: deliver as is (undefined/true), drop (false), or rewrite. */
export type DeliveryDecision = boolean | undefined | { topic?: string; payload?: Uint8Array };

/**
 * Decisions the embedding program makes. Each is optional; without it the broker accepts. A hook
 * that throws, rejects or takes longer than `hookTimeoutMs` refuses, and a log line says why.
 */
export interface BrokerHooks {
  /** The reference's ConnectionRequest: accept a connection before anything is read from it. */
  connectionRequest?: ((request: ConnectionRequest) => Decision<boolean>) | undefined;
  /** The reference's SessionRequest: authenticate a CONNECT. */
  authenticate?: ((request: SessionRequest) => Decision<SessionDecision>) | undefined;
  /** The reference's Subscribe event: return the SUBACK code, the requested QoS or lower, or 0x80. */
  authorizeSubscribe?: ((request: SubscribeRequest) => Decision<number>) | undefined;
  /** Whether a client may publish this message; a refused one is acknowledged and dropped. */
  authorizePublish?: ((request: PublishRequest) => Decision<boolean>) | undefined;
  /** Per receiver, synchronous: drop or rewrite one delivery. */
  filterDelivery?: ((request: DeliveryRequest) => DeliveryDecision) | undefined;
}

export interface BrokerOptions {
  limits?: Partial<BrokerLimits>;
  hooks?: BrokerHooks;
  clock?: Clock;
  /** Makes persistent sessions and retained messages durable; call `restore()` before accepting. Default: none (memory only). */
  store?: Store | undefined;
  /** Prefix of client identifiers the broker assigns to clients that send an empty one. Default 'auto-'. */
  assignedClientIdPrefix?: string;
}
