/**
 * The state the golden store files hold (test/fixtures/golden/<kind>-v<N>/): recorded once through
 * the Store port by `node --conditions=@broker/source --import tsx test/helpers/golden-state.ts <kind>`
 * and committed. A reader of a later format version must keep loading them (STYLE.md: golden files of
 * each store-format version); test/golden.test.ts checks that it does.
 */
import type { Store, StoreContents } from '@broker/core';

const bytes = (text: string) => new TextEncoder().encode(text);

/** Records the golden state into a fresh store and flushes it. */
export async function recordGoldenState(store: Store): Promise<void> {
  store.sessionCreated('sensor-1');
  store.subscriptionAdded('sensor-1', 'cmd/sensor-1/#', 1);
  store.subscriptionAdded('sensor-1', 'broadcast', 2);
  store.messageAdded({
    messageId: 11,
    topic: 'cmd/sensor-1/reboot',
    payload: bytes('now'),
    qos: 1,
    retain: false,
  });
  store.outgoingAdded('sensor-1', 11, { qos: 1, retain: false, packetId: 7, state: 2, dup: true });
  store.messageAdded({
    messageId: 12,
    topic: 'broadcast',
    payload: bytes('ünïcode ✓'),
    qos: 2,
    retain: false,
  });
  store.outgoingAdded('sensor-1', 12, { qos: 2, retain: false, packetId: -1, state: 1, dup: false });
  store.sessionCreated('gateway');
  store.messageAdded({
    messageId: 13,
    topic: 'up/gw',
    payload: new Uint8Array([0, 1, 2, 255]),
    qos: 2,
    retain: false,
  });
  store.incomingAdded('gateway', 13, 42, 8, false);
  store.retainedSet({ messageId: 14, topic: 'status/gw', payload: bytes('online'), qos: 1, retain: true });
  await store.flush();
}

/** What `load()` gives for the golden state. */
export const GOLDEN_CONTENTS: StoreContents = {
  sessions: [
    {
      clientId: 'sensor-1',
      subscriptions: [
        { topicFilter: 'cmd/sensor-1/#', qos: 1 },
        { topicFilter: 'broadcast', qos: 2 },
      ],
      incomingMessages: [],
      outgoingMessages: [
        {
          messageId: 11,
          topic: 'cmd/sensor-1/reboot',
          payload: bytes('now'),
          qos: 1,
          dup: true,
          retain: false,
          packetId: 7,
          state: 2,
        },
        {
          messageId: 12,
          topic: 'broadcast',
          payload: bytes('ünïcode ✓'),
          qos: 2,
          dup: false,
          retain: false,
          packetId: -1,
          state: 1,
        },
      ],
    },
    {
      clientId: 'gateway',
      subscriptions: [],
      incomingMessages: [
        {
          messageId: 13,
          topic: 'up/gw',
          payload: new Uint8Array([0, 1, 2, 255]),
          qos: 2,
          dup: false,
          retain: false,
          packetId: 42,
          state: 8,
        },
      ],
      outgoingMessages: [],
    },
  ],
  retained: [{ messageId: 14, topic: 'status/gw', payload: bytes('online'), qos: 1, retain: true }],
};

// As a program: writes the golden files of the current format versions (run once per new version).
if (
  process.argv[1] !== undefined &&
  import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href
) {
  const { join } = await import('node:path');
  const { rmSync } = await import('node:fs');
  const kind = process.argv[2];
  const fixtures = new URL('../fixtures/golden/', import.meta.url).pathname;
  if (kind === 'log') {
    const { LogStore, LOG_FORMAT_VERSION } = await import('@broker/persistence/log');
    const dataDir = join(fixtures, `log-v${LOG_FORMAT_VERSION}`);
    rmSync(dataDir, { recursive: true, force: true });
    const store = LogStore.open({ dataDir });
    await recordGoldenState(store);
    await store.close();
    console.log(`wrote ${dataDir}`);
  } else if (kind === 'sqlite') {
    const { SqliteStore, SQLITE_FORMAT_VERSION } = await import('@broker/persistence/sqlite');
    const dataDir = join(fixtures, `sqlite-v${SQLITE_FORMAT_VERSION}`);
    rmSync(dataDir, { recursive: true, force: true });
    const store = SqliteStore.open({ dataDir });
    await recordGoldenState(store);
    await store.close();
    console.log(`wrote ${dataDir}`);
  } else {
    console.error('usage: golden-state.ts log|sqlite');
    process.exit(2);
  }
}
