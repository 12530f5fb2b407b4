import { oneLine } from '../../one-line.js';
// Where a data exception's message starts to quote the value back: a colon (English `…for
// type uuid: "…"`, and most translations), or whatever quotation mark the server's language
// writes (German »…«, French « … », Japanese after a full-width colon).
const valueStart = /[:："'«»„“”‘’「」]/;

/**
 * A server error as a restore reports it: without its DETAIL (which can hold row values,
 * password hashes among them), nor the value a data exception quotes back (class 22:
 * `invalid input syntax for type uuid: "…"`), which is the backup's data too. Everything from
 * where the value starts is withheld: the server quotes the value as it is, so one holding
 * quotes of its own (JSON in the wrong column) would end a quoted part early and show the
 * rest; and the restoring role cannot choose the language of the messages (lc_messages).
 *
 * @example
 * serverFailure(error) // 'ERROR: invalid input syntax for type integer: "(value withheld)" (SQLSTATE 22P02)'
 */
export function serverFailure(error: unknown): string {
  const { message, code } = error as { message?: string; code?: string };
  const fromServer = typeof error === 'object' && error !== null && 'severity' in error;
  const start = message?.search(valueStart) ?? -1;
  const withheld = fromServer && code?.startsWith('22') && message && start >= 0;
  const said = withheld ? `${message.slice(0, start)}${/[:：]/.test(message[start]!) ? ': ' : ''}"(value withheld)"` : message;
  // The server's message names the backup's objects, which may hold a line feed.
  return `${fromServer ? 'ERROR: ' : ''}${oneLine(said ?? String(error))}${code && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : ''}`;
}
