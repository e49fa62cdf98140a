/**
 * The server on the log store (`store: { type: 'log', dataDir }`): a persistent session's queued QoS 1
 * messages and a retained message survive a restart on the same data directory.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkConfig, resolveConfig } from '../src/config.js';
import { ClientPool, Inbox } from './helpers/clients.js';
import { startTestServer, tempDir } from './helpers/server.js';

const pool = new ClientPool();
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  await pool.closeAll();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('store: log', () => {
  it('is the default durable store: ./data, and --data-dir moves it; sqlite only when the config says so', () => {
    expect(resolveConfig({}, {}, '/srv').store).toEqual({ type: 'log', dataDir: '/srv/data' });
    expect(resolveConfig({}, { dataDir: 'elsewhere' }, '/srv').store).toEqual({
      type: 'log',
      dataDir: '/srv/elsewhere',
    });
    const sqlite = checkConfig({ store: { type: 'sqlite', dataDir: 'db' } });
    expect(resolveConfig(sqlite, { dataDir: 'other' }, '/srv').store).toEqual({
      type: 'sqlite',
      dataDir: '/srv/other',
    });
  });

  it("refuses to start on a data directory that holds the other kind's store (its sessions would be ignored)", async () => {
    const dir = tempDir('broker-store-kind-');
    cleanups.push(() => dir.remove());
    const sqliteServer = await startTestServer({ store: { type: 'sqlite', dataDir: dir.path } });
    await sqliteServer.stop();
    expect(existsSync(join(dir.path, 'broker.sqlite'))).toBe(true);
    await expect(startTestServer({ store: { type: 'log', dataDir: dir.path } })).rejects.toThrow(
      /holds a sqlite store \(broker\.sqlite\), not a log store: set "store: \{ type: sqlite/,
    );
    expect(existsSync(join(dir.path, 'broker.log'))).toBe(false);
    // The kind it holds still opens.
    const again = await startTestServer({ store: { type: 'sqlite', dataDir: dir.path } });
    await again.stop();
  });

  it('is accepted by the config, and --data-dir keeps the kind', () => {
    const file = checkConfig({ store: { type: 'log', dataDir: '/srv/data' } });
    expect(resolveConfig(file, {}, '/srv').store).toEqual({ type: 'log', dataDir: '/srv/data' });
    expect(resolveConfig(file, { dataDir: 'elsewhere' }, '/srv').store).toEqual({
      type: 'log',
      dataDir: '/srv/elsewhere',
    });
    expect(() => checkConfig({ store: { type: 'log' } })).toThrow(/store\.dataDir/);
  });

  it("keeps a persistent session's queued QoS 1 messages and a retained message across a restart", async () => {
    const dir = tempDir('broker-log-store-');
    cleanups.push(() => dir.remove());
    const config = { store: { type: 'log' as const, dataDir: dir.path } };

    const first = await startTestServer(config);
    let running: { stop(): Promise<void> } | undefined = first;
    cleanups.push(() => running?.stop());
    expect(existsSync(join(dir.path, 'broker.log'))).toBe(true);
    const subscriber = await pool.connect(first.url, { clientId: 'log-persistent', clean: false });
    await subscriber.subscribeAsync('log/#', { qos: 1 });
    await subscriber.endAsync();
    const publisher = await pool.connect(first.url, { clientId: 'log-publisher' });
    for (let i = 1; i <= 3; i++) await publisher.publishAsync(`log/queued/${i}`, `queued ${i}`, { qos: 1 });
    await publisher.publishAsync('log/retained', 'kept', { qos: 1, retain: true });
    await publisher.endAsync();
    await first.stop();
    expect(existsSync(join(dir.path, 'broker.log.lock'))).toBe(false);

    const second = await startTestServer(config);
    running = second;
    const resumed = await pool.connect(
      second.url,
      { clientId: 'log-persistent', clean: false },
      (c) => new Inbox(c),
    );
    // [MQTT-3.2.2-2] the session survived the restart.
    expect(pool.connackOf(resumed)?.sessionPresent).toBe(true);
    const delivered = await pool.inboxOf(resumed)!.take(4, 5000);
    expect(delivered.map((m) => [m.topic, m.payload.toString(), m.packet.qos])).toEqual([
      ['log/queued/1', 'queued 1', 1],
      ['log/queued/2', 'queued 2', 1],
      ['log/queued/3', 'queued 3', 1],
      ['log/retained', 'kept', 1],
    ]);
    // [MQTT-3.3.1-6] the retained message too.
    const late = await pool.connect(second.url, { clientId: 'log-late' }, (c) => new Inbox(c));
    await late.subscribeAsync('log/retained', { qos: 1 });
    const retained = await pool.inboxOf(late)!.first('log/retained');
    expect([retained.payload.toString(), retained.packet.retain]).toEqual(['kept', true]);
  });
});
