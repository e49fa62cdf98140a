import {
  MemoryStore,
  type Store,
  type StoreContents,
  type StoredDelivery,
  type StoredMessage,
} from '@broker/core';
import { fc, it as fcIt } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { removeDir, tempDir } from './temp-dir.js';

/** How the property test opens the durable store under test. */
export interface StoreHarness {
  /** Opens the store in `dataDir` (a fresh one first, then the same one again to reopen). */
  open: (dataDir: string) => Store;
  /** Ids of the message contents the reopened store holds. */
  storedMessageIds: (dataDir: string, reopened: Store) => readonly number[];
  /** Checks of the store's own bookkeeping, on the store written to (before close) and the reopened one. */
  check?: (store: Store) => void;
}

/**
 * A property test: random record sequences with random batch boundaries, given to core's MemoryStore
 * and to the store under test; after close and reopen, load() gives the same, and exactly the content
 * something refers to is kept (batch compaction and folding change nothing).
 */
export function againstMemoryStore(name: string, harness: StoreHarness, numRuns = 150): void {
  describe(`${name} against MemoryStore (random record sequences, random batch boundaries)`, () => {
    type Cmd =
      | { kind: 'message' }
      | { kind: 'outAdd'; client: number; pick: number; state: number; qos: 1 | 2 }
      | { kind: 'outChange'; client: number; pick: number; state: number; dup: boolean }
      | { kind: 'outRemove'; client: number; pick: number }
      | { kind: 'inAdd'; client: number; pick: number; packetId: number }
      | { kind: 'inRemove'; client: number; packetId: number }
      | { kind: 'retain'; pick: number }
      | { kind: 'sessionRemoved'; client: number }
      | { kind: 'flush' };
    const client = fc.integer({ min: 0, max: 1 });
    const pick = fc.nat(20);
    const weighted = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
    const cmd: fc.Arbitrary<Cmd> = fc.oneof(
      weighted(3, fc.constant({ kind: 'message' as const })),
      weighted(
        3,
        fc.record({
          kind: fc.constant('outAdd' as const),
          client,
          pick,
          state: fc.integer({ min: 1, max: 3 }),
          qos: fc.constantFrom(1 as const, 2 as const),
        }),
      ),
      weighted(
        4,
        fc.record({
          kind: fc.constant('outChange' as const),
          client,
          pick,
          state: fc.integer({ min: 2, max: 5 }),
          dup: fc.boolean(),
        }),
      ),
      weighted(2, fc.record({ kind: fc.constant('outRemove' as const), client, pick })),
      weighted(
        1,
        fc.record({
          kind: fc.constant('inAdd' as const),
          client,
          pick,
          packetId: fc.integer({ min: 1, max: 3 }),
        }),
      ),
      weighted(
        1,
        fc.record({
          kind: fc.constant('inRemove' as const),
          client,
          packetId: fc.integer({ min: 1, max: 3 }),
        }),
      ),
      weighted(1, fc.record({ kind: fc.constant('retain' as const), pick })),
      weighted(1, fc.record({ kind: fc.constant('sessionRemoved' as const), client })),
      weighted(2, fc.constant({ kind: 'flush' as const })),
    );

    fcIt.prop([fc.array(cmd, { minLength: 10, maxLength: 80, size: 'max' })], { numRuns })(
      'load() after close and reopen gives what MemoryStore gives for the same records (compaction and folding change nothing)',
      async (cmds) => {
        const dataDir = tempDir();
        const stores: Store[] = [new MemoryStore(), harness.open(dataDir)];
        const clients = ['a', 'b'];
        // Model, to keep to the Store contract: ids are added once; a message nothing refers to any
        // more is gone for good.
        const alive: number[] = [];
        const refs = new Map<number, number>();
        const outgoing = clients.map(() => new Set<number>());
        const incoming = clients.map(() => new Map<number, number>());
        const retained = new Map<string, number>();
        let nextId = 1;
        const ref = (id: number, n: number) => {
          const count = (refs.get(id) ?? 0) + n;
          refs.set(id, count);
          if (count === 0) alive.splice(alive.indexOf(id), 1);
        };
        const all = (f: (s: Store) => void) => {
          for (const s of stores) f(s);
        };
        for (const c of clients) all((s) => s.sessionCreated(c));
        for (const c of cmds) {
          const id = alive.length > 0 && 'pick' in c ? alive[c.pick % alive.length]! : undefined;
          switch (c.kind) {
            case 'message': {
              const m = nextId++;
              alive.push(m);
              const message = {
                messageId: m,
                topic: `t/${m % 2}`,
                payload: new Uint8Array([m]),
                qos: 2,
                retain: false,
              };
              all((s) => s.messageAdded(message as StoredMessage));
              break;
            }
            case 'outAdd': {
              const out = outgoing[c.client]!;
              if (id === undefined || out.has(id)) break;
              out.add(id);
              ref(id, 1);
              const d = {
                qos: c.qos,
                retain: false,
                packetId: c.state === 1 ? -1 : id,
                state: c.state,
                dup: false,
              };
              all((s) => s.outgoingAdded(clients[c.client]!, id, d as StoredDelivery));
              break;
            }
            case 'outChange': {
              const own = [...outgoing[c.client]!];
              const id = own[c.pick % Math.max(own.length, 1)];
              if (id === undefined) break;
              const d = { qos: 2, retain: false, packetId: id, state: c.state, dup: c.dup };
              all((s) => s.outgoingChanged(clients[c.client]!, id, d as StoredDelivery));
              break;
            }
            case 'outRemove': {
              const own = [...outgoing[c.client]!];
              const id = own[c.pick % Math.max(own.length, 1)];
              if (id === undefined) break;
              outgoing[c.client]!.delete(id);
              all((s) => s.outgoingRemoved(clients[c.client]!, id));
              ref(id, -1);
              break;
            }
            case 'inAdd': {
              const inc = incoming[c.client]!;
              const replaced = inc.get(c.packetId);
              if (id === undefined || replaced === id) break;
              inc.set(c.packetId, id);
              ref(id, 1);
              all((s) => s.incomingAdded(clients[c.client]!, id, c.packetId, 8, false));
              // The packet id held for another message: that one is released (as a new PUBLISH
              // reusing the id after its PUBREL was lost would).
              if (replaced !== undefined) ref(replaced, -1);
              break;
            }
            case 'inRemove': {
              const held = incoming[c.client]!.get(c.packetId);
              if (held === undefined) break;
              incoming[c.client]!.delete(c.packetId);
              all((s) => s.incomingRemoved(clients[c.client]!, c.packetId));
              ref(held, -1);
              break;
            }
            case 'retain': {
              // Its own content (a retained message is not referred to by the deliveries here).
              const m = nextId++;
              const topic = `r/${c.pick % 2}`;
              const message = { messageId: m, topic, payload: new Uint8Array([m]), qos: 1, retain: true };
              all((s) => s.retainedSet(message as StoredMessage));
              retained.set(topic, m);
              break;
            }
            case 'sessionRemoved': {
              const i = c.client;
              all((s) => s.sessionRemoved(clients[i]!));
              for (const m of outgoing[i]!) ref(m, -1);
              for (const m of incoming[i]!.values()) ref(m, -1);
              outgoing[i]!.clear();
              incoming[i]!.clear();
              all((s) => s.sessionCreated(clients[i]!));
              break;
            }
            case 'flush':
              await Promise.all(stores.map((s) => s.flush()));
              break;
          }
        }
        const [memory, durable] = stores as [MemoryStore, Store];
        await memory.flush();
        await durable.flush();
        harness.check?.(durable);
        await durable.close();
        const reopened = harness.open(dataDir);
        harness.check?.(reopened);
        const sorted = (contents: StoreContents) => ({
          retained: contents.retained,
          sessions: [...contents.sessions].sort((x, y) => x.clientId.localeCompare(y.clientId)),
        });
        expect(sorted(await reopened.load())).toEqual(sorted(memory.load()));
        // Exactly the content something refers to is kept.
        const referenced = [...refs].filter(([, n]) => n > 0).map(([m]) => m);
        const stored = harness.storedMessageIds(dataDir, reopened);
        expect([...stored].sort((x, y) => x - y)).toEqual(
          [...referenced, ...retained.values()].sort((x, y) => x - y),
        );
        await reopened.close();
        removeDir(dataDir);
      },
    );
  });
}
