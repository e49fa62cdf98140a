/**
 * The LogStore's lock file: two processes must not append to one log. `<log>.lock` holds the owner's
 * pid and, on Linux, the owner's start time (`/proc/<pid>/stat` field 22); it is made with an exclusive
 * create (a hard link of a file already holding them, so no one sees it empty), removed on close, and
 * taken over when its owner is not a live process (a crashed owner). The start time is what makes that
 * safe where pids repeat: a container restarted after a crash runs its processes under the same small
 * pids, so a lock naming pid 1 or 7 would otherwise look held forever. Advisory: it protects against a
 * second broker on the same data directory, not against anything that ignores it.
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
    if (owner !== undefined && isAlive(owner) && (owner.pid !== process.pid || held.has(key))) {
      throw new PersistenceError(
        'PERSIST_OPEN_FAILED',
        `${file} is in use by pid ${owner.pid} (lock file ${path}); one process per log`,
        { file },
      );
    }
    rmSync(path, { force: true });
  }
  throw new PersistenceError('PERSIST_OPEN_FAILED', `${file}: cannot take the lock file ${path}`, { file });
}

/** Creates `path` holding our pid (and start time), unless it exists (false then). */
function createExclusive(path: string): boolean {
  const start = startTimeOf(process.pid);
  const content = start === undefined ? `${process.pid}\n` : `${process.pid} ${start}\n`;
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

/** Who a lock file names: a pid, and the start time it had when it took the lock (if recorded). */
interface Owner {
  pid: number;
  start: string | undefined;
}

function ownerOf(path: string): Owner | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const [pidText, start] = text.trim().split(' ');
  const pid = Number.parseInt(pidText ?? '', 10);
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, start } : undefined;
}

/** The owner still runs: its pid is alive and, where both are known, started when it did. */
function isAlive(owner: Owner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    // EPERM: it exists, owned by another user.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (owner.start === undefined) return true;
  const start = startTimeOf(owner.pid);
  // Another process under the same pid (a restarted container) does not hold the lock.
  return start === undefined || start === owner.start;
}

/**
 * A process's start time in clock ticks since boot (Linux `/proc/<pid>/stat` field 22), which tells a
 * process from a later one under the same pid; undefined where there is no /proc.
 */
export function startTimeOf(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Field 2 (the command) is in parentheses and may hold spaces: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[22 - 3];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}
