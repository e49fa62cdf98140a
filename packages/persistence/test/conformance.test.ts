import { MemoryStore, type Store } from '@broker/core';
import { LogStore } from '@broker/persistence/log';
import { SqliteStore } from '@broker/persistence/sqlite';
import { runStoreConformance, type StoreUnderTest } from '@broker/persistence/testing';
import { removeDir, tempDir } from './helpers/temp-dir.js';

// Core's MemoryStore: reopen is the same instance.
runStoreConformance('MemoryStore (core)', async () => {
  const store = new MemoryStore();
  return { store, reopen: async () => store, cleanup: async () => {} };
});

/** A durable store in a temp dir: reopen closes it and opens the same directory again. */
function reopening(open: (dataDir: string) => Store): () => Promise<StoreUnderTest> {
  return async () => {
    const dataDir = tempDir();
    let current = open(dataDir);
    const stores: Store[] = [current];
    return {
      store: current,
      reopen: async () => {
        await current.close();
        current = open(dataDir);
        stores.push(current);
        return current;
      },
      cleanup: async () => {
        for (const store of stores) await store.close();
        removeDir(dataDir);
      },
    };
  };
}

runStoreConformance(
  'SqliteStore',
  reopening((dataDir) => SqliteStore.open({ dataDir })),
);

runStoreConformance(
  'LogStore',
  reopening((dataDir) => LogStore.open({ dataDir })),
);
