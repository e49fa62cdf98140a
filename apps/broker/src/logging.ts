import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';
import type { ServerConfig } from './config.js';
import type { MqttBroker } from './mqtt-broker.js';

/** A pino logger: readable lines in a terminal, JSON lines otherwise. */
export function createLogger(
  config: ServerConfig['logging'],
  destination: NodeJS.WritableStream = process.stdout,
): Logger {
  const options = { level: config.level, base: { pid: process.pid } };
  if (config.format === 'pretty') {
    return pino(
      options,
      pretty({
        destination,
        sync: true,
        colorize: destination === process.stdout && process.stdout.isTTY,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
      }),
    );
  }
  return pino(options, pino.destination({ dest: destination === process.stdout ? 1 : 2, sync: true }));
}

/**
 * Sends the broker's log and error events to pino. The reference's LogLevel 1 (info), 2 (verbose)
 * and 3 (debug) map to pino's info, debug and trace.
 */
export function attachLogger(broker: MqttBroker, logger: Logger): void {
  if (logger.isLevelEnabled('info')) {
    broker.on('log', (e) => {
      const fields = { connectionId: e.connectionId || undefined, type: e.type };
      if (e.level <= 1) logger.info(fields, e.message);
      else if (e.level === 2) logger.debug(fields, e.message);
      else logger.trace(fields, e.message);
    });
  }
  broker.on('error', (e) => {
    logger.warn(
      { connectionId: e.connectionId || undefined, code: e.code, errorCode: e.errorCode },
      e.description,
    );
  });
}
