/**
 * Running totals of the engine, kept as plain integers so that statistics ($SYS topics, metrics)
 * cost one increment per message instead of an event object per message.
 */
export class BrokerCounters {
  /** PUBLISH packets accepted from clients (not server-side publishes or wills). */
  messagesReceived = 0;
  /** PUBLISH deliveries completed: QoS 0 when written, QoS 1 at PUBACK, QoS 2 at PUBCOMP. */
  messagesSent = 0;
  /** Deliveries not made, all reasons. */
  messagesDropped = 0;
  droppedQueueFull = 0;
  droppedBackpressure = 0;
  droppedFiltered = 0;
  droppedNotAuthorized = 0;
  /** Bytes read from and written to client connections, all packet types. */
  bytesReceived = 0;
  bytesSent = 0;
  /** Clients whose CONNECT was accepted and that are still connected. */
  clientsConnected = 0;
  /** The most clients connected at once. */
  clientsMaximum = 0;
  /** Times a publisher was held because a subscriber it published to had a backlog (flow control). */
  publisherHolds = 0;
  /** Times a subscriber held publishers longer than flowControlMaxHoldMs and became a slow consumer. */
  slowConsumers = 0;
}
