import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { keptOutput } from '../../../src/operations/files/kept-output.js';
import { spawnPgTool, toolErrorText } from '../../../src/operations/pg-tools/pg-tool-process.js';
import type { PgTool } from '../../../src/operations/pg-tools/pg-tools.js';

// A program standing in for pg_restore, whose stderr reports on a backup: untrusted input.
const flooding = (script: string): PgTool => ({
  name: 'pg_restore',
  command: ['sh', '-c', script, 'sh'],
  major: 15,
  version: '15.0',
  location: 'a test script',
  inContainer: false,
});

describe("a PostgreSQL program's stderr", () => {
  it('is kept within bounds, its first and last lines with the cut marked, and its errors still found', async () => {
    const lines: string[] = [];
    const { exited } = spawnPgTool(
      flooding(
        "echo 'pg_restore: error: the first failure' >&2; yes 'pg_restore: warning: one more line of a flood of them' | head -n 40000 >&2; " +
          "echo 'pg_restore: error: the last word' >&2; exit 1",
      ),
      [],
      { onStderrLine: (line) => lines.push(line) },
    );

    const { code, stderr } = await exited;

    expect(code).toBe(1);
    // 2 MB written; 64 KiB kept, and the marker.
    expect(stderr.length).toBeLessThan(65_536 + 100);
    expect(stderr.startsWith('pg_restore: error: the first failure\n')).toBe(true);
    expect(stderr).toContain('\n[earlier output cut]\n');
    expect(stderr.endsWith('pg_restore: error: the last word\n')).toBe(true);
    expect(toolErrorText(stderr)).toBe('pg_restore: error: the first failure\npg_restore: error: the last word');
    // Every line still reaches the listener (progress), as it comes.
    expect(lines).toHaveLength(40_002);
  });

  it('hands a line longer than the bound to the listener cut there and marked, whether it ends or not', async () => {
    const lines: string[] = [];
    const { exited } = spawnPgTool(
      flooding("head -c 100000 /dev/zero | tr '\\0' x >&2; sleep 0.1; echo 'the line ends' >&2; echo 'the next line' >&2; head -c 100000 /dev/zero | tr '\\0' z >&2"),
      [],
      { onStderrLine: (line) => lines.push(line) },
    );

    const { stderr } = await exited;

    expect(lines).toEqual([`${'x'.repeat(32_768)} [cut]`, 'the next line', `${'z'.repeat(32_768)} [cut]`]);
    expect(stderr.length).toBeLessThan(65_536 + 100);
  });
});

// Ctrl-C on a backup whose pg_dump had been stopped (Ctrl-Z, a debugger) printed that it was
// cleaning up and then waited for ever: a stopped program never acts on SIGTERM.
describe('a PostgreSQL program told to stop', () => {
  const stoppedState = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];

  it('ends when aborted while it is stopped, on SIGTERM once it may act on it', async () => {
    const controller = new AbortController();
    const { child, exited } = spawnPgTool(flooding('exec sleep 60'), [], { signal: controller.signal });
    process.kill(child.pid!, 'SIGSTOP');
    await expect.poll(() => stoppedState(child.pid!)).toBe('T');

    controller.abort();

    expect(await exited).toMatchObject({ code: null, signal: 'SIGTERM' });
  });

  it('is killed when it does not end on SIGTERM', async () => {
    // SIGTERM ignored, as the shell leaves it for the program it becomes.
    const program = spawnPgTool(flooding("trap '' TERM; exec sleep 60"), []);
    await expect.poll(() => readFileSync(`/proc/${program.child.pid!}/cmdline`, 'utf8')).toMatch(/^sleep/);

    program.stop();

    expect(await program.exited).toMatchObject({ code: null, signal: 'SIGKILL' });
  });
});

describe('keptOutput', () => {
  it('keeps all of what fits, unmarked', () => {
    const kept = keptOutput({ head: 4, tail: 4 });
    kept.add('abc');
    kept.add('defg');
    expect(kept.text()).toBe('abcdefg');
  });

  it('keeps the head and the last `tail` characters of more, however it came in chunks', () => {
    for (const size of [1, 3, 7, 100]) {
      const kept = keptOutput({ head: 5, tail: 6 });
      const text = 'HEAD-' + 'middle'.repeat(20) + 'TAIL!!';
      for (let at = 0; at < text.length; at += size) kept.add(text.slice(at, at + size));
      expect(kept.text()).toBe('HEAD-\n[earlier output cut]\nTAIL!!');
    }
  });
});
