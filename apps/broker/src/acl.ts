/**
 * Access control lists in Mosquitto's acl_file format (mosquitto.conf(5), "acl_file"):
 *
 *     # comment (a line whose first non-blank character is '#')
 *     topic [read|write|readwrite|deny] <filter>     before any `user` line: anonymous clients
 *     user <username>                                 the following `topic` lines are this user's
 *     topic [read|write|readwrite|deny] <filter>
 *     pattern [read|write|readwrite|deny] <filter>    everyone; %u = username, %c = client id
 *
 * The access type defaults to readwrite. The filter is the rest of the line (it may contain
 * blanks, but then the access type must be given, as in Mosquitto).
 *
 * Semantics: publishing needs write, subscribing needs read; nothing is granted that a line does
 * not grant; a `deny` line matching the request wins over every grant. A subscription is granted
 * only when one filter with read access covers it entirely (every topic it can match), and refused
 * when it overlaps a denied filter at all: this broker checks at SUBSCRIBE time only, not per
 * delivered message as Mosquitto does, so an overlap must refuse (e.g. `deny a/secret` refuses a
 * subscription to `a/#`) or denied messages would be delivered.
 *
 * Substitution guard: a username or client id containing `+`, `#` or `/` would turn a pattern into
 * a wider filter (user `#` and `pattern read %u/#` would read everything; user `bob/x` would reach
 * into bob's tree). A grant pattern whose placeholder would take such a value does not apply, as in
 * Mosquitto; a deny pattern whose placeholder would take such a value refuses the request, so the
 * guard never widens access. Anonymous clients (no or empty username) match no `%u` pattern.
 */
import { readFileSync } from 'node:fs';

export type AclAccess = 'read' | 'write' | 'readwrite' | 'deny';

export interface AclRule {
  access: AclAccess;
  /** The topic filter; for a pattern, with its %u / %c placeholders. */
  filter: string;
  /** Line in the source, for messages. */
  line: number;
}

export interface AclRules {
  /** `topic` lines before the first `user` line. */
  anonymous: AclRule[];
  users: Map<string, AclRule[]>;
  patterns: AclRule[];
}

export class AclFileError extends Error {
  override readonly name = 'AclFileError';
  readonly code = 'APP_INVALID_ACL_FILE';
}

const ACCESS_TYPES: ReadonlySet<string> = new Set(['read', 'write', 'readwrite', 'deny']);

/**
 * Whether `filter` is a well-formed topic filter: not empty, `#` only as the whole last level,
 * `+` only as a whole level [MQTT-4.7.1-2] [MQTT-4.7.1-3], no U+0000 [MQTT-4.7.3-2].
 */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  return levels.every((level, i) => {
    if (level.includes('#')) return level === '#' && i === levels.length - 1;
    if (level.includes('+')) return level === '+';
    return true;
  });
}

/**
 * Whether every topic that `requested` matches is also matched by `granted` (both well-formed
 * filters; a topic name is a filter without wildcards, so this also answers "does `granted` match
 * this topic"). `a/#` covers `a`, `a/b/+` and `a/#`; `+/#` covers `#`; `a/#` does not cover `#`.
 * Filters beginning with a wildcard do not match topics beginning with `$` [MQTT-4.7.2-1], so `#`
 * does not cover `$SYS/x`, and `$SYS/#` does not cover `#`.
 */
export function filterCovers(granted: string, requested: string): boolean {
  const g = granted.split('/');
  const r = requested.split('/');
  for (let i = 0; ; i++) {
    const gl = g[i];
    const rl = r[i];
    if (gl === '#') {
      // '#' matches the rest, including nothing: `a/#` matches the parent `a` (4.7.1.2).
      return !(i === 0 && rl !== undefined && rl.startsWith('$'));
    }
    if (gl === undefined || rl === undefined) return gl === undefined && rl === undefined;
    if (rl === '#') {
      // A requested '#' also matches the parent level, which only a granted '#' matches, except at
      // the first level, where there is no parent: `#` and `+/#` match the same topics.
      return i === 0 && gl === '+' && g.length === 2 && g[1] === '#';
    }
    if (gl === '+') {
      if (i === 0 && rl.startsWith('$')) return false;
      continue;
    }
    // A literal granted level covers only the same literal; a requested '+' matches more.
    if (gl !== rl) return false;
  }
}

/** Whether some topic is matched by both filters (used for deny rules against subscriptions). */
export function filtersIntersect(a: string, b: string): boolean {
  const x = a.split('/');
  const y = b.split('/');
  for (let i = 0; ; i++) {
    const xl = x[i];
    const yl = y[i];
    if (xl === '#' || yl === '#') {
      const other = xl === '#' ? yl : xl;
      return !(i === 0 && other !== undefined && other !== '+' && other !== '#' && other.startsWith('$'));
    }
    if (xl === undefined || yl === undefined) return xl === undefined && yl === undefined;
    if (xl === '+' || yl === '+') {
      const other = xl === '+' ? yl : xl;
      if (i === 0 && other !== '+' && other.startsWith('$')) return false;
      continue;
    }
    if (xl !== yl) return false;
  }
}

/**
 * Parses ACL file text. `source` names the file in errors.
 * @throws AclFileError APP_INVALID_ACL_FILE naming the source and line.
 */
export function parseAclFile(text: string, source = 'ACL file'): Acl {
  const rules: AclRules = { anonymous: [], users: new Map(), patterns: [] };
  let current: AclRule[] = rules.anonymous;
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const lineNumber = index + 1;
    const line = lines[index]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fail = (why: string) => new AclFileError(`${source}:${lineNumber}: ${why}`);
    const keyword = /^\S+/.exec(line)![0];
    const rest = line.slice(keyword.length).trim();
    if (keyword === 'user') {
      if (rest === '') throw fail('"user" needs a username');
      let list = rules.users.get(rest);
      if (list === undefined) {
        list = [];
        rules.users.set(rest, list);
      }
      current = list;
      continue;
    }
    if (keyword !== 'topic' && keyword !== 'pattern') {
      throw fail(`unknown keyword "${keyword}" (expected user, topic or pattern)`);
    }
    if (rest === '') throw fail(`"${keyword}" needs a topic filter`);
    const first = /^\S+/.exec(rest)![0];
    let access: AclAccess = 'readwrite';
    let filter = rest;
    if (ACCESS_TYPES.has(first)) {
      access = first as AclAccess;
      filter = rest.slice(first.length).trim();
      if (filter === '') throw fail(`"${keyword} ${first}" needs a topic filter`);
    } else if (first !== rest) {
      // Mosquitto would take only the first word as the topic; a typo such as "raed" must not
      // silently become a topic named "raed".
      throw fail(
        `"${first}" is not an access type (read, write, readwrite or deny); a filter containing blanks needs one`,
      );
    }
    if (!isValidFilter(filter)) {
      throw fail(`"${filter}" is not a valid topic filter ('+' and '#' must fill a level, '#' only last)`);
    }
    const rule: AclRule = { access, filter, line: lineNumber };
    if (keyword === 'pattern') rules.patterns.push(rule);
    else current.push(rule);
  }
  return new Acl(rules);
}

/**
 * Reads and parses an ACL file.
 * @throws AclFileError APP_INVALID_ACL_FILE naming the file (and line).
 */
export function readAclFile(path: string): Acl {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new AclFileError(`cannot read ACL file ${path}: ${(error as Error).message}`);
  }
  return parseAclFile(text, path);
}

/** A value is unsafe to substitute when it could act as a wildcard or a level separator (or is empty). */
function isSafeValue(value: string): boolean {
  return value !== '' && !/[+#/]/.test(value);
}

const UNSAFE = Symbol('unsafe');
const NOT_APPLICABLE = Symbol('not applicable');

/**
 * The pattern's filter for this client; NOT_APPLICABLE for a `%u` pattern and an anonymous client
 * (Mosquitto skips those); UNSAFE when a placeholder would take an unsafe value.
 */
function substitute(
  pattern: string,
  user: string | undefined,
  clientId: string,
): string | typeof UNSAFE | typeof NOT_APPLICABLE {
  if (user === undefined && pattern.includes('%u')) return NOT_APPLICABLE;
  let isSafe = true;
  // One pass, so a username containing "%c" is not substituted again.
  const filter = pattern.replace(/%[uc]/g, (placeholder) => {
    const value = placeholder === '%u' ? user! : clientId;
    if (!isSafeValue(value)) isSafe = false;
    return value;
  });
  return isSafe ? filter : UNSAFE;
}

export class Acl {
  readonly rules: AclRules;

  constructor(rules: AclRules) {
    this.rules = rules;
  }

  /** Number of rules, for a log line. */
  get size(): number {
    let n = this.rules.anonymous.length + this.rules.patterns.length;
    for (const list of this.rules.users.values()) n += list.length;
    return n;
  }

  /**
   * Whether a client may publish to `topic` (needs write). `user` undefined or empty: anonymous.
   */
  canPublish(user: string | undefined, clientId: string, topic: string): boolean {
    return this.decide(user, clientId, 'write', (filter) => filterCovers(filter, topic));
  }

  /**
   * Whether a client may subscribe to `filter` (needs read, over every topic the filter matches,
   * and no overlap with a denied filter).
   */
  canSubscribe(user: string | undefined, clientId: string, filter: string): boolean {
    return this.decide(
      user,
      clientId,
      'read',
      (granted) => filterCovers(granted, filter),
      (denied) => filtersIntersect(denied, filter),
    );
  }

  private decide(
    user: string | undefined,
    clientId: string,
    need: 'read' | 'write',
    grants: (filter: string) => boolean,
    denies: (filter: string) => boolean = grants,
  ): boolean {
    const name = user === '' ? undefined : user;
    const own = name === undefined ? this.rules.anonymous : (this.rules.users.get(name) ?? []);
    let isGranted = false;
    const consider = (access: AclAccess, filter: string | typeof UNSAFE): boolean => {
      if (access === 'deny') {
        // Fail closed: a deny pattern that cannot be filled safely refuses.
        return filter === UNSAFE || denies(filter);
      }
      if (!isGranted && filter !== UNSAFE && (access === 'readwrite' || access === need) && grants(filter)) {
        isGranted = true;
      }
      return false;
    };
    // Every rule is looked at, because a deny anywhere wins over a grant anywhere.
    for (const rule of own) {
      if (consider(rule.access, rule.filter)) return false;
    }
    for (const rule of this.rules.patterns) {
      const filter = substitute(rule.filter, name, clientId);
      if (filter !== NOT_APPLICABLE && consider(rule.access, filter)) return false;
    }
    return isGranted;
  }
}
