import {
  Broker,
  type BrokerLimits,
  ManualClock,
  type SessionSnapshot,
  type Store,
  type StoreContents,
} from '@broker/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodePublish, MiniClient } from './mini-client.js';

export { encodePublish, MiniClient, type MiniPacket } from './mini-client.js';

/** What a conformance run needs from the store under test. */
export interface StoreUnderTest {
  /** A fresh, empty store. */
  store: Store;
  /**
   * The same data as a store reopened after a restart: for a durable store, close it (core's
   * `broker.close()` already did) and open the same files again; for an in-memory store, the same
   * instance.
   */
  reopen: () => Promise<Store>;
  /** Closes whatever is still open and removes the files. */
  cleanup: () => Promise<void>;
}

/** Options of {@link runStoreConformance}. */
export interface StoreConformanceOptions {
  /**
   * Names of tests known to fail for this store, run with `it.fails` so the suite stays green and
   * flags the day they start to pass. Use sparingly, with a reason in the calling file.
   */
  knownFailures?: readonly string[];
}

/** Test names of the suite, for `knownFailures`. */
export const CONFORMANCE_TESTS = {
  emptyLoad: 'a new store loads nothing',
  sameFlushPromise: 'flush returns the same promise to every call before the commit',
  restoresEverything: 'restores sessions, subscriptions, messages with their states, and retained messages',
  fanOutOnce: 'stores a message fanned out to several sessions once (same MessageId in each)',
  sessionRemoved: 'sessionRemoved removes the session and everything of it',
  retainedCleared: 'retained messages: set, replaced, cleared',
  sessionReplaced: 'sessionReplaced (loadSession) replaces the whole stored session',
  outgoingOrder: 'keeps the order of outgoing messages: in flight in send order, then queued',
  incomingExactlyOnce:
    'keeps an incoming QoS 2 message (state 8) so a re-sent PUBLISH is not delivered twice',
  retainedAfterRestart:
    'keeps a retained message delivered to a persistent session after a restart through the next restart',
  retainedAfterRelease:
    'keeps a retained message delivered to a persistent session after its first deliveries were done',
} as const;

const text = new TextDecoder();
const bytes = (value: string) => new TextEncoder().encode(value);

/**
 * Lets commits and the acknowledgements waiting for them run: waits for the store's commit of what is
 * recorded so far (a real store's is I/O, not a fixed number of event-loop turns; a failure shows in
 * the test's own expectations), then for a few turns.
 */
async function settle(store: Store): Promise<void> {
  await store.flush().catch(() => {});
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function makeBroker(store: Store, limits: Partial<BrokerLimits> = {}): Broker {
  return new Broker({ store, clock: new ManualClock(1_000_000), limits });
}

function byClientId(contents: StoreContents): SessionSnapshot[] {
  return [...contents.sessions].sort((a, b) =>
    a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0,
  );
}

function retainedOf(contents: StoreContents): Array<[string, string, number]> {
  return contents.retained
    .map((m): [string, string, number] => [m.topic, text.decode(m.payload), m.qos])
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/**
 * Registers vitest `describe`/`it` blocks that check a {@link Store} against core's Store contract,
 * through a real core `Broker` over in-memory connections and directly: what is recorded comes back
 * after a reopen (sessions, subscriptions, messages, states, order, retained), `flush()` shares one
 * promise per commit, a fan-out is stored once, removals and replacements leave nothing behind.
 *
 * @param name a label for the describe block (e.g. `'SqliteStore'`).
 * @param makeStore called before each test for a fresh store; `cleanup` runs after it.
 */
export function runStoreConformance(
  name: string,
  makeStore: () => Promise<StoreUnderTest>,
  options: StoreConformanceOptions = {},
): void {
  const knownFailures = new Set(options.knownFailures ?? []);
  const test = (title: string, body: () => Promise<void>) =>
    knownFailures.has(title) ? it.fails(title, body) : it(title, body);

  describe(`Store conformance: ${name}`, () => {
    let current: StoreUnderTest;
    beforeEach(async () => {
      current = await makeStore();
    });
    afterEach(async () => {
      await current.cleanup();
    });

    /** Closes the broker (which commits and closes the store), reopens the store and loads it. */
    async function restart(broker: Broker): Promise<{ store: Store; contents: StoreContents }> {
      await broker.close();
      const store = await current.reopen();
      return { store, contents: await store.load() };
    }

    test(CONFORMANCE_TESTS.emptyLoad, async () => {
      const contents = await current.store.load();
      expect(contents).toEqual({ sessions: [], retained: [] });
    });

    test(CONFORMANCE_TESTS.sameFlushPromise, async () => {
      const { store } = current;
      await store.load();
      store.sessionCreated('a');
      const first = store.flush();
      store.subscriptionAdded('a', 't/#', 1);
      const second = store.flush();
      expect(second).toBe(first);
      await first;
      const third = store.flush();
      expect(third).not.toBe(first);
      await third;
      await store.close();
      const reopened = await current.reopen();
      expect((await reopened.load()).sessions).toEqual([
        {
          clientId: 'a',
          subscriptions: [{ topicFilter: 't/#', qos: 1 }],
          incomingMessages: [],
          outgoingMessages: [],
        },
      ]);
    });

    test(CONFORMANCE_TESTS.restoresEverything, async () => {
      const broker = makeBroker(current.store);
      await broker.restore();
      const off = new MiniClient(broker, 'off', { cleanSession: false });
      off.subscribe('a/#', 2, 1).subscribe('b/+', 1, 2);
      off.drop();
      const on = new MiniClient(broker, 'on', { cleanSession: false });
      on.subscribe('a/#', 2);
      on.take();
      const inbound = new MiniClient(broker, 'inbound', { cleanSession: false });
      inbound.publish('x/y', 'held until PUBREL', 2, { packetId: 7 });
      const pub = new MiniClient(broker, 'pub');
      pub.publish('a/1', 'one', 1, { packetId: 1 });
      pub.publish('a/2', 'two', 2, { packetId: 2 });
      pub.publish('a/3', 'three', 2, { packetId: 3 });
      pub.publish('b/x', 'bee', 1, { packetId: 4 });
      pub.publish('r/1', 'retained one', 1, { packetId: 5, retain: true });
      pub.publish('r/2', 'retained two', 0, { retain: true });
      const sent = on.takePublishes();
      expect(sent.map((p) => p.payload)).toEqual(['one', 'two', 'three']);
      on.pubrec(sent[2]!.packetId!); // state 5 (PUBREL sent, waiting for PUBCOMP)
      await settle(current.store);
      expect(pub.take().map((p) => p.type)).toEqual(['puback', 'pubrec', 'pubrec', 'puback', 'puback']);
      expect(inbound.take()).toEqual([{ type: 'pubrec', packetId: 7 }]);

      const expected = ['inbound', 'off', 'on'].map((id) => broker.saveSession(id));
      expect(expected[2]!.outgoingMessages.map((m) => m.state)).toEqual([2, 3, 5]);
      expect(expected[0]!.incomingMessages.map((m) => m.state)).toEqual([8]);
      const { store, contents } = await restart(broker);
      expect(byClientId(contents)).toEqual(expected);
      expect(retainedOf(contents)).toEqual([
        ['r/1', 'retained one', 1],
        ['r/2', 'retained two', 0],
      ]);

      // And a broker restored from it carries on where the first stopped [MQTT-4.4.0-1].
      const second = makeBroker(store);
      await second.restore();
      const offAgain = new MiniClient(second, 'off', { cleanSession: false });
      expect(offAgain.connack.sessionPresent).toBe(true);
      expect(offAgain.takePublishes().map((p) => [p.topic, p.payload, p.qos])).toEqual([
        ['a/1', 'one', 1],
        ['a/2', 'two', 2],
        ['a/3', 'three', 2],
        ['b/x', 'bee', 1],
      ]);
      const onAgain = new MiniClient(second, 'on', { cleanSession: false });
      const resent = onAgain.take();
      expect(
        resent.map((p) => (p.type === 'publish' ? [p.type, text.decode(p.payload), p.dup] : [p.type])),
      ).toEqual([['publish', 'one', true], ['publish', 'two', true], ['pubrel']]);
      const fresh = new MiniClient(second, 'fresh');
      fresh.subscribe('r/#', 1);
      expect(
        fresh
          .takePublishes()
          .map((p) => [p.topic, p.payload, p.retain])
          .sort(),
      ).toEqual([
        ['r/1', 'retained one', true],
        ['r/2', 'retained two', true],
      ]);
      await second.close();
    });

    test(CONFORMANCE_TESTS.fanOutOnce, async () => {
      const broker = makeBroker(current.store);
      await broker.restore();
      for (const id of ['f1', 'f2', 'f3'])
        new MiniClient(broker, id, { cleanSession: false }).subscribe('fan', 1).drop();
      new MiniClient(broker, 'p').publish('fan', 'shared', 1, { packetId: 1 });
      const { contents } = await restart(broker);
      const sessions = byClientId(contents);
      expect(sessions.map((s) => s.outgoingMessages.length)).toEqual([1, 1, 1]);
      const ids = new Set(sessions.map((s) => s.outgoingMessages[0]!.messageId));
      expect(ids.size).toBe(1);
      expect(sessions.map((s) => text.decode(s.outgoingMessages[0]!.payload))).toEqual([
        'shared',
        'shared',
        'shared',
      ]);
    });

    test(CONFORMANCE_TESTS.sessionRemoved, async () => {
      const broker = makeBroker(current.store);
      await broker.restore();
      new MiniClient(broker, 'gone', { cleanSession: false }).subscribe('g/#', 2).drop();
      new MiniClient(broker, 'kept', { cleanSession: false }).subscribe('g/#', 1).drop();
      new MiniClient(broker, 'p').publish('g/1', 'x', 2, { packetId: 1 });
      // [MQTT-3.1.2-6] a clean-session connect discards the stored session.
      new MiniClient(broker, 'gone', { cleanSession: true }).disconnect();
      // And directly through the port:
      const { store } = current;
      store.sessionCreated('direct');
      store.subscriptionAdded('direct', 'd', 0);
      await store.flush();
      store.sessionRemoved('direct');
      const { contents } = await restart(broker);
      expect(byClientId(contents).map((s) => s.clientId)).toEqual(['kept']);
      expect(byClientId(contents)[0]!.outgoingMessages.map((m) => text.decode(m.payload))).toEqual(['x']);
    });

    test(CONFORMANCE_TESTS.retainedCleared, async () => {
      const broker = makeBroker(current.store);
      await broker.restore();
      const pub = new MiniClient(broker, 'p');
      pub.publish('r/a', 'first', 1, { packetId: 1, retain: true });
      pub.publish('r/a', 'second', 2, { packetId: 2, retain: true });
      pub.publish('r/b', 'to clear', 0, { retain: true });
      // [MQTT-3.3.1-10] an empty retained message clears the topic.
      pub.publish('r/b', '', 0, { retain: true });
      broker.retained.set('r/c', 'set through the API', 1);
      broker.retained.set('r/d', 'deleted through the API');
      broker.retained.delete('r/d');
      const { store, contents } = await restart(broker);
      expect(retainedOf(contents)).toEqual([
        ['r/a', 'second', 2],
        ['r/c', 'set through the API', 1],
      ]);
      const second = makeBroker(store);
      await second.restore();
      expect(
        second.retained
          .list()
          .map((m) => m.topic)
          .sort(),
      ).toEqual(['r/a', 'r/c']);
      await second.close();
    });

    test(CONFORMANCE_TESTS.sessionReplaced, async () => {
      const broker = makeBroker(current.store);
      await broker.restore();
      new MiniClient(broker, 'rep', { cleanSession: false }).subscribe('old/#', 1).drop();
      new MiniClient(broker, 'p').publish('old/1', 'old message', 1, { packetId: 1 });
      const snapshot: SessionSnapshot = {
        clientId: 'rep',
        subscriptions: [
          { topicFilter: 'new/+', qos: 2 },
          { topicFilter: 'other', qos: 0 },
        ],
        incomingMessages: [
          {
            messageId: 1001,
            topic: 'in/1',
            payload: bytes('in'),
            qos: 2,
            dup: false,
            retain: false,
            packetId: 9,
            state: 8,
          },
        ],
        outgoingMessages: [
          {
            messageId: 1002,
            topic: 'new/a',
            payload: bytes('inflight'),
            qos: 2,
            dup: true,
            retain: false,
            packetId: 3,
            state: 5,
          },
          {
            messageId: 1003,
            topic: 'new/b',
            payload: bytes('sent'),
            qos: 1,
            dup: true,
            retain: true,
            packetId: 4,
            state: 2,
          },
          {
            messageId: 1004,
            topic: 'new/c',
            payload: bytes('queued'),
            qos: 1,
            dup: false,
            retain: false,
            packetId: -1,
            state: 1,
          },
        ],
      };
      broker.loadSession(snapshot);
      const expected = broker.saveSession('rep');
      expect(expected).toEqual(snapshot);
      const { contents } = await restart(broker);
      expect(byClientId(contents)).toEqual([snapshot]);
    });

    test(CONFORMANCE_TESTS.outgoingOrder, async () => {
      const broker = makeBroker(current.store, { maxInflightMessages: 3 });
      await broker.restore();
      new MiniClient(broker, 'ord', { cleanSession: false }).subscribe('o/#', 2).drop();
      const pub = new MiniClient(broker, 'p');
      for (let i = 1; i <= 10; i++) pub.publish(`o/${i}`, `m${i}`, i % 2 === 0 ? 2 : 1, { packetId: i });
      const client = new MiniClient(broker, 'ord', { cleanSession: false });
      const first = client.takePublishes();
      expect(first.map((p) => p.payload)).toEqual(['m1', 'm2', 'm3']);
      client.puback(first[0]!.packetId!); // m1 done; m4 goes out
      client.pubrec(first[1]!.packetId!); // m2 -> state 5
      client.drop();
      const expected = broker.saveSession('ord');
      const { store, contents } = await restart(broker);
      const [session] = byClientId(contents).filter((s) => s.clientId === 'ord');
      expect(session).toEqual(expected);
      expect(session!.outgoingMessages.map((m) => [text.decode(m.payload), m.state])).toEqual([
        ['m2', 5],
        ['m3', 2],
        ['m4', 3],
        ['m5', 1],
        ['m6', 1],
        ['m7', 1],
        ['m8', 1],
        ['m9', 1],
        ['m10', 1],
      ]);
      // A restored broker delivers the rest in order, each once.
      const second = makeBroker(store, { maxInflightMessages: 3 });
      await second.restore();
      const back = new MiniClient(second, 'ord', { cleanSession: false });
      const seen: string[] = [];
      for (let round = 0; round < 20 && seen.filter((s) => s.startsWith('m')).length < 8; round++) {
        for (const p of back.take()) {
          if (p.type === 'publish') {
            seen.push(text.decode(p.payload));
            if (p.qos === 1) back.puback(p.packetId!);
            else back.pubrec(p.packetId!);
          } else if (p.type === 'pubrel') {
            seen.push(`pubrel ${p.packetId}`);
            back.pubcomp(p.packetId);
          }
        }
        await settle(store);
      }
      expect(seen.filter((s) => s.startsWith('m'))).toEqual([
        'm3',
        'm4',
        'm5',
        'm6',
        'm7',
        'm8',
        'm9',
        'm10',
      ]);
      expect(seen[0]).toMatch(/^pubrel /);
      await second.close();
    });

    test(CONFORMANCE_TESTS.incomingExactlyOnce, async () => {
      const broker = makeBroker(current.store);
      await broker.restore();
      new MiniClient(broker, 'watch', { cleanSession: false }).subscribe('once/#', 2).drop();
      const sender = new MiniClient(broker, 'sender', { cleanSession: false });
      sender.publish('once/1', 'exactly once', 2, { packetId: 42 });
      await settle(current.store);
      expect(sender.take()).toEqual([{ type: 'pubrec', packetId: 42 }]);
      sender.drop(); // the PUBREL never made it
      const { store } = await restart(broker);
      const second = makeBroker(store);
      await second.restore();
      const again = new MiniClient(second, 'sender', { cleanSession: false });
      // [MQTT-4.3.3-2] the re-sent PUBLISH (same packet id) is answered with PUBREC, not delivered again.
      again.peer.write(encodePublish('once/1', bytes('exactly once'), 2, 42, false, true));
      await settle(store);
      again.pubrel(42);
      await settle(store);
      expect(again.take()).toEqual([
        { type: 'pubrec', packetId: 42 },
        { type: 'pubcomp', packetId: 42 },
      ]);
      const watch = new MiniClient(second, 'watch', { cleanSession: false });
      expect(watch.takePublishes().map((p) => p.payload)).toEqual(['exactly once']);
      const { contents } = await restart(second);
      expect(byClientId(contents).find((s) => s.clientId === 'sender')?.incomingMessages).toEqual([]);
    });

    test(CONFORMANCE_TESTS.retainedAfterRestart, async () => {
      const broker = makeBroker(current.store);
      await broker.restore();
      new MiniClient(broker, 'p').publish('keep/r', 'retained', 1, { packetId: 1, retain: true });
      const { store } = await restart(broker);
      const second = makeBroker(store);
      await second.restore();
      const late = new MiniClient(second, 'late', { cleanSession: false });
      late.subscribe('keep/#', 1);
      expect(late.takePublishes().map((p) => p.payload)).toEqual(['retained']);
      late.drop(); // not acknowledged: it stays in flight for 'late'
      const expected = second.saveSession('late');
      const { contents } = await restart(second);
      expect(contents.sessions.find((s) => s.clientId === 'late')).toEqual(expected);
    });

    test(CONFORMANCE_TESTS.retainedAfterRelease, async () => {
      const broker = makeBroker(current.store);
      await broker.restore();
      const early = new MiniClient(broker, 'early', { cleanSession: false });
      early.subscribe('keep/#', 1);
      new MiniClient(broker, 'p').publish('keep/r', 'retained', 1, { packetId: 1, retain: true });
      const [delivery] = early.takePublishes();
      early.puback(delivery!.packetId!); // its only session reference is done
      await settle(current.store);
      const late = new MiniClient(broker, 'late', { cleanSession: false });
      late.subscribe('keep/#', 1);
      expect(late.takePublishes().map((p) => p.payload)).toEqual(['retained']);
      late.drop();
      const expected = broker.saveSession('late');
      const { contents } = await restart(broker);
      expect(contents.sessions.find((s) => s.clientId === 'late')).toEqual(expected);
    });
  });
}
