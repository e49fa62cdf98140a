/** Quality of service levels of MQTT 3.1.1. */
export type QoS = 0 | 1 | 2;

/** Control packet type numbers, as the fixed header carries them (MQTT 3.1.1 table 2.1). */
export const PacketType = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
} as const;

/** The protocol levels this codec speaks: 3 is MQTT 3.1 ("MQIsdp"), 4 is MQTT 3.1.1 ("MQTT"). */
export type ProtocolLevel = 3 | 4;

/** CONNACK return codes, named as in MQTT 3.1.1 section 3.2.2.3. */
export const ConnackReturnCode = {
  Accepted: 0,
  UnacceptableProtocolVersion: 1,
  IdentifierRejected: 2,
  ServerUnavailable: 3,
  BadUserNameOrPassword: 4,
  NotAuthorized: 5,
} as const;
export type ConnackReturnCode = (typeof ConnackReturnCode)[keyof typeof ConnackReturnCode];

/** SUBACK return codes: the granted QoS, or 0x80 for a refused filter [MQTT-3.9.3]. */
export const SubackReturnCode = {
  GrantedQoS0: 0,
  GrantedQoS1: 1,
  GrantedQoS2: 2,
  Failure: 0x80,
} as const;
export type SubackReturnCode = (typeof SubackReturnCode)[keyof typeof SubackReturnCode];

/** A will message, carried in CONNECT and published by the server on an abnormal end. */
export interface Will {
  topic: string;
  /** A view of the received bytes; copy it if it must outlive the chunk it came in. */
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
}

export interface ConnectPacket {
  type: 'connect';
  /** "MQTT" at level 4, "MQIsdp" at level 3. */
  protocolName: 'MQTT' | 'MQIsdp';
  protocolLevel: ProtocolLevel;
  clientId: string;
  cleanSession: boolean;
  /** 0 disables keep-alive. */
  keepaliveSeconds: number;
  will?: Will | undefined;
  username?: string | undefined;
  /** Binary data [MQTT-3.1.3.5]; a view of the received bytes. */
  password?: Uint8Array | undefined;
}

export interface ConnackPacket {
  type: 'connack';
  sessionPresent: boolean;
  returnCode: ConnackReturnCode;
}

export interface PublishPacket {
  type: 'publish';
  topic: string;
  /** A view of the received bytes where it arrived whole in one chunk; copy it to keep it. */
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  /** 1–65535 for QoS 1 and 2; absent (undefined) for QoS 0. */
  packetId?: number | undefined;
  /**
   * Set by the decoder for a large PUBLISH (payload of PARTED_PAYLOAD_MIN_BYTES or more) that arrived
   * over several chunks: the payload as views of those chunks, in order, not copied. `payload` joins
   * them into one buffer on first access; a consumer that can write or keep parts (a broker's
   * fan-out: `encodePublishFrame` takes them) reads these instead and never pays for that copy.
   */
  readonly payloadParts?: readonly Uint8Array[] | undefined;
}

export interface PubackPacket {
  type: 'puback';
  packetId: number;
}
export interface PubrecPacket {
  type: 'pubrec';
  packetId: number;
}
export interface PubrelPacket {
  type: 'pubrel';
  packetId: number;
}
export interface PubcompPacket {
  type: 'pubcomp';
  packetId: number;
}

export interface Subscription {
  topicFilter: string;
  qos: QoS;
}

export interface SubscribePacket {
  type: 'subscribe';
  packetId: number;
  subscriptions: Subscription[];
}

export interface SubackPacket {
  type: 'suback';
  packetId: number;
  returnCodes: SubackReturnCode[];
}

export interface UnsubscribePacket {
  type: 'unsubscribe';
  packetId: number;
  topicFilters: string[];
}

export interface UnsubackPacket {
  type: 'unsuback';
  packetId: number;
}

export interface PingreqPacket {
  type: 'pingreq';
}
export interface PingrespPacket {
  type: 'pingresp';
}
export interface DisconnectPacket {
  type: 'disconnect';
}

/** Any MQTT 3.1.1 control packet, discriminated by `type`. */
export type Packet =
  | ConnectPacket
  | ConnackPacket
  | PublishPacket
  | PubackPacket
  | PubrecPacket
  | PubrelPacket
  | PubcompPacket
  | SubscribePacket
  | SubackPacket
  | UnsubscribePacket
  | UnsubackPacket
  | PingreqPacket
  | PingrespPacket
  | DisconnectPacket;

/** The packets that carry nothing but a packet identifier. */
export type AckPacket = PubackPacket | PubrecPacket | PubrelPacket | PubcompPacket | UnsubackPacket;
