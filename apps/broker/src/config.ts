/**
 * The server's configuration: defaults, then a config file (YAML or JSON), then environment
 * variables, then command-line flags. A bad value names its key and what is wrong.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const port = z.number().int().min(0).max(65_535);
const tlsVersion = z.enum(['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']);

const certificateSchema = z.union([
  z.strictObject({ pfxFile: z.string().min(1), password: z.string().optional() }),
  z.strictObject({
    certFile: z.string().min(1),
    keyFile: z.string().min(1),
    chainFile: z.string().optional(),
    passphrase: z.string().optional(),
  }),
]);

const listenerSchema = z.strictObject({
  protocol: z.enum(['tcp', 'tls', 'ws', 'wss']),
  host: z.string().optional(),
  port,
  certificate: certificateSchema.optional(),
  authenticateClients: z.boolean().optional(),
  requireClientCertificate: z.boolean().optional(),
  clientCAFile: z.string().optional(),
  path: z.string().startsWith('/').optional(),
  allowedOrigins: z.array(z.string()).optional(),
});

// Optional keys without `undefined`, so the parsed limits fit core's Partial<BrokerLimits> exactly.
const limitsSchema = z.strictObject({
  maxPacketBytes: z.number().int().min(64).max(268_435_460).optional(),
  maxInflightMessages: z.number().int().min(1).max(65_535).optional(),
  maxQueuedMessages: z.number().int().min(0).optional(),
  maxTopicBytes: z.number().int().min(1).max(65_535).optional(),
  maxTopicLevels: z.number().int().min(1).optional(),
  maxSubscriptionsPerClient: z.number().int().min(0).optional(),
  maxConnections: z.number().int().min(1).optional(),
  maxClientIdBytes: z.number().int().min(1).max(65_535).optional(),
  connectTimeoutMs: z.number().int().min(0).optional(),
  idleTimeoutSeconds: z.number().int().min(0).optional(),
  maxOutgoingBufferBytes: z.number().int().min(1024).optional(),
  drainTimeoutMs: z.number().int().min(0).optional(),
  flowControlBytes: z.number().int().min(0).optional(),
  flowControlMaxHoldMs: z.number().int().min(0).optional(),
});

export const configSchema = z.strictObject({
  listeners: z.array(listenerSchema).optional(),
  store: z
    .discriminatedUnion('type', [
      z.strictObject({ type: z.literal('sqlite'), dataDir: z.string().min(1) }),
      z.strictObject({ type: z.literal('log'), dataDir: z.string().min(1) }),
      z.strictObject({ type: z.literal('memory') }),
    ])
    .optional(),
  limits: limitsSchema.optional(),
  allowAnonymous: z.boolean().optional(),
  passwordFile: z.string().optional(),
  aclFile: z.string().optional(),
  logging: z
    .strictObject({
      level: z.enum(['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace']).optional(),
      format: z.enum(['pretty', 'json']).optional(),
    })
    .optional(),
  metrics: z.strictObject({ port, host: z.string().optional() }).optional(),
  sys: z.strictObject({ intervalSeconds: z.number().int().min(0) }).optional(),
  tls: z
    .strictObject({
      enabledProtocols: z.array(tlsVersion).min(1).optional(),
      ciphers: z.string().optional(),
      keyLogFile: z.string().optional(),
    })
    .optional(),
});

/** The config file's shape (every key optional). */
export type ConfigFile = z.infer<typeof configSchema>;
export type ListenerEntry = z.infer<typeof listenerSchema>;

/** The configuration the server runs with: everything resolved. */
export interface ServerConfig {
  listeners: ListenerEntry[];
  store: { type: 'sqlite' | 'log'; dataDir: string } | { type: 'memory' };
  limits: NonNullable<ConfigFile['limits']>;
  allowAnonymous: boolean;
  passwordFile: string | undefined;
  aclFile: string | undefined;
  logging: { level: NonNullable<NonNullable<ConfigFile['logging']>['level']>; format: 'pretty' | 'json' };
  metrics: { port: number; host: string } | undefined;
  sys: { intervalSeconds: number };
  tls: NonNullable<ConfigFile['tls']>;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'APP_INVALID_CONFIG';
}

/** Reads and checks a config file. Relative paths inside it are taken from the file's folder. */
export function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  let data: unknown;
  try {
    data = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ConfigError(
      `config file ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(error as Error).message}`,
    );
  }
  const config = checkConfig(data ?? {}, path);
  return relativeTo(config, dirname(resolve(path)));
}

/** Checks parsed config data against the schema; the error names every bad key. */
export function checkConfig(data: unknown, source = 'config'): ConfigFile {
  const result = configSchema.safeParse(data);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const key = issue.path.length === 0 ? '(top level)' : issue.path.map(String).join('.');
    return `  ${key}: ${issue.message}`;
  });
  throw new ConfigError(`${source} is invalid:\n${problems.join('\n')}`);
}

function relativeTo(config: ConfigFile, base: string): ConfigFile {
  const at = (p: string | undefined) => (p === undefined ? undefined : resolve(base, p));
  const out: ConfigFile = { ...config };
  if (config.store !== undefined && config.store.type !== 'memory')
    out.store = { type: config.store.type, dataDir: at(config.store.dataDir)! };
  if (config.passwordFile !== undefined) out.passwordFile = at(config.passwordFile)!;
  if (config.aclFile !== undefined) out.aclFile = at(config.aclFile)!;
  if (config.tls?.keyLogFile !== undefined)
    out.tls = { ...config.tls, keyLogFile: at(config.tls.keyLogFile)! };
  if (config.listeners !== undefined) {
    out.listeners = config.listeners.map((l) => {
      const c = l.certificate;
      const certificate =
        c === undefined
          ? undefined
          : 'pfxFile' in c
            ? { ...c, pfxFile: at(c.pfxFile)! }
            : {
                ...c,
                certFile: at(c.certFile)!,
                keyFile: at(c.keyFile)!,
                ...(c.chainFile === undefined ? {} : { chainFile: at(c.chainFile)! }),
              };
      return {
        ...l,
        ...(certificate === undefined ? {} : { certificate }),
        ...(l.clientCAFile === undefined ? {} : { clientCAFile: at(l.clientCAFile)! }),
      };
    });
  }
  return out;
}

/** What flags and environment variables may set: the common settings. */
export interface Overrides {
  host?: string | undefined;
  port?: number | undefined;
  wsPort?: number | undefined;
  dataDir?: string | undefined;
  memory?: boolean | undefined;
  logLevel?: string | undefined;
  metricsPort?: number | undefined;
}

export const DEFAULT_TCP_PORT = 1883;
export const DEFAULT_WS_PORT = 8083;

/**
 * Resolves the configuration: embedded defaults (MQTT over TCP on 1883, WebSocket on 8083 at /mqtt,
 * the log store in ./data, anonymous clients allowed), then the file, then the overrides. The flags
 * --port and --ws-port replace the plain TCP and WS listeners of the defaults or the file; a
 * negative port turns that listener off.
 */
export function resolveConfig(file: ConfigFile, overrides: Overrides, cwd = process.cwd()): ServerConfig {
  let listeners: ListenerEntry[] = file.listeners ?? [
    { protocol: 'tcp', port: DEFAULT_TCP_PORT },
    { protocol: 'ws', port: DEFAULT_WS_PORT, path: '/mqtt' },
  ];
  const replace = (protocol: 'tcp' | 'ws', value: number | undefined) => {
    if (value === undefined) return;
    const rest = listeners.filter((l) => l.protocol !== protocol);
    const current = listeners.find((l) => l.protocol === protocol);
    listeners = value < 0 ? rest : [...rest, { ...(current ?? { protocol }), port: value } as ListenerEntry];
  };
  replace('tcp', overrides.port);
  replace('ws', overrides.wsPort);
  if (overrides.host !== undefined) listeners = listeners.map((l) => ({ ...l, host: overrides.host! }));

  let store: ServerConfig['store'] = file.store ?? { type: 'log', dataDir: resolve(cwd, 'data') };
  // --data-dir keeps the file's durable store kind (the log store unless it says `sqlite`).
  if (overrides.dataDir !== undefined)
    store = { type: store.type === 'sqlite' ? 'sqlite' : 'log', dataDir: resolve(cwd, overrides.dataDir) };
  if (overrides.memory === true) store = { type: 'memory' };

  const level = overrides.logLevel ?? file.logging?.level ?? 'info';
  const levels = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
  const referenceLevels: Record<string, (typeof levels)[number]> = {
    '0': 'silent',
    '1': 'info',
    '2': 'debug',
    '3': 'trace',
  };
  const resolvedLevel = referenceLevels[level] ?? levels.find((l) => l === level);
  if (resolvedLevel === undefined) {
    throw new ConfigError(`log level "${level}" is not one of ${levels.join(', ')} or the reference's 0–3`);
  }
  const metricsPort = overrides.metricsPort ?? file.metrics?.port;
  return {
    listeners,
    store,
    limits: file.limits ?? {},
    allowAnonymous: file.allowAnonymous ?? file.passwordFile === undefined,
    passwordFile: file.passwordFile,
    aclFile: file.aclFile,
    logging: {
      level: resolvedLevel,
      format: file.logging?.format ?? (process.stdout.isTTY ? 'pretty' : 'json'),
    },
    metrics:
      metricsPort === undefined ? undefined : { port: metricsPort, host: file.metrics?.host ?? '127.0.0.1' },
    sys: { intervalSeconds: file.sys?.intervalSeconds ?? 10 },
    tls: file.tls ?? {},
  };
}
