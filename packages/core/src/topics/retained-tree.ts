/**
 * RetainedTree: retained messages by topic name, matched by a topic filter (on SUBSCRIBE).
 *
 * A trie of topic levels, plus a Map topic -> node for O(1) get/set/delete. Matching a filter visits only
 * the part of the trie the filter can reach:
 * - a filter without wildcards is a single Map lookup;
 * - `+` visits the children of the current node only [MQTT-4.7.1-3] (an empty level is a child like any other);
 * - `#` collects the current node (the parent level) and its whole subtree [MQTT-4.7.1-2];
 * - at the first level, `+` and `#` skip topics starting with `$` [MQTT-4.7.2-1].
 * Levels are compared exactly, with no normalisation [MQTT-4.7.3-4].
 *
 * Complexity (L = levels, r = matched messages): set O(L); delete O(L) with pruning of emptied nodes;
 * get O(1); match O(L) for an exact filter, O(visited nodes + r) otherwise (for `#`, the subtree size).
 *
 * Order of match results: depth first; a node's own message before its descendants; siblings in the order
 * their level first appeared (Map insertion order). Deterministic for a given history of set/delete.
 */

const DOLLAR = 0x24; // '$'

class Node<M> {
  children: Map<string, Node<M>> | undefined = undefined;
  /** Whether a message is stored here (M may itself include undefined). */
  has = false;
  message: M | undefined = undefined;

  constructor(
    readonly parent: Node<M> | undefined,
    readonly key: string,
  ) {}
}

export class RetainedTree<M> {
  private readonly root: Node<M> = new Node<M>(undefined, '');
  private readonly byTopic = new Map<string, Node<M>>();
  private nodes = 1;

  /** Number of retained messages. */
  get size(): number {
    return this.byTopic.size;
  }

  /** Number of trie nodes including the root (1 when empty). For tests and metrics. */
  get nodeCount(): number {
    return this.nodes;
  }

  /** Stores `message` as the retained message of `topic` (a valid topic name), replacing any previous one. */
  set(topic: string, message: M): void {
    const existing = this.byTopic.get(topic);
    if (existing !== undefined) {
      existing.message = message;
      return;
    }
    let node = this.root;
    let start = 0;
    for (;;) {
      let end = topic.indexOf('/', start);
      if (end < 0) end = topic.length;
      const level = topic.slice(start, end);
      let children = node.children;
      if (children === undefined) children = node.children = new Map();
      let next = children.get(level);
      if (next === undefined) {
        next = new Node<M>(node, level);
        children.set(level, next);
        this.nodes++;
      }
      node = next;
      if (end === topic.length) break;
      start = end + 1;
    }
    node.has = true;
    node.message = message;
    this.byTopic.set(topic, node);
  }

  /** Removes the retained message of `topic`; true if there was one. Prunes emptied nodes. */
  delete(topic: string): boolean {
    const node = this.byTopic.get(topic);
    if (node === undefined) return false;
    this.byTopic.delete(topic);
    node.has = false;
    node.message = undefined;
    let current = node;
    for (
      let parent = current.parent;
      parent !== undefined && !current.has && (current.children === undefined || current.children.size === 0);
      parent = current.parent
    ) {
      parent.children!.delete(current.key);
      if (parent.children!.size === 0) parent.children = undefined;
      this.nodes--;
      current = parent;
    }
    return true;
  }

  get(topic: string): M | undefined {
    return this.byTopic.get(topic)?.message;
  }

  has(topic: string): boolean {
    return this.byTopic.has(topic);
  }

  /**
   * All stored messages whose topic matches `filter` (a valid topic filter), in a stable order (see header).
   * Returns a new array owned by the caller.
   */
  match(filter: string): M[] {
    const out: M[] = [];
    if (filter.indexOf('+') < 0 && filter.indexOf('#') < 0) {
      const node = this.byTopic.get(filter);
      if (node !== undefined) out.push(node.message as M);
      return out;
    }
    const levels = filter.split('/');
    matchFrom(this.root, levels, 0, out);
    return out;
  }

  /** Removes every retained message. */
  clear(): void {
    this.root.children = undefined;
    this.byTopic.clear();
    this.nodes = 1;
  }

  *entries(): IterableIterator<[string, M]> {
    for (const [topic, node] of this.byTopic) yield [topic, node.message as M];
  }

  /** All (topic, message) pairs, in insertion order of the topics. */
  [Symbol.iterator](): IterableIterator<[string, M]> {
    return this.entries();
  }
}

function matchFrom<M>(node: Node<M>, levels: readonly string[], depth: number, out: M[]): void {
  if (depth === levels.length) {
    if (node.has) out.push(node.message as M);
    return;
  }
  const level = levels[depth]!;
  if (level === '#') {
    // The parent level [MQTT-4.7.1-2] (the root holds no message: topic names are non-empty) ...
    if (node.has) out.push(node.message as M);
    // ... and every level below it, skipping '$' topics at the first level [MQTT-4.7.2-1].
    const children = node.children;
    if (children !== undefined) {
      const skipDollar = depth === 0;
      for (const child of children.values()) {
        if (skipDollar && child.key.charCodeAt(0) === DOLLAR) continue;
        collect(child, out);
      }
    }
    return;
  }
  const children = node.children;
  if (children === undefined) return;
  if (level === '+') {
    const skipDollar = depth === 0;
    for (const child of children.values()) {
      if (skipDollar && child.key.charCodeAt(0) === DOLLAR) continue;
      matchFrom(child, levels, depth + 1, out);
    }
    return;
  }
  const child = children.get(level);
  if (child !== undefined) matchFrom(child, levels, depth + 1, out);
}

function collect<M>(node: Node<M>, out: M[]): void {
  if (node.has) out.push(node.message as M);
  const children = node.children;
  if (children !== undefined) for (const child of children.values()) collect(child, out);
}
