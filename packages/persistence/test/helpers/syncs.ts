import { fdatasync } from 'node:fs';

/**
 * A `syncFile` for tests that runs the real fdatasync on the store's descriptor but holds its
 * completion until the test releases it (or fails it), so the order of events is observable without
 * timing. `started` resolves when the store starts the n-th sync.
 */
export function heldSyncs() {
  const calls: Array<{ fd: number; release: (error?: NodeJS.ErrnoException) => void }> = [];
  const waiters = new Map<number, () => void>();
  const counts = { inFlight: 0, maxInFlight: 0 };
  const syncFile = (fd: number, callback: (error: NodeJS.ErrnoException | null) => void): void => {
    counts.inFlight++;
    counts.maxInFlight = Math.max(counts.maxInFlight, counts.inFlight);
    fdatasync(fd, (error) => {
      calls.push({
        fd,
        release: (injected) => {
          counts.inFlight--;
          callback(injected ?? error);
        },
      });
      waiters.get(calls.length)?.();
    });
  };
  const started = (n: number): Promise<void> =>
    calls.length >= n ? Promise.resolve() : new Promise((resolve) => waiters.set(n, resolve));
  return { syncFile, calls, started, counts };
}

export function track(promise: Promise<void>): { state: 'pending' | 'resolved' | 'rejected' } {
  const result = { state: 'pending' as 'pending' | 'resolved' | 'rejected' };
  promise.then(
    () => {
      result.state = 'resolved';
    },
    () => {
      result.state = 'rejected';
    },
  );
  return result;
}

export const eio = () => Object.assign(new Error('EIO: i/o error, fdatasync (simulated)'), { code: 'EIO' });
