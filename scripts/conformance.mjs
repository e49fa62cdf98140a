#!/usr/bin/env node
/**
 * MQTT 3.1.1 conformance evidence: which normative statement is checked by which test.
 *
 *   node scripts/conformance.mjs            regenerate docs/conformance.md
 *   node scripts/conformance.mjs --check    fail if docs/conformance.md is not what it would generate (CI)
 *   node scripts/conformance.mjs --force    write even when a check below fails
 *
 * It reads the statement list (docs/mqtt-3.1.1-statements.json) and every `*.test.ts` under
 * packages/(name)/test and apps/(name)/test, collects the statement ids (`MQTT-x.y.z-n`, bracketed or
 * not, ranges `MQTT-3.1.2-11..15` expanded) in the titles of it/test/describe calls (it.each and
 * describe.each templates included; with placeholders in the template, the ids in the strings of an
 * inline table count too), and writes one table per section of the standard.
 *
 * Status of a statement: `covered (socket)` when a test under apps/broker/test (the real server over
 * a socket) cites it, `covered (engine)` when only package tests do, `missing` for a server-side
 * statement no test cites, `untestable` for a server-side statement without tests whose entry in the
 * list gives the reason, and `n/a (client)` for an obligation on clients only.
 *
 * Exits 1, writing nothing (unless --force), when a test cites an id that is not in the list (a typo),
 * or when a statement the committed docs/conformance.md shows as covered has lost its last test.
 * Dependency-free Node ESM.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const statementsPath = join(root, 'docs', 'mqtt-3.1.1-statements.json');
const outputPath = join(root, 'docs', 'conformance.md');
const socketDir = 'apps/broker/test/';

const args = new Set(process.argv.slice(2));
for (const a of args) {
  if (!['--check', '--force', '--help', '-h'].includes(a)) {
    console.error(`conformance: unknown argument ${a} (use --check or --force)`);
    process.exit(2);
  }
}
if (args.has('--help') || args.has('-h')) {
  console.log('usage: node scripts/conformance.mjs [--check | --force]');
  process.exit(0);
}
const check = args.has('--check');
const force = args.has('--force');

const SECTION_NAMES = {
  1.5: 'Data representation: UTF-8 strings',
  2.2: 'Fixed header flags',
  2.3: 'Packet identifiers',
  3.1: 'CONNECT',
  3.2: 'CONNACK',
  3.3: 'PUBLISH',
  3.6: 'PUBREL',
  3.8: 'SUBSCRIBE',
  3.9: 'SUBACK',
  '3.10': 'UNSUBSCRIBE',
  3.12: 'PINGREQ',
  3.14: 'DISCONNECT',
  4.1: 'Sessions',
  4.3: 'Quality of service',
  4.4: 'Message delivery retry',
  4.5: 'Message receipt',
  4.6: 'Message ordering',
  4.7: 'Topic names and filters',
  4.8: 'Handling errors',
  '6.0': 'WebSocket',
  '7.0': 'Conformance targets',
  7.1: 'Conformance targets: transports',
};

// ---------------------------------------------------------------- statement list

function loadStatements() {
  const list = JSON.parse(readFileSync(statementsPath, 'utf8'));
  const byId = new Map();
  for (const s of list) {
    if (!/^MQTT-\d+\.\d+\.\d+-\d+$/.test(s.id)) throw new Error(`statement list: bad id ${s.id}`);
    if (!['server', 'client', 'both'].includes(s.binds))
      throw new Error(`statement list: ${s.id} binds ${s.binds}`);
    if (byId.has(s.id)) throw new Error(`statement list: ${s.id} twice`);
    byId.set(s.id, s);
  }
  return { list, byId };
}

// ---------------------------------------------------------------- test files

function testFiles() {
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile() && entry.name.endsWith('.test.ts')) files.push(path);
    }
  };
  for (const group of ['packages', 'apps']) {
    const base = join(root, group);
    if (!existsSync(base)) continue;
    for (const pkg of readdirSync(base, { withFileTypes: true })) {
      const testDir = join(base, pkg.name, 'test');
      if (pkg.isDirectory() && existsSync(testDir)) walk(testDir);
    }
  }
  return files.map((f) => relative(root, f).split(sep).join('/')).sort();
}

/**
 * A small lexer over TypeScript source: yields string literals (with their decoded text) and
 * punctuation/identifiers, skipping comments and regular-expression literals well enough for test
 * titles.
 */
function tokenize(src) {
  const tokens = [];
  let i = 0;
  const n = src.length;
  const isIdStart = (c) => /[A-Za-z_$]/.test(c);
  const isId = (c) => /[A-Za-z0-9_$]/.test(c);
  let lastSignificant = null;
  const push = (t) => {
    tokens.push(t);
    lastSignificant = t;
  };
  while (i < n) {
    const c = src[i];
    if (c === '/' && src[i + 1] === '/') {
      while (i < n && src[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      let j = i + 1;
      let text = '';
      while (j < n && src[j] !== c) {
        if (src[j] === '\\') {
          text += unescapeChar(src[j + 1]);
          j += 2;
        } else text += src[j++];
      }
      push({ kind: 'string', text, pos: i });
      i = j + 1;
      continue;
    }
    if (c === '`') {
      // Template literal; ${...} parts are kept as written (balanced braces, nested strings skipped).
      let j = i + 1;
      let text = '';
      while (j < n && src[j] !== '`') {
        if (src[j] === '\\') {
          text += unescapeChar(src[j + 1]);
          j += 2;
        } else if (src[j] === '$' && src[j + 1] === '{') {
          let depth = 0;
          const start = j;
          for (; j < n; j++) {
            if (src[j] === '{') depth++;
            else if (src[j] === '}' && --depth === 0) break;
          }
          text += src.slice(start, j + 1);
          j++;
        } else text += src[j++];
      }
      push({ kind: 'string', text, pos: i, template: true });
      i = j + 1;
      continue;
    }
    if (c === '/') {
      // A regular expression literal where an operand is expected.
      const prev = lastSignificant;
      const operandExpected =
        prev === null ||
        (prev.kind === 'punct' && !/[)\]}]/.test(prev.text)) ||
        (prev.kind === 'id' && /^(return|typeof|case|in|of|void|delete|throw|new)$/.test(prev.text));
      if (operandExpected) {
        let j = i + 1;
        let inClass = false;
        while (j < n && src[j] !== '\n') {
          if (src[j] === '\\') {
            j += 2;
            continue;
          }
          if (src[j] === '/' && !inClass) break;
          if (src[j] === '[') inClass = true;
          else if (src[j] === ']') inClass = false;
          j++;
        }
        j++;
        while (j < n && /[a-z]/.test(src[j])) j++;
        push({ kind: 'regex', text: src.slice(i, j), pos: i });
        i = j;
        continue;
      }
    }
    if (isIdStart(c)) {
      let j = i + 1;
      while (j < n && isId(src[j])) j++;
      push({ kind: 'id', text: src.slice(i, j), pos: i });
      i = j;
      continue;
    }
    if (/\d/.test(c)) {
      let j = i + 1;
      while (j < n && /[\w.]/.test(src[j])) j++;
      push({ kind: 'number', text: src.slice(i, j), pos: i });
      i = j;
      continue;
    }
    push({ kind: 'punct', text: c, pos: i });
    i++;
  }
  return tokens;
}

function unescapeChar(c) {
  return { n: '\n', t: '\t', r: '\r', 0: '\0' }[c] ?? c;
}

/** Index of the token closing the bracket opened at `open`. */
function closing(tokens, open) {
  const pairs = { '(': ')', '[': ']', '{': '}' };
  const want = pairs[tokens[open].text];
  let depth = 0;
  for (let k = open; k < tokens.length; k++) {
    const t = tokens[k];
    if (t.kind !== 'punct') continue;
    if (t.text === tokens[open].text) depth++;
    else if (t.text === want && --depth === 0) return k;
  }
  return tokens.length - 1;
}

const ID_RE = /MQTT-(\d+\.\d+\.\d+)-(\d+)(?:\s*(?:\.\.|–|—)\s*(?:MQTT-\1-)?(\d+))?/g;

/** Every statement id in a piece of text; ranges (`MQTT-3.1.2-11..15`) expanded. */
function idsIn(text) {
  const ids = [];
  for (const m of text.matchAll(ID_RE)) {
    const from = Number(m[2]);
    const to = m[3] === undefined ? from : Number(m[3]);
    if (to >= from && to - from < 50) for (let k = from; k <= to; k++) ids.push(`MQTT-${m[1]}-${k}`);
    else ids.push(`MQTT-${m[1]}-${from}`);
  }
  return [...new Set(ids)];
}

const PLACEHOLDER = /%[sdifjoO#%]|\$[A-Za-z_]/;

/** Test titles of one file: { title, ids, line }. */
function titlesOf(src) {
  const tokens = tokenize(src);
  const found = [];
  const lineOf = (pos) => src.slice(0, pos).split('\n').length;
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k];
    if (t.kind !== 'id' || !['it', 'test', 'describe', 'suite'].includes(t.text)) continue;
    const prev = tokens[k - 1];
    if (prev && prev.kind === 'punct' && prev.text === '.') continue; // foo.it(...)
    let j = k + 1;
    let each = false;
    // Modifier chain: .skip .only .concurrent .sequential .each .for .todo .fails .runIf(x) .skipIf(x)
    while (tokens[j]?.text === '.' && tokens[j + 1]?.kind === 'id') {
      const mod = tokens[j + 1].text;
      j += 2;
      if (mod === 'each' || mod === 'for') each = true;
      if (mod === 'each' || mod === 'for' || mod === 'runIf' || mod === 'skipIf') {
        if (tokens[j]?.text === '(') {
          const end = closing(tokens, j);
          if (mod === 'each' || mod === 'for') each = { from: j + 1, to: end };
          j = end + 1;
        } else if (tokens[j]?.kind === 'string' && tokens[j].template) {
          each = { from: j, to: j + 1 }; // it.each`table`
          j++;
        }
      }
    }
    if (tokens[j]?.text !== '(') continue;
    const title = tokens[j + 1];
    if (title === undefined || title.kind !== 'string') continue;
    const text = title.text.replace(/\s+/g, ' ').trim();
    const ids = idsIn(text);
    const rows = [];
    if (each && typeof each === 'object' && PLACEHOLDER.test(text)) {
      // Bracketed ids in the strings of the table (inline, or a `const name = [...]` of the same
      // file) fill the template's placeholder: one title per such string.
      let { from, to } = each;
      if (to === from + 1 && tokens[from].kind === 'id')
        ({ from, to } = declaredArray(tokens, tokens[from].text));
      for (let m = from; m < to; m++) {
        const cell = tokens[m];
        if (cell.kind !== 'string' || !/\[MQTT-\d/.test(cell.text)) continue;
        const cellIds = idsIn(cell.text);
        if (cellIds.length === 0) continue;
        const row = text.replace(PLACEHOLDER, cell.text.replace(/\s+/g, ' ').trim());
        rows.push({ title: row, ids: [...new Set([...ids, ...cellIds])], line: lineOf(cell.pos) });
      }
    }
    if (rows.length > 0) found.push(...rows);
    else if (ids.length > 0) found.push({ title: text, ids, line: lineOf(title.pos) });
  }
  return found;
}

/** The token range of the array literal assigned to `const name` (or let/var) in the same file. */
function declaredArray(tokens, name) {
  for (let k = 0; k < tokens.length - 2; k++) {
    if (tokens[k].kind !== 'id' || !/^(const|let|var)$/.test(tokens[k].text)) continue;
    if (tokens[k + 1].text !== name) continue;
    let j = k + 2;
    while (j < tokens.length && tokens[j].text !== '=' && tokens[j].text !== ';') j++;
    if (tokens[j]?.text !== '=') continue;
    j++;
    if (tokens[j]?.text === '[') return { from: j + 1, to: closing(tokens, j) };
  }
  return { from: 0, to: 0 };
}

// ---------------------------------------------------------------- the report

function sectionKey(section) {
  const [a, b] = section.split('.');
  return `${a}.${b}`;
}

function escapeCell(text) {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function compareVersion(a, b) {
  const pa = a.split(/[.-]/).map(Number);
  const pb = b.split(/[.-]/).map(Number);
  for (let k = 0; k < Math.max(pa.length, pb.length); k++) {
    const d = (pa[k] ?? -1) - (pb[k] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

function build() {
  const { list, byId } = loadStatements();
  const citations = new Map(); // id -> [{ file, title }]
  const unknown = [];
  for (const file of testFiles()) {
    const src = readFileSync(join(root, file), 'utf8');
    for (const { title, ids, line } of titlesOf(src)) {
      for (const id of ids) {
        if (!byId.has(id)) {
          unknown.push({ id, file, line, title });
          continue;
        }
        const entries = citations.get(id) ?? [];
        if (!entries.some((e) => e.file === file && e.title === title)) entries.push({ file, title });
        citations.set(id, entries);
      }
    }
  }

  const rows = [...list]
    .sort((a, b) => compareVersion(a.id.slice(5), b.id.slice(5)))
    .map((s) => {
      const tests = (citations.get(s.id) ?? []).sort(
        (x, y) => x.file.localeCompare(y.file) || x.title.localeCompare(y.title),
      );
      let status;
      if (s.binds === 'client') status = 'n/a (client)';
      else if (tests.some((t) => t.file.startsWith(socketDir))) status = 'covered (socket)';
      else if (tests.length > 0) status = 'covered (engine)';
      else if (s.reason) status = 'untestable';
      else status = 'missing';
      return { ...s, tests, status };
    });

  const count = (status) => rows.filter((r) => r.status === status).length;
  const serverSide = rows.filter((r) => r.binds !== 'client').length;
  const totals = {
    socket: count('covered (socket)'),
    engine: count('covered (engine)'),
    missing: count('missing'),
    untestable: count('untestable'),
    client: count('n/a (client)'),
  };

  const out = [];
  out.push('# MQTT 3.1.1 conformance');
  out.push('');
  out.push(
    '<!-- Generated by `node scripts/conformance.mjs` from docs/mqtt-3.1.1-statements.json and the test titles. Do not edit by hand. -->',
  );
  out.push('');
  out.push(
    'Every normative statement of MQTT 3.1.1 (OASIS Standard, 29 October 2014), paraphrased, with the tests whose titles cite it. ' +
      '`covered (socket)`: a test in `apps/broker/test` checks it against the real server over a socket; ' +
      '`covered (engine)`: only package tests (codec, core, transport, persistence) check it; ' +
      '`missing`: a server-side statement no test cites; `untestable`: one that cannot be observed from outside (the reason is given); ' +
      '`n/a (client)`: an obligation on clients only.',
  );
  out.push('');
  out.push('| | statements |');
  out.push('| --- | ---: |');
  out.push(`| all | ${rows.length} |`);
  out.push(`| server or both sides | ${serverSide} |`);
  out.push(`| covered (socket) | ${totals.socket} |`);
  out.push(`| covered (engine) | ${totals.engine} |`);
  out.push(`| missing | ${totals.missing} |`);
  out.push(`| untestable | ${totals.untestable} |`);
  out.push(`| n/a (client) | ${totals.client} |`);

  const sections = [];
  for (const r of rows) {
    const key = sectionKey(r.section);
    let group = sections.find((g) => g.key === key);
    if (group === undefined) {
      group = { key, rows: [] };
      sections.push(group);
    }
    group.rows.push(r);
  }
  for (const group of sections) {
    out.push('');
    out.push(`## ${group.key} ${SECTION_NAMES[group.key] ?? ''}`.trimEnd());
    out.push('');
    out.push('| id | binds | summary | tests | status |');
    out.push('| --- | --- | --- | --- | --- |');
    for (const r of group.rows) {
      const tests =
        r.tests.length === 0 ? '' : r.tests.map((t) => `\`${t.file}\`: ${escapeCell(t.title)}`).join('<br>');
      const summary = r.reason ? `${escapeCell(r.text)} *(${escapeCell(r.reason)})*` : escapeCell(r.text);
      out.push(`| ${r.id} | ${r.binds} | ${summary} | ${tests} | ${r.status} |`);
    }
  }
  out.push('');
  return { markdown: out.join('\n'), rows, unknown, totals };
}

/** Ids the committed file shows as covered. */
function coveredIn(markdown) {
  const ids = new Set();
  for (const line of markdown.split('\n')) {
    const m = /^\| (MQTT-\d+\.\d+\.\d+-\d+) \|.*\| (covered \((?:socket|engine)\)) \|$/.exec(line);
    if (m) ids.add(m[1]);
  }
  return ids;
}

// ---------------------------------------------------------------- main

const { markdown, rows, unknown, totals } = build();
const previous = existsSync(outputPath) ? readFileSync(outputPath, 'utf8') : undefined;
let failed = false;

if (unknown.length > 0) {
  failed = true;
  console.error('conformance: test titles cite ids that are not in docs/mqtt-3.1.1-statements.json:');
  for (const u of unknown) console.error(`  ${u.id}  ${u.file}:${u.line}  ${u.title}`);
}

if (previous !== undefined) {
  const before = coveredIn(previous);
  const lost = rows.filter((r) => before.has(r.id) && !r.status.startsWith('covered'));
  if (lost.length > 0) {
    failed = true;
    console.error(
      'conformance: statements covered in the committed docs/conformance.md lost their last test:',
    );
    for (const r of lost) console.error(`  ${r.id}  (${r.text})`);
  }
}

const summary = `${rows.length} statements: ${totals.socket} covered (socket), ${totals.engine} covered (engine), ${totals.missing} missing, ${totals.untestable} untestable, ${totals.client} n/a (client)`;

if (check) {
  if (previous !== markdown) {
    failed = true;
    console.error(
      previous === undefined
        ? 'conformance: docs/conformance.md does not exist; run `node scripts/conformance.mjs`'
        : 'conformance: docs/conformance.md is out of date; run `node scripts/conformance.mjs` and commit it',
    );
  }
  console.log(summary);
  process.exit(failed ? 1 : 0);
}

if (failed && !force) {
  console.error('conformance: docs/conformance.md left unchanged (use --force to write it anyway)');
  console.log(summary);
  process.exit(1);
}
if (previous !== markdown) writeFileSync(outputPath, markdown);
console.log(`${previous === markdown ? 'unchanged' : 'wrote'} docs/conformance.md — ${summary}`);
process.exit(failed ? 1 : 0);
