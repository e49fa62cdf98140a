/**
 * End to end: the mqtt-broker command (apps/broker/dist/cli.js) as a child process, configured by a
 * YAML file, stopped by SIGTERM and restarted on the same SQLite data dir.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChildPool, ClientPool, freePort, Inbox } from './helpers/clients.js';
import { tempDir } from './helpers/server.js';

const APP = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = join(APP, '..', '..');
const CLI = join(APP, 'dist', 'cli.js');

const children = new ChildPool();
const pool = new ClientPool();
const temps: Array<{ remove(): void }> = [];

afterEach(async () => {
  await pool.closeAll();
  await children.killAll();
});

afterAll(() => {
  for (const t of temps.splice(0)) t.remove();
});

/** Newest modification time of the files under `dir` (recursively). */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

/** Whether dist/cli.js is missing or older than the sources of the app or a workspace package. */
function isStale(): boolean {
  if (!existsSync(CLI)) return true;
  const built = statSync(CLI).mtimeMs;
  const sources = [
    join(APP, 'src'),
    ...readdirSync(join(ROOT, 'packages')).map((p) => join(ROOT, 'packages', p, 'src')),
  ];
  return sources.some((dir) => existsSync(dir) && newest(dir) > built);
}

beforeAll(() => {
  // turbo builds the workspace packages first and caches; skipped when dist is up to date.
  if (isStale()) {
    execFileSync(
      'pnpm',
      ['exec', 'turbo', 'run', 'build', '--filter=@broker/app...', '--output-logs=errors-only'],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 170_000,
      },
    );
  }
  expect(existsSync(CLI)).toBe(true);
}, 180_000);

function makeTemp(): string {
  const t = tempDir('broker-e2e-cli-');
  temps.push(t);
  return t.path;
}

/** Starts the command; `ready` resolves once it logged that every listener listens. */
async function startCli(args: string[], cwd: string, listening: RegExp[], env: Record<string, string> = {}) {
  const child = children.spawn(process.execPath, [CLI, ...args], {
    cwd,
    env: { ...process.env, NO_COLOR: '1', ...env },
  });
  for (const pattern of listening) await child.waitForOutput(pattern, 10_000);
  await child.waitForOutput(/mqtt-broker ready/, 5000);
  return child;
}

/** The JSON log lines printed so far. */
function jsonLines(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('the mqtt-broker command', () => {
  it('prints its usage for --help and exits 0', async () => {
    const result = await children.spawn(process.execPath, [CLI, '--help']).wait(10_000);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: mqtt-broker \[options\]/);
    expect(result.stdout).toContain('--config <file>');
    expect(result.stdout).toContain('--memory');
    expect(result.stderr).toBe('');
  });

  it('serves over TCP and WS from a YAML config, stops on SIGTERM with exit 0, and keeps sessions and retained messages across a restart', async () => {
    const dir = makeTemp();
    const [tcpPort, wsPort] = [await freePort(), await freePort()];
    const config = join(dir, 'broker.yaml');
    writeFileSync(
      config,
      [
        '# e2e test config',
        'listeners:',
        `  - { protocol: tcp, host: 127.0.0.1, port: ${tcpPort} }`,
        `  - { protocol: ws, host: 127.0.0.1, port: ${wsPort}, path: /mqtt }`,
        'store:',
        '  type: sqlite',
        '  dataDir: ./data', // relative to the config file
        'logging:',
        '  level: info',
        '  format: json',
        '',
      ].join('\n'),
    );
    const listening = [
      new RegExp(`listening: tcp://127\\.0\\.0\\.1:${tcpPort}`),
      new RegExp(`listening: ws://127\\.0\\.0\\.1:${wsPort}`),
    ];
    const tcp = `mqtt://127.0.0.1:${tcpPort}`;
    const ws = `ws://127.0.0.1:${wsPort}/mqtt`;

    // First run ------------------------------------------------------------------------------
    const first = await startCli(['--config', config], dir, listening);
    const lines = jsonLines(first.stdout);
    expect(lines.length).toBeGreaterThan(0);
    expect(
      lines.some((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes(join(dir, 'data'))),
    ).toBe(true);

    const persistent = await pool.connect(tcp, { clientId: 'cli-persistent', clean: false });
    expect(pool.connackOf(persistent)?.sessionPresent).toBe(false);
    await persistent.subscribeAsync('cli/#', { qos: 1 });
    await persistent.endAsync();

    const publisher = await pool.connect(ws, { clientId: 'cli-publisher' });
    for (let i = 1; i <= 3; i++) await publisher.publishAsync(`cli/queued/${i}`, `queued ${i}`, { qos: 1 });
    await publisher.publishAsync('cli/retained', 'kept across restarts', { qos: 1, retain: true });
    await publisher.endAsync();

    first.process.kill('SIGTERM');
    const stopped = await first.wait(12_000);
    expect(stopped.code).toBe(0);
    expect(stopped.stdout).toMatch(/SIGTERM: stopping/);
    expect(stopped.stdout).toMatch(/"msg":"stopped"/);
    expect(existsSync(join(dir, 'data'))).toBe(true);

    // Second run on the same data dir -------------------------------------------------------
    const second = await startCli(['--config', config], dir, listening);
    const resumed = await pool.connect(
      tcp,
      { clientId: 'cli-persistent', clean: false },
      (c) => new Inbox(c),
    );
    // [MQTT-3.2.2-2] the session survived the restart.
    expect(pool.connackOf(resumed)?.sessionPresent).toBe(true);
    const inbox = pool.inboxOf(resumed)!;
    const delivered = await inbox.take(4, 5000);
    expect(delivered.map((m) => [m.topic, m.payload.toString(), m.packet.qos])).toEqual([
      ['cli/queued/1', 'queued 1', 1],
      ['cli/queued/2', 'queued 2', 1],
      ['cli/queued/3', 'queued 3', 1],
      ['cli/retained', 'kept across restarts', 1],
    ]);

    // [MQTT-3.3.1-6] the retained message survived too: a new subscriber gets it with RETAIN set.
    const late = await pool.connect(ws, { clientId: 'cli-late' });
    const lateInbox = new Inbox(late);
    await late.subscribeAsync('cli/retained', { qos: 1 });
    const retained = await lateInbox.first('cli/retained');
    expect(retained.payload.toString()).toBe('kept across restarts');
    expect(retained.packet.retain).toBe(true);

    await pool.closeAll();
    second.process.kill('SIGTERM');
    expect((await second.wait(12_000)).code).toBe(0);
  });

  it('starts without a data dir with --memory, and stops on SIGINT with exit 0', async () => {
    const dir = makeTemp();
    const port = await freePort();
    const child = await startCli(
      ['--memory', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'info'],
      dir,
      [new RegExp(`listening: tcp://127\\.0\\.0\\.1:${port}`)],
      // The environment turns the default WebSocket listener (8083) off.
      { MQTT_BROKER_WS_PORT: '-1' },
    );
    expect(child.stdout).toContain('store: memory only');
    expect(child.stdout).not.toMatch(/listening: ws:/);
    const client = await pool.connect(`mqtt://127.0.0.1:${port}`, { clientId: 'cli-memory' });
    const inbox = new Inbox(client);
    await client.subscribeAsync('mem/t', { qos: 1 });
    await client.publishAsync('mem/t', 'in memory', { qos: 1 });
    expect((await inbox.first('mem/t')).payload.toString()).toBe('in memory');
    await pool.closeAll();
    child.process.kill('SIGINT');
    const result = await child.wait(12_000);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/SIGINT: stopping/);
    // Nothing was written to the working directory (the default ./data is not used).
    expect(readdirSync(dir)).toEqual([]);
  });

  it('turns the WebSocket listener off with `--ws-port -1`, as --help documents ("-1 turns it off")', async () => {
    const dir = makeTemp();
    const port = await freePort();
    const child = await startCli(
      ['--memory', '--host', '127.0.0.1', '--port', String(port), '--ws-port', '-1'],
      dir,
      [new RegExp(`listening: tcp://127\\.0\\.0\\.1:${port}`)],
    );
    expect(child.stdout).not.toMatch(/listening: ws:/);
    child.process.kill('SIGTERM');
    expect((await child.wait(12_000)).code).toBe(0);
  });

  it('refuses config files with an unknown key, a wrong type, an unknown nested key or a value out of range: exits non-zero and names the key', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['an unknown key', 'listners:\n  - { protocol: tcp, port: 1883 }\n', /Unrecognized key: "listners"/],
      [
        'a wrong type',
        'listeners:\n  - { protocol: tcp, port: "not a port" }\n',
        /listeners\.0\.port: .*expected number/,
      ],
      [
        'an unknown nested key',
        'logging:\n  level: info\n  colour: true\n',
        /logging: Unrecognized key: "colour"/,
      ],
      ['a value out of range', 'limits:\n  maxPacketBytes: 1\n', /limits\.maxPacketBytes: /],
    ];
    const dir = makeTemp();
    // In parallel: each run costs a Node start-up.
    const results = await Promise.all(
      cases.map(async ([what, yaml], i) => {
        const config = join(dir, `broker-${i}.yaml`);
        writeFileSync(config, yaml);
        const result = await children
          .spawn(process.execPath, [CLI, '--config', config, '--memory'], { cwd: dir })
          .wait(10_000);
        return { what, config, result };
      }),
    );
    for (const [i, { what, config, result }] of results.entries()) {
      expect(result.code, what).not.toBe(0);
      expect(result.code, what).not.toBeNull();
      expect(result.stderr, what).toMatch(cases[i]![2]);
      expect(result.stderr, what).toContain(config);
      expect(result.stdout, what).not.toMatch(/listening:/);
    }
  });
});
