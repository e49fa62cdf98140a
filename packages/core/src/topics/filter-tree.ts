/**
 * FilterTree: the subscription index. Topic filters are stored in a trie keyed by topic level; a PUBLISH's
 * topic name is matched against it to find every subscriber, each once, with the maximum QoS among its
 * matching filters (MQTT 3.1.1 §3.3.5: overlapping subscriptions deliver one copy at the highest QoS).
 *
 * Matching rules (MQTT 3.1.1 §4.7):
 * - `+` matches exactly one level, which may be empty [MQTT-4.7.1-3].
 * - `#` matches the parent level and any number of child levels [MQTT-4.7.1-2].
 * - A topic starting with `$` is not matched by a filter whose first level is `+` or `#` [MQTT-4.7.2-1].
 * - Levels are compared exactly: case sensitive, no normalisation of names or filters [MQTT-4.7.3-4]
 *   (`a//b` has an empty middle level; `A` does not match `a`).
 *
 * Complexity (L = levels in the topic / filter, k = subscriptions on the matched filters, m = matched filters):
 * - add / remove: O(L) map operations (+ O(1) per subscriber thanks to a per-node index once a node holds
 *   more than a few subscribers). remove prunes the nodes it leaves empty.
 * - match, uncached: O(visited nodes + k). Each trie node visited costs one Map lookup for the exact child,
 *   plus the `+` and `#` slots; in the worst case (a `+` at every level) the visited set is bounded by the
 *   number of filters whose shape fits the topic, never by the total number of filters. Dedup is free when
 *   only one filter matches; otherwise a linear scan for small results (<= 16) or a reused scratch Map.
 * - match, cached: one Map lookup on the topic string.
 *
 * Result cache: `match` results are kept per topic string in a Map bounded to `cacheSize` entries (default
 * 10,000; 0 disables it). When full, the oldest entry is evicted (FIFO). The whole cache is cleared by any
 * add/remove that changes the tree (a new subscription, a QoS change, an actual removal).
 *
 * IMPORTANT: the arrays of a returned MatchResult may be shared with the cache and with later calls returning
 * the same result. Callers must not mutate them, and must not keep them across add/remove (re-match instead).
 * The tree itself never writes to an array it has returned (results are copies of the node arrays), so
 * iterating a result while add/remove run (e.g. a delivery that triggers an unsubscribe) is safe: it is
 * only stale.
 */
import type { QoS } from '@broker/codec';

export interface MatchResult<S> {
  /** Matched subscribers, each once. Parallel to `qos`. Do not mutate. */
  readonly subscribers: readonly S[];
  /** Maximum QoS among the subscriber's matching filters. Parallel to `subscribers`. Do not mutate. */
  readonly qos: readonly QoS[];
}

export interface FilterTreeOptions {
  /** Max number of cached match results (topic -> result). 0 disables the cache. Default 10,000. */
  readonly cacheSize?: number;
}

/** Node subscriber count above which a Map subscriber -> index is kept for O(1) add/remove. */
const INDEX_THRESHOLD = 8;
/** Result size up to which cross-filter dedup uses a linear scan instead of the scratch Map. */
const LINEAR_DEDUP_MAX = 16;
const DOLLAR = 0x24; // '$'
const SLASH = 0x2f; // '/'

const EMPTY_RESULT: MatchResult<never> = Object.freeze({
  subscribers: Object.freeze([]) as readonly never[],
  qos: Object.freeze([]) as readonly QoS[],
});

// Placeholders for nodes without subscribers (most intermediate nodes): never written to.
const NO_SUBS: unknown[] = [];
const NO_QOS: QoS[] = [];

class Node<S> {
  /** Exact-level children. Allocated on first use. */
  children: Map<string, Node<S>> | undefined = undefined;
  plus: Node<S> | undefined = undefined;
  hash: Node<S> | undefined = undefined;
  /** Subscribers of the filter ending at this node, parallel to `qos`. Shared empty arrays until first use. */
  subs: S[] = NO_SUBS as S[];
  qos: QoS[] = NO_QOS;
  /** subscriber -> index into subs/qos, kept only when the node has more than INDEX_THRESHOLD subscribers. */
  index: Map<S, number> | undefined = undefined;
  /** The filter ending at this node (set when it first gets a subscriber). */
  filter = '';

  constructor(
    readonly parent: Node<S> | undefined,
    /** The level key in the parent: a literal level, or '+' / '#' for the wildcard slots. */
    readonly key: string,
  ) {}

  indexOf(subscriber: S): number {
    const index = this.index;
    if (index !== undefined) return index.get(subscriber) ?? -1;
    return this.subs.indexOf(subscriber);
  }

  isEmpty(): boolean {
    return (
      this.subs.length === 0 &&
      this.plus === undefined &&
      this.hash === undefined &&
      (this.children === undefined || this.children.size === 0)
    );
  }
}

export class FilterTree<S> {
  private readonly root: Node<S> = new Node<S>(undefined, '');
  private count = 0;
  private nodes = 1;
  private readonly cacheSize: number;
  private readonly cache = new Map<string, MatchResult<S>>();

  // Scratch state reused by match() (single-threaded, not re-entrant: match never calls user code).
  private readonly levels: string[] = [];
  private levelCount = 0;
  private readonly matched: Node<S>[] = [];
  private readonly dedup = new Map<S, number>();

  constructor(options: FilterTreeOptions = {}) {
    const size = options.cacheSize ?? 10_000;
    this.cacheSize = size > 0 ? Math.floor(size) : 0;
  }

  /** Number of (filter, subscriber) pairs. */
  get size(): number {
    return this.count;
  }

  /** Number of trie nodes including the root (1 when empty). For tests and metrics. */
  get nodeCount(): number {
    return this.nodes;
  }

  /** Number of cached match results. For tests and metrics. */
  get cachedCount(): number {
    return this.cache.size;
  }

  /**
   * Adds the subscription, or replaces the QoS of the subscriber's existing one on the same filter.
   * Returns the previous QoS, or undefined if it is new. The filter must be valid (MQTT 4.7.1).
   */
  add(filter: string, subscriber: S, qos: QoS): QoS | undefined {
    let node = this.root;
    let start = 0;
    for (;;) {
      let end = filter.indexOf('/', start);
      if (end < 0) end = filter.length;
      const level = filter.slice(start, end);
      let next: Node<S> | undefined;
      if (level === '+') {
        next = node.plus;
        if (next === undefined) {
          next = node.plus = new Node<S>(node, '+');
          this.nodes++;
        }
      } else if (level === '#') {
        next = node.hash;
        if (next === undefined) {
          next = node.hash = new Node<S>(node, '#');
          this.nodes++;
        }
      } else {
        let children = node.children;
        if (children === undefined) children = node.children = new Map();
        next = children.get(level);
        if (next === undefined) {
          next = new Node<S>(node, level);
          children.set(level, next);
          this.nodes++;
        }
      }
      node = next;
      if (end === filter.length) break;
      start = end + 1;
    }

    const i = node.indexOf(subscriber);
    if (i >= 0) {
      const previous = node.qos[i]!;
      if (previous !== qos) {
        node.qos[i] = qos;
        this.invalidate();
      }
      return previous;
    }
    if (node.subs === NO_SUBS) {
      node.subs = [];
      node.qos = [];
    }
    if (node.subs.length === 0) node.filter = filter;
    const at = node.subs.push(subscriber) - 1;
    node.qos.push(qos);
    if (node.index !== undefined) {
      node.index.set(subscriber, at);
    } else if (at + 1 > INDEX_THRESHOLD) {
      const index = new Map<S, number>();
      for (let j = 0; j <= at; j++) index.set(node.subs[j]!, j);
      node.index = index;
    }
    this.count++;
    this.invalidate();
    return undefined;
  }

  /** Removes the subscriber's subscription on exactly this filter; true if there was one. Prunes empty nodes. */
  remove(filter: string, subscriber: S): boolean {
    const node = this.find(filter);
    if (node === undefined) return false;
    const i = node.indexOf(subscriber);
    if (i < 0) return false;

    // Swap-remove: O(1), order of the remaining subscribers is not significant.
    const subs = node.subs;
    const qos = node.qos;
    const last = subs.length - 1;
    if (i !== last) {
      const moved = subs[last]!;
      subs[i] = moved;
      qos[i] = qos[last]!;
      node.index?.set(moved, i);
    }
    subs.pop();
    qos.pop();
    if (node.index !== undefined) {
      node.index.delete(subscriber);
      if (subs.length <= INDEX_THRESHOLD / 2) node.index = undefined;
    }
    this.count--;
    this.prune(node);
    this.invalidate();
    return true;
  }

  /** The QoS of the subscriber's subscription on exactly this filter, or undefined. */
  get(filter: string, subscriber: S): QoS | undefined {
    const node = this.find(filter);
    if (node === undefined) return undefined;
    const i = node.indexOf(subscriber);
    return i < 0 ? undefined : node.qos[i];
  }

  /**
   * Every subscriber whose filters match `topic` (a valid topic name: non-empty, no wildcards), each once,
   * with the maximum QoS among its matching filters. The result may be shared: do not mutate it, and do not
   * keep it across add/remove.
   */
  match(topic: string): MatchResult<S> {
    if (this.cacheSize === 0) return this.compute(topic);
    const cache = this.cache;
    const hit = cache.get(topic);
    if (hit !== undefined) return hit;
    const result = this.compute(topic);
    if (cache.size >= this.cacheSize) {
      // FIFO eviction: Map iterates in insertion order.
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
    cache.set(topic, result);
    return result;
  }

  /** Calls fn for every (filter, subscriber, qos), depth first. Do not add/remove from fn. */
  forEach(fn: (filter: string, subscriber: S, qos: QoS) => void): void {
    const stack: Node<S>[] = [this.root];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      const { subs, qos } = node;
      for (let i = 0; i < subs.length; i++) fn(node.filter, subs[i]!, qos[i]!);
      if (node.hash !== undefined) stack.push(node.hash);
      if (node.plus !== undefined) stack.push(node.plus);
      if (node.children !== undefined) for (const child of node.children.values()) stack.push(child);
    }
  }

  /** Removes every subscription and clears the cache. */
  clear(): void {
    const root = this.root;
    root.children = undefined;
    root.plus = undefined;
    root.hash = undefined;
    root.subs = NO_SUBS as S[];
    root.qos = NO_QOS;
    root.index = undefined;
    this.count = 0;
    this.nodes = 1;
    this.cache.clear();
  }

  // ---------------------------------------------------------------------------------------------------------

  private invalidate(): void {
    if (this.cache.size !== 0) this.cache.clear();
  }

  private find(filter: string): Node<S> | undefined {
    let node: Node<S> | undefined = this.root;
    let start = 0;
    for (;;) {
      let end = filter.indexOf('/', start);
      if (end < 0) end = filter.length;
      const level = filter.slice(start, end);
      if (level === '+') node = node.plus;
      else if (level === '#') node = node.hash;
      else node = node.children?.get(level);
      if (node === undefined) return undefined;
      if (end === filter.length) return node;
      start = end + 1;
    }
  }

  private prune(from: Node<S>): void {
    let node = from;
    for (let parent = node.parent; parent !== undefined && node.isEmpty(); parent = node.parent) {
      if (node === parent.plus) parent.plus = undefined;
      else if (node === parent.hash) parent.hash = undefined;
      else parent.children!.delete(node.key);
      if (parent.children !== undefined && parent.children.size === 0) parent.children = undefined;
      this.nodes--;
      node = parent;
    }
  }

  private compute(topic: string): MatchResult<S> {
    // Split into the reused levels array: no array allocation, one substring per level.
    const levels = this.levels;
    let n = 0;
    let start = 0;
    for (let i = 0; i < topic.length; i++) {
      if (topic.charCodeAt(i) === SLASH) {
        levels[n++] = topic.slice(start, i);
        start = i + 1;
      }
    }
    levels[n++] = topic.slice(start);
    this.levelCount = n;

    const matched = this.matched;
    const root = this.root;
    if (topic.charCodeAt(0) === DOLLAR) {
      // [MQTT-4.7.2-1]: no first-level '+' or '#' for '$' topics.
      const child = root.children?.get(levels[0]!);
      if (child !== undefined) this.walk(child, 1);
    } else {
      this.walk(root, 0);
    }
    const result = this.merge(matched);
    matched.length = 0;
    // Drop level references so a long topic is not retained; cheap relative to the walk.
    for (let i = 0; i < n; i++) levels[i] = '';
    return result;
  }

  /** Collects into `matched` every node whose filter matches levels[depth..] starting at `node`. */
  private walk(node: Node<S>, depth: number): void {
    const matched = this.matched;
    const hash = node.hash;
    // '#' matches the parent level and any number of child levels [MQTT-4.7.1-2]: always a match here.
    if (hash !== undefined && hash.subs.length !== 0) matched.push(hash);
    if (depth === this.levelCount) {
      if (node.subs.length !== 0) matched.push(node);
      return;
    }
    const plus = node.plus;
    if (plus !== undefined) this.walk(plus, depth + 1);
    const children = node.children;
    if (children !== undefined) {
      const child = children.get(this.levels[depth]!);
      if (child !== undefined) this.walk(child, depth + 1);
    }
  }

  private merge(matched: Node<S>[]): MatchResult<S> {
    const m = matched.length;
    if (m === 0) return EMPTY_RESULT;
    const first = matched[0]!;
    if (m === 1) return { subscribers: first.subs.slice(), qos: first.qos.slice() };

    let total = 0;
    for (let j = 0; j < m; j++) total += matched[j]!.subs.length;
    const subscribers = first.subs.slice();
    const qos = first.qos.slice();
    if (total <= LINEAR_DEDUP_MAX) {
      for (let j = 1; j < m; j++) {
        const node = matched[j]!;
        const nodeSubs = node.subs;
        const nodeQos = node.qos;
        for (let i = 0; i < nodeSubs.length; i++) {
          const s = nodeSubs[i]!;
          const q = nodeQos[i]!;
          const at = subscribers.indexOf(s);
          if (at < 0) {
            subscribers.push(s);
            qos.push(q);
          } else if (q > qos[at]!) {
            qos[at] = q;
          }
        }
      }
    } else {
      const dedup = this.dedup;
      for (let i = 0; i < subscribers.length; i++) dedup.set(subscribers[i]!, i);
      for (let j = 1; j < m; j++) {
        const node = matched[j]!;
        const nodeSubs = node.subs;
        const nodeQos = node.qos;
        for (let i = 0; i < nodeSubs.length; i++) {
          const s = nodeSubs[i]!;
          const q = nodeQos[i]!;
          const at = dedup.get(s);
          if (at === undefined) {
            dedup.set(s, subscribers.length);
            subscribers.push(s);
            qos.push(q);
          } else if (q > qos[at]!) {
            qos[at] = q;
          }
        }
      }
      dedup.clear();
    }
    return { subscribers, qos };
  }
}
