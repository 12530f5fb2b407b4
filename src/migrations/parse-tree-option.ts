/** An option of a statement's parse tree (`VACUUM (FULL)`, `REINDEX (CONCURRENTLY)`), as libpg-query gives it. */
export type OptionNode = { DefElem?: { defname?: string; arg?: { String?: { sval?: string }; Integer?: { ival?: number }; Boolean?: { boolval?: boolean } } } };

/**
 * Whether the boolean option `name` is on, as the server reads it: `(FULL)`, `(FULL true)`,
 * `FULL` on; `(FULL false)`, `(FULL off)`, `(FULL 0)` off (the parse tree omits a zero or false
 * value); the last one given counts.
 *
 * @example optionOn(parseSync('VACUUM (FULL false) users').stmts[0].stmt.VacuumStmt.options, 'full') // false
 */
export function optionOn(options: OptionNode[] | undefined, name: string): boolean {
  const option = (options ?? []).findLast((o) => o.DefElem?.defname === name)?.DefElem;
  if (option === undefined) return false;
  const arg = option.arg;
  if (arg === undefined) return true;
  if (arg.String !== undefined) return !['false', 'off', 'no', '0'].includes((arg.String.sval ?? '').toLowerCase());
  if (arg.Integer !== undefined) return (arg.Integer.ival ?? 0) !== 0;
  if (arg.Boolean !== undefined) return arg.Boolean.boolval === true;
  return true;
}
