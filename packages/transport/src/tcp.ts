import { type Admission, NetListener } from './net-listener.js';
import type { ListenerOptions } from './options.js';
import { SocketConnection } from './socket-connection.js';

export type { SocketConnectionOptions } from './socket-connection.js';
export { SocketConnection } from './socket-connection.js';

/** Options of a plain TCP listener (MQTT's port 1883). */
export type TcpListenerOptions = ListenerOptions;

/** Accepts plain TCP connections. */
export class TcpListener extends NetListener {
  readonly protocol = 'tcp' as const;

  constructor(options: TcpListenerOptions = {}) {
    super(options);
  }

  protected admit(admission: Admission): void {
    const connectTimeoutMs = admission.complete();
    this.deliver(
      new SocketConnection(admission.socket, {
        protocol: 'tcp',
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
