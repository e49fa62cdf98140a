import type { QoS } from '@broker/codec';
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { FilterTree, type MatchResult } from '../../src/topics/filter-tree.js';

/** Naive reference matcher, level by level (MQTT 3.1.1 §4.7). */
function naiveMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false; // [MQTT-4.7.2-1]
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true; // parent level and any number of children [MQTT-4.7.1-2]
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false; // '+' = exactly one level, maybe empty [MQTT-4.7.1-3]
  }
  return f.length === t.length;
}

/** The match result as a sorted [subscriber, qos] list, for comparisons. */
function pairs<S>(result: MatchResult<S>): [S, QoS][] {
  expect(result.subscribers.length).toBe(result.qos.length);
  return result.subscribers
    .map((s, i): [S, QoS] => [s, result.qos[i]!])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
}

function matches(filter: string, topic: string): boolean {
  const tree = new FilterTree<string>();
  tree.add(filter, 'c', 0);
  return tree.match(topic).subscribers.length === 1;
}

describe('FilterTree: single-level wildcard', () => {
  it('[MQTT-4.7.1-3] + matches exactly one level', () => {
    expect(matches('a/+', 'a/b')).toBe(true);
    expect(matches('a/+', 'a')).toBe(false);
    expect(matches('a/+', 'a/b/c')).toBe(false);
    expect(matches('+/b/+', 'x/b/y')).toBe(true);
    expect(matches('+', 'a')).toBe(true);
  });

  it('[MQTT-4.7.1-3] + matches an empty level: a/+ matches a/, +/+ matches /x', () => {
    expect(matches('a/+', 'a/')).toBe(true);
    expect(matches('+/+', '/x')).toBe(true);
    expect(matches('a/+/b', 'a//b')).toBe(true);
    expect(matches('+', '/')).toBe(false);
  });

  it('[MQTT-4.7.1-3] §4.7.1.3 example: sport/tennis/+ matches player1 and player2 but not player1/ranking', () => {
    expect(matches('sport/tennis/+', 'sport/tennis/player1')).toBe(true);
    expect(matches('sport/tennis/+', 'sport/tennis/player2')).toBe(true);
    expect(matches('sport/tennis/+', 'sport/tennis/player1/ranking')).toBe(false);
  });

  it('[MQTT-4.7.1-3] §4.7.1.3 example: sport/+ does not match sport but matches sport/', () => {
    expect(matches('sport/+', 'sport')).toBe(false);
    expect(matches('sport/+', 'sport/')).toBe(true);
  });

  it('[MQTT-4.7.1-3] §4.7.1.3 example: +, +/tennis/#, sport/+/player1 are usable filters', () => {
    expect(matches('+', 'sport')).toBe(true);
    expect(matches('+/tennis/#', 'sport/tennis')).toBe(true);
    expect(matches('+/tennis/#', 'sport/tennis/player1/ranking')).toBe(true);
    expect(matches('+/tennis/#', 'sport/golf')).toBe(false);
    expect(matches('sport/+/player1', 'sport/tennis/player1')).toBe(true);
    expect(matches('sport/+/player1', 'sport/tennis/player2')).toBe(false);
  });

  it('[MQTT-4.7.1-3] §4.7.1.3 example: /finance matches +/+ and /+ but not +', () => {
    expect(matches('+/+', '/finance')).toBe(true);
    expect(matches('/+', '/finance')).toBe(true);
    expect(matches('+', '/finance')).toBe(false);
  });
});

describe('FilterTree: multi-level wildcard', () => {
  it('[MQTT-4.7.1-2] # matches the parent level and any number of child levels', () => {
    expect(matches('sport/#', 'sport')).toBe(true);
    expect(matches('sport/#', 'sport/')).toBe(true);
    expect(matches('sport/#', 'sport/a')).toBe(true);
    expect(matches('sport/#', 'sport/a/b')).toBe(true);
    expect(matches('sport/#', 'sports')).toBe(false);
    expect(matches('sport/#', 'other/sport')).toBe(false);
  });

  it('[MQTT-4.7.1-2] §4.7.1.2 example: sport/tennis/player1/# matches player1, player1/ranking, player1/score/wimbledon', () => {
    const f = 'sport/tennis/player1/#';
    expect(matches(f, 'sport/tennis/player1')).toBe(true);
    expect(matches(f, 'sport/tennis/player1/ranking')).toBe(true);
    expect(matches(f, 'sport/tennis/player1/score/wimbledon')).toBe(true);
    expect(matches(f, 'sport/tennis/player2')).toBe(false);
  });

  it('[MQTT-4.7.1-2] §4.7.1.2 example: sport/# also matches the singular sport', () => {
    expect(matches('sport/#', 'sport')).toBe(true);
  });

  it('[MQTT-4.7.1-2] §4.7.1.2 example: # matches every (non-$) message; sport/tennis/# is usable', () => {
    for (const t of ['a', '/', 'a/b/c', '/finance', 'sport/tennis/player1'])
      expect(matches('#', t)).toBe(true);
    expect(matches('sport/tennis/#', 'sport/tennis')).toBe(true);
    expect(matches('sport/tennis/#', 'sport/tennis/x/y')).toBe(true);
  });
});

describe('FilterTree: $ topics', () => {
  it('[MQTT-4.7.2-1] # does not match $SYS/... topics', () => {
    expect(matches('#', '$SYS/monitor/Clients')).toBe(false);
    expect(matches('#', '$SYS')).toBe(false);
  });

  it('[MQTT-4.7.2-1] +/monitor does not match $SYS/monitor; +/monitor/Clients not $SYS/monitor/Clients', () => {
    expect(matches('+/monitor', '$SYS/monitor')).toBe(false);
    expect(matches('+/monitor/Clients', '$SYS/monitor/Clients')).toBe(false);
    expect(matches('+/#', '$SYS/monitor')).toBe(false);
    expect(matches('+', '$SYS')).toBe(false);
  });

  it('[MQTT-4.7.2-1] $SYS/# and $SYS/monitor/+ do match $SYS topics', () => {
    expect(matches('$SYS/#', '$SYS/monitor/Clients')).toBe(true);
    expect(matches('$SYS/#', '$SYS')).toBe(true);
    expect(matches('$SYS/monitor/+', '$SYS/monitor/Clients')).toBe(true);
    expect(matches('$SYS/+/x', '$SYS/a/x')).toBe(true);
    expect(matches('$SYS/monitor/Clients', '$SYS/monitor/Clients')).toBe(true);
  });

  it('[MQTT-4.7.2-1] a $ that is not the first character is an ordinary character', () => {
    expect(matches('+/$x', 'a/$x')).toBe(true);
    expect(matches('#', 'a/$SYS')).toBe(true);
    expect(matches('a/+', 'a/$x')).toBe(true);
  });
});

describe('FilterTree: exact comparison', () => {
  it('[MQTT-4.7.3-4] no normalisation: case sensitive, ACCOUNTS is not Accounts', () => {
    expect(matches('ACCOUNTS', 'Accounts')).toBe(false);
    expect(matches('Accounts', 'Accounts')).toBe(true);
    expect(matches('Accounts payable', 'Accounts payable')).toBe(true);
  });

  it('[MQTT-4.7.3-4] no normalisation: /finance is not finance; a//b has an empty middle level', () => {
    expect(matches('/finance', 'finance')).toBe(false);
    expect(matches('finance', '/finance')).toBe(false);
    expect(matches('a//b', 'a//b')).toBe(true);
    expect(matches('a//b', 'a/b')).toBe(false);
    expect(matches('a/b', 'a//b')).toBe(false);
    expect(matches('a/b/', 'a/b')).toBe(false);
  });
});

describe('FilterTree: subscriptions', () => {
  it('add returns undefined for a new subscription and the previous QoS on re-add (QoS replaced)', () => {
    const tree = new FilterTree<string>();
    expect(tree.add('a/b', 'c1', 0)).toBeUndefined();
    expect(tree.add('a/b', 'c1', 2)).toBe(0);
    expect(tree.add('a/b', 'c1', 1)).toBe(2);
    expect(tree.size).toBe(1);
    expect(pairs(tree.match('a/b'))).toEqual([['c1', 1]]);
    expect(tree.get('a/b', 'c1')).toBe(1);
    expect(tree.get('a/+', 'c1')).toBeUndefined();
  });

  it('[MQTT-3.3.5-1] overlapping filters give one entry with the maximum QoS', () => {
    const tree = new FilterTree<string>();
    tree.add('a/b', 'c1', 0);
    tree.add('a/+', 'c1', 2);
    tree.add('#', 'c1', 1);
    tree.add('a/#', 'c2', 1);
    tree.add('+/b', 'c2', 0);
    expect(pairs(tree.match('a/b'))).toEqual([
      ['c1', 2],
      ['c2', 1],
    ]);
    expect(pairs(tree.match('a/c'))).toEqual([
      ['c1', 2],
      ['c2', 1],
    ]);
    expect(pairs(tree.match('x'))).toEqual([['c1', 1]]);
  });

  it('dedups with max QoS also for large results (scratch Map path)', () => {
    const tree = new FilterTree<number>();
    for (let i = 0; i < 50; i++) tree.add('a/b', i, 0);
    for (let i = 25; i < 75; i++) tree.add('a/+', i, 1);
    for (let i = 0; i < 100; i += 2) tree.add('#', i, 2);
    const result = tree.match('a/b');
    const got = new Map(result.subscribers.map((s, i) => [s, result.qos[i]]));
    expect(result.subscribers.length).toBe(got.size);
    for (let i = 0; i < 100; i++) {
      const expected = i % 2 === 0 ? 2 : i >= 25 && i < 75 ? 1 : i < 50 ? 0 : undefined;
      expect(got.get(i)).toBe(expected);
    }
  });

  it('remove removes exactly the (filter, subscriber) pair', () => {
    const tree = new FilterTree<string>();
    tree.add('a/+', 'c1', 1);
    tree.add('a/+', 'c2', 1);
    tree.add('a/b', 'c1', 0);
    expect(tree.remove('a/+', 'c1')).toBe(true);
    expect(tree.remove('a/+', 'c1')).toBe(false);
    expect(tree.remove('a/#', 'c1')).toBe(false);
    expect(tree.remove('x/y/z', 'c1')).toBe(false);
    expect(tree.size).toBe(2);
    expect(pairs(tree.match('a/b'))).toEqual([
      ['c1', 0],
      ['c2', 1],
    ]);
  });

  it('remove prunes empty nodes: size and node count back to baseline', () => {
    const tree = new FilterTree<string>();
    const baseline = tree.nodeCount;
    const filters = ['a/b/c', 'a/+/c', 'a/#', '#', '+', '+/+/+', '$SYS/#', 'a//b', '/', 'a/b'];
    for (const f of filters) for (const c of ['c1', 'c2']) tree.add(f, c, 1);
    expect(tree.size).toBe(filters.length * 2);
    expect(tree.nodeCount).toBeGreaterThan(baseline);
    for (const f of filters) {
      tree.remove(f, 'c1');
      expect(tree.remove(f, 'c2')).toBe(true);
    }
    expect(tree.size).toBe(0);
    expect(tree.nodeCount).toBe(baseline);
    expect(tree.match('a/b/c').subscribers).toEqual([]);
  });

  it('a node with many subscribers (indexed) adds, replaces and removes correctly', () => {
    const tree = new FilterTree<number>();
    for (let i = 0; i < 40; i++) expect(tree.add('x/+', i, 0)).toBeUndefined();
    expect(tree.add('x/+', 17, 2)).toBe(0);
    for (let i = 0; i < 40; i += 3) expect(tree.remove('x/+', i)).toBe(true);
    expect(tree.add('x/+', 17, 1)).toBe(2);
    const expected = [];
    for (let i = 0; i < 40; i++) if (i % 3 !== 0) expected.push([i, i === 17 ? 1 : 0]);
    expect(pairs(tree.match('x/y')).sort((a, b) => a[0] - b[0])).toEqual(expected);
    for (let i = 0; i < 40; i++) if (i % 3 !== 0) expect(tree.remove('x/+', i)).toBe(true);
    expect(tree.size).toBe(0);
    expect(tree.nodeCount).toBe(1);
  });

  it('forEach lists every (filter, subscriber, qos)', () => {
    const tree = new FilterTree<string>();
    tree.add('a/b', 'c1', 0);
    tree.add('a/+', 'c1', 1);
    tree.add('#', 'c2', 2);
    tree.add('a/#', 'c2', 0);
    const seen: string[] = [];
    tree.forEach((f, s, q) => {
      seen.push(`${f} ${s} ${q}`);
    });
    expect(seen.sort()).toEqual(['# c2 2', 'a/# c2 0', 'a/+ c1 1', 'a/b c1 0']);
  });
});

describe('FilterTree: result cache', () => {
  it('a cached result is returned again while the tree is unchanged', () => {
    const tree = new FilterTree<string>();
    tree.add('a/+', 'c1', 1);
    const first = tree.match('a/b');
    expect(tree.match('a/b')).toBe(first);
    expect(tree.cachedCount).toBe(1);
  });

  it('is invalidated by add: match, add a matching filter, match sees it', () => {
    const tree = new FilterTree<string>();
    tree.add('a/b', 'c1', 0);
    expect(pairs(tree.match('a/b'))).toEqual([['c1', 0]]);
    tree.add('a/#', 'c2', 1);
    expect(pairs(tree.match('a/b'))).toEqual([
      ['c1', 0],
      ['c2', 1],
    ]);
    tree.add('a/b', 'c1', 2); // QoS change
    expect(pairs(tree.match('a/b'))).toEqual([
      ['c1', 2],
      ['c2', 1],
    ]);
  });

  it('is invalidated by remove: match, remove, match no longer sees it', () => {
    const tree = new FilterTree<string>();
    tree.add('a/b', 'c1', 0);
    tree.add('+/b', 'c2', 0);
    expect(pairs(tree.match('a/b'))).toHaveLength(2);
    tree.remove('+/b', 'c2');
    expect(pairs(tree.match('a/b'))).toEqual([['c1', 0]]);
    tree.remove('a/b', 'c1');
    expect(tree.match('a/b').subscribers).toEqual([]);
  });

  it('a no-op add (same QoS) or a failed remove keeps the cache', () => {
    const tree = new FilterTree<string>();
    tree.add('a/b', 'c1', 1);
    const first = tree.match('a/b');
    expect(tree.add('a/b', 'c1', 1)).toBe(1);
    expect(tree.remove('a/b', 'nobody')).toBe(false);
    expect(tree.match('a/b')).toBe(first);
  });

  it('is bounded: never more than cacheSize entries, results still correct', () => {
    const tree = new FilterTree<number>({ cacheSize: 4 });
    tree.add('t/+', 1, 1);
    for (let i = 0; i < 100; i++) {
      expect(pairs(tree.match(`t/${i}`))).toEqual([[1, 1]]);
      expect(tree.cachedCount).toBeLessThanOrEqual(4);
    }
    expect(tree.cachedCount).toBe(4);
  });

  it('cacheSize 0 disables it', () => {
    const tree = new FilterTree<number>({ cacheSize: 0 });
    tree.add('t/+', 1, 1);
    expect(pairs(tree.match('t/x'))).toEqual([[1, 1]]);
    expect(tree.cachedCount).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Property: FilterTree.match equals the naive reference matcher.

const topicLevel = fc.constantFrom('a', 'b', '$x', '');
const topicArb = fc
  .array(topicLevel, { minLength: 1, maxLength: 4 })
  .map((levels) => levels.join('/'))
  .filter((t) => t.length > 0);
const filterArb = fc
  .tuple(fc.array(fc.oneof(topicLevel, fc.constant('+')), { minLength: 0, maxLength: 4 }), fc.boolean())
  .map(([levels, hash]) => (hash ? [...levels, '#'] : levels).join('/'))
  .filter((f) => f.length > 0);
const qosArb = fc.constantFrom<QoS>(0, 1, 2);
const subArb = fc.integer({ min: 0, max: 5 });
const opArb = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({ kind: fc.constant('add' as const), filter: filterArb, sub: subArb, qos: qosArb }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('remove' as const), filter: filterArb, sub: subArb }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('match' as const), topic: topicArb }) },
);

function reference(subs: Map<string, Map<number, QoS>>, topic: string): [number, QoS][] {
  const best = new Map<number, QoS>();
  for (const [filter, bySub] of subs) {
    if (!naiveMatches(filter, topic)) continue;
    for (const [s, q] of bySub) if ((best.get(s) ?? -1) < q) best.set(s, q);
  }
  return [...best].sort((a, b) => a[0] - b[0]);
}

describe('FilterTree: property', () => {
  test.prop(
    [
      fc.array(opArb, { maxLength: 60 }),
      fc.array(topicArb, { maxLength: 10 }),
      fc.constantFrom(0, 2, 10_000),
    ],
    {
      numRuns: 400,
    },
  )(
    '[MQTT-4.7.1-2][MQTT-4.7.1-3][MQTT-4.7.2-1] match equals the naive matcher (subscribers, max QoS)',
    (ops, topics, cacheSize) => {
      const tree = new FilterTree<number>({ cacheSize });
      const model = new Map<string, Map<number, QoS>>();
      const check = (topic: string): void => {
        const got = pairs(tree.match(topic)).sort((a, b) => a[0] - b[0]);
        expect(got).toEqual(reference(model, topic));
      };
      for (const op of ops) {
        if (op.kind === 'add') {
          let bySub = model.get(op.filter);
          if (bySub === undefined) {
            bySub = new Map();
            model.set(op.filter, bySub);
          }
          expect(tree.add(op.filter, op.sub, op.qos)).toBe(bySub.get(op.sub));
          bySub.set(op.sub, op.qos);
        } else if (op.kind === 'remove') {
          const bySub = model.get(op.filter);
          const had = bySub?.delete(op.sub) ?? false;
          if (bySub !== undefined && bySub.size === 0) model.delete(op.filter);
          expect(tree.remove(op.filter, op.sub)).toBe(had);
        } else {
          check(op.topic);
        }
      }
      for (const topic of topics) check(topic);
      let pairsInModel = 0;
      for (const bySub of model.values()) pairsInModel += bySub.size;
      expect(tree.size).toBe(pairsInModel);
      // Removing everything prunes the trie back to its root.
      for (const [filter, bySub] of model)
        for (const s of bySub.keys()) expect(tree.remove(filter, s)).toBe(true);
      expect(tree.size).toBe(0);
      expect(tree.nodeCount).toBe(1);
    },
  );
});
