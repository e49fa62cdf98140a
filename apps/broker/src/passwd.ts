/**
 * The password file and the `mqtt-broker passwd` command.
 *
 * Format: UTF-8 text, one user per line:
 *
 *     username:$scrypt$N=16384,r=8,p=1$<salt, base64>$<derived key, base64>
 *
 * Lines whose first non-blank character is `#` are comments; blank lines are ignored; leading and
 * trailing blanks of a line are ignored (so a username cannot begin or end with a blank). A
 * username cannot contain `:` (it ends the name), control characters, or begin with `#`; each
 * appears at most once. Nothing but the derived key is stored: plain-text passwords never touch
 * the disk or the log.
 *
 * Hashing is scrypt (RFC 7914) from node:crypto, so no native or third-party code is involved.
 * N=2^14, r=8, p=1 are the scrypt paper's parameters for interactive logins: about 16 MiB and a
 * few tens of milliseconds per check, which a broker can afford on every CONNECT while making an
 * offline guess expensive. The parameters are stored with each hash, so they can be raised later
 * without invalidating existing lines. Salt: 16 random bytes; derived key: 32 bytes.
 */
import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';
import { constants, readFileSync } from 'node:fs';
import { chmod, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const SCRYPT_N = 16_384;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

// Bounds on parameters read from a file: a hand-edited or corrupted line must not make one CONNECT
// allocate gigabytes or spin for minutes.
const MAX_N = 1 << 20;
const MAX_R = 32;
const MAX_P = 16;
const MIN_KEY_BYTES = 16;
const MAX_KEY_BYTES = 64;

const HASH_PATTERN = /^\$scrypt\$N=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

export class PasswordFileError extends Error {
  override readonly name = 'PasswordFileError';
  readonly code = 'APP_INVALID_PASSWORD_FILE';
}

interface ParsedHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/** Decodes an encoded hash, or undefined when it is not one this module accepts. */
function parseHash(encoded: string): ParsedHash | undefined {
  const m = HASH_PATTERN.exec(encoded);
  if (m === null) return undefined;
  const N = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  // N must be a power of two above 1 (scrypt's definition).
  if (N < 2 || N > MAX_N || (N & (N - 1)) !== 0) return undefined;
  if (r < 1 || r > MAX_R || p < 1 || p > MAX_P) return undefined;
  const salt = Buffer.from(m[4]!, 'base64');
  const key = Buffer.from(m[5]!, 'base64');
  if (salt.length < 8 || key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) return undefined;
  return { N, r, p, salt, key };
}

function deriveKey(
  password: string | Uint8Array,
  salt: Buffer,
  keyLength: number,
  options: ScryptOptions,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLength, options, (error, key) =>
      error === null ? resolve(key) : reject(error),
    );
  });
}

/** scrypt needs 128·N·r bytes; the default cap (32 MiB) would refuse the larger parameters allowed above. */
function scryptOptions(N: number, r: number, p: number): ScryptOptions {
  return { N, r, p, maxmem: 128 * N * r + 1024 * 1024 };
}

/** Hashes a password into the file's encoded form (a fresh random salt each time). */
export async function hashPassword(password: string | Uint8Array): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await deriveKey(password, salt, KEY_BYTES, scryptOptions(SCRYPT_N, SCRYPT_R, SCRYPT_P));
  return `$scrypt$N=${SCRYPT_N},r=${SCRYPT_R},p=${SCRYPT_P}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * Whether `password` matches an encoded hash. An encoding this module does not know (another
 * algorithm, out-of-range parameters, damaged base64) answers false rather than throwing, so a bad
 * line refuses that user and nobody else.
 */
export async function verifyPassword(password: string | Uint8Array, encoded: string): Promise<boolean> {
  const parsed = parseHash(encoded);
  if (parsed === undefined) return false;
  const key = await deriveKey(
    password,
    parsed.salt,
    parsed.key.length,
    scryptOptions(parsed.N, parsed.r, parsed.p),
  );
  // Constant time, so the comparison leaks nothing about how many leading bytes matched.
  return timingSafeEqual(key, parsed.key);
}

/** Whether `encoded` is a hash verifyPassword can check. */
export function isValidHash(encoded: string): boolean {
  return parseHash(encoded) !== undefined;
}

/** Why a username cannot go in the file, or undefined when it can. */
export function usernameProblem(username: string): string | undefined {
  if (username.length === 0) return 'a username cannot be empty';
  if (username.includes(':'))
    return `username "${username}" contains ':', which ends the name in the password file`;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused.
  if (/[\u0000-\u001f\u007f]/.test(username)) return 'a username cannot contain control characters';
  if (username.trim() !== username) return `username "${username}" begins or ends with a blank`;
  if (username.startsWith('#')) return `username "${username}" begins with '#', which marks a comment`;
  return undefined;
}

interface FileLine {
  text: string;
  /** The user of the line, when it is not blank or a comment. */
  username?: string;
}

/** Splits and checks password file text; errors name `source` and the line. */
function parseLines(text: string, source: string): FileLine[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const seen = new Map<string, number>();
  return lines.map((raw, index) => {
    const lineNumber = index + 1;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return { text: raw };
    const colon = line.indexOf(':');
    const fail = (why: string) => new PasswordFileError(`${source}:${lineNumber}: ${why}`);
    if (colon < 0) throw fail('expected "username:$scrypt$..." (no ":" found)');
    const username = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    const problem = usernameProblem(username);
    if (problem !== undefined) throw fail(problem);
    if (!isValidHash(hash)) {
      throw fail(
        `the password of "${username}" is not a valid $scrypt$ hash (create it with mqtt-broker passwd)`,
      );
    }
    const previous = seen.get(username);
    if (previous !== undefined) throw fail(`user "${username}" appears again (first on line ${previous})`);
    seen.set(username, lineNumber);
    return { text: raw, username };
  });
}

/** Parses password file text into username → encoded hash. */
export function parsePasswordFile(text: string, source = 'password file'): Map<string, string> {
  const users = new Map<string, string>();
  for (const line of parseLines(text, source)) {
    if (line.username === undefined) continue;
    const trimmed = line.text.trim();
    users.set(line.username, trimmed.slice(trimmed.indexOf(':') + 1));
  }
  return users;
}

/**
 * Reads a password file into username → encoded hash.
 * @throws PasswordFileError APP_INVALID_PASSWORD_FILE naming the file (and line) that is wrong.
 */
export function readPasswordFile(path: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new PasswordFileError(`cannot read password file ${path}: ${(error as Error).message}`);
  }
  return parsePasswordFile(text, path);
}

export interface PasswdIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  stderr: NodeJS.WritableStream;
}

const USAGE = `Usage: mqtt-broker passwd <password-file> <username>
Reads the password from the first line of stdin, e.g.
  printf 'secret\\n' | mqtt-broker passwd users.txt alice
Adds the user to the file (created with mode 0600 if missing) or changes the user's password.
`;

/**
 * `mqtt-broker passwd <password-file> <username>`: sets a user's password. Answers the exit code:
 * 0 done, 1 failed (unreadable or invalid file, empty password), 2 usage error.
 */
export async function runPasswd(
  args: string[],
  io: PasswdIo = { stdin: process.stdin, stderr: process.stderr },
): Promise<number> {
  const say = (text: string) => io.stderr.write(text);
  if (args.length === 1 && (args[0] === '--help' || args[0] === '-h')) {
    say(USAGE);
    return 0;
  }
  const [file, username] = args;
  if (args.length !== 2 || file === undefined || username === undefined || file === '') {
    say(`mqtt-broker passwd: expected a password file and a username\n${USAGE}`);
    return 2;
  }
  const problem = usernameProblem(username);
  if (problem !== undefined) {
    say(`mqtt-broker passwd: ${problem}\n`);
    return 2;
  }
  try {
    // Read the file before asking for the password, so a broken file fails before any typing.
    let existing: { text: string; mode: number } | undefined;
    try {
      const [text, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
      existing = { text, mode: info.mode & 0o777 };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const lines = existing === undefined ? [] : parseLines(existing.text, file);
    const password = await readPassword(io);
    if (password === '') {
      say('mqtt-broker passwd: the password is empty (nothing changed)\n');
      return 1;
    }
    const entry = `${username}:${await hashPassword(password)}`;
    const index = lines.findIndex((l) => l.username === username);
    if (index >= 0) lines[index] = { text: entry, username };
    else lines.push({ text: entry, username });
    // An existing file keeps its mode (an administrator may have opened it to the broker's group);
    // a new one is readable by its owner only.
    await writeAtomically(file, `${lines.map((l) => l.text).join('\n')}\n`, existing?.mode ?? 0o600);
    say(`${index >= 0 ? 'changed the password of' : 'added'} user "${username}" in ${file}\n`);
    return 0;
  } catch (error) {
    say(`mqtt-broker passwd: ${(error as Error).message}\n`);
    return 1;
  }
}

/**
 * Writes a temporary file beside the target and renames it over the target, so a crash or a full
 * disk leaves either the old file or the new one, never half of one, and the broker reloading at
 * the same moment never reads a partial file.
 */
async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  // O_EXCL: never follow or reuse something already at the temporary name.
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    // The mode given to open() is reduced by the umask; set it exactly.
    await chmod(temp, mode);
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

/**
 * The first line of stdin, without its line ending. On a terminal the typing is not echoed; when
 * piped, reading stops at the first newline or the end of input.
 */
async function readPassword(io: PasswdIo): Promise<string> {
  const { stdin } = io;
  const isTerminal = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  if (isTerminal) {
    io.stderr.write('Password: ');
    stdin.setRawMode!(true);
  }
  try {
    const line = await readLine(stdin, isTerminal);
    return line;
  } finally {
    if (isTerminal) {
      stdin.setRawMode!(false);
      io.stderr.write('\n');
    }
  }
}

function readLine(stdin: NodeJS.ReadableStream, isTerminal: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const typed: number[] = [];
    const finish = (error?: Error) => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.off('error', onError);
      stdin.pause();
      if (error !== undefined) {
        reject(error);
        return;
      }
      let text = (isTerminal ? Buffer.from(typed) : Buffer.concat(chunks)).toString('utf8');
      const newline = text.search(/[\r\n]/);
      if (newline >= 0) text = text.slice(0, newline);
      resolve(text);
    };
    const onData = (chunk: Buffer | string) => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      if (isTerminal) {
        // Raw mode: Ctrl-C and Ctrl-D arrive as bytes; backspace edits the line.
        for (const byte of bytes) {
          if (byte === 0x03) return finish(new Error('interrupted'));
          if (byte === 0x04 || byte === 0x0d || byte === 0x0a) return finish();
          if (byte === 0x7f || byte === 0x08) {
            // Erase one character: its UTF-8 continuation bytes (10xxxxxx), then its first byte.
            while (typed.length > 0 && ((typed.at(-1) ?? 0) & 0xc0) === 0x80) typed.pop();
            typed.pop();
            continue;
          }
          typed.push(byte);
        }
        return undefined;
      }
      chunks.push(bytes);
      if (bytes.includes(0x0a) || bytes.includes(0x0d)) finish();
      return undefined;
    };
    const onEnd = () => finish();
    const onError = (error: Error) => finish(error);
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.on('error', onError);
    stdin.resume();
  });
}
