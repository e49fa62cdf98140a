/**
 * The LogStore's lock file: two processes must not append to one log. `<log>.lock` holds the owner's
 * pid; it is made with an exclusive create (a hard link of a file already holding the pid, so no one
 * sees it empty), removed on close, and taken over when its pid is not a live process (a crashed
 * owner). Advisory: it protects against a second broker on the same data directory, not against
 * anything that ignores it.
 */
import { closeSync, linkSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { PersistenceError } from '../errors.js';

/** A lock this process holds. */
export interface HeldLock {
  release(): void;
}

/** Locks held by this process (absolute paths): its own pid in a lock file is then not stale. */
const held = new Set<string>();

/**
 * Takes `<file>.lock`.
 * @throws PersistenceError PERSIST_OPEN_FAILED when a live process holds it ("in use by pid N");
 *   the file system's error when it cannot be created.
 */
export function acquireLock(file: string): HeldLock {
  const path = `${file}.lock`;
  const key = resolve(path);
  // Two rounds: the second after removing a stale lock. Two processes taking over the same stale lock
  // at the same instant could both remove it before either creates its own (a narrow window, at start).
  for (let round = 0; round < 2; round++) {
    if (createExclusive(path)) {
      held.add(key);
      return {
        release: () => {
          if (held.delete(key)) rmSync(path, { force: true });
        },
      };
    }
    const owner = ownerOf(path);
    if (owner !== undefined && isAlive(owner) && (owner !== process.pid || held.has(key))) {
      throw new PersistenceError(
        'PERSIST_OPEN_FAILED',
        `${file} is in use by pid ${owner} (lock file ${path}); one process per log`,
        { file },
      );
    }
    rmSync(path, { force: true });
  }
  throw new PersistenceError('PERSIST_OPEN_FAILED', `${file}: cannot take the lock file ${path}`, { file });
}

/** Creates `path` holding our pid, unless it exists (false then). */
function createExclusive(path: string): boolean {
  const content = `${process.pid}\n`;
  const temporary = `${path}.${process.pid}`;
  try {
    writeFileSync(temporary, content);
    try {
      linkSync(temporary, path);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      // No hard links here (some file systems): an exclusive create, briefly empty.
      return createWithoutLink(path, content);
    }
  } finally {
    rmSync(temporary, { force: true });
  }
}

function createWithoutLink(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

function ownerOf(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, owned by another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
