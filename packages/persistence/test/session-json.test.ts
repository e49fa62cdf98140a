import { readFileSync } from 'node:fs';
import { Broker, ManualClock, MemoryStore, type MessageSnapshot, type SessionSnapshot } from '@broker/core';
import { isPersistenceError, PersistenceError, sessionFromJson, sessionToJson } from '@broker/persistence';
import { MiniClient } from '@broker/persistence/testing';
import { fc, it as fcIt } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
const bytes = (value: string) => new TextEncoder().encode(value);

/** Runs `fn`, expecting a PersistenceError; returns it. */
function failure(fn: () => unknown): PersistenceError {
  try {
    fn();
  } catch (error) {
    if (error instanceof PersistenceError) return error;
    throw error;
  }
  throw new Error('expected a PersistenceError, nothing was thrown');
}

const message = (fields: Partial<MessageSnapshot> = {}): MessageSnapshot => ({
  messageId: 2,
  topic: 'A',
  payload: bytes('Test'),
  qos: 2,
  dup: false,
  retain: false,
  packetId: 2,
  state: 3,
  ...fields,
});

describe('the reference manual example (golden file test/fixtures/reference-example.jsonc)', () => {
  it('is read despite its // comments and trailing commas, and rejected for its incoming State 3', () => {
    const error = failure(() => sessionFromJson(fixture('reference-example.jsonc')));
    expect(error.code).toBe('PERSIST_INVALID_FIELD');
    expect(error.field).toBe('IncomingMessages[0].State');
    expect(error.message).toBe(
      'session JSON: IncomingMessages[0].State 3 is not a state of an incoming message (6–9)',
    );
  });

  it('loads when the incoming State is corrected to 8 (reference-example-corrected.jsonc)', () => {
    expect(sessionFromJson(fixture('reference-example-corrected.jsonc'))).toEqual({
      clientId: 'Client1',
      subscriptions: [{ topicFilter: 'topic name', qos: 2 }],
      incomingMessages: [message({ messageId: 1, packetId: 1, state: 8 })],
      outgoingMessages: [message()],
    });
  });
});

describe('sessionToJson', () => {
  it('writes the reference keys, casing and hex payloads; PacketId -1 for QoS 0 and queued messages', () => {
    const json = sessionToJson({
      clientId: 'Client1',
      subscriptions: [{ topicFilter: 'topic name', qos: 2 }],
      incomingMessages: [message({ messageId: 1, packetId: 1, state: 8 })],
      outgoingMessages: [
        message(),
        message({ messageId: 3, qos: 0, packetId: -1, state: 1, payload: new Uint8Array([0, 0xab, 0xff]) }),
        message({ messageId: 4, qos: 1, packetId: -1, state: 1, retain: true }),
      ],
    });
    expect(json).toBe(
      '{"ClientId":"Client1","Subscriptions":[{"Topic":"topic name","QoS":2}],' +
        '"IncomingMessages":[{"MessageId":1,"Topic":"A","Payload":"54657374","QoS":2,"DUP":false,"Retain":false,"PacketId":1,"State":8}],' +
        '"OutgoingMessages":[{"MessageId":2,"Topic":"A","Payload":"54657374","QoS":2,"DUP":false,"Retain":false,"PacketId":2,"State":3},' +
        '{"MessageId":3,"Topic":"A","Payload":"00ABFF","QoS":0,"DUP":false,"Retain":false,"PacketId":-1,"State":1},' +
        '{"MessageId":4,"Topic":"A","Payload":"54657374","QoS":1,"DUP":false,"Retain":true,"PacketId":-1,"State":1}]}',
    );
  });

  it('refuses to write a snapshot it could not read back, naming the JSON field', () => {
    const error = failure(() =>
      sessionToJson({
        clientId: 'c',
        subscriptions: [],
        incomingMessages: [],
        outgoingMessages: [message({ state: 7 })],
      }),
    );
    expect(error.field).toBe('OutgoingMessages[0].State');
  });

  it('keeps loading the golden file it wrote (test/fixtures/session-v1.json)', () => {
    const golden = fixture('session-v1.json').trim();
    const snapshot = sessionFromJson(golden);
    expect(sessionToJson(snapshot)).toBe(golden);
    expect(snapshot.outgoingMessages.map((m) => m.state)).toEqual([2, 3, 5, 1, 1]);
  });
});

describe('sessionFromJson leniencies', () => {
  it('ignores // comments and trailing commas outside strings only', () => {
    const snapshot = sessionFromJson(`{
      "ClientId": "a//b,}", // the id has // and ,} in it
      "Subscriptions": [{"Topic": "http://x/#", "QoS": 1,},],
    }`);
    expect(snapshot.clientId).toBe('a//b,}');
    expect(snapshot.subscriptions).toEqual([{ topicFilter: 'http://x/#', qos: 1 }]);
  });

  it('keeps escaped quotes inside strings', () => {
    expect(sessionFromJson('{"ClientId":"say \\"hi\\" // not a comment",}').clientId).toBe(
      'say "hi" // not a comment',
    );
  });

  it('treats absent lists as empty and an absent PacketId as -1, and reads lower-case hex', () => {
    const snapshot = sessionFromJson(
      '{"ClientId":"c","OutgoingMessages":[{"MessageId":5,"Topic":"t","Payload":"abcdef","QoS":1,"DUP":false,"Retain":false,"State":1}]}',
    );
    expect(snapshot).toEqual({
      clientId: 'c',
      subscriptions: [],
      incomingMessages: [],
      outgoingMessages: [
        {
          messageId: 5,
          topic: 't',
          payload: new Uint8Array([0xab, 0xcd, 0xef]),
          qos: 1,
          dup: false,
          retain: false,
          packetId: -1,
          state: 1,
        },
      ],
    });
  });

  it('rejects unknown keys by default, with a hint for a casing mistake, and ignores them on request', () => {
    const json = '{"ClientId":"c","Subscriptions":[{"Topic":"t","Qos":1,"QoS":1}]}';
    const error = failure(() => sessionFromJson(json));
    expect(error.field).toBe('Subscriptions[0].Qos');
    expect(error.message).toContain('did you mean "QoS"');
    expect(failure(() => sessionFromJson('{"ClientId":"c","Extra":1}')).field).toBe('Extra');
    expect(sessionFromJson(json, { unknownKeys: 'ignore' }).subscriptions).toEqual([
      { topicFilter: 't', qos: 1 },
    ]);
  });
});

interface JsonMessage {
  MessageId?: unknown;
  Topic?: unknown;
  Payload?: unknown;
  QoS?: unknown;
  DUP?: unknown;
  Retain?: unknown;
  PacketId?: unknown;
  State?: unknown;
}
interface JsonSession {
  ClientId?: unknown;
  Subscriptions: Array<{ Topic?: unknown; QoS?: unknown }>;
  IncomingMessages: Array<JsonMessage | string>;
  OutgoingMessages: JsonMessage[] | Record<string, never>;
}

describe('sessionFromJson errors name the field and the reason', () => {
  const valid = (): JsonSession =>
    JSON.parse(
      sessionToJson({
        clientId: 'c',
        subscriptions: [{ topicFilter: 's/#', qos: 1 }],
        incomingMessages: [message({ messageId: 1, packetId: 1, state: 8 })],
        outgoingMessages: [message(), message({ messageId: 3, qos: 0, packetId: -1, state: 1 })],
      }),
    );
  const cases: Array<[string, (j: JsonSession) => void, string, RegExp]> = [
    [
      'odd hex',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[0]!.Payload = '546';
      },
      'OutgoingMessages[0].Payload',
      /odd number/,
    ],
    [
      'non-hex',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[0]!.Payload = '54zz';
      },
      'OutgoingMessages[0].Payload',
      /non-hexadecimal character "z" at offset 2/,
    ],
    [
      'QoS 3',
      (j) => {
        (j.Subscriptions as JsonMessage[])[0]!.QoS = 3;
      },
      'Subscriptions[0].QoS',
      /0, 1 or 2/,
    ],
    [
      'QoS as string',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[0]!.QoS = '2';
      },
      'OutgoingMessages[0].QoS',
      /must be an integer, got a string/,
    ],
    [
      'incoming state 3',
      (j) => {
        (j.IncomingMessages as JsonMessage[])[0]!.State = 3;
      },
      'IncomingMessages[0].State',
      /incoming message \(6–9\)/,
    ],
    [
      'outgoing state 8',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[0]!.State = 8;
      },
      'OutgoingMessages[0].State',
      /outgoing message \(1–5\)/,
    ],
    [
      'state 10',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[0]!.State = 10;
      },
      'OutgoingMessages[0].State',
      /10 = done is never stored/,
    ],
    [
      'state/QoS mismatch',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[0]!.State = 2;
      },
      'OutgoingMessages[0].State',
      /QoS 1 state/,
    ],
    [
      'PacketId 0',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[0]!.PacketId = 0;
      },
      'OutgoingMessages[0].PacketId',
      /1–65535/,
    ],
    [
      'PacketId 65536',
      (j) => {
        (j.IncomingMessages as JsonMessage[])[0]!.PacketId = 65536;
      },
      'IncomingMessages[0].PacketId',
      /1–65535/,
    ],
    [
      'PacketId for QoS 0',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[1]!.PacketId = 4;
      },
      'OutgoingMessages[1].PacketId',
      /-1 \(or absent\) for a QoS 0/,
    ],
    [
      'duplicate MessageId',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[1]!.MessageId = 1;
      },
      'OutgoingMessages[1].MessageId',
      /duplicate/,
    ],
    [
      'duplicate PacketId',
      (j) => {
        (j.OutgoingMessages as JsonMessage[]).push({
          ...(j.OutgoingMessages as JsonMessage[])[0],
          MessageId: 9,
        });
      },
      'OutgoingMessages[2].PacketId',
      /used by two/,
    ],
    [
      'missing ClientId',
      (j) => {
        delete j.ClientId;
      },
      'ClientId',
      /missing/,
    ],
    [
      'empty ClientId',
      (j) => {
        j.ClientId = '';
      },
      'ClientId',
      /empty/,
    ],
    [
      'ClientId number',
      (j) => {
        j.ClientId = 5;
      },
      'ClientId',
      /must be a string/,
    ],
    [
      'DUP as 0',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[0]!.DUP = 0;
      },
      'OutgoingMessages[0].DUP',
      /true or false/,
    ],
    [
      'missing Topic',
      (j) => {
        delete (j.IncomingMessages as JsonMessage[])[0]!.Topic;
      },
      'IncomingMessages[0].Topic',
      /missing/,
    ],
    [
      'wildcard topic',
      (j) => {
        (j.OutgoingMessages as JsonMessage[])[0]!.Topic = 'a/+';
      },
      'OutgoingMessages[0].Topic',
      /\+ or #/,
    ],
    [
      'bad filter',
      (j) => {
        (j.Subscriptions as JsonMessage[])[0]!.Topic = 'a/#/b';
      },
      'Subscriptions[0].Topic',
      /#/,
    ],
    [
      'duplicate filter',
      (j) => {
        j.Subscriptions.push({ Topic: 's/#', QoS: 0 });
      },
      'Subscriptions[1].Topic',
      /twice/,
    ],
    [
      'list not an array',
      (j) => {
        j.OutgoingMessages = {};
      },
      'OutgoingMessages',
      /must be an array/,
    ],
    [
      'message not an object',
      (j) => {
        j.IncomingMessages[0] = 'x';
      },
      'IncomingMessages[0]',
      /must be an object/,
    ],
    [
      'MessageId 0',
      (j) => {
        (j.IncomingMessages as JsonMessage[])[0]!.MessageId = 0;
      },
      'IncomingMessages[0].MessageId',
      /positive/,
    ],
    [
      'fractional MessageId',
      (j) => {
        (j.IncomingMessages as JsonMessage[])[0]!.MessageId = 1.5;
      },
      'IncomingMessages[0].MessageId',
      /integer/,
    ],
  ];
  it.each(cases)('%s', (_, mutate, field, reason) => {
    const json = valid();
    mutate(json);
    const error = failure(() => sessionFromJson(JSON.stringify(json)));
    expect(error.code).toBe('PERSIST_INVALID_FIELD');
    expect(error.field).toBe(field);
    expect(error.message).toMatch(reason);
    expect(isPersistenceError(error)).toBe(true);
  });

  it('PERSIST_INVALID_JSON for text that is not JSON, and for a non-string', () => {
    expect(failure(() => sessionFromJson('{"ClientId": ')).code).toBe('PERSIST_INVALID_JSON');
    expect(failure(() => sessionFromJson(42 as unknown as string)).code).toBe('PERSIST_INVALID_JSON');
    expect(failure(() => sessionFromJson('[]')).field).toBe('$');
  });
});

// Property tests ------------------------------------------------------------------------------------

const level = fc.constantFrom('a', 'b', 'sensor', 'x y', 'é', '0', '');
const topicName = fc
  .array(level, { minLength: 1, maxLength: 4 })
  .map((levels) => levels.join('/'))
  .filter((t) => t.length > 0);
const topicFilter = fc
  .tuple(fc.array(fc.oneof(level, fc.constant('+')), { minLength: 1, maxLength: 4 }), fc.boolean())
  .map(([levels, hasHash]) => (hasHash ? [...levels, '#'] : levels).join('/'))
  .filter((t) => t.length > 0);
const qos = fc.constantFrom(0 as const, 1 as const, 2 as const);

/** A message of a direction, with its state agreeing with its QoS; ids are set afterwards. */
const rawMessage = (direction: 'in' | 'out') =>
  fc
    .record({
      topic: topicName,
      payload: fc.uint8Array({ maxLength: 40 }),
      dup: fc.boolean(),
      retain: fc.boolean(),
      state: direction === 'in' ? fc.constantFrom(6, 7, 8, 9) : fc.constantFrom(1, 2, 3, 4, 5),
      queuedQos: qos,
    })
    .map(({ queuedQos, state, ...rest }) => ({
      ...rest,
      state: state as MessageSnapshot['state'],
      qos: (state === 1 ? queuedQos : state === 2 || state === 6 ? 1 : 2) as 0 | 1 | 2,
    }));

const snapshotArb: fc.Arbitrary<SessionSnapshot> = fc
  .record({
    clientId: fc.string({ minLength: 1, maxLength: 30 }),
    subscriptions: fc.uniqueArray(fc.record({ topicFilter, qos }), {
      maxLength: 5,
      selector: (s) => s.topicFilter,
    }),
    incoming: fc.array(rawMessage('in'), { maxLength: 5 }),
    outgoing: fc.array(rawMessage('out'), { maxLength: 8 }),
    firstId: fc.integer({ min: 1, max: 2 ** 40 }),
    firstPacketId: fc.integer({ min: 0, max: 65534 }),
  })
  .map(({ clientId, subscriptions, incoming, outgoing, firstId, firstPacketId }) => {
    let nextId = firstId;
    // 7919 is prime to 65535: distinct packet ids for distinct positions.
    const withIds = (list: typeof incoming) =>
      list.map(
        (m, i): MessageSnapshot => ({
          ...m,
          messageId: nextId++,
          packetId: m.state === 1 ? -1 : ((firstPacketId + i * 7919) % 65535) + 1,
        }),
      );
    return {
      clientId,
      subscriptions,
      incomingMessages: withIds(incoming),
      outgoingMessages: withIds(outgoing),
    };
  });

describe('properties', () => {
  fcIt.prop([snapshotArb])('snapshot -> JSON -> snapshot is the identity', (snapshot) => {
    expect(sessionFromJson(sessionToJson(snapshot))).toEqual(snapshot);
    expect(sessionFromJson(sessionToJson(snapshot, { space: 2 }))).toEqual(snapshot);
  });

  /** Every place in the session JSON a mutation can hit: [container, key or index]. */
  type Container = Record<string | number, unknown>;
  const jsonPlace = (json: Container, choice: number): [Container, string | number] => {
    const places: Array<[Container, string | number]> = [];
    for (const key of Object.keys(json)) places.push([json, key]);
    for (const list of ['Subscriptions', 'IncomingMessages', 'OutgoingMessages']) {
      const items = json[list] as Container[];
      items.forEach((item, i) => {
        places.push([items as unknown as Container, i]);
        for (const key of Object.keys(item)) places.push([item, key]);
      });
    }
    return places[choice % places.length]!;
  };

  fcIt.prop(
    [
      snapshotArb,
      fc.nat(),
      fc.oneof(
        fc.record({ kind: fc.constant('set' as const), value: fc.jsonValue({ maxDepth: 2 }) }),
        fc.record({ kind: fc.constant('delete' as const) }),
        fc.record({
          kind: fc.constant('add' as const),
          // 'length' on an array would make the test's own mutation throw, not the code under test.
          key: fc.string({ maxLength: 8 }).filter((k) => k !== 'length' && k !== '__proto__'),
          value: fc.jsonValue({ maxDepth: 1 }),
        }),
      ),
    ],
    { numRuns: 500 },
  )(
    'a mutated session gives a valid snapshot or a PersistenceError naming a field, and core accepts what we accept',
    (snapshot, choice, mutation) => {
      const json = JSON.parse(sessionToJson(snapshot));
      const [target, key] = jsonPlace(json, choice);
      if (mutation.kind === 'set') target[key] = mutation.value;
      else if (mutation.kind === 'delete') delete target[key];
      else if (typeof target[key] === 'object' && target[key] !== null)
        (target[key] as Record<string, unknown>)[mutation.key] = mutation.value;
      let loaded: SessionSnapshot;
      try {
        loaded = sessionFromJson(JSON.stringify(json));
      } catch (error) {
        expect(error).toBeInstanceOf(PersistenceError);
        expect((error as PersistenceError).code).toBe('PERSIST_INVALID_FIELD');
        expect((error as PersistenceError).field).toMatch(/^(\$|[A-Za-z_$].*)/);
        return;
      }
      // What sessionFromJson accepts, core's loadSession accepts.
      new Broker({ clock: new ManualClock(0) }).loadSession(loaded);
    },
  );

  fcIt.prop([fc.string({ maxLength: 60 })], { numRuns: 500 })(
    'any text gives a snapshot or a PersistenceError, never another exception',
    (text) => {
      try {
        sessionFromJson(text);
      } catch (error) {
        expect(isPersistenceError(error)).toBe(true);
      }
    },
  );
});

// End to end with a core Broker -------------------------------------------------------------------

describe('saveSession -> sessionToJson -> sessionFromJson -> loadSession', () => {
  it('moves a persistent session with its messages and states to another broker', () => {
    const first = new Broker({ clock: new ManualClock(1_000_000), store: new MemoryStore() });
    const sub = new MiniClient(first, 'mover', { cleanSession: false });
    sub.subscribe('m/#', 2);
    sub.take();
    const pub = new MiniClient(first, 'p');
    pub.publish('m/1', 'in flight', 1, { packetId: 1 });
    pub.publish('m/2', 'acknowledged half', 2, { packetId: 2 });
    const [, second] = sub.takePublishes();
    sub.pubrec(second!.packetId!);
    sub.drop();
    pub.publish('m/3', 'queued', 2, { packetId: 3 });

    const json = sessionToJson(first.saveSession('mover'));
    const target = new Broker({ clock: new ManualClock(1_000_000) });
    target.loadSession(sessionFromJson(json));
    expect(target.saveSession('mover')).toEqual(first.saveSession('mover'));
    expect(target.sessions).toEqual([
      expect.objectContaining({ clientId: 'mover', isConnected: false, outgoingMessages: 3 }),
    ]);

    const back = new MiniClient(target, 'mover', { cleanSession: false });
    expect(back.connack.sessionPresent).toBe(true);
    expect(
      back
        .take()
        .map((p) => (p.type === 'publish' ? [p.type, new TextDecoder().decode(p.payload), p.dup] : [p.type])),
    ).toEqual([['publish', 'in flight', true], ['pubrel'], ['publish', 'queued', false]]);
  });

  it('is refused (CORE_INVALID_ARGUMENT) for a client connected right now, changing nothing', () => {
    const broker = new Broker({ clock: new ManualClock(1_000_000) });
    const online = new MiniClient(broker, 'online', { cleanSession: false });
    online.subscribe('keep', 1);
    const before = broker.saveSession('online');
    const json = sessionToJson({
      clientId: 'online',
      subscriptions: [{ topicFilter: 'other', qos: 0 }],
      incomingMessages: [],
      outgoingMessages: [],
    });
    let caught: unknown;
    try {
      broker.loadSession(sessionFromJson(json));
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'CORE_INVALID_ARGUMENT' });
    expect(broker.saveSession('online')).toEqual(before);
  });

  it('a rejected JSON changes nothing: the stored session stays as it was', () => {
    const broker = new Broker({ clock: new ManualClock(1_000_000) });
    new MiniClient(broker, 'kept', { cleanSession: false }).subscribe('k', 1).drop();
    const before = broker.saveSession('kept');
    expect(() =>
      broker.loadSession(sessionFromJson(fixture('reference-example.jsonc').replace('Client1', 'kept'))),
    ).toThrow(PersistenceError);
    expect(broker.saveSession('kept')).toEqual(before);
  });
});
