import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { shellQuote } from '../../src/shell-quote.js';
import { sweepAbandonedRuns } from './run-folder.js';

const postgres = '/usr/lib/postgresql/15/bin/postgres';

// What `ps` shows of a process: its command line.
function commandOf(pid: number): string {
  try {
    return execFileSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

// Whether it runs: a zombie has ended, and waits only for its new parent to notice.
function running(pid: number): boolean {
  try {
    return !execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).trim().startsWith('Z');
  } catch {
    return false;
  }
}

const started: ChildProcess[] = [];

// A process whose command line is `command`, as a server started on a folder names it (only
// `sleep`, under that name), and the signal that ends it.
async function standIn(command: string): Promise<{ pid: number; ended: Promise<NodeJS.Signals | null> }> {
  const child = spawn('bash', ['-c', `ulimit -c 0; exec -a ${shellQuote(command)} sleep 600`], { stdio: 'ignore' });
  started.push(child);
  const ended = once(child, 'exit').then(([, signal]) => signal as NodeJS.Signals | null);
  // Until bash has made itself the stand-in, `ps` shows bash.
  await expect.poll(() => commandOf(child.pid!), { timeout: 10_000 }).toBe(`${command} 600`);
  return { pid: child.pid!, ended };
}

async function deadPid(): Promise<number> {
  const child = spawn('true');
  await once(child, 'exit');
  return child.pid!;
}

describe('the test run folder', () => {
  let parent: string;

  afterEach(async () => {
    for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it("sweeps a folder whose run's process is gone: its PostgreSQL by an immediate shutdown (SIGQUIT), other processes killed, the folder removed; a live run and what is outside are left alone", async () => {
    parent = await mkdtemp(path.join(os.tmpdir(), 'kw-sweep-'));
    const abandoned = path.join(parent, `kw-run-${await deadPid()}-aB3dE6`);
    const live = path.join(parent, `kw-run-${process.pid}-fG7hI8`);
    await mkdir(path.join(abandoned, 'kw-db-test-1', 'data'), { recursive: true });
    await mkdir(live);
    const server = await standIn(`${postgres} -D ${path.join(abandoned, 'kw-db-test-1', 'data')} -p 5432`);
    const bouncer = await standIn(`/usr/sbin/pgbouncer ${path.join(abandoned, 'kw-pgbouncer-1', 'pgbouncer.ini')}`);
    const liveServer = await standIn(`${postgres} -D ${path.join(live, 'data')}`);
    const outside = await standIn(`${postgres} -D ${path.join(parent, 'data')}`);

    expect(sweepAbandonedRuns(parent)).toEqual({ folders: [abandoned], processes: 2 });

    expect(await server.ended).toBe('SIGQUIT');
    expect(await bouncer.ended).toBe('SIGKILL');
    expect(existsSync(abandoned)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(running(liveServer.pid) && running(outside.pid)).toBe(true);
    expect(sweepAbandonedRuns(parent)).toEqual({ folders: [], processes: 0 });
  });

  it('holds what the run makes through os.tmpdir(), and goes with what runs there when the run is interrupted (Ctrl-C), which then ends as the signal would', async () => {
    parent = await mkdtemp(path.join(os.tmpdir(), 'kw-sweep-'));
    const runFolder = fileURLToPath(new URL('./run-folder.ts', import.meta.url));
    const script = `
      import { spawn } from 'node:child_process';
      import os from 'node:os';
      import { openRunFolder } from ${JSON.stringify(runFolder)};
      const folder = await openRunFolder();
      const server = spawn('bash', ['-c', 'exec -a "stand-in $0" sleep 600', os.tmpdir() + '/kw-pgbouncer-1/pgbouncer.ini'], { stdio: 'ignore' });
      console.log(JSON.stringify({ folder: folder.path, tmpdir: os.tmpdir(), server: server.pid }));
      setInterval(() => {}, 1000);`;
    const run = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, TMPDIR: parent },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    started.push(run);
    const [line] = (await once(run.stdout!, 'data')) as [Buffer];
    const { folder, tmpdir, server } = JSON.parse(line.toString()) as { folder: string; tmpdir: string; server: number };
    expect(path.dirname(folder)).toBe(parent);
    expect(path.basename(folder)).toMatch(new RegExp(`^kw-run-${run.pid}-`));
    expect(tmpdir).toBe(folder);
    await expect.poll(() => commandOf(server), { timeout: 10_000 }).toBe(`stand-in ${folder}/kw-pgbouncer-1/pgbouncer.ini 600`);

    const exited = once(run, 'exit');
    run.kill('SIGINT');
    const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];

    expect({ code, signal }).toEqual({ code: null, signal: 'SIGINT' });
    expect(existsSync(folder)).toBe(false);
    await expect.poll(() => running(server), { timeout: 10_000 }).toBe(false);
  });
});
