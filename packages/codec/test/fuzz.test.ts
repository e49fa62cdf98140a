/**
 * Decoder fuzzing: random bytes and mutated valid packets (bit flips, byte insert / delete / replace,
 * truncation, Remaining Length corruption, concatenations with garbage and with copies of itself) fed
 * to PacketDecoder in random chunkings. The decoder never throws, never loops without end, returns only
 * packets / undefined / CodecErrors, never buffers more than it was given, and every packet it returns
 * can be handed to encode(): it encodes, or refuses with CodecError CODEC_INVALID_ARGUMENT.
 *
 * Environment (all optional):
 *   FUZZ_RUNS    number of runs (default 8000: about 2–3 s of testing on one slow core)
 *   FUZZ_MILLIS  stop after this many milliseconds even if FUZZ_RUNS are not done (long runs)
 *   FUZZ_SEED    the fast-check seed (default: random; printed on failure)
 *   FUZZ_PATH    the shrink path of a failure, with FUZZ_SEED, to replay exactly that counterexample
 *   FUZZ_REPORT  write a JSON report (runs, seed, ms, outcome counts, counterexample hex) to this file
 * `pnpm fuzz --minutes N` (scripts/fuzz.mjs) runs this file in rounds with fresh seeds.
 */
import { writeFileSync } from 'node:fs';
import {
  CodecError,
  decodePacket,
  encode,
  isCodecError,
  type Packet,
  PacketDecoder,
  type QoS,
  type SubackReturnCode,
} from '@broker/codec';
import { fc } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { packetFixtures } from './fixtures/packets.js';
import { concat, fromHex, toHex } from './helpers.js';

const env = process.env;
const RUNS = Number(env['FUZZ_RUNS'] ?? 8000);
const MILLIS = env['FUZZ_MILLIS'] === undefined ? undefined : Number(env['FUZZ_MILLIS']);
const SEED =
  env['FUZZ_SEED'] === undefined ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0 : Number(env['FUZZ_SEED']);
const PATH = env['FUZZ_PATH'];
const REPORT = env['FUZZ_REPORT'];

// ------------------------------------------------------------------------------------------------
// Seeds: the hand-written fixture packets and generated valid packets, encoded.

const fixtureBytes = packetFixtures.map((f) => fromHex(f.hex));
const text = fc.string({ unit: fc.constantFrom('a', 'b', '/', 'é', '€', '\u{1F600}', '0'), maxLength: 12 });
const topic = text.map((t) => `t/${t.replaceAll('/', '')}`);
const filter = fc.constantFrom('a/+', 'a/#', '#', '+/+', 'x', 'sport/tennis/+', '$SYS/#');
const qos = fc.constantFrom<QoS>(0, 1, 2);
const packetId = fc.integer({ min: 1, max: 65535 });
const payload = fc.oneof(
  { weight: 5, arbitrary: fc.uint8Array({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 120, maxLength: 400 }) }, // 2-byte Remaining Length
);
const packetArb: fc.Arbitrary<Packet> = fc.oneof(
  fc.record({ topic, payload, qos, retain: fc.boolean(), dup: fc.boolean(), packetId }).map(
    (p): Packet => ({
      type: 'publish',
      topic: p.topic,
      payload: p.payload,
      qos: p.qos,
      retain: p.retain,
      dup: p.qos > 0 && p.dup,
      packetId: p.qos > 0 ? p.packetId : undefined,
    }),
  ),
  fc
    .record({
      level: fc.constantFrom<3 | 4>(3, 4),
      clientId: text,
      cleanSession: fc.boolean(),
      keepaliveSeconds: fc.integer({ min: 0, max: 65535 }),
      will: fc.option(fc.record({ topic, payload, qos, retain: fc.boolean() }), { nil: undefined }),
      username: fc.option(text, { nil: undefined }),
      password: fc.option(fc.uint8Array({ maxLength: 12 }), { nil: undefined }),
    })
    .map(
      (c): Packet => ({
        type: 'connect',
        protocolName: c.level === 4 ? 'MQTT' : 'MQIsdp',
        protocolLevel: c.level,
        clientId: c.clientId,
        cleanSession: c.cleanSession,
        keepaliveSeconds: c.keepaliveSeconds,
        will: c.will,
        username: c.username,
        password: c.username === undefined ? undefined : c.password,
      }),
    ),
  fc
    .record({ type: fc.constantFrom('puback', 'pubrec', 'pubrel', 'pubcomp', 'unsuback' as const), packetId })
    .map((a) => a as Packet),
  fc.record({
    type: fc.constant('subscribe' as const),
    packetId,
    subscriptions: fc.array(fc.record({ topicFilter: filter, qos }), { minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    type: fc.constant('unsubscribe' as const),
    packetId,
    topicFilters: fc.array(filter, { minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    type: fc.constant('suback' as const),
    packetId,
    returnCodes: fc.array(fc.constantFrom<SubackReturnCode>(0, 1, 2, 0x80), { minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    type: fc.constant('connack' as const),
    sessionPresent: fc.boolean(),
    returnCode: fc.constantFrom(0, 1, 2, 3, 4, 5 as const),
  }),
  fc.constantFrom<Packet>({ type: 'pingreq' }, { type: 'pingresp' }, { type: 'disconnect' }),
);
const validPacketBytes = fc.oneof(
  { weight: 3, arbitrary: packetArb.map((p) => encode(p) as Uint8Array) },
  { weight: 1, arbitrary: fc.constantFrom(...fixtureBytes) },
);

// ------------------------------------------------------------------------------------------------
// Mutations

/** Remaining Length corruptions of one packet: its length bytes replaced by something else. */
const lengthCorruption = fc.oneof(
  fc.record({ op: fc.constant('lenDigit' as const), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('lenDelta' as const), delta: fc.integer({ min: -4, max: 4 }) }),
  // Four or five continuation bytes: overlong and malformed encodings, huge declared sizes.
  fc.record({
    op: fc.constant('lenBytes' as const),
    bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 5 }),
  }),
);
type LengthCorruption = typeof lengthCorruption extends fc.Arbitrary<infer M> ? M : never;

function remainingLengthBytes(n: number): number[] {
  const out: number[] = [];
  do {
    let digit = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) digit |= 0x80;
    out.push(digit);
  } while (n > 0);
  return out;
}

function corruptLength(bytes: Uint8Array, c: LengthCorruption): Uint8Array {
  // The Remaining Length field of a valid packet: bytes 1.. up to the first without the high bit.
  let end = 1;
  while (end < bytes.length && (bytes[end]! & 0x80) !== 0) end++;
  end = Math.min(end + 1, bytes.length);
  const first = bytes[0] ?? 0;
  const body = bytes.subarray(end);
  let field: number[];
  if (c.op === 'lenDigit') field = [c.value];
  else if (c.op === 'lenDelta') field = remainingLengthBytes(Math.max(0, body.length + c.delta));
  else field = c.bytes;
  return concat([Uint8Array.of(first, ...field), body]);
}

const mutation = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ op: fc.constant('replace' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  // Copies a slice of the stream somewhere else: repeated headers, packets cut into other packets.
  fc.record({
    op: fc.constant('duplicate' as const),
    from: fc.nat(),
    length: fc.nat({ max: 64 }),
    to: fc.nat(),
  }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  const out = Array.from(bytes);
  for (const m of mutations) {
    if (m.op === 'insert') {
      out.splice(m.at % (out.length + 1), 0, m.byte);
      continue;
    }
    if (out.length === 0) continue;
    const at = ('at' in m ? m.at : 0) % out.length;
    if (m.op === 'flip') out[at]! ^= 1 << m.bit;
    else if (m.op === 'replace') out[at] = m.byte;
    else if (m.op === 'delete') out.splice(at, m.count);
    else if (m.op === 'truncate') out.length = at;
    else {
      const from = m.from % out.length;
      const slice = out.slice(from, from + m.length);
      out.splice(m.to % (out.length + 1), 0, ...slice);
    }
  }
  return Uint8Array.from(out);
}

/** One segment of a stream: a valid packet, maybe with its length corrupted, or random garbage. */
const segment = fc.oneof(
  { weight: 6, arbitrary: validPacketBytes },
  {
    weight: 2,
    arbitrary: fc.tuple(validPacketBytes, lengthCorruption).map(([bytes, c]) => corruptLength(bytes, c)),
  },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 16 }) },
);

interface FuzzCase {
  kind: 'random' | 'mutated';
  bytes: Uint8Array;
  /** Cut points (taken modulo the length) for the chunking. */
  points: number[];
  maxPacketBytes: number | undefined;
}

const fuzzCase: fc.Arbitrary<FuzzCase> = fc
  .record({
    stream: fc.oneof(
      {
        weight: 1,
        arbitrary: fc.uint8Array({ maxLength: 1024 }).map((bytes) => ({ kind: 'random' as const, bytes })),
      },
      {
        weight: 4,
        arbitrary: fc
          .tuple(
            fc.array(segment, { minLength: 1, maxLength: 6 }),
            fc.array(mutation, { maxLength: 5 }),
            fc.boolean(),
          )
          // Sometimes the whole (mutated) stream twice: a decoder state left over by the first copy.
          .map(([segments, mutations, twice]) => {
            const once = mutate(concat(segments), mutations);
            return { kind: 'mutated' as const, bytes: twice ? concat([once, once]) : once };
          }),
      },
    ),
    points: fc.oneof(
      { weight: 4, arbitrary: fc.array(fc.nat(), { maxLength: 24 }) },
      { weight: 1, arbitrary: fc.constant<number[]>([-1]) }, // -1: one byte at a time
    ),
    maxPacketBytes: fc.option(fc.integer({ min: 2, max: 512 }), { nil: undefined, freq: 4 }),
  })
  .map(({ stream, points, maxPacketBytes }) => ({ ...stream, points, maxPacketBytes }));

function chunk(bytes: Uint8Array, points: readonly number[]): Uint8Array[] {
  if (points.length === 1 && points[0] === -1) return Array.from(bytes, (b) => Uint8Array.of(b));
  const at = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of at) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

// ------------------------------------------------------------------------------------------------
// The property

/** What was seen over all runs, for the report: a fuzz that never decodes anything proves little. */
const outcomes = new Map<string, number>();
const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);

function check(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(message());
}

/** Runs one case; throws (a plain Error naming the broken invariant) on any violation. */
function runCase(c: FuzzCase): void {
  const decoder = new PacketDecoder(
    c.maxPacketBytes === undefined ? {} : { maxPacketBytes: c.maxPacketBytes },
  );
  let pushed = 0;
  let consumed = 0;
  let failure: CodecError | undefined;
  for (const piece of chunk(c.bytes, c.points)) {
    // Copy each chunk: the decoder keeps views of what it was given, and nothing may alias.
    decoder.push(piece.slice());
    pushed += piece.length;
    check(decoder.bufferedBytes <= pushed, () => `bufferedBytes ${decoder.bufferedBytes} > pushed ${pushed}`);
    // Every packet takes at least two bytes, so more calls than this is a loop that does not advance.
    const budget = Math.floor(pushed / 2) + 2;
    for (let calls = 0; ; calls++) {
      check(calls <= budget, () => `next() called ${calls} times after ${pushed} bytes without settling`);
      const before = decoder.bufferedBytes;
      let result: Packet | CodecError | undefined;
      try {
        result = decoder.next();
      } catch (error) {
        throw new Error(`next() threw: ${error instanceof Error ? error.stack : String(error)}`);
      }
      check(
        decoder.bufferedBytes <= pushed,
        () => `bufferedBytes ${decoder.bufferedBytes} > pushed ${pushed}`,
      );
      if (result === undefined) {
        check(decoder.bufferedBytes === before, () => 'next() returned undefined but consumed bytes');
        check(
          decoder.bufferedBytes === pushed - consumed,
          () => `bufferedBytes ${decoder.bufferedBytes}, expected ${pushed - consumed} (pushed − consumed)`,
        );
        break;
      }
      if (result instanceof CodecError) {
        check(/^CODEC_[A-Z0-9_]+$/.test(result.code), () => `odd error code ${result.code}`);
        check(decoder.next() === result && decoder.error === result, () => 'the error is not sticky');
        check(decoder.bufferedBytes === 0, () => 'a failed decoder still buffers bytes');
        count(`error ${result.code}`);
        failure = result;
        break;
      }
      check(
        typeof result === 'object' && result !== null && typeof result.type === 'string',
        () => `next() returned ${String(result)}`,
      );
      const size = before - decoder.bufferedBytes;
      check(size >= 2, () => `a ${result.type} consumed ${size} bytes`);
      if (c.maxPacketBytes !== undefined) {
        check(size <= c.maxPacketBytes, () => `a ${result.type} of ${size} bytes > maxPacketBytes`);
      }
      consumed += size;
      count(`packet ${result.type}`);
      checkReencode(result);
    }
    if (failure !== undefined) break;
  }
}

/** encode() of a decoded packet succeeds (and decodes again), or fails with CODEC_INVALID_ARGUMENT. */
function checkReencode(packet: Packet): void {
  let bytes: Uint8Array;
  try {
    bytes = encode(packet);
  } catch (error) {
    check(
      isCodecError(error) && error.code === 'CODEC_INVALID_ARGUMENT',
      () =>
        `encode(decoded ${packet.type}) threw ${error instanceof Error ? `${error.name} ${(error as { code?: string }).code ?? ''}: ${error.message}` : String(error)}`,
    );
    count(`re-encode refused ${packet.type}`);
    return;
  }
  const again = decodePacket(bytes);
  check(
    !(again instanceof CodecError) && again.type === packet.type,
    () =>
      `decoded ${packet.type} re-encoded to ${toHex(bytes)}, which decodes to ${again instanceof CodecError ? again.code : again.type}`,
  );
}

interface FuzzReport {
  ok: boolean;
  seed: number;
  runs: number;
  ms: number;
  interrupted: boolean;
  outcomes: Record<string, number>;
  failure?: {
    path: string | null;
    error: string;
    kind: string;
    hex: string;
    points: number[];
    maxPacketBytes: number | null;
  };
}

describe('decoder fuzzing', () => {
  it(
    'random and mutated packets in random chunkings: never throws or hangs, bounded buffer, re-encodable',
    () => {
      const started = performance.now();
      const property: fc.IProperty<[FuzzCase]> = fc.property(fuzzCase, (c) => {
        runCase(c);
      });
      const params: fc.Parameters<[FuzzCase]> = {
        numRuns: RUNS,
        seed: SEED,
        ...(PATH === undefined ? {} : { path: PATH }),
        ...(MILLIS === undefined ? {} : { interruptAfterTimeLimit: MILLIS }),
      };
      const details = fc.check(property, params);
      const ms = performance.now() - started;
      const report: FuzzReport = {
        ok: !details.failed,
        seed: details.seed,
        runs: details.numRuns,
        ms: Math.round(ms),
        interrupted: details.interrupted,
        outcomes: Object.fromEntries([...outcomes].sort(([a], [b]) => a.localeCompare(b))),
      };
      const counterexample = details.counterexample?.[0];
      if (details.failed && counterexample !== undefined) {
        report.failure = {
          path: details.counterexamplePath,
          error:
            details.errorInstance instanceof Error
              ? details.errorInstance.message
              : String(details.errorInstance),
          kind: counterexample.kind,
          hex: toHex(counterexample.bytes),
          points: counterexample.points,
          maxPacketBytes: counterexample.maxPacketBytes ?? null,
        };
      }
      if (REPORT !== undefined) writeFileSync(REPORT, `${JSON.stringify(report)}\n`);
      const replay = `replay: FUZZ_SEED=${details.seed} FUZZ_PATH='${details.counterexamplePath ?? ''}'`;
      expect(
        report.failure,
        details.failed ? `${fc.defaultReportMessage(details) ?? 'failed'}\n${replay}` : '',
      ).toBeUndefined();
      expect(details.failed, fc.defaultReportMessage(details)).toBe(false);
      // The fuzz must reach the body decoders, not only fail on the first byte.
      if (details.numRuns >= 1000) {
        expect([...outcomes.keys()].filter((k) => k.startsWith('packet ')).length).toBeGreaterThan(5);
      }
    },
    (MILLIS ?? 30_000) + 60_000,
  );
});
