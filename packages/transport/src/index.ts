// The package root carries only the shared shapes and the errors, so that code typing against a
// Connection loads no listener (and never `ws`). Listeners live in the subpaths /tcp, /tls and /ws.
export type { Connection, ConnectionHandler, Listener } from './connection.js';
export {
  CONNECTION_CLOSE_CHANNEL,
  CONNECTION_OPEN_CHANNEL,
  DEFAULT_HIGH_WATER_MARK_BYTES,
  nextConnectionId,
} from './connection.js';
export type { TransportErrorCode, TransportErrorOptions } from './errors.js';
export { isTransportError, TransportError } from './errors.js';
export type {
  CaSource,
  ClientCertificateInfo,
  ConnectionRejectedEvent,
  ConnectionRequest,
  KeepAliveOptions,
  ListenerOptions,
  PeerCertificate,
  PemData,
  TlsCertificate,
  TlsDetails,
  TlsOptions,
  TlsProtocolVersion,
  TlsStatusEvent,
  TransportProtocol,
} from './options.js';
