import { parseArgs } from 'node:util';
import { ConfigError } from '../errors.js';
import type { Command } from './command.js';
import { runCli } from './run-cli.js';
import { printLine } from './terminal-text.js';

/**
 * Runs `<program> COMMAND [options]`: picks the command, parses its arguments with
 * `node:util` parseArgs (unknown options and missing values are errors), and answers
 * `--help` for the program and for each command. One parser for every command.
 *
 * @example
 * runCommands('kennwilliamson-db', [migrateCommand, setupCommand], process.argv.slice(2))
 */
export function runCommands(program: string, commands: readonly Command[], argv: string[]): void {
  runCli(async () => {
    const [name, ...rest] = argv;
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      printLine(programUsage(program, commands));
      if (name === undefined) process.exitCode = 1;
      return;
    }
    const command = commands.find((candidate) => candidate.name === name);
    if (!command) throw new ConfigError('command', `unknown command '${name}'\n\n${programUsage(program, commands)}`);
    let parsed: ReturnType<typeof parseArgs>;
    try {
      parsed = parseArgs({
        args: rest,
        options: { ...command.options, help: { type: 'boolean', short: 'h' } },
        allowPositionals: true,
        strict: true,
      });
    } catch (error) {
      throw new ConfigError('arguments', `${(error as Error).message}\n\n${command.usage}`);
    }
    if (parsed.values.help) return void printLine(command.usage);
    const { min, max } = command.positionals;
    if (parsed.positionals.length < min || parsed.positionals.length > max) {
      const got = parsed.positionals.length;
      throw new ConfigError('arguments', `${program} ${name}: unexpected number of arguments (${got})\n\n${command.usage}`);
    }
    await command.run({ values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals });
  });
}

function programUsage(program: string, commands: readonly Command[]): string {
  const width = Math.max(...commands.map((command) => command.name.length));
  return [
    `Usage: ${program} COMMAND [options]   (${program} COMMAND --help for its options)`,
    '',
    'Commands:',
    ...commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`),
  ].join('\n');
}
