/**
 * The runnable server: a MqttBroker built from a ServerConfig, with its store, listeners, logging,
 * users and ACLs, $SYS topics and metrics endpoint, and a graceful stop.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryStore, type Store } from '@broker/core';
import { LogStore } from '@broker/persistence/log';
import { SqliteStore } from '@broker/persistence/sqlite';
import type { TlsCertificate } from '@broker/transport';
import type { Logger } from 'pino';
import { type InstalledAuth, installAuth } from './auth.js';
import type { ServerConfig } from './config.js';
import { attachLogger, createLogger } from './logging.js';
import { type MetricsServer, startMetricsServer } from './metrics.js';
import { MqttBroker } from './mqtt-broker.js';
import { BrokerStats } from './stats.js';
import { startSysTopics } from './sys-topics.js';

export interface RunningServer {
  broker: MqttBroker;
  logger: Logger;
  config: ServerConfig;
  stats: BrokerStats;
  /** The metrics endpoint's bound port, when one is configured. */
  metricsPort: number | undefined;
  /** Re-reads the password and ACL files (SIGHUP); false, with a log line, if they are broken. */
  reloadAuth(): boolean;
  /** Stops listening, disconnects everyone, commits the store. */
  stop(): Promise<void>;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function certificateOf(entry: ServerConfig['listeners'][number]): TlsCertificate | undefined {
  const c = entry.certificate;
  if (c === undefined) return undefined;
  if ('pfxFile' in c)
    return { kind: 'pfx', file: c.pfxFile, ...(c.password === undefined ? {} : { password: c.password }) };
  return {
    kind: 'pem',
    certFile: c.certFile,
    keyFile: c.keyFile,
    ...(c.chainFile === undefined ? {} : { chainFile: c.chainFile }),
    ...(c.passphrase === undefined ? {} : { passphrase: c.passphrase }),
  };
}

/** The durable store's file of each kind, as the stores name it by default. */
const STORE_FILES = { log: 'broker.log', sqlite: 'broker.sqlite' } as const;

/**
 * Opens the configured store. A data folder that holds only the other kind's file is refused: opening
 * an empty store there would start without the sessions the folder keeps (the default kind changed
 * from SQLite to the log store, so an older folder meets this), which is worse than not starting.
 */
function openStore(config: ServerConfig['store']): Store {
  if (config.type === 'memory') return new MemoryStore();
  const other = config.type === 'log' ? 'sqlite' : 'log';
  const has = (kind: keyof typeof STORE_FILES) => existsSync(join(config.dataDir, STORE_FILES[kind]));
  if (!has(config.type) && has(other)) {
    throw new Error(
      `${config.dataDir} holds a ${other} store (${STORE_FILES[other]}), not a ${config.type} store: set ` +
        `"store: { type: ${other}, dataDir: ... }" in the config to keep using it, or use another data directory`,
    );
  }
  return config.type === 'sqlite'
    ? SqliteStore.open({ dataDir: config.dataDir })
    : LogStore.open({ dataDir: config.dataDir });
}

/** Starts a server. Rejects (having cleaned up) when a listener or the store cannot start. */
export async function startServer(
  config: ServerConfig,
  logger: Logger = createLogger(config.logging),
): Promise<RunningServer> {
  const store: Store = openStore(config.store);
  const broker = new MqttBroker({
    store,
    // Keys the config left out must be absent, not undefined, for core's limits.
    limits: Object.fromEntries(Object.entries(config.limits).filter(([, v]) => v !== undefined)),
    settings: {
      LogLevel: logger.isLevelEnabled('trace')
        ? 3
        : logger.isLevelEnabled('debug')
          ? 2
          : logger.isLevelEnabled('info')
            ? 1
            : 0,
      ...(config.tls.enabledProtocols === undefined
        ? {}
        : { SSLEnabledProtocols: config.tls.enabledProtocols.join(',') }),
      ...(config.tls.ciphers === undefined ? {} : { SSLEnabledCipherSuites: config.tls.ciphers }),
      ...(config.tls.keyLogFile === undefined ? {} : { SSLKeyLogFile: config.tls.keyLogFile }),
    },
  });
  attachLogger(broker, logger);
  const stats = new BrokerStats(broker);
  for (const entry of config.listeners) {
    const certificate = certificateOf(entry);
    if (entry.clientCAFile !== undefined)
      broker.config(`SSLClientCACerts=${readFileSync(entry.clientCAFile, 'utf8')}`);
    broker.addListener({
      protocol: entry.protocol,
      port: entry.port,
      ...(entry.host === undefined ? {} : { host: entry.host }),
      ...(certificate === undefined ? {} : { certificate }),
      ...(entry.authenticateClients === undefined ? {} : { authenticateClients: entry.authenticateClients }),
      ...(entry.requireClientCertificate === undefined
        ? {}
        : { requireClientCertificate: entry.requireClientCertificate }),
      ...(entry.path === undefined ? {} : { path: entry.path }),
      ...(entry.allowedOrigins === undefined ? {} : { allowedOrigins: entry.allowedOrigins }),
    });
  }
  if (config.allowAnonymous && config.passwordFile === undefined) {
    logger.warn(
      'anonymous clients are allowed: anyone who can reach a listener may connect (set passwordFile to require users)',
    );
  }
  let auth: InstalledAuth;
  try {
    auth = installAuth(broker, config, logger);
    await broker.startListening();
  } catch (error) {
    await broker.shutdown().catch(() => undefined);
    throw error;
  }
  // After startListening: it restores the store, which holds the previous run's $SYS values.
  const sys = startSysTopics(broker, stats, {
    intervalSeconds: config.sys.intervalSeconds,
    version: `mqtt-broker ${packageVersion()}`,
    onError: (error) => logger.warn({ err: error }, '$SYS round failed'),
  });
  let metrics: MetricsServer | undefined;
  if (config.metrics !== undefined) {
    try {
      metrics = await startMetricsServer(broker, stats, config.metrics);
    } catch (error) {
      sys.stop();
      await broker.shutdown().catch(() => undefined);
      throw error;
    }
    logger.info(`metrics: http://${config.metrics.host}:${metrics.port}/metrics`);
  }
  for (const l of broker.listeners) {
    logger.info(`listening: ${l.protocol}://${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`);
  }
  logger.info(
    config.store.type === 'memory'
      ? 'store: memory only (nothing survives a restart)'
      : `store: ${config.store.type === 'sqlite' ? 'SQLite' : 'log'} in ${config.store.dataDir}`,
  );
  let stopping: Promise<void> | undefined;
  return {
    broker,
    logger,
    config,
    stats,
    metricsPort: metrics?.port,
    reloadAuth: () => auth.reload(),
    stop: () => {
      stopping ??= (async () => {
        sys.stop();
        await metrics?.close();
        await broker.shutdown();
      })();
      return stopping;
    },
  };
}
