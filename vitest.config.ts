import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One PostgreSQL for the run, migrated once into a template; each file clones its own database.
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // The tests wait on PostgreSQL far more than on the CPU: more workers than cores pays off.
    maxWorkers: 4,
  },
});
