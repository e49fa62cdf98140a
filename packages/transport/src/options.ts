import type { TransportError } from './errors.js';

/** The wire a connection arrived on. */
export type TransportProtocol = 'tcp' | 'tls' | 'ws' | 'wss';

/** TCP keep-alive probes. Node 20 sets only the idle time before the first probe (TCP_KEEPIDLE). */
export interface KeepAliveOptions {
  enabled: boolean;
  /** Idle time before the first probe. The probe interval and count stay at the OS defaults: Node 20 cannot set them. */
  initialDelayMs?: number;
}

/** What `onConnectionRequest` learns about a peer before any byte of it is read. */
export interface ConnectionRequest {
  remoteAddress: string;
  remotePort: number;
  protocol: TransportProtocol;
}

/** A peer that reached the listener but never became a Connection, and why. */
export interface ConnectionRejectedEvent {
  remoteAddress: string;
  remotePort: number;
  protocol: TransportProtocol;
  /** The reason, e.g. `TRANSPORT_CONNECT_TIMEOUT`, `TRANSPORT_TLS_HANDSHAKE`, `TRANSPORT_CLIENT_CERT_REFUSED`. */
  error: TransportError;
}

/** Options every listener takes. */
export interface ListenerOptions {
  /** Address to bind. Default `'0.0.0.0'`; use `'::'` for IPv6 (dual-stack on most systems). */
  host?: string;
  /** Port to bind; `0` picks a free ephemeral port, readable afterwards from `address()`. */
  port?: number;
  /** Accept-queue length passed to `listen()`. Default: Node's (511). */
  backlog?: number;
  /** With host `'::'`, refuse IPv4-mapped peers. Default false. */
  ipv6Only?: boolean;
  /** TCP_NODELAY: send small packets at once instead of waiting (Nagle). Default true. */
  noDelay?: boolean;
  /** SO_KEEPALIVE. Default: not touched (OS default, normally off). */
  keepAlive?: KeepAliveOptions;
  /**
   * Node has no SO_LINGER. `0` makes `destroy()` (and refusals) reset the connection with an RST via
   * `socket.resetAndDestroy()`; a positive value bounds how long `end()` waits for the peer to take the
   * queued bytes and close before the connection is reset. Unset: `end()` waits up to 5 s, then resets.
   */
  lingerSeconds?: number;
  /** `write()` returns false once `bufferedBytes` exceeds this. Default 65 536. */
  highWaterMarkBytes?: number;
  /**
   * A connection that has not delivered a single byte within this time is destroyed with
   * `TRANSPORT_CONNECT_TIMEOUT` (for TLS and WSS the time includes the handshakes). Default 30 000; 0 = off.
   */
  connectTimeoutMs?: number;
  /**
   * Admission control, called before any byte is read. Returning (or resolving) false, throwing or
   * rejecting closes the socket at once; no Connection is produced.
   */
  onConnectionRequest?: (request: ConnectionRequest) => boolean | Promise<boolean>;
  /** Reports peers that never became a Connection. Never called for Connections: they have `onClose`. */
  onConnectionRejected?: (event: ConnectionRejectedEvent) => void;
  /** Most connections (established plus being admitted) at once; more are closed on arrival. */
  maxConnections?: number;
}

/** A TLS protocol version as Node and OpenSSL name it. */
export type TlsProtocolVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

/** PEM text or bytes, given inline instead of by file. */
export type PemData = string | Uint8Array;

/** The server certificate and its key. */
export type TlsCertificate =
  | { kind: 'pfx'; file: string; password?: string }
  | { kind: 'pfx'; blob: Uint8Array; password?: string }
  | {
      kind: 'pem';
      certFile: string;
      keyFile: string;
      /** Intermediate certificates sent after the leaf. */
      chainFile?: string;
      /** Passphrase of an encrypted key. */
      passphrase?: string;
    }
  | { kind: 'pem'; cert: PemData; key: PemData; chain?: PemData; passphrase?: string };

/** A CA certificate (PEM) trusted for client certificates: inline text/bytes or `{ file }`. */
export type CaSource = PemData | { file: string };

/** A client certificate as seen by the server. */
export interface PeerCertificate {
  /** DER bytes. */
  encoded: Uint8Array;
  /** Distinguished name, e.g. `CN=client-1, O=Acme`. */
  subject: string;
  issuer: string;
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprint256: string;
  validFrom: string;
  validTo: string;
}

/** What was negotiated on a tls or wss connection. */
export interface TlsDetails {
  /** Negotiated protocol, e.g. `'TLSv1.3'`. */
  protocol: string | null;
  /** Negotiated cipher name. */
  cipher: string | null;
  /** The client certificate verified against the CA list. */
  isPeerAuthorized: boolean;
  /** OpenSSL's verification error code when the certificate did not verify (or none was sent). */
  authorizationError: string | null;
  peerCertificate: PeerCertificate | null;
}

/** Input of the `onClientCertificate` decision. */
export interface ClientCertificateInfo {
  remoteAddress: string;
  remotePort: number;
  /** Null when the client sent none. */
  certificate: PeerCertificate | null;
  isAuthorized: boolean;
  authorizationError: string | null;
}

/** A TLS progress message (the reference's SSLStatus). */
export interface TlsStatusEvent {
  /** Set once the Connection exists. */
  connectionId?: string;
  remoteAddress: string;
  message: string;
}

/** TLS settings shared by the tls and wss listeners. */
export interface TlsOptions {
  certificate: TlsCertificate;
  /** Protocols to accept (Node takes a range: the lowest and highest listed). Default TLS 1.2 and 1.3. */
  enabledProtocols?: readonly TlsProtocolVersion[];
  /** Alternative to `enabledProtocols`. */
  minVersion?: TlsProtocolVersion;
  maxVersion?: TlsProtocolVersion;
  /** OpenSSL cipher list (TLS 1.2 names and TLS 1.3 `TLS_*` suites). Default: Node's. */
  ciphers?: string;
  /** CAs that client certificates must chain to. Default: none (so no client certificate verifies). */
  clientCA?: readonly CaSource[];
  /** Ask the client for a certificate; the connection proceeds without one. */
  requestClientCertificate?: boolean;
  /** Demand a verified client certificate (the reference's SSLAuthenticateClients). */
  requireClientCertificate?: boolean;
  /**
   * The final say on a client certificate, after the handshake and before the Connection is handed out.
   * It may accept one that failed verification or refuse one that passed. Without it, an unverified (or
   * missing) certificate is refused only when `requireClientCertificate` is set.
   */
  onClientCertificate?: (info: ClientCertificateInfo) => boolean | Promise<boolean>;
  /** Append NSS key-log lines (SSLKEYLOGFILE format) to this file, for Wireshark. Debugging only. */
  keyLogFile?: string;
  /** Handshake progress and the negotiated protocol and cipher. */
  onTlsStatus?: (event: TlsStatusEvent) => void;
}
