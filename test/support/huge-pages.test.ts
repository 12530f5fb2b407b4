import { readFileSync } from 'node:fs';
import { describe, expect, inject, it } from 'vitest';
import { withClient } from '../../src/db/with-client.js';
import { inCi } from './in-ci.js';

// .ci/run reserves huge pages, and the run's servers keep their shared memory in them
// (PostgreSQL's huge_pages=try): a backend then maps shared memory in 2 MB pages rather than
// 4 kB ones, which took the backends of one run from 84-96 s of CPU to 55-67 s (issue 19). If
// a setting of the test servers turned them off, or .ci/run stopped reserving them, the suite
// would only get slower; this says so.
function reservedHugePages(): number {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  return Number(/^HugePages_Total:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
}

// CI's run is on the embedded server: there the test runs whatever the run's server, and fails rather than skips.
describe.runIf((inject('serverKind') === 'embedded' || inCi()) && process.platform === 'linux')("the run's PostgreSQL", () => {
  it('keeps its shared memory in huge pages where the machine reserves them, as .ci/run does, and starts without them elsewhere', async () => {
    const status = await withClient(
      inject('serverUrl'),
      async (client) => (await client.query<{ huge_pages_status: string }>('SHOW huge_pages_status')).rows[0]!.huge_pages_status,
    );
    const reserved = reservedHugePages();

    if (inCi()) {
      expect(reserved, '.ci/run reserves huge pages for the test servers (vm.nr_hugepages)').toBeGreaterThan(0);
      expect(status).toBe('on');
    } else if (reserved === 0) {
      expect(status).toBe('off');
    } else {
      // Reserved here, but other programs may hold them: either is right.
      expect(['on', 'off']).toContain(status);
    }
  });
});
