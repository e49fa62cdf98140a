import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { RetainedTree } from '../../src/topics/retained-tree.js';

/** Naive reference matcher, level by level (MQTT 3.1.1 §4.7). */
function naiveMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false; // [MQTT-4.7.2-1]
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true; // [MQTT-4.7.1-2]
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false; // [MQTT-4.7.1-3]
  }
  return f.length === t.length;
}

/** A tree whose message is its topic, so match results can be compared as topic lists. */
function treeOf(topics: string[]): RetainedTree<string> {
  const tree = new RetainedTree<string>();
  for (const t of topics) tree.set(t, t);
  return tree;
}

const TOPICS = [
  'sport',
  'sport/',
  'sport/tennis',
  'sport/tennis/player1',
  'sport/tennis/player1/ranking',
  'sport/tennis/player1/score/wimbledon',
  'sport/tennis/player2',
  'sport/golf',
  '/finance',
  'finance',
  'a//b',
  'a/b',
  '$SYS/monitor/Clients',
  '$SYS',
  'Accounts',
];

function match(filter: string): string[] {
  return treeOf(TOPICS).match(filter).sort();
}

describe('RetainedTree: basics', () => {
  it('set, get, replace, delete, size', () => {
    const tree = new RetainedTree<number>();
    tree.set('a/b', 1);
    tree.set('a/b', 2);
    tree.set('a', 3);
    expect(tree.size).toBe(2);
    expect(tree.get('a/b')).toBe(2);
    expect(tree.get('a')).toBe(3);
    expect(tree.get('a/c')).toBeUndefined();
    expect(tree.delete('a/b')).toBe(true);
    expect(tree.delete('a/b')).toBe(false);
    expect(tree.get('a/b')).toBeUndefined();
    expect(tree.size).toBe(1);
    expect([...tree]).toEqual([['a', 3]]);
  });

  it('delete prunes empty nodes back to the baseline node count', () => {
    const tree = new RetainedTree<string>();
    const baseline = tree.nodeCount;
    for (const t of TOPICS) tree.set(t, t);
    expect(tree.nodeCount).toBeGreaterThan(baseline);
    for (const t of TOPICS) expect(tree.delete(t)).toBe(true);
    expect(tree.size).toBe(0);
    expect(tree.nodeCount).toBe(baseline);
    expect(tree.match('#')).toEqual([]);
  });

  it('deleting a parent keeps its children; deleting the children then prunes the parent', () => {
    const tree = treeOf(['a', 'a/b/c']);
    expect(tree.delete('a')).toBe(true);
    expect(tree.match('a/#')).toEqual(['a/b/c']);
    expect(tree.delete('a/b/c')).toBe(true);
    expect(tree.nodeCount).toBe(1);
  });

  it('iterates every (topic, message)', () => {
    const tree = treeOf(TOPICS);
    expect(new Map(tree)).toEqual(new Map(TOPICS.map((t) => [t, t])));
  });

  it('match returns a stable order: depth first, parent before children, siblings by first insertion', () => {
    const tree = treeOf(['a/c', 'a', 'a/b', 'a/c/d', 'b']);
    expect(tree.match('#')).toEqual(['a', 'a/c', 'a/c/d', 'a/b', 'b']);
    expect(tree.match('a/#')).toEqual(tree.match('a/#'));
    expect(tree.match('+/+')).toEqual(['a/c', 'a/b']);
  });
});

describe('RetainedTree: match', () => {
  it('[MQTT-4.7.3-4] a filter without wildcards matches exactly that topic (case sensitive, no normalisation)', () => {
    expect(match('sport/tennis')).toEqual(['sport/tennis']);
    expect(match('accounts')).toEqual([]);
    expect(match('Accounts')).toEqual(['Accounts']);
    expect(match('finance')).toEqual(['finance']);
    expect(match('/finance')).toEqual(['/finance']);
    expect(match('a//b')).toEqual(['a//b']);
  });

  it('[MQTT-4.7.1-2] §4.7.1.2 example: sport/tennis/player1/# matches player1, its ranking and score/wimbledon', () => {
    expect(match('sport/tennis/player1/#')).toEqual([
      'sport/tennis/player1',
      'sport/tennis/player1/ranking',
      'sport/tennis/player1/score/wimbledon',
    ]);
  });

  it('[MQTT-4.7.1-2] sport/# matches sport, sport/ and every level below', () => {
    expect(match('sport/#')).toEqual(TOPICS.filter((t) => t === 'sport' || t.startsWith('sport/')).sort());
  });

  it('[MQTT-4.7.1-2][MQTT-4.7.2-1] # matches every topic except $ topics', () => {
    expect(match('#')).toEqual(TOPICS.filter((t) => !t.startsWith('$')).sort());
  });

  it('[MQTT-4.7.1-3] §4.7.1.3 example: sport/tennis/+ matches player1, player2, not player1/ranking', () => {
    expect(match('sport/tennis/+')).toEqual(['sport/tennis/player1', 'sport/tennis/player2']);
  });

  it('[MQTT-4.7.1-3] §4.7.1.3 example: sport/+ does not match sport but matches sport/', () => {
    expect(match('sport/+')).toEqual(['sport/', 'sport/golf', 'sport/tennis']);
  });

  it('[MQTT-4.7.1-3] §4.7.1.3 example: /finance matches +/+ and /+, not +', () => {
    expect(match('+/+')).toContain('/finance');
    expect(match('/+')).toEqual(['/finance']);
    expect(match('+')).not.toContain('/finance');
    expect(match('+')).toEqual(['Accounts', 'finance', 'sport']);
  });

  it('[MQTT-4.7.1-3] + matches an empty level: a/+/b matches a//b', () => {
    expect(match('a/+/b')).toEqual(['a//b']);
    expect(match('+/+/b')).toEqual(['a//b']);
  });

  it('[MQTT-4.7.2-1] +/monitor/Clients does not match $SYS/monitor/Clients; $SYS/# and $SYS/monitor/+ do', () => {
    expect(match('+/monitor/Clients')).toEqual([]);
    expect(match('+')).not.toContain('$SYS');
    expect(match('$SYS/#')).toEqual(['$SYS', '$SYS/monitor/Clients']);
    expect(match('$SYS/monitor/+')).toEqual(['$SYS/monitor/Clients']);
    expect(match('$SYS/+/Clients')).toEqual(['$SYS/monitor/Clients']);
  });

  it('match returns a fresh array each time', () => {
    const tree = treeOf(['a']);
    const first = tree.match('a');
    first.push('x');
    expect(tree.match('a')).toEqual(['a']);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Property: RetainedTree.match equals filtering every stored topic with the naive matcher.

const topicLevel = fc.constantFrom('a', 'b', '$x', '');
const topicArb = fc
  .array(topicLevel, { minLength: 1, maxLength: 4 })
  .map((levels) => levels.join('/'))
  .filter((t) => t.length > 0);
const filterArb = fc
  .tuple(fc.array(fc.oneof(topicLevel, fc.constant('+')), { minLength: 0, maxLength: 4 }), fc.boolean())
  .map(([levels, hash]) => (hash ? [...levels, '#'] : levels).join('/'))
  .filter((f) => f.length > 0);
const opArb = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('set' as const), topic: topicArb, value: fc.nat(9) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), topic: topicArb }) },
);

describe('RetainedTree: property', () => {
  test.prop([fc.array(opArb, { maxLength: 60 }), fc.array(filterArb, { minLength: 1, maxLength: 10 })], {
    numRuns: 400,
  })(
    '[MQTT-4.7.1-2][MQTT-4.7.1-3][MQTT-4.7.2-1] match equals the naive matcher over all topics',
    (ops, filters) => {
      const tree = new RetainedTree<string>();
      const model = new Map<string, number>();
      for (const op of ops) {
        if (op.kind === 'set') {
          tree.set(op.topic, `${op.topic}=${op.value}`);
          model.set(op.topic, op.value);
        } else {
          expect(tree.delete(op.topic)).toBe(model.delete(op.topic));
        }
      }
      expect(tree.size).toBe(model.size);
      for (const [t, v] of model) expect(tree.get(t)).toBe(`${t}=${v}`);
      for (const filter of filters) {
        const expected = [...model]
          .filter(([t]) => naiveMatches(filter, t))
          .map(([t, v]) => `${t}=${v}`)
          .sort();
        expect(tree.match(filter).sort()).toEqual(expected);
      }
      for (const t of [...model.keys()]) expect(tree.delete(t)).toBe(true);
      expect(tree.nodeCount).toBe(1);
    },
  );
});
