/**
 * The $SYS topics, after Mosquitto's hierarchy: retained messages published from the server side
 * every `intervalSeconds`. The first round (at start) publishes every topic; later rounds publish
 * only topics whose text changed, as Mosquitto does, so an idle broker sends little more than
 * `uptime`. Retained, so a new subscriber gets the last value of each at once.
 *
 * Clients subscribed to `#` or `+/...` do not get these: core never matches a `$` topic with a
 * first-level wildcard [MQTT-4.7.2-1].
 *
 * Differences from Mosquitto, on purpose:
 * - `messages/received|sent` count PUBLISH messages (Mosquitto counts every packet type there);
 *   the same values also go to Mosquitto's `publish/messages/received|sent`, whose meaning they match.
 * - `flow-control/holds` and `flow-control/slow-consumers` are ours (see core's publisher flow control).
 * - `messages/dropped` is ours (also as `publish/messages/dropped`): every dropped message, all reasons.
 * - `bytes/received|sent` count every packet's bytes on client connections, as Mosquitto's do.
 * - `store/messages/count` is published only when the store can tell.
 */
import type { MqttBroker } from './mqtt-broker.js';
import type { BrokerStats, StatsSnapshot } from './stats.js';

export interface SysTopicsOptions {
  /** Seconds between rounds; 0 turns the $SYS topics off. */
  intervalSeconds: number;
  /** Text of `$SYS/broker/version`, e.g. "mqtt-broker 0.1.0". */
  version: string;
  /** Told when a round fails (e.g. the store refused the retained message); default: ignored. */
  onError?: (error: unknown) => void;
}

export interface SysTopics {
  /** Stops publishing. The retained values stay, as Mosquitto leaves them. */
  stop(): void;
}

/** setInterval's limit: a longer delay is silently turned into 1 ms by Node. */
const MAX_INTERVAL_SECONDS = Math.floor(2_147_483_647 / 1000);

/** Every topic this module publishes and its text; undefined = not published (value not known). */
const TOPICS: ReadonlyArray<readonly [string, (s: StatsSnapshot, version: string) => string | undefined]> = [
  ['$SYS/broker/version', (_, version) => version],
  ['$SYS/broker/uptime', (s) => `${s.uptimeSeconds} seconds`],
  ['$SYS/broker/clients/connected', (s) => String(s.clientsConnected)],
  ['$SYS/broker/clients/disconnected', (s) => String(s.clientsDisconnected)],
  ['$SYS/broker/clients/total', (s) => String(s.clientsTotal)],
  ['$SYS/broker/clients/maximum', (s) => String(s.clientsMaximum)],
  ['$SYS/broker/messages/received', (s) => String(s.messagesReceived)],
  ['$SYS/broker/messages/sent', (s) => String(s.messagesSent)],
  ['$SYS/broker/messages/dropped', (s) => String(s.messagesDropped)],
  ['$SYS/broker/publish/messages/received', (s) => String(s.messagesReceived)],
  ['$SYS/broker/publish/messages/sent', (s) => String(s.messagesSent)],
  ['$SYS/broker/publish/messages/dropped', (s) => String(s.messagesDropped)],
  ['$SYS/broker/flow-control/holds', (s) => String(s.publisherHolds)],
  ['$SYS/broker/flow-control/slow-consumers', (s) => String(s.slowConsumers)],
  ['$SYS/broker/bytes/received', (s) => String(s.bytesReceived)],
  ['$SYS/broker/bytes/sent', (s) => String(s.bytesSent)],
  ['$SYS/broker/subscriptions/count', (s) => String(s.subscriptions)],
  ['$SYS/broker/retained messages/count', (s) => String(s.retainedMessages)],
  [
    '$SYS/broker/store/messages/count',
    (s) => (s.storedMessages === undefined ? undefined : String(s.storedMessages)),
  ],
];

/**
 * Starts publishing the $SYS topics: one round now, then one every `intervalSeconds` (on an
 * unref'd timer, so it never keeps the process alive). Call it after `startListening()`: restoring
 * the store there would replace the fresh values with stored ones.
 * @throws RangeError when intervalSeconds is negative, not a number or beyond setInterval's range.
 */
export function startSysTopics(broker: MqttBroker, stats: BrokerStats, options: SysTopicsOptions): SysTopics {
  const { intervalSeconds, version, onError } = options;
  if (!Number.isFinite(intervalSeconds) || intervalSeconds < 0 || intervalSeconds > MAX_INTERVAL_SECONDS) {
    throw new RangeError(
      `sys intervalSeconds must be 0 (off) to ${MAX_INTERVAL_SECONDS}, got ${intervalSeconds}`,
    );
  }
  if (intervalSeconds === 0) {
    // Retained values from an earlier run with $SYS on (restored from the store) would otherwise be
    // served for ever as if current.
    for (const [topic] of TOPICS) broker.messages.remove(topic);
    return { stop: () => undefined };
  }

  // The text last published per topic: a topic is published again only when its text changes.
  const published = new Map<string, string>();
  let isFirstRound = true;
  const round = (): void => {
    try {
      const snapshot = stats.snapshot();
      for (const [topic, textOf] of TOPICS) {
        const text = textOf(snapshot, version);
        if (text === undefined) {
          // A value not known now must not be served from an earlier run's retained message.
          if (isFirstRound) broker.messages.remove(topic);
          continue;
        }
        if (published.get(topic) === text) continue;
        broker.publish(topic, text, 0, true);
        // Only after the publish succeeded, so a failed one is tried again next round.
        published.set(topic, text);
      }
      isFirstRound = false;
    } catch (error) {
      onError?.(error);
    }
  };

  round();
  const timer = setInterval(round, intervalSeconds * 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
