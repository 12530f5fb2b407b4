import { describe, expect, it } from 'vitest';
import { shippedCommands } from '../../src/cli/commands/shipped-commands.js';
import { runCli } from '../support/run-cli.js';

const shipped = shippedCommands.map((command) => command.name);

describe('the command line', () => {
  it('ships migrate, setup, backup, restore and download-backup in the bin', () => {
    expect(shipped).toEqual(['migrate', 'setup', 'backup', 'restore', 'download-backup']);
  });

  it.each([...shipped, 'start', 'stop', 'reset', 'codegen'])('answers %s --help with its usage and exit code 0', async (command) => {
    const result = await runCli(command, ['--help']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Usage: /);
  });

  // The help said to append ssh-keyscan's output to known_hosts, which trusts whoever answers
  // at that moment; the README says to compare the fingerprints first.
  it("download-backup --help has a host's key compared before it is trusted, never appended unchecked", async () => {
    const { stdout } = await runCli('download-backup', ['--help']);
    expect(stdout).not.toMatch(/ssh-keyscan[^\n;]*>> /);
    expect(stdout).toContain('ssh-keyscan -p PORT HOST > host-keys; ssh-keygen -lf host-keys');
    expect(stdout).toContain('only if they match: cat host-keys >> ~/.ssh/known_hosts');
  });

  it('lists the commands on --help', async () => {
    const result = await runCli('--help');
    expect(result.code).toBe(0);
    for (const name of shipped) expect(result.stdout).toMatch(new RegExp(`^  ${name} +\\S`, 'm'));
  });

  it('refuses an unknown option with parseArgs’ message and the command’s usage', async () => {
    const result = await runCli('db-restore', ['backup.dump', '--yess']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Unknown option '--yess'");
    expect(result.stderr).toContain('Usage: kennwilliamson-db restore FILE');
  });

  it('refuses an option that needs a value and has none', async () => {
    const result = await runCli('db-download-backup', ['host', 'file.dump', '--key']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Option '--key <value>' argument missing");
  });

  it('refuses a wrong number of arguments', async () => {
    const result = await runCli('db-download-backup', ['only-a-host']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('unexpected number of arguments (1)');
  });

  it('refuses an unknown command, listing the ones there are', async () => {
    const result = await runCli('sideways');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("unknown command 'sideways'");
    expect(result.stderr).toContain('  migrate ');
  });
});
