import { processWide } from './process-wide.js';

// SQL text → the function whose statement it is, for statements that must not run inside a
// transaction. Process-wide, as the statement names (the ESM and CommonJS builds' pools and
// query functions may mix).
const statements = processWide('outside-transaction-statements', () => new Map<string, string>());

/**
 * Registers `sqlText` as the statement of `what` that must run outside any transaction:
 * `refreshTokens.rotate`, which commits a reuse revocation itself before it throws. A
 * `Transaction` is refused by the function; one begun by hand (`BEGIN` on `db.connection()`)
 * is known only to the pool's connection, which refuses the statement there
 * ({@link outsideTransactionStatement}).
 *
 * @example mustRunOutsideTransactions(compiled.sql, 'rotate')
 */
export function mustRunOutsideTransactions(sqlText: string, what: string): void {
  statements.set(sqlText, what);
}

/** The function whose statement `sqlText` is, when it must run outside any transaction. */
export function outsideTransactionStatement(sqlText: string): string | undefined {
  return statements.get(sqlText);
}
