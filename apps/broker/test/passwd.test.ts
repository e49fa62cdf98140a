import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  hashPassword,
  PasswordFileError,
  parsePasswordFile,
  readPasswordFile,
  runPasswd,
  usernameProblem,
  verifyPassword,
} from '../src/passwd.js';

const FIXTURE = new URL('./fixtures/auth-users.txt', import.meta.url).pathname;

describe('hashPassword / verifyPassword', () => {
  it('round-trips, in the documented format', async () => {
    const encoded = await hashPassword('s3cret');
    expect(encoded).toMatch(/^\$scrypt\$N=16384,r=8,p=1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
    expect(await verifyPassword('s3cret', encoded)).toBe(true);
    expect(await verifyPassword(new TextEncoder().encode('s3cret'), encoded)).toBe(true);
  });

  it('salts: the same password hashes differently each time', async () => {
    expect(await hashPassword('same')).not.toBe(await hashPassword('same'));
  });

  it('refuses a wrong or empty password', async () => {
    const encoded = await hashPassword('s3cret');
    expect(await verifyPassword('s3cret ', encoded)).toBe(false);
    expect(await verifyPassword('S3cret', encoded)).toBe(false);
    expect(await verifyPassword('', encoded)).toBe(false);
  });

  it('refuses a tampered hash or salt', async () => {
    const encoded = await hashPassword('s3cret');
    const parts = encoded.split('$'); // ['', 'scrypt', params, salt, key]
    const flip = (b64: string) => {
      const bytes = Buffer.from(b64, 'base64');
      bytes[0] = bytes[0]! ^ 1;
      return bytes.toString('base64');
    };
    expect(await verifyPassword('s3cret', [...parts.slice(0, 4), flip(parts[4]!)].join('$'))).toBe(false);
    expect(await verifyPassword('s3cret', [...parts.slice(0, 3), flip(parts[3]!), parts[4]].join('$'))).toBe(
      false,
    );
    // Other parameters derive another key.
    expect(await verifyPassword('s3cret', encoded.replace('N=16384', 'N=8192'))).toBe(false);
  });

  it('answers false (does not throw) for unknown formats and unsafe parameters', async () => {
    for (const encoded of [
      '',
      'plaintext',
      '$2b$10$abcdefghijklmnopqrstuu5Jr4s8l3G3C2pW1tQ6yGqJ5j9h0W7e', // bcrypt
      '$scrypt$N=16384,r=8,p=1$$AAAA',
      '$scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$not base64!',
      '$scrypt$N=1000,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', // not a power of 2
      '$scrypt$N=1073741824,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', // 2^30: too costly
      '$scrypt$N=16384,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA', // key too short
    ]) {
      expect(await verifyPassword('x', encoded), encoded).toBe(false);
    }
  });

  it('verifies the fixture, whose hashes were checked with an independent scrypt (Python hashlib)', async () => {
    const users = readPasswordFile(FIXTURE);
    expect([...users.keys()]).toEqual(['alice', 'bob']);
    expect(await verifyPassword('alice-secret', users.get('alice')!)).toBe(true);
    expect(await verifyPassword('bob-secret', users.get('alice')!)).toBe(false);
  });
});

describe('parsePasswordFile', () => {
  const hash =
    '$scrypt$N=16384,r=8,p=1$nv6ffOjL4S9cHoKh8/jVng==$pGabUTHE7DsktJ8W4hMHftPqaXXHb4v7vfJdRAx9sIs=';

  it('skips comments and blank lines, accepts CRLF', () => {
    const users = parsePasswordFile(`# users\r\n\r\n   \r\n  # indented comment\r\nalice:${hash}\r\n`);
    expect(users).toEqual(new Map([['alice', hash]]));
  });

  it.each([
    ['alice', /users\.txt:2: expected "username:\$scrypt\$\.\.\."/],
    [`:${hash}`, /users\.txt:2: a username cannot be empty/],
    ['alice:secret', /users\.txt:2: the password of "alice" is not a valid \$scrypt\$ hash/],
    [`alice:${hash}\nalice:${hash}`, /users\.txt:3: user "alice" appears again \(first on line 2\)/],
  ])('names the line of a bad entry: %j', (bad, message) => {
    const parse = () => parsePasswordFile(`# header\n${bad}\n`, 'users.txt');
    expect(parse).toThrow(PasswordFileError);
    expect(parse).toThrow(message);
    try {
      parse();
    } catch (error) {
      expect((error as PasswordFileError).code).toBe('APP_INVALID_PASSWORD_FILE');
    }
  });

  it('never echoes a plain-text password in an error', () => {
    expect(() => parsePasswordFile('alice:hunter2', 'users.txt')).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('hunter2') }),
    );
  });

  it('readPasswordFile names a missing file', () => {
    expect(() => readPasswordFile('/nonexistent/users.txt')).toThrow(
      /cannot read password file \/nonexistent\/users\.txt/,
    );
  });

  it('usernameProblem', () => {
    expect(usernameProblem('alice')).toBeUndefined();
    expect(usernameProblem('ålice smith')).toBeUndefined();
    expect(usernameProblem('')).toMatch(/empty/);
    expect(usernameProblem('a:b')).toMatch(/':'/);
    expect(usernameProblem('a\nb')).toMatch(/control/);
    expect(usernameProblem(' alice')).toMatch(/blank/);
    expect(usernameProblem('#alice')).toMatch(/comment/);
  });
});

describe('runPasswd', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'auth-passwd-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the command with `input` on stdin; answers the exit code and what went to stderr. */
  async function run(args: string[], input: string | undefined): Promise<{ code: number; stderr: string }> {
    const stdin = new PassThrough();
    let stderr = '';
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        stderr += chunk.toString();
        callback();
      },
    });
    if (input !== undefined) stdin.end(input);
    const code = await runPasswd(args, { stdin, stderr: sink });
    return { code, stderr };
  }

  it('creates the file with mode 0600 and a verifiable line; prints a confirmation', async () => {
    const file = join(dir, 'users.txt');
    const { code, stderr } = await run([file, 'alice'], 'secret\n');
    expect(code).toBe(0);
    expect(stderr).toMatch(/added user "alice"/);
    expect(stderr).not.toContain('secret');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('secret');
    expect(text).toMatch(/^alice:\$scrypt\$N=16384,r=8,p=1\$\S+\n$/);
    expect(await verifyPassword('secret', readPasswordFile(file).get('alice')!)).toBe(true);
  });

  it('reads only the first line, without its line ending; works without a trailing newline', async () => {
    const file = join(dir, 'users.txt');
    expect((await run([file, 'alice'], 'first\r\nsecond\n')).code).toBe(0);
    expect(await verifyPassword('first', readPasswordFile(file).get('alice')!)).toBe(true);
    expect((await run([file, 'bob'], 'no-newline')).code).toBe(0);
    expect(await verifyPassword('no-newline', readPasswordFile(file).get('bob')!)).toBe(true);
  });

  it('replaces the line of an existing user in place, keeps other lines, comments and the file mode', async () => {
    const file = join(dir, 'users.txt');
    writeFileSync(file, `# our users\n${readFileSync(FIXTURE, 'utf8')}`, { mode: 0o640 });
    const before = readFileSync(file, 'utf8');
    const { code, stderr } = await run([file, 'alice'], 'new-password\n');
    expect(code).toBe(0);
    expect(stderr).toMatch(/changed the password of user "alice"/);
    const after = readFileSync(file, 'utf8');
    const aliceLine = (text: string) => text.split('\n').findIndex((l) => l.startsWith('alice:'));
    expect(aliceLine(after)).toBe(aliceLine(before));
    expect(after.split('\n').filter((l) => !l.startsWith('alice:'))).toEqual(
      before.split('\n').filter((l) => !l.startsWith('alice:')),
    );
    const users = readPasswordFile(file);
    expect(await verifyPassword('new-password', users.get('alice')!)).toBe(true);
    expect(await verifyPassword('bob-secret', users.get('bob')!)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    // Atomic write: no temporary file is left beside it.
    expect(readdirSync(dir)).toEqual(['users.txt']);
  });

  it('appends a new user to an existing file', async () => {
    const file = join(dir, 'users.txt');
    writeFileSync(file, readFileSync(FIXTURE, 'utf8'));
    expect((await run([file, 'carol'], 'carol-pw\n')).code).toBe(0);
    expect([...readPasswordFile(file).keys()]).toEqual(['alice', 'bob', 'carol']);
  });

  it('usage errors exit 2 with a message', async () => {
    const file = join(dir, 'users.txt');
    for (const args of [[], [file], [file, 'a', 'b'], ['', 'alice']]) {
      const { code, stderr } = await run(args, 'x\n');
      expect(code, JSON.stringify(args)).toBe(2);
      expect(stderr).toMatch(/Usage: mqtt-broker passwd <password-file> <username>/);
    }
    const bad = await run([file, 'a:b'], 'x\n');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/contains ':'/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('--help prints the usage and exits 0', async () => {
    const { code, stderr } = await run(['--help'], undefined);
    expect(code).toBe(0);
    expect(stderr).toMatch(/Usage:/);
  });

  it('refuses an empty password (exit 1) and leaves the file alone', async () => {
    const file = join(dir, 'users.txt');
    for (const input of ['\n', '']) {
      const { code, stderr } = await run([file, 'alice'], input);
      expect(code).toBe(1);
      expect(stderr).toMatch(/empty/);
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses to rewrite an invalid file (exit 1), naming file and line, before reading the password', async () => {
    const file = join(dir, 'users.txt');
    writeFileSync(file, 'alice:plaintext\n');
    const { code, stderr } = await run([file, 'bob'], undefined); // stdin never ends: must not be read
    expect(code).toBe(1);
    expect(stderr).toContain(`${file}:1:`);
    expect(readFileSync(file, 'utf8')).toBe('alice:plaintext\n');
  });
});
