import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { IntMap } from '../src/int-map.js';

type Op = { kind: 'set'; key: number; value: number } | { kind: 'delete'; key: number };

// Keys from a small range (so sets and deletes meet), plus a few past 2^32 (message ids grow).
const keyArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 40 }) },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1, 65535) },
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: keyArb, value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), key: keyArb }),
);

describe('IntMap', () => {
  test.prop([fc.array(opArb, { maxLength: 400 })])(
    'behaves as a Map: the same answers, sizes and insertion order after any sequence of sets and deletes',
    (ops) => {
      const map = new IntMap<number>();
      const model = new Map<number, number>();
      for (const op of ops) {
        if (op.kind === 'set') {
          expect(map.set(op.key, op.value)).toBe(map);
          model.set(op.key, op.value);
        } else {
          expect(map.delete(op.key)).toBe(model.delete(op.key));
        }
        expect(map.size).toBe(model.size);
      }
      expect(map.keys()).toEqual([...model.keys()]);
      expect(map.values()).toEqual([...model.values()]);
      expect([...map]).toEqual([...model.entries()]);
      for (let key = 0; key <= 40; key++) {
        expect(map.has(key)).toBe(model.has(key));
        expect(map.get(key)).toBe(model.get(key));
      }
    },
  );

  it('keeps the place of a key that is set again, as a Map does', () => {
    const map = new IntMap<string>();
    map.set(3, 'a').set(1, 'b').set(3, 'c');
    expect(map.entries()).toEqual([
      [3, 'c'],
      [1, 'b'],
    ]);
  });

  it('holds no reference to a deleted value, and empties its old arrays when it grows (why it exists)', () => {
    const map = new IntMap<object>();
    const values = Array.from({ length: 100 }, () => ({}));
    const firstArray = (map as unknown as { slotValues: unknown[] }).slotValues;
    for (const [key, value] of values.entries()) map.set(key, value);
    // It grew several times: the array it started with points at nothing.
    expect(firstArray.every((v) => v === undefined)).toBe(true);
    map.delete(7);
    const slots = (map as unknown as { slotValues: unknown[] }).slotValues;
    expect(slots.includes(values[7])).toBe(false);
    expect(slots.filter((v) => v !== undefined)).toHaveLength(99);
  });

  it('takes a steady churn (packet ids in flight) without growing: tombstones are reused or cleared', () => {
    const map = new IntMap<number>();
    for (let key = 0; key < 64; key++) map.set(key, key);
    const capacity = (map as unknown as { slotKeys: Float64Array }).slotKeys.length;
    for (let key = 64; key < 200_000; key++) {
      map.delete(key - 64);
      map.set(key, key);
    }
    expect(map.size).toBe(64);
    expect((map as unknown as { slotKeys: Float64Array }).slotKeys.length).toBe(capacity);
    expect(map.keys()).toEqual(Array.from({ length: 64 }, (_, i) => 200_000 - 64 + i));
  });

  it('refuses keys that are not integers from 0 to 2^53', () => {
    const map = new IntMap<number>();
    for (const key of [-1, 0.5, Number.NaN, 2 ** 53 + 2, Number.POSITIVE_INFINITY]) {
      expect(() => map.set(key, 1)).toThrow(RangeError);
    }
    expect(map.size).toBe(0);
  });

  it('clear() empties it', () => {
    const map = new IntMap<number>();
    map.set(1, 1).set(2, 2);
    map.clear();
    expect(map.size).toBe(0);
    expect(map.get(1)).toBeUndefined();
    expect(map.values()).toEqual([]);
  });
});
