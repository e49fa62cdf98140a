import type { QoS } from '@broker/codec';
import type { MessageState } from './message.js';

/** Log levels of the reference component: 0 none, 1 info, 2 verbose, 3 debug. */
export type LogLevel = 0 | 1 | 2 | 3;
/** Log types of the reference component. */
export type LogType = 'Info' | 'Session' | 'Frame';

export interface ConnectedEvent {
  connectionId: string;
  clientId: string;
  /** 0 on success. */
  statusCode: number;
  description: string;
  sessionPresent: boolean;
}

export interface DisconnectedEvent {
  connectionId: string;
  /** Undefined when the connection closed before CONNECT was accepted. */
  clientId: string | undefined;
  /** 0 for a normal close (DISCONNECT or server shutdown), else the reference's error number (600, …). */
  statusCode: number;
  description: string;
  /** Whether the will message was published. */
  willPublished: boolean;
}

/** A message's identity and flags, as the reference's message events carry them. */
export interface MessageEvent {
  connectionId: string;
  clientId: string;
  messageId: number;
  dup: boolean;
  qos: QoS;
  retain: boolean;
  /** -1 for QoS 0. */
  packetId: number;
  topic: string;
}

export interface MessageStatusEvent extends MessageEvent {
  state: MessageState;
}

export interface MessageDroppedEvent {
  clientId: string;
  messageId: number;
  topic: string;
  qos: QoS;
  reason: 'queue-full' | 'backpressure' | 'filtered' | 'not-authorized';
}

export interface SessionRemovedEvent {
  clientId: string;
}

export interface SubscribedEvent {
  connectionId: string;
  clientId: string;
  topicFilter: string;
  requestedQos: QoS;
  /** The SUBACK return code sent: the granted QoS or 0x80. */
  returnCode: number;
}

export interface UnsubscribedEvent {
  connectionId: string;
  clientId: string;
  topicFilter: string;
}

export interface LogEvent {
  connectionId: string;
  level: LogLevel;
  type: LogType;
  message: string;
}

export interface ErrorEvent {
  connectionId: string;
  /** The reference's error number: 600 protocol error, 601 invalid topic. */
  errorCode: number;
  /** The stable string code of the error (CODEC_…, CORE_…). */
  code: string;
  description: string;
}

/** Every event the broker emits, by name. */
export interface BrokerEvents {
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  sessionRemoved: SessionRemovedEvent;
  subscribed: SubscribedEvent;
  unsubscribed: UnsubscribedEvent;
  messageReceiving: MessageEvent;
  messageReceived: MessageEvent;
  messageSending: MessageEvent;
  messageSent: MessageEvent;
  incomingMessageStatus: MessageStatusEvent;
  outgoingMessageStatus: MessageStatusEvent;
  messageDropped: MessageDroppedEvent;
  log: LogEvent;
  error: ErrorEvent;
}

export type BrokerEventName = keyof BrokerEvents;
type Listener<K extends BrokerEventName> = (event: BrokerEvents[K]) => void;

/**
 * A small typed emitter. The broker asks `has(name)` before it builds an event object, so with no
 * listener registered the hot path allocates nothing for events.
 */
export class BrokerEmitter {
  // Every name is present from the start (undefined when nobody listens) and never deleted, so the
  // object keeps one shape and `has` — asked on every delivery — is a plain property load.
  private readonly listeners: { [K in BrokerEventName]: Array<Listener<K>> | undefined } = {
    connected: undefined,
    disconnected: undefined,
    sessionRemoved: undefined,
    subscribed: undefined,
    unsubscribed: undefined,
    messageReceiving: undefined,
    messageReceived: undefined,
    messageSending: undefined,
    messageSent: undefined,
    incomingMessageStatus: undefined,
    outgoingMessageStatus: undefined,
    messageDropped: undefined,
    log: undefined,
    error: undefined,
  };

  on<K extends BrokerEventName>(name: K, listener: Listener<K>): this {
    const list = this.listeners[name] as Array<Listener<K>> | undefined;
    // Copy on write: emit iterates the array it read, so adding during an emit does not disturb it.
    (this.listeners as Record<string, unknown>)[name] = list === undefined ? [listener] : [...list, listener];
    return this;
  }

  off<K extends BrokerEventName>(name: K, listener: Listener<K>): this {
    const list = this.listeners[name] as Array<Listener<K>> | undefined;
    if (list !== undefined) {
      const rest = list.filter((l) => l !== listener);
      (this.listeners as Record<string, unknown>)[name] = rest.length === 0 ? undefined : rest;
    }
    return this;
  }

  has(name: BrokerEventName): boolean {
    return this.listeners[name] !== undefined;
  }

  /** Calls each listener; a listener that throws is reported as an `error` event, never to the caller. */
  emit<K extends BrokerEventName>(name: K, event: BrokerEvents[K]): void {
    const list = this.listeners[name] as Array<Listener<K>> | undefined;
    if (list === undefined) return;
    for (const listener of list) {
      try {
        listener(event);
      } catch (error) {
        if (name !== 'error') {
          this.emit('error', {
            connectionId: (event as { connectionId?: string }).connectionId ?? '',
            errorCode: 600,
            code: 'CORE_HOOK_FAILED',
            description: `a '${name}' listener threw: ${String(error)}`,
          });
        }
      }
    }
  }
}
