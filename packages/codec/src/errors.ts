/**
 * Every way bytes can fail to be an MQTT packet, as a stable string code. Codes are API: never
 * renamed or reused. Each is listed in the package README.
 */
export type CodecErrorCode =
  | 'CODEC_MALFORMED_REMAINING_LENGTH'
  | 'CODEC_PACKET_TOO_LARGE'
  | 'CODEC_INVALID_PACKET_TYPE'
  | 'CODEC_INVALID_FLAGS'
  | 'CODEC_INVALID_QOS'
  | 'CODEC_INVALID_PROTOCOL_NAME'
  | 'CODEC_UNSUPPORTED_PROTOCOL_LEVEL'
  | 'CODEC_CONNECT_RESERVED_FLAG'
  | 'CODEC_INVALID_WILL_FLAGS'
  | 'CODEC_PASSWORD_WITHOUT_USERNAME'
  | 'CODEC_MALFORMED_UTF8'
  | 'CODEC_UTF8_NULL_CHARACTER'
  | 'CODEC_INVALID_TOPIC_NAME'
  | 'CODEC_INVALID_TOPIC_FILTER'
  | 'CODEC_NO_TOPIC_FILTERS'
  | 'CODEC_INVALID_PACKET_ID'
  | 'CODEC_INVALID_SUBSCRIPTION_OPTIONS'
  | 'CODEC_INVALID_RETURN_CODE'
  | 'CODEC_INVALID_CONNACK_FLAGS'
  | 'CODEC_LENGTH_MISMATCH'
  | 'CODEC_INVALID_ARGUMENT';

/** The reference component's error numbers: 600 is a protocol error, 601 an invalid topic. */
export type ReferenceErrorCode = 600 | 601;

export interface CodecErrorDetails {
  /** The packet type (1–15) the error was found in, when the fixed header was read. */
  packetType?: number | undefined;
  /**
   * The CONNACK return code a server should answer with before closing, when the standard asks
   * for one (only 0x01, unacceptable protocol level [MQTT-3.1.2-2]); absent means close silently.
   */
  connackReturnCode?: number | undefined;
  /** The protocol level found in a refused CONNECT, so the answer can be shaped for it. */
  protocolLevel?: number | undefined;
  cause?: unknown;
}

/**
 * An error of the codec. Match on `code` (stable), not on the class: two copies of this package may
 * be loaded. `referenceCode` is the number the reference component reports for it.
 */
export class CodecError extends Error {
  override readonly name = 'CodecError';
  readonly code: CodecErrorCode;
  readonly referenceCode: ReferenceErrorCode;
  readonly packetType: number | undefined;
  readonly connackReturnCode: number | undefined;
  readonly protocolLevel: number | undefined;

  constructor(code: CodecErrorCode, message: string, details: CodecErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.referenceCode =
      code === 'CODEC_INVALID_TOPIC_NAME' || code === 'CODEC_INVALID_TOPIC_FILTER' ? 601 : 600;
    this.packetType = details.packetType;
    this.connackReturnCode = details.connackReturnCode;
    this.protocolLevel = details.protocolLevel;
  }
}

/** True for any codec error, also one made by another copy of this package. */
export function isCodecError(value: unknown): value is CodecError {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { code?: unknown }).code === 'string' &&
    (value as { code: string }).code.startsWith('CODEC_')
  );
}
