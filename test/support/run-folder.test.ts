import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { shellQuote } from '../../src/shell-quote.js';
import { sweepAbandonedRuns } from './run-folder.js';

function ps(args: string[]): string {
  try {
    return execFileSync('ps', [...args], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

// Whether it runs: a zombie has ended, and waits only for its new parent to notice.
function running(pid: number): boolean {
  const stat = ps(['-o', 'stat=', '-p', String(pid)]);
  return stat !== '' && !stat.startsWith('Z');
}

const started: ChildProcess[] = [];
let parent = '';

// Programs under the names a run's servers have (ps shows them by that name): `sleep`, or
// `bash` for a stand-in that acts when signalled. The folder's name has a space in it, as a
// checkout's path may.
async function programs(): Promise<{ sleeping: (name: string) => string; shell: (name: string) => string }> {
  const folder = await mkdtemp(path.join(parent, 'bin dir-'));
  const sleep = execFileSync('bash', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim();
  for (const name of ['postgres', 'pgbouncer', 'tail']) await symlink(sleep, path.join(folder, name));
  await mkdir(path.join(folder, 'shell'));
  await symlink('/bin/bash', path.join(folder, 'shell', 'postgres'));
  return { sleeping: (name) => path.join(folder, name), shell: (name) => path.join(folder, 'shell', name) };
}

// A process run as `program` whose command line is `shown` (what names the folder), and the
// signal that ends it.
async function standIn(program: string, shown: string, script?: string): Promise<{ pid: number; ended: Promise<NodeJS.Signals | null> }> {
  const args = script === undefined ? '600' : `-c ${shellQuote(script)}`;
  const child = spawn('bash', ['-c', `ulimit -c 0; exec -a ${shellQuote(shown)} ${shellQuote(program)} ${args}`], { stdio: 'ignore' });
  started.push(child);
  const ended = once(child, 'exit').then(([, signal]) => signal as NodeJS.Signals | null);
  // Until bash has made itself the stand-in, ps shows bash.
  await expect.poll(() => ps(['-o', 'comm=', '-p', String(child.pid)]), { timeout: 10_000 }).toBe(path.basename(program));
  return { pid: child.pid!, ended };
}

async function deadPid(): Promise<number> {
  const child = spawn('true');
  await once(child, 'exit');
  return child.pid!;
}

describe('the test run folder', () => {
  afterEach(async () => {
    for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it("sweeps a folder whose run's process is gone: its PostgreSQL by an immediate shutdown (SIGQUIT), its PgBouncer killed, the folder removed; a live run, what is outside and what is not the run's are left alone", async () => {
    parent = await mkdtemp(path.join(os.tmpdir(), 'kw-sweep-'));
    const bin = await programs();
    const abandoned = path.join(parent, `kw-run-${await deadPid()}-aB3dE6`);
    const live = path.join(parent, `kw-run-${process.pid}-fG7hI8`);
    await mkdir(path.join(abandoned, 'kw-db-test-1', 'data'), { recursive: true });
    await mkdir(live);
    const server = await standIn(bin.sleeping('postgres'), `${bin.sleeping('postgres')} -D ${path.join(abandoned, 'kw-db-test-1', 'data')} -p 5432`);
    const bouncer = await standIn(bin.sleeping('pgbouncer'), `pgbouncer ${path.join(abandoned, 'kw-pgbouncer-1', 'pgbouncer.ini')}`);
    const reader = await standIn(bin.sleeping('tail'), `tail -f ${path.join(abandoned, 'kw-db-test-1', 'data', 'server.log')}`);
    const liveServer = await standIn(bin.sleeping('postgres'), `postgres -D ${path.join(live, 'data')}`);
    const outside = await standIn(bin.sleeping('postgres'), `postgres -D ${path.join(parent, 'data')}`);

    // ps cuts its lines to COLUMNS where one is set, short of the folder, unless told not to.
    const columns = process.env.COLUMNS;
    process.env.COLUMNS = '40';
    let swept: ReturnType<typeof sweepAbandonedRuns>;
    try {
      swept = sweepAbandonedRuns(parent);
    } finally {
      if (columns === undefined) delete process.env.COLUMNS;
      else process.env.COLUMNS = columns;
    }

    expect(swept).toEqual({ folders: [abandoned], processes: 2 });
    expect(await server.ended).toBe('SIGQUIT');
    expect(await bouncer.ended).toBe('SIGKILL');
    expect(existsSync(abandoned)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect([reader, liveServer, outside].map(({ pid }) => running(pid))).toEqual([true, true, true]);
    expect(sweepAbandonedRuns(parent)).toEqual({ folders: [], processes: 0 });
  });

  it('stops what starts in the folder while it is being removed (a server a worker was starting)', async () => {
    parent = await mkdtemp(path.join(os.tmpdir(), 'kw-sweep-'));
    const bin = await programs();
    const abandoned = path.join(parent, `kw-run-${await deadPid()}-jK9lM0`);
    await mkdir(abandoned);
    const lateFile = path.join(parent, 'late.pid');
    // Told to stop, this "PostgreSQL" starts a PgBouncer on the folder first, as a worker that
    // is still running may while the run's folder goes.
    const late = `exec -a ${shellQuote(`pgbouncer ${abandoned}/kw-pgbouncer-2/pgbouncer.ini`)} ${shellQuote(bin.sleeping('pgbouncer'))} 600`;
    const script = `trap ${shellQuote(`trap '' QUIT; setsid bash -c ${shellQuote(late)} & echo $! > ${shellQuote(lateFile)}; sleep 0.2; exit`)} QUIT; while :; do sleep 0.05; done`;
    await standIn(bin.shell('postgres'), `postgres -D ${path.join(abandoned, 'data')}`, script);

    expect(sweepAbandonedRuns(parent)).toEqual({ folders: [abandoned], processes: 2 });
    const latePid = Number(readFileSync(lateFile, 'utf8'));
    await expect.poll(() => running(latePid), { timeout: 10_000 }).toBe(false);
  });

  it.skipIf(process.getuid?.() !== 0)("leaves another account's folder of an ended run alone", async () => {
    parent = await mkdtemp(path.join(os.tmpdir(), 'kw-sweep-'));
    const foreign = path.join(parent, `kw-run-${await deadPid()}-nO1pQ2`);
    await mkdir(path.join(foreign, 'inner'), { recursive: true });
    await chown(foreign, 65534, 65534);

    expect(sweepAbandonedRuns(parent)).toEqual({ folders: [], processes: 0 });
    expect(existsSync(path.join(foreign, 'inner'))).toBe(true);
  });

  it('holds what the run makes through os.tmpdir(), and goes with what runs there when the run is interrupted (Ctrl-C), which then ends as the signal would', async () => {
    parent = await mkdtemp(path.join(os.tmpdir(), 'kw-sweep-'));
    const bin = await programs();
    const runFolder = fileURLToPath(new URL('./run-folder.ts', import.meta.url));
    const script = `
      import { spawn } from 'node:child_process';
      import os from 'node:os';
      import { openRunFolder } from ${JSON.stringify(runFolder)};
      const folder = await openRunFolder();
      const shown = 'pgbouncer ' + os.tmpdir() + '/kw-pgbouncer-1/pgbouncer.ini';
      const server = spawn('bash', ['-c', 'exec -a "$0" "$1" 600', shown, ${JSON.stringify(bin.sleeping('pgbouncer'))}], { stdio: 'ignore' });
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
    await expect.poll(() => ps(['-o', 'comm=', '-p', String(server)]), { timeout: 10_000 }).toBe('pgbouncer');

    const exited = once(run, 'exit');
    run.kill('SIGINT');
    const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];

    expect({ code, signal }).toEqual({ code: null, signal: 'SIGINT' });
    expect(existsSync(folder)).toBe(false);
    await expect.poll(() => running(server), { timeout: 10_000 }).toBe(false);
  });
});
