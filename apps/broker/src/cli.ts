#!/usr/bin/env node
/**
 * The mqtt-broker command. With no arguments: MQTT over TCP on 1883, WebSocket on 8083 at /mqtt,
 * the durable store in ./data, anonymous clients allowed.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, type ConfigFile, type Overrides, readConfigFile, resolveConfig } from './config.js';
import { createLogger } from './logging.js';
import { startServer } from './server.js';

const HELP = `Usage: mqtt-broker [options]
       mqtt-broker passwd <password-file> <username>   (reads the password from stdin)

An MQTT 3.1.1 broker. With no options it listens for MQTT over TCP on 1883 and over
WebSocket on 8083 (path /mqtt), keeps persistent sessions and retained messages in ./data,
and lets anonymous clients connect.

Options:
  -c, --config <file>       YAML or JSON config file (listeners, TLS, limits, users, ACLs, ...)
  -h, --host <address>      address to listen on (default 0.0.0.0)
  -p, --port <port>         MQTT over TCP port (default 1883; -1 turns it off)
      --ws-port <port>      MQTT over WebSocket port (default 8083; -1 turns it off)
  -d, --data-dir <dir>      where the durable store lives (default ./data)
      --memory              keep everything in memory (nothing survives a restart)
  -l, --log-level <level>   silent|fatal|error|warn|info|debug|trace, or the reference's 0-3
      --metrics-port <port> serve GET /metrics (Prometheus) and GET /healthz on this port
      --version             print the version
      --help                print this help

Environment: MQTT_BROKER_CONFIG, MQTT_BROKER_HOST, MQTT_BROKER_PORT, MQTT_BROKER_WS_PORT,
MQTT_BROKER_DATA_DIR, MQTT_BROKER_MEMORY (1/true), MQTT_BROKER_LOG_LEVEL, MQTT_BROKER_METRICS_PORT.
Flags win over environment variables, which win over the config file.
SIGINT or SIGTERM stops gracefully (exit 0); a second signal exits at once.
`;

function intOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^-?\d+$/.test(value)) throw new ConfigError(`${name} must be a whole number, got "${value}"`);
  const n = Number(value);
  if (n > 65_535) throw new ConfigError(`${name} must be at most 65535, got ${n}`);
  return n;
}

/**
 * parseArgs refuses an option value that starts with '-' ("ambiguous"), but `--port -1` is how a
 * listener is turned off; join such a value to its option (`--port=-1`) first.
 */
function joinNegativeNumbers(argv: string[]): string[] {
  const numeric = new Set(['-p', '--port', '--ws-port', '--metrics-port']);
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    if (numeric.has(arg) && next !== undefined && /^-\d+$/.test(next)) {
      out.push(`${arg.startsWith('--') ? arg : '--port'}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'passwd') {
    const { runPasswd } = await import('./passwd.js');
    return runPasswd(argv.slice(1));
  }
  const { values } = parseArgs({
    args: joinNegativeNumbers(argv),
    options: {
      config: { type: 'string', short: 'c' },
      host: { type: 'string', short: 'h' },
      port: { type: 'string', short: 'p' },
      'ws-port': { type: 'string' },
      'data-dir': { type: 'string', short: 'd' },
      memory: { type: 'boolean' },
      'log-level': { type: 'string', short: 'l' },
      'metrics-port': { type: 'string' },
      version: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help === true) {
    process.stdout.write(HELP);
    return 0;
  }
  if (values.version === true) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    process.stdout.write(`mqtt-broker ${pkg.version}\n`);
    return 0;
  }
  const env = process.env;
  const configPath = values.config ?? env['MQTT_BROKER_CONFIG'];
  const file: ConfigFile = configPath === undefined ? {} : readConfigFile(configPath);
  const envMemory = env['MQTT_BROKER_MEMORY'];
  const overrides: Overrides = {
    host: values.host ?? env['MQTT_BROKER_HOST'],
    port: intOption('--port', values.port ?? env['MQTT_BROKER_PORT']),
    wsPort: intOption('--ws-port', values['ws-port'] ?? env['MQTT_BROKER_WS_PORT']),
    dataDir: values['data-dir'] ?? env['MQTT_BROKER_DATA_DIR'],
    memory: values.memory ?? (envMemory === undefined ? undefined : /^(1|true|yes)$/i.test(envMemory)),
    logLevel: values['log-level'] ?? env['MQTT_BROKER_LOG_LEVEL'],
    metricsPort: intOption('--metrics-port', values['metrics-port'] ?? env['MQTT_BROKER_METRICS_PORT']),
  };
  const config = resolveConfig(file, overrides);
  const logger = createLogger(config.logging);
  const server = await startServer(config, logger);
  logger.info('mqtt-broker ready');

  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        logger.warn(`${signal} again: exiting at once`);
        process.exit(1);
      }
      logger.info(`${signal}: stopping (send it again to exit at once)`);
      const deadline = setTimeout(() => {
        logger.error('stop took longer than 10 s: exiting');
        process.exit(1);
      }, 10_000);
      deadline.unref();
      server.stop().then(
        () => {
          logger.info('stopped');
          resolve(0);
        },
        (error: unknown) => {
          logger.error({ err: error }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', () => {
      logger.info(
        server.reloadAuth()
          ? 'SIGHUP: password and ACL files reloaded'
          : 'SIGHUP: reload failed; rules unchanged',
      );
    });
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    const code = (error as { code?: string }).code;
    process.stderr.write(`mqtt-broker: ${message}${code === undefined ? '' : ` (${code})`}\n`);
    if (
      error instanceof Error &&
      error.name === 'TypeError' &&
      (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write('Try mqtt-broker --help\n');
    }
    process.exitCode = 2;
  },
);
