/**
 * BrokerStats: the values behind the $SYS topics and the metrics endpoint.
 *
 * Cost model: nothing per message here. Core keeps plain integer counters (messages received, sent
 * and dropped, bytes in and out, clients connected and maximum), one increment each, so the stats
 * read them instead of listening to per-message events (listening made core build an event object
 * per delivery, which cost about a quarter of the throughput in a fan-out). Everything that needs a
 * walk over sessions (total, disconnected, subscriptions) is computed in `snapshot()`, once per $SYS
 * round or metrics scrape.
 */
import type { MqttBroker, MqttBrokerEvents } from './mqtt-broker.js';

export type DropReason = MqttBrokerEvents['messageDropped']['reason'];

export interface BrokerStatsOptions {
  /**
   * Messages held by the durable store, when the store can tell; undefined means not known. The
   * facade does not expose this yet, so it is a callback the server may pass later.
   */
  storedMessages?: () => number | undefined;
}

/** Every value at one moment. */
export interface StatsSnapshot {
  /** Whole seconds since the stats were attached (the server's start). */
  uptimeSeconds: number;
  /** Clients whose CONNECT was accepted and that are still connected. */
  clientsConnected: number;
  /** Sessions, connected or not (offline persistent sessions included), as Mosquitto's clients/total. */
  clientsTotal: number;
  /** Sessions without a connection: offline persistent sessions. */
  clientsDisconnected: number;
  /** The most clients connected at once since the start. */
  clientsMaximum: number;
  /** PUBLISH messages received from clients (server-side publishes and wills are not counted). */
  messagesReceived: number;
  /** PUBLISH messages delivered to clients ($SYS deliveries included, as in Mosquitto). */
  messagesSent: number;
  /** Messages not delivered or not accepted, all reasons. */
  messagesDropped: number;
  droppedByReason: Readonly<Record<DropReason, number>>;
  /** Times a publisher was held by a subscriber's backlog (publisher flow control). */
  publisherHolds: number;
  /** Times a subscriber became a slow consumer (held publishers longer than flowControlMaxHoldMs). */
  slowConsumers: number;
  /** Bytes of every packet read from and written to clients. */
  bytesReceived: number;
  bytesSent: number;
  /** Subscriptions over all sessions. */
  subscriptions: number;
  /** Retained messages (the retained $SYS topics included). */
  retainedMessages: number;
  /** Messages in the durable store, when known. */
  storedMessages: number | undefined;
}

export class BrokerStats {
  /** When the stats were attached, in ms since the epoch. */
  readonly startedAtMs: number;

  constructor(
    private readonly broker: MqttBroker,
    private readonly options: BrokerStatsOptions = {},
  ) {
    this.startedAtMs = Date.now();
  }

  private get counters() {
    return this.broker.core.counters;
  }

  get clientsConnected(): number {
    return this.counters.clientsConnected;
  }

  get clientsMaximum(): number {
    return this.counters.clientsMaximum;
  }

  get messagesReceived(): number {
    return this.counters.messagesReceived;
  }

  get messagesSent(): number {
    return this.counters.messagesSent;
  }

  get messagesDropped(): number {
    return this.counters.messagesDropped;
  }

  get bytesReceived(): number {
    return this.counters.bytesReceived;
  }

  get bytesSent(): number {
    return this.counters.bytesSent;
  }

  get uptimeSeconds(): number {
    return Math.floor((Date.now() - this.startedAtMs) / 1000);
  }

  /**
   * All values now. Walks the sessions once (O(sessions + subscriptions), with core's snapshot
   * allocation), so call it per round or scrape, not per message.
   */
  snapshot(): StatsSnapshot {
    let total = 0;
    let disconnected = 0;
    let subscriptions = 0;
    for (const s of this.broker.core.sessions) {
      total++;
      if (!s.isConnected) disconnected++;
      subscriptions += s.subscriptions.length;
    }
    const c = this.counters;
    return {
      uptimeSeconds: this.uptimeSeconds,
      clientsConnected: c.clientsConnected,
      clientsTotal: total,
      clientsDisconnected: disconnected,
      clientsMaximum: c.clientsMaximum,
      messagesReceived: c.messagesReceived,
      messagesSent: c.messagesSent,
      messagesDropped: c.messagesDropped,
      droppedByReason: {
        'queue-full': c.droppedQueueFull,
        backpressure: c.droppedBackpressure,
        filtered: c.droppedFiltered,
        'not-authorized': c.droppedNotAuthorized,
      },
      publisherHolds: c.publisherHolds,
      slowConsumers: c.slowConsumers,
      bytesReceived: c.bytesReceived,
      bytesSent: c.bytesSent,
      subscriptions,
      retainedMessages: this.broker.core.retainedCount,
      storedMessages: this.options.storedMessages?.(),
    };
  }

  /** Kept for symmetry with earlier versions: the stats hold no listeners, so there is nothing to detach. */
  detach(): void {}
}
