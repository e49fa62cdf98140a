#!/usr/bin/env node
// Long decoder fuzzing: runs packages/codec/test/fuzz.test.ts (the same property CI runs briefly) in
// rounds, each a fresh vitest process with a fresh random seed and a time limit, until the budget
// is spent. Prints runs and runs/s per round and in total; on a failure prints the seed, the shrink
// path and the counterexample as hex, and exits 1.
//
//   node scripts/fuzz.mjs [--minutes 5] [--round-seconds 60]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const codecDir = join(root, 'packages', 'codec');

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    'round-seconds': { type: 'string', default: '60' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('usage: node scripts/fuzz.mjs [--minutes N] [--round-seconds S]');
  process.exit(0);
}
const budgetMs = Number(values.minutes) * 60_000;
const roundMs = Number(values['round-seconds']) * 1000;
if (!(budgetMs > 0) || !(roundMs > 0)) {
  console.error('--minutes and --round-seconds must be positive numbers');
  process.exit(2);
}

const work = mkdtempSync(join(tmpdir(), 'broker-fuzz-'));
const deadline = Date.now() + budgetMs;
// Vitest's own start-up takes a few seconds of each round; it is not counted in runs/s.
const STARTUP_ALLOWANCE_MS = 8_000;
let totalRuns = 0;
let totalMs = 0;
let round = 0;
const totals = new Map();

/** Runs one round; resolves with its JSON report (or undefined) and the vitest output. */
function runRound(seed, millis, reportFile) {
  return new Promise((resolve) => {
    const child = spawn('pnpm', ['exec', 'vitest', 'run', 'test/fuzz.test.ts', '--reporter=dot'], {
      cwd: codecDir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        FUZZ_RUNS: String(2 ** 31 - 1),
        FUZZ_MILLIS: String(millis),
        FUZZ_SEED: String(seed),
        FUZZ_REPORT: reportFile,
      },
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      output += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      output += d;
    });
    // A hard stop well past the round's own limit: a hang is a finding, not a reason to wait forever.
    const killer = setTimeout(() => child.kill('SIGKILL'), millis + 120_000);
    child.once('close', (code, signal) => {
      clearTimeout(killer);
      let report;
      try {
        report = JSON.parse(readFileSync(reportFile, 'utf8'));
      } catch {
        report = undefined;
      }
      resolve({ code, signal, report, output });
    });
  });
}

let failed = false;
process.on('SIGINT', () => {
  console.log('\ninterrupted');
  process.exitCode = 130;
});

while (Date.now() + STARTUP_ALLOWANCE_MS + 2_000 < deadline) {
  round++;
  const millis = Math.min(roundMs, deadline - Date.now() - STARTUP_ALLOWANCE_MS);
  const seed = (Math.random() * 0x7fffffff) | 0;
  const reportFile = join(work, `round-${round}.json`);
  const { code, signal, report, output } = await runRound(seed, millis, reportFile);
  if (report === undefined) {
    console.error(`round ${round} (seed ${seed}): no report (vitest exit ${code ?? signal})\n${output}`);
    failed = true;
    break;
  }
  totalRuns += report.runs;
  totalMs += report.ms;
  for (const [key, n] of Object.entries(report.outcomes)) totals.set(key, (totals.get(key) ?? 0) + n);
  const rate = Math.round(report.runs / (report.ms / 1000));
  console.log(
    `round ${round}: seed ${report.seed}, ${report.runs} runs in ${(report.ms / 1000).toFixed(1)} s, ${rate} runs/s, ${report.ok ? 'ok' : 'FAILED'}`,
  );
  if (!report.ok || code !== 0) {
    failed = true;
    const f = report.failure;
    if (f !== undefined) {
      console.log(`\nFAILURE: ${f.error}`);
      console.log(`  seed ${report.seed}, path ${f.path}`);
      console.log(`  input (${f.kind}): ${f.hex}`);
      console.log(
        `  chunk points ${JSON.stringify(f.points)}, maxPacketBytes ${f.maxPacketBytes ?? 'default'}`,
      );
      console.log(
        `  replay: cd packages/codec && FUZZ_SEED=${report.seed} FUZZ_PATH='${f.path}' pnpm exec vitest run test/fuzz.test.ts`,
      );
    } else {
      console.log(output);
    }
    break;
  }
  if (process.exitCode === 130) break;
}

rmSync(work, { recursive: true, force: true });
const rate = totalMs > 0 ? Math.round(totalRuns / (totalMs / 1000)) : 0;
console.log(
  `\n${round} round(s), ${totalRuns} runs in ${(totalMs / 1000).toFixed(1)} s of fuzzing: ${rate} runs/s; ${failed ? 'FAILED' : 'no failure'}`,
);
if (totals.size > 0) {
  console.log('outcomes:');
  for (const [key, n] of [...totals].sort(([a], [b]) => a.localeCompare(b))) console.log(`  ${key}: ${n}`);
}
process.exit(failed ? 1 : (process.exitCode ?? 0));
