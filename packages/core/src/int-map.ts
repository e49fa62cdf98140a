/**
 * A map from integer keys (0 to 2^53) to values that iterates in insertion order, for bookkeeping
 * that changes with every message: packet identifiers in flight, message ids a store holds.
 *
 * Why not a `Map`: under a steady insert-and-delete churn a Map rebuilds its hash table every few
 * hundred operations. A table rebuilt away after it was promoted to V8's old generation still points
 * at the young values it held, and the young-generation GC keeps alive whatever an old object points
 * at (it cannot tell a dead old object from a live one before the next full GC). Every in-flight
 * message then survives into the old generation, full GCs follow every few hundred milliseconds and
 * throughput halves — measured: 360 k against 580 k QoS 1 msg/s (bench b1, a 16 MiB young generation).
 * This table never drops an array that still points at a value: a delete clears its slot, and growing
 * empties the old arrays after moving their entries. Keys live in a Float64Array (no pointers at all).
 *
 * Open addressing with linear probing and tombstones; the table doubles when half full of live
 * entries and is rebuilt at the same size when tombstones fill it. Iteration collects the live
 * entries and sorts them by insertion (it is meant for rare walks: a reconnect, a snapshot).
 */
/** What readers of an {@link IntMap} get. */
export interface ReadonlyIntMap<V> extends Iterable<[number, V]> {
  readonly size: number;
  has(key: number): boolean;
  get(key: number): V | undefined;
  /** Keys in insertion order (a new array). */
  keys(): number[];
  /** Values in insertion order (a new array). */
  values(): V[];
  /** Entries in insertion order (a new array). */
  entries(): Array<[number, V]>;
}

export class IntMap<V> implements ReadonlyIntMap<V> {
  private slotKeys: Float64Array;
  private slotValues: Array<V | undefined>;
  /** Insertion sequence of each slot's entry (a `set` of a present key keeps its place). */
  private slotOrder: Float64Array;
  private mask: number;
  private live = 0;
  /** Live entries plus tombstones. */
  private used = 0;
  private nextOrder = 0;

  constructor(initialCapacity = 8) {
    let capacity = 8;
    while (capacity < initialCapacity) capacity *= 2;
    this.slotKeys = new Float64Array(capacity).fill(EMPTY);
    this.slotValues = new Array<V | undefined>(capacity).fill(undefined);
    this.slotOrder = new Float64Array(capacity);
    this.mask = capacity - 1;
  }

  get size(): number {
    return this.live;
  }

  has(key: number): boolean {
    return this.find(key) >= 0;
  }

  get(key: number): V | undefined {
    const slot = this.find(key);
    return slot < 0 ? undefined : this.slotValues[slot];
  }

  set(key: number, value: V): this {
    if (!(key >= 0 && key <= Number.MAX_SAFE_INTEGER && Math.floor(key) === key)) {
      throw new RangeError(`IntMap keys are integers from 0 to 2^53, got ${key}`);
    }
    const existing = this.find(key);
    if (existing >= 0) {
      this.slotValues[existing] = value;
      return this;
    }
    if ((this.live + 1) * 2 > this.slotKeys.length) this.rebuild(this.slotKeys.length * 2);
    else if ((this.used + 1) * 4 > this.slotKeys.length * 3) this.rebuild(this.slotKeys.length);
    this.insert(key, value, this.nextOrder++);
    return this;
  }

  delete(key: number): boolean {
    const slot = this.find(key);
    if (slot < 0) return false;
    this.slotKeys[slot] = DELETED;
    this.slotValues[slot] = undefined; // the value is not kept alive by this table any more
    this.live--;
    return true;
  }

  clear(): void {
    this.slotKeys.fill(EMPTY);
    this.slotValues.fill(undefined);
    this.live = 0;
    this.used = 0;
  }

  /** Live entries in insertion order (a new array). */
  entries(): Array<[number, V]> {
    const slots = this.liveSlots();
    return slots.map((slot) => [this.slotKeys[slot]!, this.slotValues[slot] as V]);
  }

  /** Values in insertion order (a new array). */
  values(): V[] {
    return this.liveSlots().map((slot) => this.slotValues[slot] as V);
  }

  /** Keys in insertion order (a new array). */
  keys(): number[] {
    return this.liveSlots().map((slot) => this.slotKeys[slot]!);
  }

  [Symbol.iterator](): IterableIterator<[number, V]> {
    return this.entries()[Symbol.iterator]();
  }

  private liveSlots(): number[] {
    const slots: number[] = [];
    const keys = this.slotKeys;
    for (let slot = 0; slot < keys.length; slot++) if (keys[slot]! >= 0) slots.push(slot);
    const order = this.slotOrder;
    return slots.sort((a, b) => order[a]! - order[b]!);
  }

  /** The slot holding `key`, or -1. */
  private find(key: number): number {
    const keys = this.slotKeys;
    const mask = this.mask;
    let slot = hash(key) & mask;
    for (;;) {
      const k = keys[slot]!;
      if (k === key) return slot;
      if (k === EMPTY) return -1;
      slot = (slot + 1) & mask;
    }
  }

  /** Puts an absent key in the first free slot of its probe sequence (a tombstone is free). */
  private insert(key: number, value: V, order: number): void {
    const keys = this.slotKeys;
    const mask = this.mask;
    let slot = hash(key) & mask;
    while (keys[slot]! >= 0) slot = (slot + 1) & mask;
    if (keys[slot] === EMPTY) this.used++;
    keys[slot] = key;
    this.slotValues[slot] = value;
    this.slotOrder[slot] = order;
    this.live++;
  }

  /** Moves the live entries into new arrays of `capacity` slots, then empties the old ones. */
  private rebuild(capacity: number): void {
    const oldKeys = this.slotKeys;
    const oldValues = this.slotValues;
    const oldOrder = this.slotOrder;
    this.slotKeys = new Float64Array(capacity).fill(EMPTY);
    this.slotValues = new Array<V | undefined>(capacity).fill(undefined);
    this.slotOrder = new Float64Array(capacity);
    this.mask = capacity - 1;
    this.live = 0;
    this.used = 0;
    for (let slot = 0; slot < oldKeys.length; slot++) {
      const key = oldKeys[slot]!;
      if (key >= 0) this.insert(key, oldValues[slot] as V, oldOrder[slot]!);
    }
    // The old array may be in the old generation already: emptied, it keeps no value alive.
    oldValues.fill(undefined);
  }
}

const EMPTY = -1;
const DELETED = -2;

/** Spreads integer keys over the table (the low 32 bits, Fibonacci hashing). */
function hash(key: number): number {
  return Math.imul(key >>> 0, 0x9e3779b1) >>> 0;
}
