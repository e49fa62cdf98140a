/**
 * Every error this package produces. Callers match on `code` (a string literal), never on `instanceof`,
 * so that two copies of the package in one process still agree.
 */
export type TransportErrorCode =
  /** A certificate, key, PFX or CA file named in the options does not exist or cannot be read. */
  | 'TRANSPORT_CERT_FILE_MISSING'
  /** The PFX password or the PEM key passphrase is wrong (or missing). */
  | 'TRANSPORT_CERT_PASSWORD'
  /** A certificate was given without its private key, or with a key that does not match it. */
  | 'TRANSPORT_CERT_KEY_MISSING'
  /** A certificate, key or CA could not be parsed, or the TLS options were refused by OpenSSL. */
  | 'TRANSPORT_CERT_INVALID'
  /** The options given to a listener are inconsistent. */
  | 'TRANSPORT_INVALID_OPTIONS'
  /** `start()` could not bind (address in use, permission denied, bad host …). */
  | 'TRANSPORT_LISTEN_FAILED'
  /** `start()` was called on a listener that is already started. */
  | 'TRANSPORT_ALREADY_STARTED'
  /** No byte arrived (or the TLS/WebSocket handshake did not finish) within `connectTimeoutMs`. */
  | 'TRANSPORT_CONNECT_TIMEOUT'
  /** `onConnectionRequest` returned false, threw or rejected. */
  | 'TRANSPORT_CONNECTION_REFUSED'
  /** The listener already holds `maxConnections` connections. */
  | 'TRANSPORT_MAX_CONNECTIONS'
  /** The TLS handshake failed (protocol version, cipher, bad record …). */
  | 'TRANSPORT_TLS_HANDSHAKE'
  /** The client certificate was missing or refused (by verification or by `onClientCertificate`). */
  | 'TRANSPORT_CLIENT_CERT_REFUSED'
  /** The WebSocket upgrade was refused (wrong path, origin or subprotocol, not an upgrade). */
  | 'TRANSPORT_WS_UPGRADE_REFUSED'
  /** A WebSocket peer sent a text frame: MQTT over WebSocket uses binary frames only. */
  | 'TRANSPORT_WS_TEXT_FRAME'
  /** The WebSocket peer closed with a close code other than normal closure, or broke the protocol. */
  | 'TRANSPORT_WS_PROTOCOL'
  /** The socket reported an error (reset by peer, broken pipe …); the Node error is in `cause`. */
  | 'TRANSPORT_SOCKET_ERROR'
  /** The connection was already closed. */
  | 'TRANSPORT_CLOSED';

/** Where an error came from, beyond its message. */
export interface TransportErrorOptions {
  /** The listener's name, e.g. `tls://0.0.0.0:8883`. */
  listener?: string | undefined;
  /** The file involved, for certificate errors. */
  file?: string | undefined;
  /** The underlying error. */
  cause?: unknown;
}

/** The one error class of this package: a message for humans, a `code` for programs. */
export class TransportError extends Error {
  /** Stable, machine-readable reason. */
  readonly code: TransportErrorCode;
  /** The listener that produced the error, when there is one. */
  readonly listener: string | undefined;
  /** The file involved (certificate errors). */
  readonly file: string | undefined;

  constructor(code: TransportErrorCode, message: string, options: TransportErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TransportError';
    this.code = code;
    this.listener = options.listener;
    this.file = options.file;
  }
}

const codes: ReadonlySet<string> = new Set<TransportErrorCode>([
  'TRANSPORT_CERT_FILE_MISSING',
  'TRANSPORT_CERT_PASSWORD',
  'TRANSPORT_CERT_KEY_MISSING',
  'TRANSPORT_CERT_INVALID',
  'TRANSPORT_INVALID_OPTIONS',
  'TRANSPORT_LISTEN_FAILED',
  'TRANSPORT_ALREADY_STARTED',
  'TRANSPORT_CONNECT_TIMEOUT',
  'TRANSPORT_CONNECTION_REFUSED',
  'TRANSPORT_MAX_CONNECTIONS',
  'TRANSPORT_TLS_HANDSHAKE',
  'TRANSPORT_CLIENT_CERT_REFUSED',
  'TRANSPORT_WS_UPGRADE_REFUSED',
  'TRANSPORT_WS_TEXT_FRAME',
  'TRANSPORT_WS_PROTOCOL',
  'TRANSPORT_SOCKET_ERROR',
  'TRANSPORT_CLOSED',
]);

/**
 * True when `error` carries one of this package's codes (optionally a given one). It checks the `code`
 * property rather than the class, so errors from another copy of the package match too.
 */
export function isTransportError(error: unknown, code?: TransportErrorCode): error is TransportError {
  if (typeof error !== 'object' || error === null) return false;
  const value = (error as { code?: unknown }).code;
  if (typeof value !== 'string' || !codes.has(value)) return false;
  return code === undefined || value === code;
}

/** Wraps whatever a socket emitted into a TransportError, keeping the original as `cause`. */
export function toSocketError(error: unknown, listener: string | undefined): TransportError {
  if (isTransportError(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new TransportError('TRANSPORT_SOCKET_ERROR', `socket error: ${message}`, { listener, cause: error });
}
