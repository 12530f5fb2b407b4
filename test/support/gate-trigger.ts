import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll } from 'vitest';
import type { DB } from '../../generated/db.js';

/** Where {@link useGateTrigger} holds a statement: its rows `when` says, before their `event`. */
export interface Gate {
  /** The trigger's name, and its function's. */
  name: string;
  table: string;
  event: 'INSERT' | 'DELETE';
  /** The trigger's WHEN condition, on NEW (an INSERT) or OLD (a DELETE). */
  when: string;
  /** The advisory lock the test holds (`pg_advisory_lock(key)` on a session of its own) to hold them. */
  key: number;
}

/**
 * For the file's tests, a trigger that holds an INSERT or DELETE of the rows `when` picks out
 * until the test lets it go: each such row waits, before its `event`, for the transaction
 * advisory lock `key`, which the test holds and releases. So a race is forced between two
 * statements of one call, with the call's earlier locks held, without sleeps. Created before
 * the file's tests, dropped after them.
 *
 * @example
 * useGateTrigger(() => testDb.db, { name: 'test_slow_token_delete', table: 'refresh_tokens', event: 'DELETE', when: "OLD.device_info ->> 'slowDelete' = 'true'", key: 73_100_978 })
 */
export function useGateTrigger(db: () => Kysely<DB>, gate: Gate): void {
  beforeAll(async () => {
    const row = gate.event === 'INSERT' ? 'NEW' : 'OLD';
    await sql
      .raw(`CREATE FUNCTION ${gate.name}() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN PERFORM pg_advisory_xact_lock(${gate.key}); RETURN ${row}; END $fn$`)
      .execute(db());
    await sql
      .raw(`CREATE TRIGGER ${gate.name} BEFORE ${gate.event} ON ${gate.table} FOR EACH ROW WHEN (${gate.when}) EXECUTE FUNCTION ${gate.name}()`)
      .execute(db());
  });
  afterAll(async () => {
    await sql.raw(`DROP TRIGGER ${gate.name} ON ${gate.table}`).execute(db());
    await sql.raw(`DROP FUNCTION ${gate.name}()`).execute(db());
  });
}
