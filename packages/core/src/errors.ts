/** Stable codes of core's errors. Codes are API: never renamed or reused; each is in the README. */
export type CoreErrorCode =
  | 'CORE_PROTOCOL_VIOLATION'
  | 'CORE_CONNECT_TIMEOUT'
  | 'CORE_KEEPALIVE_TIMEOUT'
  | 'CORE_IDLE_TIMEOUT'
  | 'CORE_DRAIN_TIMEOUT'
  | 'CORE_CONNECTION_LIMIT'
  | 'CORE_HOOK_FAILED'
  | 'CORE_HOOK_TIMEOUT'
  | 'CORE_SESSION_NOT_FOUND'
  | 'CORE_INVALID_ARGUMENT'
  | 'CORE_BROKER_CLOSED'
  | 'CORE_STORE_FAILED';

/**
 * An error of the engine. `referenceCode` is the reference component's number: 600 for protocol
 * errors, 601 for invalid topics. Match on `code`, not on the class.
 */
export class CoreError extends Error {
  override readonly name = 'CoreError';
  readonly code: CoreErrorCode;
  readonly referenceCode: number;

  constructor(
    code: CoreErrorCode,
    message: string,
    options: { cause?: unknown; referenceCode?: number } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.referenceCode = options.referenceCode ?? 600;
  }
}

/** True for an error of any broker package (codes are prefixed CODEC_, CORE_, TRANSPORT_, PERSIST_). */
export function isBrokerError(value: unknown): value is Error & { code: string } {
  if (typeof value !== 'object' || value === null) return false;
  const code = (value as { code?: unknown }).code;
  return typeof code === 'string' && /^(CODEC|CORE|TRANSPORT|PERSIST)_/.test(code);
}
