import type { ConnectionBounds } from './bounded-client.js';

// SAVEPOINT name, ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] name, RELEASE [SAVEPOINT] name: as
// withSavepoint and Kysely's controlled transactions send them, a name quoted or not.
const savepointStatement =
  /^\s*(?:(savepoint)|(rollback)(?:\s+(?:work|transaction))?\s+to(?:\s+savepoint)?|(release)(?:\s+savepoint)?)\s+("(?:[^"]|"")+"|[a-z_][\w$]*)\s*;?\s*$/i;

/** A statement that opens, rolls back to, or releases a savepoint, and the savepoint's name as PostgreSQL folds it. */
export function savepointCommand(sqlText: string): { kind: 'savepoint' | 'rollback' | 'release'; name: string } | undefined {
  const match = savepointStatement.exec(sqlText);
  if (match === null) return undefined;
  const written = match[4]!;
  const name = written.startsWith('"') ? written.slice(1, -1).replaceAll('""', '"') : written.toLowerCase();
  return { kind: match[1] ? 'savepoint' : match[2] ? 'rollback' : 'release', name };
}

/**
 * The connection's bounds as each open savepoint found them, innermost last: `ROLLBACK TO
 * SAVEPOINT` takes back the `SET LOCAL`s made since (withTimeouts' inside a withSavepoint whose
 * work failed), so the bounds the pool holds for the connection go back with them; `RELEASE`
 * keeps them. Without it, the pool kept the longer bounds for the rest of the transaction: a
 * call's deadline 65 s where the server's statement_timeout was 5 s again, and its
 * cancellation reported as a cancel request.
 *
 * @example
 * const marks = savepointBounds()
 * marks.opened('kw_savepoint_1', tuned.boundsOf(client)) // … then, after ROLLBACK TO SAVEPOINT kw_savepoint_1:
 * tuned.setBounds(client, marks.rolledBackTo('kw_savepoint_1')!)
 */
export function savepointBounds() {
  let marks: Array<{ name: string; bounds: ConnectionBounds; overridden: boolean }> = [];
  const last = (name: string) => marks.findLastIndex((mark) => mark.name === name);
  return {
    opened(name: string, bounds: ConnectionBounds, overridden: boolean): void {
      marks.push({ name, bounds, overridden });
    },
    /** The bounds the savepoint found, which hold again; undefined for a savepoint not seen. */
    rolledBackTo(name: string): { bounds: ConnectionBounds; overridden: boolean } | undefined {
      const index = last(name);
      if (index === -1) return undefined;
      marks = marks.slice(0, index + 1); // the savepoint itself stays
      return marks[index];
    },
    released(name: string): void {
      const index = last(name);
      if (index !== -1) marks = marks.slice(0, index);
    },
    clear(): void {
      marks = [];
    },
  };
}
