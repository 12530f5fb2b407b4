/**
 * Text that came from outside (a backup's object and role names, a remote host's answer, a
 * session's application_name, a record's migration names) made safe for a terminal: every
 * control character but the line feed (CRLF read as one) and the tab, and the Unicode controls that reorder or
 * end lines, written as an escape (`\x1b`, `\u202e`). Printed raw, a backup's table name
 * could erase the lines above, print a forged "restored" line in green or set the window's
 * title; a direction override could make a name read as another.
 *
 * @example terminalText('public.\x1b[2Kfake') // 'public.\\x1b[2Kfake'
 */
export function terminalText(text: string): string {
  // A line ending of the other kind (a host's stderr) ends a line here too.
  return text.replaceAll('\r\n', '\n').replace(unsafeForTerminal, (character) => {
    const code = character.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

// C0 but \t and \n, DEL and C1, the bidirectional marks, embeddings, overrides and isolates,
// and the line and paragraph separators.
const unsafeForTerminal = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/**
 * Prints a line of a command's result on stdout, made safe with {@link terminalText}.
 *
 * @example printLine(`Restored ${file}`)
 */
export function printLine(line: string): void {
  console.log(terminalText(line));
}

/**
 * Prints a line of a command's progress or warning on stderr, made safe with {@link terminalText}.
 *
 * @example printNote(`restoring table ${name}`)
 */
export function printNote(line: string): void {
  console.error(terminalText(line));
}
