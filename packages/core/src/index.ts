export { ManualClock, systemClock } from './clock.js';
export { BrokerCounters } from './counters.js';
export {
  Broker,
  type ConnectionInfo,
  type RetainedMessageInfo,
  type SessionInfo,
} from './engine/broker.js';
export type { ClientState } from './engine/client.js';
export { CoreError, type CoreErrorCode, isBrokerError } from './errors.js';
export type {
  BrokerEventName,
  BrokerEvents,
  ConnectedEvent,
  DisconnectedEvent,
  ErrorEvent,
  LogEvent,
  LogLevel,
  LogType,
  MessageDroppedEvent,
  MessageEvent,
  MessageStatusEvent,
  SessionRemovedEvent,
  SubscribedEvent,
  UnsubscribedEvent,
} from './events.js';
export { IntMap, type ReadonlyIntMap } from './int-map.js';
export { type ConnectionPairOptions, createConnectionPair, type MemoryPeer } from './memory-connection.js';
export { MemoryStore } from './memory-store.js';
export { MessageState } from './message.js';
export {
  type BrokerHooks,
  type BrokerLimits,
  type BrokerOptions,
  type ConnectionRequest,
  DEFAULT_LIMITS,
  type Decision,
  type DeliveryDecision,
  type DeliveryRequest,
  type PublishRequest,
  type SessionDecision,
  type SessionRequest,
  type SubscribeRequest,
} from './options.js';
export type { Clock, Connection, ConnectionHandler } from './ports.js';
export type { MessageSnapshot, SessionSnapshot } from './snapshot.js';
export type { Store, StoreContents, StoredDelivery, StoredMessage } from './store.js';
