#!/usr/bin/env node
// The quick start's entry point: `npm test` and `npm start` must work on a machine that has only
// Node.js and npm. This script finds (or fetches) the pinned pnpm, installs the workspace from the
// frozen lockfile, installs the system tools the tests use when it can, and then runs the task.
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
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

function reportFiles() {
  const files = [];
  for (const group of ['packages', 'apps']) {
    let names = [];
    try {
      names = readdirSync(join(root, group));
    } catch {
      continue;
    }
    for (const name of names) files.push(join(root, group, name, '.vitest-results.json'));
  }
  return files;
}

function removeReports() {
  for (const file of reportFiles()) rmSync(file, { force: true });
}

/** One closing line with the totals of every package's vitest JSON report. */
function printTotals() {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const file of reportFiles()) {
    try {
      const report = JSON.parse(readFileSync(file, 'utf8'));
      passed += report.numPassedTests ?? 0;
      failed += report.numFailedTests ?? 0;
      skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
    } catch {
      // a package without tests, or whose run did not get as far as writing its report
    }
  }
  console.log(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
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
  case 'test': {
    step(['exec', 'turbo', 'run', 'build', '--output-logs=errors-only']);
    removeReports(); // turbo restores them for cached packages; a crashed run leaves none
    // --continue: every package runs even after a failure, so the totals cover them all.
    const status = run(cmd, [
      ...prefix,
      'exec',
      'turbo',
      'run',
      'test',
      '--concurrency=1',
      '--continue',
      ...rest,
    ]);
    printTotals();
    process.exit(status);
    break;
  }
  case 'start':
    step(['exec', 'turbo', 'run', 'build', '--output-logs=errors-only']);
    process.exit(run(process.execPath, [join(root, 'apps/broker/dist/cli.js'), ...rest]));
    break;
  default:
    console.error(`usage: node scripts/quick.mjs test|start [args...] (got ${task ?? 'nothing'})`);
    process.exit(2);
}
