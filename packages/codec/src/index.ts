export {
  decodePacket,
  PARTED_PAYLOAD_MIN_BYTES,
  PacketDecoder,
  type PacketDecoderOptions,
} from './decoder.js';
export { encode, encodedLength, encodeInto } from './encoder.js';
export {
  CodecError,
  type CodecErrorCode,
  type CodecErrorDetails,
  isCodecError,
  type ReferenceErrorCode,
} from './errors.js';
export { encodeAck } from './packets/ack.js';
export { joinParts, partsLength } from './packets/publish.js';
export { copyBytes, MAX_REMAINING_LENGTH, utf8Length } from './primitives.js';
export {
  CONTIGUOUS_PAYLOAD_LIMIT_BYTES,
  encodePublishFrame,
  PublishFrame,
  type PublishFrameInput,
} from './publish-frame.js';
export {
  isValidTopicFilter,
  isValidTopicName,
  topicFilterProblem,
  topicNameProblem,
} from './topic.js';
export {
  type AckPacket,
  type ConnackPacket,
  ConnackReturnCode,
  type ConnectPacket,
  type DisconnectPacket,
  type Packet,
  PacketType,
  type PingreqPacket,
  type PingrespPacket,
  type ProtocolLevel,
  type PubackPacket,
  type PubcompPacket,
  type PublishPacket,
  type PubrecPacket,
  type PubrelPacket,
  type QoS,
  type SubackPacket,
  SubackReturnCode,
  type SubscribePacket,
  type Subscription,
  type UnsubackPacket,
  type UnsubscribePacket,
  type Will,
} from './types.js';
