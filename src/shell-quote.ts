/**
 * One word for a POSIX shell, whatever `value` holds: single-quoted, each single quote
 * closed, escaped and reopened. For what reaches `/bin/sh` (pg_ctl's `-o`, a remote command
 * over ssh).
 *
 * @example
 * shellQuote("it's") // `'it'\''s'`
 */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
