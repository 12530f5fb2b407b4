// What the server quotes in a context line: a relation's name, or a statement's whole text
// (`SQL statement "…"`), whose own `(10,2)` must not count. From the first opening mark to the
// last closing one, in the marks the server's languages use ("…", «…», »…«, „…“, “…”, 「…」);
// then from a mark left open to the end of the line (a statement over several lines).
const quotedSpans = [/"[\s\S]*"/, /«[\s\S]*»/, /»[\s\S]*«/, /„[\s\S]*[“”]/, /“[\s\S]*”/, /「[\s\S]*」/, /["«»„“「][\s\S]*$/];
// A statement's parameters, as the server quotes them in the context of an error
// (`unnamed portal with parameters: $1 = '(1,2)'`, with log_parameter_max_length_on_error):
// built by the server, never translated.
const parameterValues = /\$\d+ = (?:'(?:[^']|'')*'(?:\.\.\.)?|NULL)/g;

/**
 * Whether a server error was raised while its statement waited for a row that another
 * transaction held: PostgreSQL then says so in the innermost line of its context (`where`),
 * as `while updating tuple (0,7) in relation "users"` (or locking, rechecking an updated
 * version, checking uniqueness, …). What every language the server speaks keeps of those words
 * is the tuple's `(block,offset)` outside the quoted relation name (French once `(0, 7)`; Korean `0,7 튜플`,
 * without parentheses, at the start). A wait in the row's queue (a tuple lock, behind another
 * waiter) says nothing, and is not recognised.
 *
 * @example waitedForRowLock(error) // true for a 57014 with where 'while locking tuple (0,1) in relation "users"'
 */
export function waitedForRowLock(error: unknown): boolean {
  const where = (error as { where?: unknown } | null)?.where;
  if (typeof where !== 'string') return false;
  const innermost = quotedSpans.reduce((line, span) => line.replace(span, ''), where.split('\n', 1)[0]!.replace(parameterValues, ''));
  return /\(\s*\d+\s*,\s*\d+\s*\)|^\d+,\d+\s/.test(innermost);
}
