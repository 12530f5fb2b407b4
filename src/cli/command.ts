import type { ParseArgsConfig } from 'node:util';

/** The options of one command, in `node:util` parseArgs' own terms. */
export type CommandOptions = NonNullable<ParseArgsConfig['options']>;

/** What a command's `run` receives: parseArgs' result for its options and positionals. */
export interface CommandInput {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** One sub-command of the `kennwilliamson-db` bin (or of the repository's npm scripts). */
export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** The whole `--help` text. */
  usage: string;
  options: CommandOptions;
  /** How many positionals the command takes, at least and at most. */
  positionals: { min: number; max: number };
  /**
   * Does the work. It imports the modules that do it (`await import(…)`) rather than the
   * command's file: an entry loads every command's file to find one, and `--help`, a refused
   * option or another command should not load pg_dump's WebAssembly, PostgreSQL's parser or
   * the SSH download.
   */
  run(input: CommandInput): Promise<void>;
}
