/**
 * The hostile-input harness: a server with an undisturbed bystander subscriber, a record of the
 * broker's `error` and `log` events, and the checks every attack ends with.
 */
import { expect } from 'vitest';
import type { ConfigFile } from '../../src/config.js';
import type { MqttBrokerEvents } from '../../src/mqtt-broker.js';
import { waitUntil } from './clients.js';
import { connected, connectionIdOf, publishPacket, type RawClient, RawPool } from './raw-mqtt.js';
import { startTestServer } from './server.js';

export type ErrorEvent = MqttBrokerEvents['error'];
export type LogEvent = MqttBrokerEvents['log'];

export type TestServer = Awaited<ReturnType<typeof startTestServer>>;

export class HostileHarness {
  server!: TestServer;
  readonly errors: ErrorEvent[] = [];
  readonly logs: LogEvent[] = [];
  readonly pool = new RawPool();
  private bystander!: RawClient;
  private seq = 0;

  async start(config: ConfigFile = {}): Promise<void> {
    this.server = await startTestServer(config);
    this.server.broker.on('error', (e) => {
      this.errors.push({ ...e });
    });
    this.server.broker.on('log', (e) => {
      this.logs.push({ ...e });
    });
    this.bystander = await connected(this.server.tcpPort, { clientId: 'bystander', keepAlive: 0 });
    const ack = await this.bystander.subscribe(1, [['watch/#', 1]]);
    expect(ack.returnCodes).toEqual([1]);
  }

  async stop(): Promise<void> {
    this.pool.closeAll();
    this.bystander?.close();
    await this.server?.stop();
  }

  get port(): number {
    return this.server.tcpPort;
  }

  /** A raw connection, not yet speaking, with the broker's connection id. */
  async open(): Promise<{ client: RawClient; connectionId: string }> {
    const client = await this.pool.open(this.port);
    const connectionId = await connectionIdOf(this.server, client);
    return { client, connectionId };
  }

  /** A raw connection after CONNACK 0, with the broker's connection id. */
  async openConnected(): Promise<{ client: RawClient; connectionId: string }> {
    const client = await this.pool.connected(this.port);
    const connectionId = await connectionIdOf(this.server, client);
    return { client, connectionId };
  }

  /**
   * The error event (or, failing that, a log event) naming this connection, with a non-empty reason.
   * Waits up to `ms`.
   */
  async reasonFor(connectionId: string, ms = 2000): Promise<{ code: string; description: string }> {
    let found: { code: string; description: string } | undefined;
    await waitUntil(
      () => {
        const e = this.errors.find((x) => x.connectionId === connectionId);
        if (e) found = { code: e.code, description: e.description };
        return found !== undefined;
      },
      ms,
      `an 'error' event naming connection ${connectionId}`,
    ).catch(() => {
      const l = this.logs.find((x) => x.connectionId === connectionId);
      if (l) found = { code: `log:${l.type}`, description: l.message };
    });
    if (found === undefined) throw new Error(`no 'error' or 'log' event named connection ${connectionId}`);
    expect(found.description.length).toBeGreaterThan(0);
    return found;
  }

  /**
   * After an attack: (1) a fresh client still connects, and (2) the bystander connected before it
   * still receives a message published now.
   */
  async expectHealthy(): Promise<void> {
    const fresh = await this.pool.connected(this.port);
    const topic = `watch/after-${++this.seq}`;
    fresh.send(publishPacket(topic, 'still here', { qos: 1, packetId: 7 }));
    await fresh.next('puback');
    await waitUntil(
      () => this.bystander.received.some((p) => p.type === 'publish' && p.topic === topic),
      3000,
      `the bystander to receive ${topic}`,
    );
    // Acknowledge what the bystander got so its in-flight window never fills.
    for (const p of this.bystander.drain()) {
      if (p.type === 'publish' && p.packetId !== undefined)
        this.bystander.send(Buffer.from([0x40, 2, p.packetId >> 8, p.packetId & 0xff]));
    }
    expect(this.bystander.closed).toBe(false);
    fresh.close();
  }
}
