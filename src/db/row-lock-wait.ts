/**
 * Whether a server error was raised while its statement waited for a row that another
 * transaction held: PostgreSQL then says so in the innermost line of its context (`where`),
 * as `while updating tuple (0,7) in relation "users"` (or locking, rechecking an updated
 * version, checking uniqueness, …). The tuple's `(block,offset)` is what the server's every
 * language keeps of those words; it must come before any quotation mark, since the outer lines
 * of a function's context quote its statements, whose text may hold `numeric(10,2)`. A wait in
 * the row's queue (a tuple lock, behind another waiter) says nothing, and is not recognised.
 *
 * @example waitedForRowLock(error) // true for a 57014 with where 'while locking tuple (0,1) in relation "users"'
 */
export function waitedForRowLock(error: unknown): boolean {
  const where = (error as { where?: unknown } | null)?.where;
  if (typeof where !== 'string') return false;
  const innermost = where.split('\n', 1)[0]!;
  return /^[^"'«»„“”‘’「」]*\(\d+,\d+\)/.test(innermost);
}
