import type net from 'node:net';
import { type Admission, NetListener } from './net-listener.js';
import type { ListenerOptions, TlsDetails, TlsOptions } from './options.js';
import { SocketConnection } from './socket-connection.js';
import { TlsEngine } from './tls-support.js';

export type {
  CaSource,
  ClientCertificateInfo,
  PeerCertificate,
  PemData,
  TlsCertificate,
  TlsDetails,
  TlsOptions,
  TlsProtocolVersion,
  TlsStatusEvent,
} from './options.js';

/** Options of a TLS listener (MQTT's port 8883): the common listener options plus the TLS settings. */
export interface TlsListenerOptions extends ListenerOptions, TlsOptions {}

/**
 * Accepts TLS connections. Certificates are loaded and checked in `start()`; the client certificate is
 * decided after the handshake and before the Connection is handed to `onConnection`.
 */
export class TlsListener extends NetListener {
  readonly protocol = 'tls' as const;

  constructor(options: TlsListenerOptions) {
    super(options, (owner) => new TlsEngine(options, owner));
  }

  protected admit(admission: Admission, socket: net.Socket, details: TlsDetails | undefined): void {
    const connectTimeoutMs = admission.complete();
    this.deliver(
      new SocketConnection(socket, {
        protocol: 'tls',
        tls: details,
        rawSocket: admission.socket,
        highWaterMarkBytes: this.highWaterMarkBytes,
        lingerSeconds: this.lingerSeconds,
        connectTimeoutMs,
        listenerName: this.name,
        onClosed: this.forget,
        localAddress: this.boundLocalAddress,
        localPort: this.boundLocalPort,
      }),
    );
  }
}
