import { describe, expect, it } from 'vitest';
import { passed, runCrashRepeat, summarize } from './helpers/crash-harness.js';

// The short version of scripts/crash-repeat.mjs: three kill -9 of a broker process (core + a durable
// store: SqliteStore, and LogStore compacting from 4 KiB on) under continuous QoS 1 and QoS 2 load,
// each restarted on the same data directory; the offline persistent subscribers then drain: no
// acknowledged message lost, no QoS 2 duplicate.

describe.each([
  ['SqliteStore', 'sqlite'],
  ['LogStore', 'log'],
] as const)('%s under repeated kill -9', (_name, store) => {
  it('loses no acknowledged message and duplicates no QoS 2 message over 3 kills', async () => {
    const lines: string[] = [];
    const result = await runCrashRepeat({
      kills: 3,
      drainMs: 10_000,
      store,
      log: (line) => lines.push(line),
    });
    const report = `${lines.join('\n')}\n${summarize(result)}`;
    expect(result.kills.length, report).toBe(3);
    expect(result.acknowledged.q1 + result.acknowledged.q2, report).toBeGreaterThan(0);
    expect(result.lost, report).toEqual([]);
    expect(result.duplicatesQos2, report).toEqual([]);
    expect(result.unexpected, report).toEqual([]);
    expect(result.sessionsPresent, report).toBe(true);
    expect(passed(result)).toBe(true);
  }, 30_000);
});
