import { terminalText } from './terminal-text.js';

/**
 * Whether the person at the terminal typed `yes` to `question` (asked on stderr, so that
 * stdout stays the command's output): the last word before a command destroys data.
 *
 * A command that handles its own SIGINT, SIGTERM and SIGHUP (`interruptSignal`) passes that
 * `signal`: one of them at the question is no too, where the question went on waiting for ever.
 *
 * @example if (!(await typedYes(`This DROPS database 'app' on 127.0.0.1:5432. Type 'yes' to go on: `))) throw …
 */
export async function typedYes(question: string, signal?: AbortSignal): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    // The question may name what came from outside (sessions' roles, a record's migration).
    return (await prompt.question(terminalText(question), signal ? { signal } : {})).trim().toLowerCase() === 'yes';
  } catch (error) {
    // Ctrl-C at the question (a key there, not a signal) is no: the command says what it left
    // untouched, rather than failing with readline's "Aborted with Ctrl+C". So is the signal.
    if ((error as { code?: string }).code === 'ABORT_ERR') {
      process.stderr.write('\n');
      return false;
    }
    throw error;
  } finally {
    prompt.close();
  }
}

/**
 * Whether a destructive command may ask before it acts: it must, unless `--yes` was given,
 * and without a terminal there is no one to ask, so the caller refuses before any work.
 *
 * @example if (!canAsk(yes)) throw new RestoreError('… there is no terminal to ask on; pass --yes')
 */
export function canAsk(yes: boolean): boolean {
  return yes || process.stdin.isTTY === true;
}
