import { describe, expect, it } from 'vitest';
import {
  AclFileError,
  filterCovers,
  filtersIntersect,
  isValidFilter,
  parseAclFile,
  readAclFile,
} from '../src/acl.js';

const FIXTURE = new URL('./fixtures/auth-example.acl', import.meta.url).pathname;

describe('filterCovers(granted, requested)', () => {
  it.each([
    // granted, requested, covers
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/b', 'a/b/c', false],
    ['a/b/c', 'a/b', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a/+', true],
    ['a/b', 'a/+', false], // the request matches a/c too
    ['a/+', 'a/b/c', false],
    ['a/+', 'a/#', false],
    ['a/#', 'a', true], // '#' matches the parent level (4.7.1.2)
    ['a/#', 'a/b/+', true],
    ['a/#', 'a/#', true],
    ['a/#', 'a/+/#', true],
    ['a/#', '#', false],
    ['a/#', '+/#', false],
    ['a/#', 'b/c', false],
    ['a/+/#', 'a', false], // a/# matches a, a/+/# does not
    ['a/+/#', 'a/#', false],
    ['a/+/#', 'a/b/#', true],
    ['#', 'anything/at/all', true],
    ['#', '#', true],
    ['#', '+/+', true],
    ['+/#', '#', true], // both match every topic not beginning with '$'
    ['+/+', '+/#', false],
    ['+', '#', false],
    ['+/+', '/', true], // empty levels are levels
    ['/', '/', true],
    ['a//b', 'a/+/b', false],
    ['a/+/b', 'a//b', true],
    // [MQTT-4.7.2-1] filters beginning with a wildcard do not match topics beginning with '$'.
    ['#', '$SYS/broker/uptime', false],
    ['#', '$SYS/#', false],
    ['+/broker/uptime', '$SYS/broker/uptime', false],
    ['+/#', '$SYS', false],
    ['$SYS/#', '$SYS/broker/uptime', true],
    ['$SYS/#', '$SYS', true],
    ['$SYS/+/uptime', '$SYS/broker/uptime', true],
    ['$SYS/#', '#', false],
    ['$SYS/#', '+/broker', false],
    ['a/#', 'a/$SYS', true], // '$' only matters at the first level
    ['a/+', 'a/$x', true],
  ])('%s covers %s: %s', (granted, requested, expected) => {
    expect(filterCovers(granted, requested)).toBe(expected);
  });
});

describe('filtersIntersect', () => {
  it.each([
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/#', 'a/secret', true],
    ['a/secret', 'a/#', true],
    ['a/secret', 'a/+', true],
    ['a/+/c', 'a/b/+', true],
    ['a/+', 'a/b/c', false],
    ['a/#', 'a', true],
    ['#', 'x', true],
    ['+', 'x/y', false],
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '#', false],
    ['$SYS/#', '$SYS/+', true],
    ['#', '+', true],
  ])('%s ∩ %s: %s', (a, b, expected) => {
    expect(filtersIntersect(a, b)).toBe(expected);
    expect(filtersIntersect(b, a)).toBe(expected);
  });
});

describe('isValidFilter', () => {
  it.each([
    ['a/b', true],
    ['#', true],
    ['a/#', true],
    ['+/+/x', true],
    ['/', true],
    ['%u/#', true],
    ['', false],
    ['a/#/b', false],
    ['a#', false],
    ['a/b+', false],
    ['a\u0000b', false],
  ])('%j: %s', (filter, expected) => {
    expect(isValidFilter(filter)).toBe(expected);
  });
});

describe('parseAclFile errors name the source and line', () => {
  it.each([
    ['topic', /acl\.txt:2: "topic" needs a topic filter/],
    ['topic read', /acl\.txt:2: "topic read" needs a topic filter/],
    ['pattern', /acl\.txt:2: "pattern" needs a topic filter/],
    ['user', /acl\.txt:2: "user" needs a username/],
    ['topic raed a/b', /acl\.txt:2: "raed" is not an access type/],
    ['topic a/#/b', /acl\.txt:2: "a\/#\/b" is not a valid topic filter/],
    ['pattern write a+/%u', /acl\.txt:2: "a\+\/%u" is not a valid topic filter/],
    ['allow a/b', /acl\.txt:2: unknown keyword "allow"/],
    ['Topic read a', /acl\.txt:2: unknown keyword "Topic"/], // keywords are case-sensitive, as in Mosquitto
  ])('%j', (line, message) => {
    const parse = () => parseAclFile(`# header\n${line}\n`, 'acl.txt');
    expect(parse).toThrow(AclFileError);
    expect(parse).toThrow(message);
    try {
      parse();
    } catch (error) {
      expect((error as AclFileError).code).toBe('APP_INVALID_ACL_FILE');
    }
  });

  it('readAclFile names a missing file', () => {
    expect(() => readAclFile('/nonexistent/acl')).toThrow(/cannot read ACL file \/nonexistent\/acl/);
  });
});

describe('parseAclFile', () => {
  it('reads sections: anonymous topics first, then users; patterns for everyone; readwrite by default', () => {
    const acl = parseAclFile(
      [
        '# comment',
        '',
        'topic read public/#',
        '  # indented comment',
        'user alice',
        'topic a/#',
        'pattern write log/%c',
        'topic deny a/secret',
        'user bob smith',
        'topic read with space/x',
        'topic readwrite  topic with  blanks ',
        'user alice',
        'topic write more/#',
      ].join('\r\n'),
    );
    expect(acl.rules.anonymous).toEqual([{ access: 'read', filter: 'public/#', line: 3 }]);
    expect(acl.rules.users.get('alice')).toEqual([
      { access: 'readwrite', filter: 'a/#', line: 6 },
      { access: 'deny', filter: 'a/secret', line: 8 },
      { access: 'write', filter: 'more/#', line: 13 },
    ]);
    expect(acl.rules.users.get('bob smith')).toEqual([
      { access: 'read', filter: 'with space/x', line: 10 },
      { access: 'readwrite', filter: 'topic with  blanks', line: 11 },
    ]);
    expect(acl.rules.patterns).toEqual([{ access: 'write', filter: 'log/%c', line: 7 }]);
    expect(acl.size).toBe(7);
  });

  it('an empty file grants nothing', () => {
    const acl = parseAclFile('# nothing\n');
    expect(acl.canPublish('alice', 'c1', 'a')).toBe(false);
    expect(acl.canSubscribe(undefined, 'c1', '#')).toBe(false);
  });
});

describe('Acl decisions (the example fixture)', () => {
  const acl = readAclFile(FIXTURE);

  it('publish needs write, subscribe needs read', () => {
    // bob: read sensors/#, write commands/+/set
    expect(acl.canSubscribe('bob', 'c', 'sensors/#')).toBe(true);
    expect(acl.canPublish('bob', 'c', 'sensors/t1')).toBe(false);
    expect(acl.canPublish('bob', 'c', 'commands/lamp/set')).toBe(true);
    expect(acl.canSubscribe('bob', 'c', 'commands/lamp/set')).toBe(false);
    expect(acl.canPublish('bob', 'c', 'commands/lamp/get')).toBe(false);
  });

  it('readwrite grants both', () => {
    expect(acl.canPublish('alice', 'c', 'sensors/t1')).toBe(true);
    expect(acl.canSubscribe('alice', 'c', 'sensors/t1')).toBe(true);
  });

  it('a subscription must be covered entirely by one grant', () => {
    expect(acl.canSubscribe('bob', 'c', 'sensors/a/+/b')).toBe(true);
    expect(acl.canSubscribe('bob', 'c', '#')).toBe(false);
    expect(acl.canSubscribe('bob', 'c', '+/t1')).toBe(false);
  });

  it('deny wins over a broader grant; a subscription overlapping a denied filter is refused', () => {
    expect(acl.canPublish('alice', 'c', 'sensors/secret')).toBe(false);
    expect(acl.canSubscribe('alice', 'c', 'sensors/secret')).toBe(false);
    expect(acl.canSubscribe('alice', 'c', 'sensors/+')).toBe(false);
    // sensors/# and sensors/+ match sensors/secret: refused, as delivery is not checked per message.
    expect(acl.canSubscribe('alice', 'c', 'sensors/#')).toBe(false);
    expect(acl.canSubscribe('alice', 'c', 'sensors/public')).toBe(true);
    expect(acl.canSubscribe('alice', 'c', 'sensors/secret/more')).toBe(true); // not matched by sensors/secret
  });

  it('anonymous clients get the rules before the first user line (and undefined or empty username is anonymous)', () => {
    for (const anonymous of [undefined, '']) {
      expect(acl.canSubscribe(anonymous, 'c', 'public/news')).toBe(true);
      expect(acl.canPublish(anonymous, 'c', 'public/news')).toBe(false);
      expect(acl.canSubscribe(anonymous, 'c', 'sensors/#')).toBe(false);
    }
    // Users do not get the anonymous rules.
    expect(acl.canSubscribe('alice', 'c', 'public/news')).toBe(false);
  });

  it('unknown users get only the patterns', () => {
    expect(acl.canPublish('mallory', 'c', 'mallory/x')).toBe(true);
    expect(acl.canPublish('mallory', 'c', 'sensors/t1')).toBe(false);
  });

  it('$SYS needs an explicit grant: # does not reach it', () => {
    expect(acl.canSubscribe('alice', 'c', '$SYS/broker/uptime')).toBe(true);
    expect(acl.canSubscribe('alice', 'c', '$SYS/#')).toBe(true);
    expect(acl.canSubscribe('bob', 'c', '$SYS/#')).toBe(false);
    const everything = parseAclFile('user root\ntopic readwrite #\n');
    expect(everything.canSubscribe('root', 'c', '#')).toBe(true);
    expect(everything.canSubscribe('root', 'c', '$SYS/#')).toBe(false);
  });
});

describe('patterns: %u and %c substitution', () => {
  const acl = parseAclFile(
    'pattern readwrite %u/#\npattern write clients/%c/status\npattern read shared/%u/%c\n',
  );

  it('substitutes the username and the client id', () => {
    expect(acl.canPublish('alice', 'c1', 'alice/x')).toBe(true);
    expect(acl.canSubscribe('alice', 'c1', 'alice/#')).toBe(true);
    expect(acl.canPublish('alice', 'c1', 'bob/x')).toBe(false);
    expect(acl.canSubscribe('alice', 'c1', '#')).toBe(false);
    expect(acl.canPublish('alice', 'c1', 'clients/c1/status')).toBe(true);
    expect(acl.canPublish('alice', 'c1', 'clients/c2/status')).toBe(false);
    expect(acl.canSubscribe('alice', 'c1', 'shared/alice/c1')).toBe(true);
    expect(acl.canSubscribe('alice', 'c1', 'shared/alice/c2')).toBe(false);
  });

  it('a %u pattern does not apply to anonymous clients; a %c pattern does', () => {
    expect(acl.canPublish(undefined, 'c1', 'clients/c1/status')).toBe(true);
    expect(acl.canPublish(undefined, 'c1', '/x')).toBe(false);
    expect(acl.canPublish('', 'c1', '/x')).toBe(false);
  });

  it('the injection guard: +, # or / in a username or client id does not widen a grant', () => {
    // User "#" would otherwise be granted "#/#"-like access; user "+" everyone's tree.
    expect(acl.canPublish('#', 'c1', 'alice/x')).toBe(false);
    expect(acl.canSubscribe('#', 'c1', '#')).toBe(false);
    expect(acl.canPublish('+', 'c1', 'alice/x')).toBe(false);
    expect(acl.canSubscribe('+', 'c1', '+/#')).toBe(false);
    // "bob/x" would reach into bob's tree: bob/x/#.
    expect(acl.canPublish('bob/x', 'c1', 'bob/x/y')).toBe(false);
    // A client id "+" would publish every client's status.
    expect(acl.canPublish('alice', '+', 'clients/c2/status')).toBe(false);
    expect(acl.canPublish('alice', 'a/b', 'clients/a/b/status')).toBe(false);
    // Only the pattern using the unsafe value is skipped: alice keeps her own tree.
    expect(acl.canPublish('alice', '#', 'alice/x')).toBe(true);
  });

  it('a username containing %c is not substituted again', () => {
    expect(acl.canPublish('x%c', 'c1', 'x%c/y')).toBe(true);
    expect(acl.canPublish('x%c', 'c1', 'xc1/y')).toBe(false);
  });

  it('deny patterns: apply with substitution; with an unsafe value they refuse (fail closed)', () => {
    const deny = parseAclFile('pattern readwrite #\npattern deny private/%u/#\n');
    expect(deny.canPublish('alice', 'c', 'private/alice/x')).toBe(false);
    expect(deny.canPublish('alice', 'c', 'private/bob/x')).toBe(true);
    expect(deny.canPublish(undefined, 'c', 'private/alice/x')).toBe(true); // %u: does not apply
    expect(deny.canPublish('a+b', 'c', 'anything')).toBe(false);
  });
});

describe('filterCovers and filtersIntersect agree with matching, exhaustively over a small alphabet', () => {
  // An independent matcher: the filter as a regular expression, with the '$' rule [MQTT-4.7.2-1].
  const matches = (filter: string, topic: string): boolean => {
    if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
    const levels = filter.split('/');
    const isMulti = levels.at(-1) === '#';
    const fixed = (isMulti ? levels.slice(0, -1) : levels)
      .map((l) => (l === '+' ? '[^/]*' : l.replace(/[$]/g, '\\$')))
      .join('/');
    const source = isMulti ? (levels.length === 1 ? '.*' : `${fixed}(/.*)?`) : fixed;
    return new RegExp(`^${source}$`).test(topic);
  };
  const sequences = (alphabet: string[], maxLength: number): string[][] => {
    let current: string[][] = [[]];
    const all: string[][] = [];
    for (let n = 1; n <= maxLength; n++) {
      current = current.flatMap((s) => alphabet.map((a) => [...s, a]));
      all.push(...current);
    }
    return all;
  };
  // Filters up to 3 levels; topics one level deeper, with a level no filter names ('b') and an empty one.
  const filters = sequences(['a', '$s', '+'], 3).flatMap((s) => [
    s.join('/'),
    [...s.slice(0, -1), '#'].join('/'),
  ]);
  const uniqueFilters = [...new Set(filters)];
  const topics = sequences(['a', 'b', '$s', ''], 4).map((s) => s.join('/'));

  it('filterCovers(g, r) ⇔ every topic r matches, g matches', () => {
    const wrong: string[] = [];
    for (const g of uniqueFilters) {
      for (const r of uniqueFilters) {
        const expected = topics.every((t) => !matches(r, t) || matches(g, t));
        if (filterCovers(g, r) !== expected) wrong.push(`${g} covers ${r}: expected ${expected}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('filtersIntersect(a, b) ⇔ some topic matches both', () => {
    const wrong: string[] = [];
    for (const a of uniqueFilters) {
      for (const b of uniqueFilters) {
        const expected = topics.some((t) => matches(a, t) && matches(b, t));
        if (filtersIntersect(a, b) !== expected) wrong.push(`${a} ∩ ${b}: expected ${expected}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('filterCovers(filter, topic) is topic matching', () => {
    for (const f of uniqueFilters) for (const t of topics) expect(filterCovers(f, t)).toBe(matches(f, t));
  });
});
