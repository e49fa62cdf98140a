import { isPersistenceError, type PersistenceError } from '@broker/persistence';
import { afterEach, beforeEach } from 'vitest';
import { removeDir, tempDir } from './temp-dir.js';

/** A durable store's test files: a fresh directory per test, and every store opened closed after it. */
export interface StoreFiles<S, O> {
  /** The directory the next `open()` uses; a test may point it below the fresh one. */
  dataDir: string;
  /** Opens the store in `dataDir` (closed after the test). */
  open(options?: Partial<O>): S;
  /** The PersistenceError that opening throws (fails the test if it opens). */
  openError(options?: Partial<O>): PersistenceError;
}

/** Registers the per-test directory and clean-up hooks; `openStore` is the store's `open`. */
export function storeFiles<S extends { close(): Promise<void> }, O extends { dataDir: string }>(
  name: string,
  openStore: (options: O) => S,
): StoreFiles<S, O> {
  let root = '';
  const opened: S[] = [];
  const files: StoreFiles<S, O> = {
    dataDir: '',
    open(options = {}) {
      const store = openStore({ dataDir: files.dataDir, ...options } as O);
      opened.push(store);
      return store;
    },
    openError(options = {}) {
      try {
        files.open(options);
      } catch (error) {
        if (isPersistenceError(error)) return error;
        throw error;
      }
      throw new Error(`expected ${name}.open to fail`);
    },
  };
  beforeEach(() => {
    root = tempDir();
    files.dataDir = root;
  });
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close().catch(() => {});
    // The fresh directory, also when the test moved dataDir below it.
    removeDir(root);
  });
  return files;
}
