import {
  CodecError,
  type ConnectPacket,
  copyBytes,
  encode,
  type Packet,
  PacketDecoder,
  type PublishPacket,
  type QoS,
  type SubscribePacket,
  type UnsubscribePacket,
} from '@broker/codec';
import { isSettled, type Message } from '../message.js';
import type { Connection, ConnectionHandler } from '../ports.js';
import type { Session } from '../session.js';
import type { Broker } from './broker.js';

/**
 * Where a connection is in its life. One field, never a set of booleans:
 * - `connecting`: waiting for CONNECT [MQTT-3.1.0-1];
 * - `authenticating`: CONNECT received, the session decision is pending;
 * - `connected`: CONNACK 0 sent;
 * - `closed`: torn down; nothing more is processed.
 */
export type ClientState = 'connecting' | 'authenticating' | 'connected' | 'closed';

/** A will as kept for an abnormal end: its payload copied out of the received chunk. */
export interface StoredWill {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
}

/**
 * What a held acknowledgement waits for besides its turn: nothing ('turn'); the commit ('commit');
 * or the commit or else its message being settled (the Message: see `Client.sendAck`).
 */
type AckHold = Message | 'turn' | 'commit';

/** Acknowledgements that share one commit, in the order they were made; `holds[i]` is what `acks[i]` waits for. */
interface AckGroup {
  commit: Promise<void>;
  acks: Uint8Array[];
  holds: AckHold[];
  /** How many of `acks` were sent (a prefix may go before the commit, see `Client.sendAck`). */
  released: number;
  isCommitted: boolean;
}

/** Shared by every client until one needs a list of its own (idle connections stay small). */
const NO_ACK_GROUPS: AckGroup[] = [];

// Packets with no content are encoded once.
const PINGRESP = encode({ type: 'pingresp' });

/**
 * One network connection's protocol handling: decodes its bytes, enforces the order of packets and
 * hands each to the broker. It holds the per-connection state; the session holds what outlives it.
 */
export class Client implements ConnectionHandler {
  readonly connection: Connection;
  readonly broker: Broker;
  state: ClientState = 'connecting';
  session: Session | undefined = undefined;
  clientId: string | undefined = undefined;
  username: string | undefined = undefined;
  keepaliveSeconds = 0;
  will: StoredWill | undefined = undefined;
  /**
   * When the last whole packet arrived (keep-alive); until the first one (CONNECT), when the
   * connection was accepted (the connect timeout).
   */
  lastReceivedAtMs: number;
  /** When anything was last sent or received (the idle timeout). */
  lastActivityAtMs: number;
  /** Set while write() reports the connection's buffer above its high-water mark. */
  blockedSinceMs = -1;
  private readonly decoder: PacketDecoder;
  /**
   * Acknowledgements held until the store has committed what they promise, in groups that share
   * one commit, oldest first. Later acknowledgements queue behind them, so the order of PUBACKs and
   * PUBRECs follows the order of the PUBLISH packets [MQTT-4.6.0-2] [MQTT-4.6.0-3].
   */
  private ackGroups: AckGroup[] = NO_ACK_GROUPS;
  /** A decision is pending: packets wait in the decoder so they are handled in order. */
  private isBusy = false;
  /** Backlogged subscribers holding this publisher (publisher flow control): read nothing while > 0. */
  private holdCount = 0;

  constructor(broker: Broker, connection: Connection, nowMs: number) {
    this.broker = broker;
    this.connection = connection;
    this.lastReceivedAtMs = nowMs;
    this.lastActivityAtMs = nowMs;
    this.decoder = new PacketDecoder({ maxPacketBytes: broker.limits.maxPacketBytes });
  }

  get id(): string {
    return this.connection.id;
  }

  get isBlocked(): boolean {
    return this.blockedSinceMs >= 0;
  }

  // ConnectionHandler ------------------------------------------------------------------------

  onData(bytes: Uint8Array): void {
    if (this.state === 'closed') return;
    const now = this.broker.nowMs();
    this.broker.recentNowMs = now;
    this.lastActivityAtMs = now;
    this.broker.counters.bytesReceived += bytes.length;
    this.decoder.push(bytes);
    this.processPackets();
  }

  onDrain(): void {
    if (this.state === 'closed') return;
    this.blockedSinceMs = -1;
    if (this.session !== undefined) this.broker.pump(this.session);
  }

  onClose(error: Error | undefined): void {
    if (this.state === 'closed') return;
    const description =
      error === undefined ? 'connection closed by the client' : `connection error: ${error.message}`;
    // Closed without DISCONNECT: an abnormal end, so the will is published [MQTT-3.1.2-8].
    this.broker.teardown(this, { publishWill: true, statusCode: error === undefined ? 0 : 600, description });
  }

  // Sending -----------------------------------------------------------------------------------

  /** Writes one packet's bytes; notes backpressure. */
  send(bytes: Uint8Array): void {
    if (this.state === 'closed') return;
    // The idle timeout counts data sent as activity too (DefaultIdleTimeout: "sent or received").
    // The broker's recent time (read once per received chunk and per sweep) is precise enough for
    // a timeout in seconds and spares a clock read per packet of a fan-out.
    this.lastActivityAtMs = this.broker.recentNowMs;
    this.broker.counters.bytesSent += bytes.length;
    if (!this.connection.write(bytes) && this.blockedSinceMs < 0) {
      this.blockedSinceMs = this.broker.nowMs();
    }
  }

  sendPacket(packet: Packet): void {
    this.send(encode(packet));
  }

  /**
   * Sends an acknowledgement once the commit it waits for (if any) resolves, after those before it.
   * One of a received message (`message`) may go before its commit: as soon as the message is
   * settled (see `isSettled`), that is, every persistent session it was recorded for acknowledged it
   * already, so a crash could lose nothing the acknowledgement promises. With an online persistent
   * subscriber that is the common case, and the publisher's acknowledgement then waits for that
   * subscriber's instead of for an fsync.
   */
  sendAck(bytes: Uint8Array, commit: Promise<void> | undefined, message?: Message): void {
    const groups = this.ackGroups;
    const last = groups[groups.length - 1];
    if (commit === undefined || (message !== undefined && isSettled(message))) {
      if (last === undefined) this.send(bytes);
      else {
        last.acks.push(bytes);
        last.holds.push('turn');
      }
      return;
    }
    let hold: AckHold = 'commit';
    if (message !== undefined) {
      message.ackWaiter = this;
      hold = message;
    }
    if (last !== undefined && last.commit === commit) {
      last.acks.push(bytes);
      last.holds.push(hold);
      return;
    }
    const group: AckGroup = { commit, acks: [bytes], holds: [hold], released: 0, isCommitted: false };
    // Allocated on first use: most connections never wait for a commit.
    if (groups === NO_ACK_GROUPS) this.ackGroups = [group];
    else groups.push(group);
    commit.then(
      () => {
        group.isCommitted = true;
        this.releaseAcks();
      },
      (error: unknown) => this.broker.storeFailed(this, error),
    );
  }

  /**
   * Sends, oldest first, the held acknowledgements that may go: those whose commit resolved, and
   * before it those whose message is settled, up to the first that must still wait.
   */
  releaseAcks(): void {
    const groups = this.ackGroups;
    while (groups.length > 0) {
      const group = groups[0]!;
      const { acks, holds } = group;
      while (group.released < acks.length) {
        const hold = holds[group.released]!;
        if (!group.isCommitted && hold !== 'turn' && (hold === 'commit' || !isSettled(hold))) return;
        if (typeof hold === 'object') hold.ackWaiter = undefined;
        this.send(acks[group.released]!);
        group.released++;
      }
      groups.shift();
    }
  }

  // Receiving ----------------------------------------------------------------------------------

  /** Handles every whole packet buffered, in order, until one needs an async decision. */
  processPackets(): void {
    while (!this.isBusy && this.holdCount === 0 && this.state !== 'closed') {
      const packet = this.decoder.next();
      if (packet === undefined) return;
      if (packet instanceof CodecError) {
        this.malformed(packet);
        return;
      }
      this.lastReceivedAtMs = this.lastActivityAtMs;
      this.handle(packet);
    }
  }

  /**
   * Holds further packets until `resume` (an async decision is pending). Inbound reading is paused
   * too, so a client cannot make the broker buffer without bound meanwhile.
   */
  suspend(): void {
    this.isBusy = true;
    this.connection.pause();
  }

  /** The pending decision has arrived; `resume` follows once its result is applied. */
  release(): void {
    this.isBusy = false;
  }

  /** Reads and handles packets again, unless applying the decision started another one. */
  resume(): void {
    if (this.state === 'closed' || this.isBusy || this.holdCount > 0) return;
    this.connection.resume();
    this.processPackets();
  }

  /**
   * A subscriber this client published to has a backlog: stop reading, and stop handling packets
   * already read, until every such subscriber has released it. What the client sends meanwhile waits
   * in its socket, so TCP slows it down instead of the broker buffering for it.
   */
  hold(): void {
    if (this.holdCount++ === 0) this.connection.pause();
  }

  /** One subscriber's hold ends; reading resumes once none is left and no decision is pending. */
  unhold(): void {
    if (--this.holdCount > 0 || this.state === 'closed') return;
    // Its silence while held was the broker's doing: its keep-alive counts from the release.
    const now = this.broker.nowMs();
    if (this.lastReceivedAtMs < now) this.lastReceivedAtMs = now;
    if (this.isBusy) return;
    this.connection.resume();
    this.processPackets();
  }

  /** Held by publisher flow control: nothing is read from it. */
  get isHeld(): boolean {
    return this.holdCount > 0;
  }

  private malformed(error: CodecError): void {
    // [MQTT-3.1.2-2] an unacceptable protocol level is answered with CONNACK 0x01, then closed.
    if (this.state === 'connecting' && error.connackReturnCode !== undefined) {
      this.sendPacket({ type: 'connack', sessionPresent: false, returnCode: 1 });
      // end(), not destroy(): the CONNACK must reach the client before the close.
      this.broker.protocolError(this, error.code, error.message, error.referenceCode, false);
      return;
    }
    this.broker.protocolError(this, error.code, error.message, error.referenceCode);
  }

  private handle(packet: Packet): void {
    if (this.state === 'connecting') {
      if (packet.type !== 'connect') {
        this.broker.protocolError(
          this,
          'CORE_PROTOCOL_VIOLATION',
          `the first packet must be CONNECT, got ${packet.type.toUpperCase()} [MQTT-3.1.0-1]`,
        );
        return;
      }
      this.handleConnect(packet);
      return;
    }
    switch (packet.type) {
      case 'publish':
        this.broker.handlePublish(this, packet as PublishPacket);
        return;
      case 'puback':
        this.broker.handlePuback(this, packet.packetId);
        return;
      case 'pubrec':
        this.broker.handlePubrec(this, packet.packetId);
        return;
      case 'pubrel':
        this.broker.handlePubrel(this, packet.packetId);
        return;
      case 'pubcomp':
        this.broker.handlePubcomp(this, packet.packetId);
        return;
      case 'subscribe':
        this.broker.handleSubscribe(this, packet as SubscribePacket);
        return;
      case 'unsubscribe':
        this.broker.handleUnsubscribe(this, packet as UnsubscribePacket);
        return;
      case 'pingreq':
        // [MQTT-3.12.4-1] the server answers PINGREQ with PINGRESP.
        this.send(PINGRESP);
        return;
      case 'disconnect':
        // [MQTT-3.14.4-3] the will is discarded without being published; [MQTT-3.14.4-1] close.
        this.will = undefined;
        this.broker.teardown(this, { publishWill: false, statusCode: 0, description: 'DISCONNECT received' });
        return;
      case 'connect':
        this.broker.protocolError(this, 'CORE_PROTOCOL_VIOLATION', 'a second CONNECT [MQTT-3.1.0-2]');
        return;
      default:
        this.broker.protocolError(
          this,
          'CORE_PROTOCOL_VIOLATION',
          `${packet.type.toUpperCase()} is sent by servers, not clients`,
        );
    }
  }

  private handleConnect(packet: ConnectPacket): void {
    this.keepaliveSeconds = packet.keepaliveSeconds;
    this.username = packet.username;
    const will = packet.will;
    if (will !== undefined) {
      this.will = { topic: will.topic, payload: copyBytes(will.payload), qos: will.qos, retain: will.retain };
    }
    this.state = 'authenticating';
    this.broker.handleConnect(this, packet);
  }
}
