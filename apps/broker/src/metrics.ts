/**
 * The metrics endpoint: a small node:http server on its own port.
 * - GET /metrics: Prometheus text format (prom-client), `mqtt_broker_*` plus the process metrics;
 * - GET /healthz: 200 "ok" while the broker's listeners accept connections, else 503;
 * - any other path: 404; another method on those two paths: 405.
 *
 * Values are read from BrokerStats when Prometheus scrapes, not pushed on every message: one
 * snapshot per scrape sets every gauge, and the counters are advanced by what changed since the
 * previous scrape (prom-client counters can only be incremented).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { MqttBroker } from './mqtt-broker.js';
import type { BrokerStats, DropReason, StatsSnapshot } from './stats.js';

export interface MetricsServerOptions {
  /** 0 picks a free port; the bound one is returned. */
  port: number;
  host: string;
}

export interface MetricsServer {
  /** The bound port. */
  port: number;
  /** Stops the server and closes open (keep-alive) connections. */
  close(): Promise<void>;
}

/** The registry with the broker's metrics, filled from `stats` by `update()`. */
function createBrokerMetrics(broker: MqttBroker, stats: BrokerStats) {
  // A private registry: the global one would mix in whatever else the process registers and
  // refuse a second broker in the same process (tests) with "already registered".
  const register = new Registry();
  collectDefaultMetrics({ register });
  const registers = [register];
  const gauge = (name: string, help: string) => new Gauge({ name, help, registers });
  // A counter following a running total of the stats, and what the total was at the previous scrape.
  const total = (name: string, help: string, read: (s: StatsSnapshot) => number) => ({
    counter: new Counter({ name, help, registers }),
    read,
    last: 0,
  });

  const connected = gauge('mqtt_broker_connected_clients', 'Clients connected now.');
  const maximum = gauge(
    'mqtt_broker_connected_clients_maximum',
    'Most clients connected at once since the start.',
  );
  const sessions = gauge(
    'mqtt_broker_sessions',
    'Sessions, connected or not (offline persistent ones included).',
  );
  const offline = gauge(
    'mqtt_broker_sessions_disconnected',
    'Sessions without a connection (offline persistent).',
  );
  const subscriptions = gauge('mqtt_broker_subscriptions', 'Subscriptions over all sessions.');
  const retained = gauge('mqtt_broker_retained_messages', 'Retained messages, the $SYS topics included.');
  const uptime = gauge('mqtt_broker_uptime_seconds', 'Seconds since the broker started.');
  const listening = gauge('mqtt_broker_listening', '1 while the listeners accept connections, else 0.');
  // Registered only while the store can tell: a 0 would claim an empty store.
  const stored = new Gauge({
    name: 'mqtt_broker_stored_messages',
    help: 'Messages in the durable store.',
    registers: [],
  });
  let isStoredRegistered = false;
  const totals = [
    total(
      'mqtt_broker_messages_received_total',
      'PUBLISH messages received from clients.',
      (s) => s.messagesReceived,
    ),
    total('mqtt_broker_messages_sent_total', 'PUBLISH messages delivered to clients.', (s) => s.messagesSent),
    total('mqtt_broker_bytes_received_total', 'Bytes read from client connections.', (s) => s.bytesReceived),
    total('mqtt_broker_bytes_sent_total', 'Bytes written to client connections.', (s) => s.bytesSent),
    total(
      'mqtt_broker_publisher_holds_total',
      "Times a publisher was not read because a subscriber's backlog held it (flow control).",
      (s) => s.publisherHolds,
    ),
    total(
      'mqtt_broker_slow_consumers_total',
      'Times a subscriber held publishers longer than flowControlMaxHoldMs and became a slow consumer.',
      (s) => s.slowConsumers,
    ),
  ];
  const dropped = new Counter({
    name: 'mqtt_broker_messages_dropped_total',
    help: 'Messages dropped: queue-full, backpressure, filtered or not-authorized.',
    labelNames: ['reason'],
    registers,
  });

  // What the dropped counters showed at the previous scrape.
  const lastDropped: Record<DropReason, number> = {
    'queue-full': 0,
    backpressure: 0,
    filtered: 0,
    'not-authorized': 0,
  };
  for (const reason of Object.keys(lastDropped) as DropReason[]) dropped.inc({ reason }, 0);

  const update = (): void => {
    const s = stats.snapshot();
    connected.set(s.clientsConnected);
    maximum.set(s.clientsMaximum);
    sessions.set(s.clientsTotal);
    offline.set(s.clientsDisconnected);
    subscriptions.set(s.subscriptions);
    retained.set(s.retainedMessages);
    uptime.set(s.uptimeSeconds);
    listening.set(broker.listening ? 1 : 0);
    if (s.storedMessages === undefined) {
      if (isStoredRegistered) register.removeSingleMetric('mqtt_broker_stored_messages');
      isStoredRegistered = false;
    } else {
      if (!isStoredRegistered) register.registerMetric(stored);
      isStoredRegistered = true;
      stored.set(s.storedMessages);
    }
    for (const t of totals) {
      const now = t.read(s);
      t.counter.inc(now - t.last);
      t.last = now;
    }
    for (const reason of Object.keys(lastDropped) as DropReason[]) {
      const now = s.droppedByReason[reason];
      dropped.inc({ reason }, now - lastDropped[reason]);
      lastDropped[reason] = now;
    }
  };
  return { register, update };
}

/**
 * Starts the metrics endpoint. Resolves once listening; rejects (nothing left open) when the port
 * cannot be bound.
 */
export async function startMetricsServer(
  broker: MqttBroker,
  stats: BrokerStats,
  options: MetricsServerOptions,
): Promise<MetricsServer> {
  const { register, update } = createBrokerMetrics(broker, stats);

  const send = (res: ServerResponse, status: number, contentType: string, body: string): void => {
    res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const text = 'text/plain; charset=utf-8';

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    if (path !== '/metrics' && path !== '/healthz') return send(res, 404, text, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, text, 'method not allowed\n');
    }
    if (path === '/healthz') {
      return broker.listening ? send(res, 200, text, 'ok\n') : send(res, 503, text, 'not listening\n');
    }
    update();
    send(res, 200, register.contentType, await register.metrics());
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) send(res, 500, text, `metrics failed: ${String(error)}\n`);
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => {
      reject(
        new Error(`metrics endpoint cannot listen on ${options.host}:${options.port}: ${error.message}`, {
          cause: error,
        }),
      );
    };
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });

  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        // Prometheus keeps its connection alive between scrapes; without this close() would wait for it.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
