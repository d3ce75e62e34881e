import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests start real daemons, namespaces and agents; two cores do not gain from more workers.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
