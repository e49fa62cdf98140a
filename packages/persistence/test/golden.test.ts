import { cpSync } from 'node:fs';
import { join } from 'node:path';
import type { Store, StoreContents } from '@broker/core';
import { LogStore } from '@broker/persistence/log';
import { SqliteStore } from '@broker/persistence/sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { GOLDEN_CONTENTS } from './helpers/golden-state.js';
import { removeDir, tempDir } from './helpers/temp-dir.js';

// Golden files: store files written by an earlier version (test/fixtures/golden/<kind>-v<N>/, made by
// test/helpers/golden-state.ts and committed) must keep loading, whatever version reads them. Opened
// from a copy: opening writes (a log's lock, SQLite's WAL).

const golden = (name: string) => join(new URL('./fixtures/golden/', import.meta.url).pathname, name);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function copyOf(name: string): string {
  const dir = tempDir('broker-golden-');
  cleanups.push(() => removeDir(dir));
  cpSync(golden(name), dir, { recursive: true });
  return dir;
}

/** Payloads compared as bytes (a store hands out Uint8Array views). */
const plain = (contents: StoreContents) =>
  JSON.parse(JSON.stringify(contents, (_k, v) => (v instanceof Uint8Array ? [...v] : v)));

describe.each([
  ['LogStore format 1', 'log-v1', (dataDir: string): Store => LogStore.open({ dataDir })],
  ['SqliteStore format 1', 'sqlite-v1', (dataDir: string): Store => SqliteStore.open({ dataDir })],
] as const)('golden file: %s', (_name, fixture, open) => {
  it('loads the sessions, subscriptions, messages with their states and the retained message it was written with', async () => {
    const store = open(copyOf(fixture));
    cleanups.push(() => store.close());
    expect(plain(await store.load())).toEqual(plain(GOLDEN_CONTENTS));
  });

  it('takes new records after loading, and keeps both across a reopen', async () => {
    const dataDir = copyOf(fixture);
    const store = open(dataDir);
    await store.load();
    store.outgoingRemoved('sensor-1', 11);
    await store.flush();
    await store.close();
    const reopened = open(dataDir);
    cleanups.push(() => reopened.close());
    const expected = structuredClone(GOLDEN_CONTENTS);
    expected.sessions[0]!.outgoingMessages.shift();
    expect(plain(await reopened.load())).toEqual(plain(expected));
  });
});
