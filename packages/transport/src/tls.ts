import type tls from 'node:tls';
import { SocketConnection } from './connection.js';
import { type Admission, NetListener } from './net-listener.js';
import type { ListenerOptions, TlsDetails, TlsOptions } from './options.js';
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
  private readonly engine: TlsEngine;

  constructor(options: TlsListenerOptions) {
    super(options);
    this.engine = new TlsEngine(options, this);
  }

  protected override async prepare(): Promise<void> {
    await this.engine.load();
  }

  protected override async release(): Promise<void> {
    await this.engine.close();
  }

  protected admit(admission: Admission): void {
    this.engine.handshake(admission, this.onSecured);
  }

  private readonly onSecured = (admission: Admission, socket: tls.TLSSocket, details: TlsDetails): void => {
    const connectTimeoutMs = admission.complete();
    const connection = new SocketConnection(socket, {
      protocol: 'tls',
      tls: details,
      rawSocket: admission.socket,
      highWaterMarkBytes: this.highWaterMarkBytes,
      lingerSeconds: this.lingerSeconds,
      connectTimeoutMs,
      listenerName: this.name,
      onClosed: this.forget,
    });
    this.engine.reportNegotiated(connection);
    this.deliver(connection);
  };
}
