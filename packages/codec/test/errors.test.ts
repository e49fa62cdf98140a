/**
 * CodecError and isCodecError: matching on the stable `code` (two copies of the package may be
 * loaded), and the reference component's numbers 600 (protocol error) and 601 (invalid topic).
 */
import { CodecError, type CodecErrorCode, decodePacket, isCodecError } from '@broker/codec';
import { describe, expect, test } from 'vitest';
import { fromHex } from './helpers.js';

const ALL_CODES: readonly CodecErrorCode[] = [
  'CODEC_MALFORMED_REMAINING_LENGTH',
  'CODEC_PACKET_TOO_LARGE',
  'CODEC_INVALID_PACKET_TYPE',
  'CODEC_INVALID_FLAGS',
  'CODEC_INVALID_QOS',
  'CODEC_INVALID_PROTOCOL_NAME',
  'CODEC_UNSUPPORTED_PROTOCOL_LEVEL',
  'CODEC_CONNECT_RESERVED_FLAG',
  'CODEC_INVALID_WILL_FLAGS',
  'CODEC_PASSWORD_WITHOUT_USERNAME',
  'CODEC_MALFORMED_UTF8',
  'CODEC_UTF8_NULL_CHARACTER',
  'CODEC_INVALID_TOPIC_NAME',
  'CODEC_INVALID_TOPIC_FILTER',
  'CODEC_NO_TOPIC_FILTERS',
  'CODEC_INVALID_PACKET_ID',
  'CODEC_INVALID_SUBSCRIPTION_OPTIONS',
  'CODEC_INVALID_RETURN_CODE',
  'CODEC_INVALID_CONNACK_FLAGS',
  'CODEC_LENGTH_MISMATCH',
  'CODEC_INVALID_ARGUMENT',
];

describe('CodecError', () => {
  test('is an Error named CodecError with code, message and details', () => {
    const cause = new Error('inner');
    const e = new CodecError('CODEC_UNSUPPORTED_PROTOCOL_LEVEL', 'level 5', {
      packetType: 1,
      connackReturnCode: 1,
      protocolLevel: 5,
      cause,
    });
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(CodecError);
    expect(e.name).toBe('CodecError');
    expect(e.message).toBe('level 5');
    expect(e.code).toBe('CODEC_UNSUPPORTED_PROTOCOL_LEVEL');
    expect(e.packetType).toBe(1);
    expect(e.connackReturnCode).toBe(1);
    expect(e.protocolLevel).toBe(5);
    expect(e.cause).toBe(cause);
    expect(e.stack).toBeTypeOf('string');
  });

  test('details default to undefined', () => {
    const e = new CodecError('CODEC_LENGTH_MISMATCH', 'short');
    expect(e.packetType).toBeUndefined();
    expect(e.connackReturnCode).toBeUndefined();
    expect(e.protocolLevel).toBeUndefined();
    expect(e.cause).toBeUndefined();
    expect('cause' in e).toBe(false);
  });

  test.each(['CODEC_INVALID_TOPIC_NAME', 'CODEC_INVALID_TOPIC_FILTER'] as const)(
    'referenceCode is 601 (invalid topic) for %s',
    (code) => {
      expect(new CodecError(code, 'x').referenceCode).toBe(601);
    },
  );

  test.each(ALL_CODES.filter((c) => c !== 'CODEC_INVALID_TOPIC_NAME' && c !== 'CODEC_INVALID_TOPIC_FILTER'))(
    'referenceCode is 600 (protocol error) for %s',
    (code) => {
      expect(new CodecError(code, 'x').referenceCode).toBe(600);
    },
  );

  test('decoded topic errors carry 601, other decoding errors 600', () => {
    const name = decodePacket(fromHex('30 05 0003 612f23'));
    expect(name).toMatchObject({ code: 'CODEC_INVALID_TOPIC_NAME', referenceCode: 601 });
    const filter = decodePacket(fromHex('82 07 0001 0002 612b 00'));
    expect(filter).toMatchObject({ code: 'CODEC_INVALID_TOPIC_FILTER', referenceCode: 601 });
    const other = decodePacket(fromHex('f0 00'));
    expect(other).toMatchObject({ code: 'CODEC_INVALID_PACKET_TYPE', referenceCode: 600 });
  });

  test('connackReturnCode is only set for an unsupported protocol level [MQTT-3.1.2-2]', () => {
    const level = decodePacket(fromHex('10 0d 0004 4d515454 05 02 003c 0001 61'));
    expect(level).toMatchObject({ code: 'CODEC_UNSUPPORTED_PROTOCOL_LEVEL', connackReturnCode: 1 });
    const name = decodePacket(fromHex('10 0d 0004 4d515458 04 02 003c 0001 61'));
    expect(name).toMatchObject({ code: 'CODEC_INVALID_PROTOCOL_NAME', connackReturnCode: undefined });
    const reserved = decodePacket(fromHex('10 0d 0004 4d515454 04 03 003c 0001 61'));
    expect(reserved).toMatchObject({ code: 'CODEC_CONNECT_RESERVED_FLAG', connackReturnCode: undefined });
  });
});

describe('isCodecError', () => {
  test.each(ALL_CODES)('true for a CodecError %s', (code) => {
    expect(isCodecError(new CodecError(code, 'x'))).toBe(true);
  });

  test('true for an error returned by the decoder', () => {
    expect(isCodecError(decodePacket(fromHex('f0 00')))).toBe(true);
  });

  test('true for a plain object with a CODEC_ code (an error from another copy of the package)', () => {
    const foreign = { name: 'CodecError', code: 'CODEC_INVALID_FLAGS', message: 'x', referenceCode: 600 };
    expect(isCodecError(foreign)).toBe(true);
    const subclassed = Object.assign(new Error('x'), { code: 'CODEC_LENGTH_MISMATCH' });
    expect(isCodecError(subclassed)).toBe(true);
  });

  test.each([
    ['undefined', undefined],
    ['null', null],
    ['a string code', 'CODEC_INVALID_FLAGS'],
    ['a number', 600],
    ['a plain Error', new Error('CODEC_INVALID_FLAGS')],
    ['a Node system error', Object.assign(new Error('x'), { code: 'ECONNRESET' })],
    ['an object with a numeric code', { code: 600 }],
    ['an object with a lower-case codec_ code', { code: 'codec_invalid_flags' }],
    ['an object without code', { referenceCode: 600 }],
    ['a decoded packet', { type: 'pingreq' }],
    ['an array', ['CODEC_INVALID_FLAGS']],
  ])('false for %s', (_name, value) => {
    expect(isCodecError(value)).toBe(false);
  });

  test('narrows the type', () => {
    const value: unknown = new CodecError('CODEC_INVALID_QOS', 'x');
    if (isCodecError(value)) expect(value.code).toBe('CODEC_INVALID_QOS');
    else throw new Error('not narrowed');
  });
});
