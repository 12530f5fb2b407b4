/**
 * Text from outside (a backup's names, the server's message about them) made one line of a
 * message: a line feed in it is written `\n`, so that it cannot start a line of its choosing
 * (a forged "Restored …") among the command's own. The terminal's control characters, a
 * carriage return among them, are escaped where the message is printed (`terminalText`).
 *
 * @example oneLine('x\nRestored prod.dump') // 'x\\nRestored prod.dump'
 */
export function oneLine(text: string): string {
  return text.replaceAll('\n', '\\n');
}
