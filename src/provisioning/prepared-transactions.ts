import type * as pg from 'pg';
import { ProvisioningError } from '../errors.js';

/** A transaction of a database left prepared (`PREPARE TRANSACTION`): no session holds it, and it never ends by itself. */
export interface PreparedTransaction {
  /** Its gid as an SQL literal (`'payout-42'`), as the blockers' look names it too. */
  gid: string;
  owner: string;
  prepared: Date;
}

/**
 * The prepared transactions of `database` (default: the one `client` is connected to):
 * `DROP DATABASE … WITH (FORCE)` ends sessions, not these, and fails while one is there.
 *
 * @example await preparedTransactionsOf(client, 'kennwilliamson') // [{ gid: "'payout-42'", owner: 'kennwilliamson', prepared: new Date(…) }]
 */
export async function preparedTransactionsOf(client: pg.ClientBase, database?: string): Promise<PreparedTransaction[]> {
  const { rows } = await client.query<PreparedTransaction>(
    `SELECT pg_catalog.quote_literal(gid) AS gid, owner, prepared FROM pg_catalog.pg_prepared_xacts
      WHERE database = coalesce($1, pg_catalog.current_database()) ORDER BY prepared, gid`,
    [database ?? null],
  );
  return rows;
}

/**
 * The refusal of a drop that prepared transactions stop, naming each and what ends it.
 *
 * @example throw preparedTransactionsRefusal('reset', 'kennwilliamson', prepared)
 */
export function preparedTransactionsRefusal(verb: string, database: string, prepared: PreparedTransaction[], cause?: unknown): ProvisioningError {
  const named = prepared.map((each) => `${each.gid} of role ${each.owner}, prepared at ${each.prepared.toISOString()}`);
  const one = prepared.length === 1;
  return new ProvisioningError(
    `refusing to ${verb} '${database}': it holds ${one ? 'a prepared transaction' : `${prepared.length} prepared transactions:`} ${named.join('; ')}, ` +
      `which DROP DATABASE cannot end: COMMIT PREPARED or ROLLBACK PREPARED ${one ? 'it' : 'them'} first; nothing was dropped`,
    undefined,
    cause === undefined ? undefined : { cause },
  );
}
