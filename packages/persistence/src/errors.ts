/**
 * Stable codes of `@broker/persistence`'s errors. Codes are API: never renamed or reused; each is
 * listed in the README.
 */
export type PersistenceErrorCode =
  /** The session JSON is not JSON (even after the tolerated `//` comments and trailing commas). */
  | 'PERSIST_INVALID_JSON'
  /** A field of the session JSON is missing, of the wrong type, or has an impossible value. */
  | 'PERSIST_INVALID_FIELD'
  /** A store file was written by a newer, unknown format version. */
  | 'PERSIST_SCHEMA_UNSUPPORTED'
  /** A store file cannot be opened at all (permissions, a path that is not a directory...). */
  | 'PERSIST_OPEN_FAILED'
  /** A store file is not a database, or not one of ours, or its content is damaged. */
  | 'PERSIST_CORRUPT_FILE'
  /** A store could not commit a batch (disk full, I/O error); every later flush fails too. */
  | 'PERSIST_WRITE_FAILED'
  /** A store was used after `close()`. */
  | 'PERSIST_CLOSED';

/**
 * An error of `@broker/persistence`. Match on `code` (or use {@link isPersistenceError}), not on the
 * class: a program may load two copies of the package. Wrapped errors (SQLite's) are in `cause`.
 */
export class PersistenceError extends Error {
  override readonly name = 'PersistenceError';
  readonly code: PersistenceErrorCode;
  /** The field of the session JSON at fault (e.g. `IncomingMessages[0].State`), when there is one. */
  readonly field: string | undefined;
  /** The store file at fault, when there is one. */
  readonly file: string | undefined;

  constructor(
    code: PersistenceErrorCode,
    message: string,
    options: { cause?: unknown; field?: string; file?: string } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.field = options.field;
    this.file = options.file;
  }
}

/** True for an error of this package (a `code` starting with `PERSIST_`), whichever copy made it. */
export function isPersistenceError(value: unknown): value is PersistenceError {
  if (typeof value !== 'object' || value === null) return false;
  const code = (value as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('PERSIST_');
}
