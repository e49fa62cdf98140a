// Shared vitest settings. Tests run on the TypeScript sources of sibling packages through the
// `@broker/source` export condition, so `pnpm test` needs no build of the dependencies.
const conditions = ['@broker/source', 'module', 'node', 'development|production'];

export const sharedConfig = {
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    // The JSON report lets `npm test` print one closing line with the totals of every package.
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest-results.json' },
    // Two cores on CI: one worker per file keeps socket tests from starving each other.
    pool: 'forks' as const,
    maxWorkers: 2,
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
};
