#!/usr/bin/env node
// The quick start's entry point: `npm test` and `npm start` must work on a machine that has only
// Node.js and npm. This script finds (or fetches) the pinned pnpm, installs the workspace from the
// frozen lockfile, installs the system tools the tests use when it can, and then runs the task.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pinned = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).packageManager; // "pnpm@x.y.z"
const pinnedVersion = pinned.split('@')[1];

function run(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function hasPinnedPnpm() {
  try {
    return execFileSync('pnpm', ['--version'], { encoding: 'utf8' }).trim() === pinnedVersion;
  } catch {
    return false;
  }
}

/** Returns the command prefix that runs the pinned pnpm. */
function pnpm() {
  if (hasPinnedPnpm()) return ['pnpm'];
  // A global install is the fastest path on machines where npm may write globally (CI runs as root).
  if (run('npm', ['install', '-g', `pnpm@${pinnedVersion}`], { stdio: 'ignore' }) === 0 && hasPinnedPnpm()) {
    return ['pnpm'];
  }
  return ['npx', '-y', `pnpm@${pinnedVersion}`];
}

const task = process.argv[2];
const rest = process.argv.slice(3);
const [cmd, ...prefix] = pnpm();
const step = (args) => {
  const status = run(cmd, [...prefix, ...args]);
  if (status !== 0) process.exit(status);
};

if (run('bash', ['scripts/system-deps.sh', '--if-possible']) !== 0) process.exit(1);
step(['install', '--frozen-lockfile', '--prefer-offline']);
switch (task) {
  case 'test':
    step(['exec', 'turbo', 'run', 'build', '--output-logs=errors-only']);
    step(['exec', 'turbo', 'run', 'test', '--concurrency=1', ...rest]);
    break;
  case 'start':
    step(['exec', 'turbo', 'run', 'build', '--output-logs=errors-only']);
    process.exit(run(process.execPath, [join(root, 'apps/broker/dist/cli.js'), ...rest]));
    break;
  default:
    console.error(`usage: node scripts/quick.mjs test|start [args...] (got ${task ?? 'nothing'})`);
    process.exit(2);
}
