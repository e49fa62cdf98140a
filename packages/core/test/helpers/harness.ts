import {
  CodecError,
  type ConnectPacket,
  encode,
  type Packet,
  PacketDecoder,
  type PublishPacket,
  type QoS,
} from '@broker/codec';
import {
  Broker,
  type BrokerEventName,
  type BrokerEvents,
  type BrokerOptions,
  createConnectionPair,
  ManualClock,
  type MemoryPeer,
} from '@broker/core';

/**
 * A scripted MQTT client over an in-memory connection: send packets or raw bytes, read what the
 * broker answered as decoded packets. No sockets, no sleeping: time moves with the ManualClock.
 */
export class TestClient {
  readonly peer: MemoryPeer;
  readonly connectionId: string;
  /** Every packet the broker sent, in order; `take()` consumes from the front. */
  readonly received: Packet[] = [];
  private readonly decoder = new PacketDecoder({ protocolLevel: 4 });
  closed = false;

  constructor(broker: Broker, options: { remoteAddress?: string; highWaterMarkBytes?: number } = {}) {
    const { connection, peer } = createConnectionPair({
      ...(options.remoteAddress === undefined ? {} : { remoteAddress: options.remoteAddress }),
      ...(options.highWaterMarkBytes === undefined ? {} : { highWaterMarkBytes: options.highWaterMarkBytes }),
    });
    this.peer = peer;
    this.connectionId = connection.id;
    peer.onData = (bytes) => {
      this.decoder.push(bytes);
      for (;;) {
        const packet = this.decoder.next();
        if (packet === undefined) break;
        if (packet instanceof CodecError) throw packet;
        this.received.push(packet);
      }
    };
    peer.onClose = () => {
      this.closed = true;
    };
    broker.accept(connection);
  }

  send(packet: Packet): this {
    this.peer.write(encode(packet));
    return this;
  }

  sendBytes(bytes: number[] | Uint8Array): this {
    this.peer.write(Uint8Array.from(bytes));
    return this;
  }

  connect(fields: Partial<ConnectPacket> = {}): this {
    return this.send({
      type: 'connect',
      protocolName: 'MQTT',
      protocolLevel: 4,
      clientId: 'client',
      cleanSession: true,
      keepaliveSeconds: 0,
      ...fields,
    });
  }

  publish(topic: string, payload: string, qos: QoS = 0, extra: Partial<PublishPacket> = {}): this {
    return this.send({
      type: 'publish',
      topic,
      payload: new TextEncoder().encode(payload),
      qos,
      retain: false,
      dup: false,
      packetId: qos > 0 ? 1 : undefined,
      ...extra,
    });
  }

  subscribe(topicFilter: string, qos: QoS = 0, packetId = 1): this {
    return this.send({ type: 'subscribe', packetId, subscriptions: [{ topicFilter, qos }] });
  }

  /** Sends DISCONNECT. */
  disconnect(): this {
    return this.send({ type: 'disconnect' });
  }

  puback(packetId: number): this {
    return this.send({ type: 'puback', packetId });
  }

  pubrec(packetId: number): this {
    return this.send({ type: 'pubrec', packetId });
  }

  pubrel(packetId: number): this {
    return this.send({ type: 'pubrel', packetId });
  }

  pubcomp(packetId: number): this {
    return this.send({ type: 'pubcomp', packetId });
  }

  /** Removes and returns the received packets of one type (others stay). */
  takeType<T extends Packet['type']>(type: T): Array<Extract<Packet, { type: T }>> {
    const out: Array<Extract<Packet, { type: T }>> = [];
    for (let i = 0; i < this.received.length; ) {
      const packet = this.received[i]!;
      if (packet.type === type) {
        out.push(packet as Extract<Packet, { type: T }>);
        this.received.splice(i, 1);
      } else i++;
    }
    return out;
  }

  /** Removes and returns every packet received so far. */
  take(): Packet[] {
    return this.received.splice(0);
  }

  /** Removes and returns the received PUBLISH packets, as plain records with text payloads. */
  takePublishes(): Array<{
    topic: string;
    payload: string;
    qos: QoS;
    retain: boolean;
    dup: boolean;
    packetId: number | undefined;
  }> {
    return this.take()
      .filter((p): p is PublishPacket => p.type === 'publish')
      .map((p) => ({
        topic: p.topic,
        payload: new TextDecoder().decode(p.payload),
        qos: p.qos,
        retain: p.retain,
        dup: p.dup,
        packetId: p.packetId,
      }));
  }
}

export function makeBroker(options: BrokerOptions = {}): { broker: Broker; clock: ManualClock } {
  const clock = new ManualClock(1_000_000);
  const broker = new Broker({ clock, ...options });
  return { broker, clock };
}

/** Connects a client and consumes its CONNACK. */
export function connected(broker: Broker, clientId: string, fields: Partial<ConnectPacket> = {}): TestClient {
  const client = new TestClient(broker).connect({ clientId, ...fields });
  // Only the CONNACK: a resumed session may be sent its messages right after it.
  const connack = client.received.shift();
  if (connack?.type !== 'connack' || connack.returnCode !== 0) {
    throw new Error(`expected CONNACK 0 for ${clientId}, got ${JSON.stringify(connack)}`);
  }
  return client;
}

/** Lets promise callbacks (async hook decisions) run. Not a sleep: no time passes on the clock. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Records every event of the given names, in order, as [name, event]. */
export function recordEvents<K extends BrokerEventName>(
  broker: Broker,
  names: readonly K[],
): Array<{ [N in K]: [N, BrokerEvents[N]] }[K]> {
  const log: Array<{ [N in K]: [N, BrokerEvents[N]] }[K]> = [];
  for (const name of names) {
    broker.on(name, (event) => {
      log.push([name, event] as { [N in K]: [N, BrokerEvents[N]] }[K]);
    });
  }
  return log;
}

/** The events of one name a listener collects. */
export function collect<K extends BrokerEventName>(broker: Broker, name: K): Array<BrokerEvents[K]> {
  const list: Array<BrokerEvents[K]> = [];
  broker.on(name, (event) => {
    list.push(event);
  });
  return list;
}

const text = new TextEncoder();

/** An MQTT UTF-8 string: two length bytes, then the bytes. */
export function utf8Field(value: string): number[] {
  const bytes = [...text.encode(value)];
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
}

/** A packet's bytes from its first byte and body (remaining length below 128). */
export function rawPacket(firstByte: number, body: number[]): number[] {
  if (body.length > 127) throw new Error('rawPacket: body too long for this helper');
  return [firstByte, body.length, ...body];
}

/** A CONNECT's bytes with any protocol name and level (clean session, no keep-alive). */
export function rawConnect(protocolName: string, level: number, clientId = 'raw'): number[] {
  return rawPacket(0x10, [...utf8Field(protocolName), level, 0x02, 0x00, 0x00, ...utf8Field(clientId)]);
}

export function bytesOf(value: string): Uint8Array {
  return text.encode(value);
}
