#!/usr/bin/env node
// Repeated kill -9 of a broker process (core + SqliteStore or LogStore) under QoS 1 / QoS 2 load, restarted on
// the same data directory each time; offline persistent subscribers drain at the end. Prints per-kill
// stats and totals; exits 1 on any lost acknowledged message or QoS 2 duplicate.
//
//   node scripts/crash-repeat.mjs [--kills 20] [--seed N] [--store sqlite|log]
//
// The scenario lives in packages/persistence/test/helpers/crash-harness.ts (shared with the CI test
// packages/persistence/test/crash-repeat.test.ts); this runs it as a program under tsx.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const packageDir = join(root, 'packages', 'persistence');
const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '20' },
    seed: { type: 'string' },
    store: { type: 'string', default: 'sqlite' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('usage: node scripts/crash-repeat.mjs [--kills N] [--seed S] [--store sqlite|log]');
  process.exit(0);
}
const kills = Number(values.kills);
if (!Number.isInteger(kills) || kills < 1 || kills > 1000) {
  console.error('--kills must be an integer from 1 to 1000');
  process.exit(2);
}
const args = [
  '--conditions=@broker/source',
  '--import',
  'tsx',
  join(packageDir, 'test', 'helpers', 'crash-harness.ts'),
  '--kills',
  String(kills),
  ...(values.seed === undefined ? [] : ['--seed', values.seed]),
  '--store',
  values.store,
];
const child = spawn(process.execPath, args, { cwd: packageDir, stdio: 'inherit' });
// A hard bound: about 10 s per kill plus the drain, whatever happens.
const limit = setTimeout(
  () => {
    console.error('crash-repeat: time limit reached');
    child.kill('SIGTERM');
  },
  kills * 10_000 + 60_000,
);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.once('exit', (code, signal) => {
  clearTimeout(limit);
  process.exit(code ?? (signal ? 1 : 0));
});
