import { MemoryStore, type Store } from '@broker/core';
import { LogStore } from '@broker/persistence/log';
import { SqliteStore } from '@broker/persistence/sqlite';
import { runStoreConformance } from '@broker/persistence/testing';
import { removeDir, tempDir } from './helpers/temp-dir.js';

// Core's MemoryStore: reopen is the same instance.
runStoreConformance('MemoryStore (core)', async () => {
  const store = new MemoryStore();
  return { store, reopen: async () => store, cleanup: async () => {} };
});

// SqliteStore: reopen closes it and opens the same directory again.
runStoreConformance('SqliteStore', async () => {
  const dataDir = tempDir();
  let open: SqliteStore = SqliteStore.open({ dataDir });
  const stores: Store[] = [open];
  return {
    store: open,
    reopen: async () => {
      await open.close();
      open = SqliteStore.open({ dataDir });
      stores.push(open);
      return open;
    },
    cleanup: async () => {
      for (const store of stores) await store.close();
      removeDir(dataDir);
    },
  };
});

// LogStore: reopen closes it and opens the same directory again.
runStoreConformance('LogStore', async () => {
  const dataDir = tempDir();
  let open: LogStore = LogStore.open({ dataDir });
  const stores: Store[] = [open];
  return {
    store: open,
    reopen: async () => {
      await open.close();
      open = LogStore.open({ dataDir });
      stores.push(open);
      return open;
    },
    cleanup: async () => {
      for (const store of stores) await store.close();
      removeDir(dataDir);
    },
  };
});
