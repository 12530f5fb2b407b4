import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { watchForStop } from '../../../src/operations/restore/stopped-process-watchdog.js';
import { eventually } from '../../support/eventually.js';

// A process that ends with code 3 when told to end, as the commands' interrupt handling does
// (once its handler is in place, which it says); or one whose clean-up is stopped again.
async function watched(onTerm = 'process.exit(3)') {
  const child = spawn(process.execPath, ['-e', `process.on('SIGTERM', () => { ${onTerm} }); console.log('ready'); setInterval(() => {}, 1000)`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  await once(child.stdout!, 'data');
  return { child, exited };
}

// They wait in real time, at no CPU: side by side.
describe.concurrent('watchForStop', () => {
  it('ends a process stopped longer than the limit: SIGTERM, with SIGCONT so that it acts on it', async () => {
    const { child, exited } = await watched();
    const watchdog = watchForStop(1_000, child.pid!);
    try {
      child.kill('SIGSTOP');
      const [code] = await exited;
      expect(code).toBe(3);
    } finally {
      watchdog.stop();
      child.kill('SIGKILL');
    }
  });

  it('kills a process whose clean-up is stopped as long again after the SIGTERM', async () => {
    const { child, exited } = await watched("process.kill(process.pid, 'SIGSTOP')");
    const watchdog = watchForStop(1_000, child.pid!);
    try {
      child.kill('SIGSTOP');
      const [code, signal] = await exited;
      expect({ code, signal }).toEqual({ code: null, signal: 'SIGKILL' });
    } finally {
      watchdog.stop();
      child.kill('SIGKILL');
    }
  });

  it('leaves alone a process that runs, or was stopped for less than the limit, and ends when stopped itself', async () => {
    const { child, exited } = await watched();
    let ended = false;
    void exited.then(() => (ended = true));
    const watchdog = watchForStop(2_000, child.pid!);
    try {
      // Stopped twice, each time for less than the limit, longer than it in all.
      for (const _ of [1, 2]) {
        child.kill('SIGSTOP');
        await new Promise((resolve) => setTimeout(resolve, 1_300));
        child.kill('SIGCONT');
        await new Promise((resolve) => setTimeout(resolve, 1_100));
      }
      expect(ended).toBe(false);
    } finally {
      watchdog.stop();
    }
    // Stopped now for longer than the limit: the watchdog is gone, and does nothing.
    child.kill('SIGSTOP');
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(ended).toBe(false);
    child.kill('SIGKILL');
    await eventually(() => ended, 'the watched process ends');
  }, 20_000);
});
