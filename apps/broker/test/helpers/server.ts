import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { type ConfigFile, resolveConfig } from '../../src/config.js';
import { type RunningServer, startServer } from '../../src/server.js';

/**
 * Starts a real server on 127.0.0.1 with ephemeral ports (TCP and WS unless the file says otherwise)
 * and a memory store unless `dataDir` is given or the file names a store. Logs go nowhere unless BROKER_TEST_LOGS is set.
 */
export async function startTestServer(
  file: ConfigFile = {},
  options: { dataDir?: string } = {},
): Promise<RunningServer & { tcpPort: number; wsPort: number; url: string; wsUrl: string }> {
  const config = resolveConfig(
    {
      listeners: [
        { protocol: 'tcp', host: '127.0.0.1', port: 0 },
        { protocol: 'ws', host: '127.0.0.1', port: 0, path: '/mqtt' },
      ],
      ...file,
    },
    // The file's own store when it names one; memory otherwise.
    options.dataDir !== undefined
      ? { dataDir: options.dataDir }
      : file.store === undefined
        ? { memory: true }
        : {},
  );
  const logger = pino({ level: process.env['BROKER_TEST_LOGS'] ? 'debug' : 'silent' });
  const server = await startServer(config, logger);
  const tcp = server.broker.listeners.find((l) => l.protocol === 'tcp');
  const ws = server.broker.listeners.find((l) => l.protocol === 'ws');
  const tcpPort = tcp?.port ?? -1;
  const wsPort = ws?.port ?? -1;
  return {
    ...server,
    tcpPort,
    wsPort,
    url: `mqtt://127.0.0.1:${tcpPort}`,
    wsUrl: `ws://127.0.0.1:${wsPort}/mqtt`,
  };
}

export function tempDir(prefix = 'broker-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
