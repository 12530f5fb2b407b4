import { AbortedTransactionError, NoResultError, sql } from 'kysely';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  CheckViolationError,
  ConfigError,
  ConnectionError,
  DatabaseError,
  DataExceptionError,
  DbError,
  DeadlockError,
  ForeignKeyViolationError,
  isRetryable,
  LockNotAvailableError,
  mapDatabaseError,
  NotFoundError,
  NotNullViolationError,
  QueryCanceledError,
  SerializationError,
  TransactionAbortedError,
  UniqueViolationError,
} from '../src/errors.js';
import { noRowReturned } from '../src/queries/no-row-returned.js';
import { eventually } from './support/eventually.js';
import { useTestDatabase } from './support/test-database.js';

const testDb = useTestDatabase();
const hash = '$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0$do-not-log-me';

async function failure(query: ReturnType<typeof sql>): Promise<unknown> {
  return query.execute(testDb.db).catch((error: unknown) => error);
}

describe('PostgreSQL errors, mapped by SQLSTATE', () => {
  it('become typed errors naming the constraint, and keep the original as cause', async () => {
    await sql`INSERT INTO users (email, password_hash, display_name, slug) VALUES ('one@example.org', 'h', 'One', 'one')`.execute(testDb.db);
    const unique = await failure(sql`INSERT INTO users (email, password_hash, display_name, slug) VALUES ('ONE@example.org', 'h', 'Two', 'two')`);
    expect(unique).toBeInstanceOf(UniqueViolationError);
    expect(unique).toMatchObject({ field: 'email', constraint: 'users_email_key', table: 'users', sqlState: '23505' });
    expect((unique as Error).cause).toMatchObject({ code: '23505' });

    const foreignKey = await failure(
      sql`INSERT INTO incident_timers (user_id) VALUES ('01890000-0000-7000-8000-000000000000')`,
    );
    expect(foreignKey).toBeInstanceOf(ForeignKeyViolationError);
    expect(foreignKey).toMatchObject({ constraint: 'incident_timers_user_id_fkey', sqlState: '23503' });

    const notNull = await failure(sql`INSERT INTO roles (name) VALUES (NULL)`);
    expect(notNull).toBeInstanceOf(NotNullViolationError);
    expect(notNull).toMatchObject({ column: 'name', sqlState: '23502' });
  });

  it('never carry a failing row (with its password hash) in the error or its cause', async () => {
    const check = await failure(
      sql`INSERT INTO users (email, password_hash, display_name, slug) VALUES ('row@example.org', ${hash}, '   ', 'row')`,
    );
    expect(check).toBeInstanceOf(CheckViolationError);
    expect(check).toMatchObject({ constraint: 'users_display_name_length' });
    const everything = JSON.stringify(check, Object.getOwnPropertyNames(check)) + JSON.stringify((check as Error).cause);
    expect(everything).not.toContain('do-not-log-me');
    expect((check as Error).message).not.toContain('do-not-log-me');
  });
});

describe('PostgreSQL errors beyond integrity, mapped by SQLSTATE', () => {
  async function lockWaiters(): Promise<number> {
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock'`.execute(testDb.db);
    return rows[0]!.n;
  }

  async function newRow(): Promise<string> {
    const { rows } = await sql<{ id: string }>`
      INSERT INTO roles (name) VALUES (${`role_${Array.from({ length: 12 }, () => 'abcdefghijklmnopqrstuvwxyz'[Math.floor(Math.random() * 26)]).join('')}`}) RETURNING id`.execute(testDb.db);
    return rows[0]!.id;
  }

  it('a unique violation’s cause keeps the key’s columns but not its value (the email)', async () => {
    await sql`INSERT INTO users (email, password_hash, display_name, slug) VALUES ('private.person@example.org', 'h', 'P', 'private-one')`.execute(testDb.db);
    const unique = await failure(
      sql`INSERT INTO users (email, password_hash, display_name, slug) VALUES ('Private.Person@example.org', 'h', 'P', 'private-two')`,
    );
    expect(unique).toBeInstanceOf(UniqueViolationError);
    const cause = (unique as Error).cause as { detail?: string };
    expect(cause.detail).toBe('Key (lower(email))=(values withheld) already exists.');
    const everything = JSON.stringify(unique, Object.getOwnPropertyNames(unique)) + JSON.stringify(cause) + String(unique);
    expect(everything.toLowerCase()).not.toContain('private.person');
  });

  it('40P01: a deadlock is a retryable DeadlockError', async () => {
    const [a, b] = [await newRow(), await newRow()];
    let holdsA!: () => void;
    let holdsB!: () => void;
    const aHeld = new Promise<void>((resolve) => (holdsA = resolve));
    const bHeld = new Promise<void>((resolve) => (holdsB = resolve));
    // Each transaction locks its first row, waits until the other holds its own, then asks for
    // the other's: the second asks only once the first is seen waiting, so the cycle is certain.
    const first = testDb.db.transaction().execute(async (trx) => {
      await sql`SELECT id FROM roles WHERE id = ${a} FOR UPDATE`.execute(trx);
      holdsA();
      await bHeld;
      await sql`SELECT id FROM roles WHERE id = ${b} FOR UPDATE`.execute(trx);
    });
    const second = testDb.db.transaction().execute(async (trx) => {
      await sql`SELECT id FROM roles WHERE id = ${b} FOR UPDATE`.execute(trx);
      holdsB();
      await aHeld;
      await eventually(async () => (await lockWaiters()) === 1, 'the first transaction waits for row b');
      await sql`SELECT id FROM roles WHERE id = ${a} FOR UPDATE`.execute(trx);
    });
    const outcomes = await Promise.allSettled([first, second]);
    const failures = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason as unknown] : []));
    expect(failures).toHaveLength(1);
    expect(failures[0]).toBeInstanceOf(DeadlockError);
    expect(failures[0]).toMatchObject({ sqlState: '40P01', retryable: true, cause: expect.objectContaining({ code: '40P01' }) });
    expect(isRetryable(failures[0])).toBe(true);
  });

  it('40001: a serialization failure is a retryable SerializationError', async () => {
    const id = await newRow();
    const error = await testDb.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => {
        await sql`SELECT name FROM roles WHERE id = ${id}`.execute(trx); // takes the snapshot
        await sql`UPDATE roles SET name = name || '_other' WHERE id = ${id}`.execute(testDb.db); // commits meanwhile
        await sql`UPDATE roles SET name = name || '_mine' WHERE id = ${id}`.execute(trx);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SerializationError);
    expect(error).toMatchObject({ sqlState: '40001', retryable: true });
    expect(isRetryable(error)).toBe(true);
  });

  it('55P03: a lock not available (NOWAIT) is a retryable LockNotAvailableError', async () => {
    const id = await newRow();
    const error = await testDb.db
      .transaction()
      .execute(async (trx) => {
        await sql`SELECT id FROM roles WHERE id = ${id} FOR UPDATE`.execute(trx);
        return sql`SELECT id FROM roles WHERE id = ${id} FOR UPDATE NOWAIT`.execute(testDb.db).catch((e: unknown) => e);
      });
    expect(error).toBeInstanceOf(LockNotAvailableError);
    expect(isRetryable(error)).toBe(true);
  });

  it('57014: a statement timeout is a QueryCanceledError, not retryable', async () => {
    const error = await testDb.db
      .transaction()
      .execute(async (trx) => {
        await sql`SET LOCAL statement_timeout = '20ms'`.execute(trx);
        await sql`SELECT pg_sleep(5)`.execute(trx);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueryCanceledError);
    expect(error).toMatchObject({ sqlState: '57014', retryable: false });
    expect(isRetryable(error)).toBe(false);
  });

  it('class 22 (22P02, 22003, 22021): a DataExceptionError whose message does not repeat the value', async () => {
    const invalidText = await failure(sql`SELECT ${'secret-looking-value'}::uuid`);
    expect(invalidText).toBeInstanceOf(DataExceptionError);
    expect(invalidText).toMatchObject({ sqlState: '22P02', retryable: false });
    expect((invalidText as Error).message).not.toContain('secret-looking-value');
    expect(await failure(sql`SELECT ${'99999999999999999999999'}::bigint`)).toMatchObject({ sqlState: '22003' });
    expect(await failure(sql`SELECT ${'nul \u0000 inside'}::text`)).toBeInstanceOf(DataExceptionError);
  });

  it('25P02: a statement after a caught error in the same transaction is a TransactionAbortedError', async () => {
    const error = await testDb.db
      .transaction()
      .execute(async (trx) => {
        await sql`SELECT 'x'::uuid`.execute(trx).catch(() => undefined);
        await sql`SELECT 1`.execute(trx);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransactionAbortedError);
    expect((error as Error).message).toContain('withSavepoint');
  });

  it('any other SQLSTATE is a DatabaseError carrying it, with PostgreSQL’s message', async () => {
    const error = await failure(sql`SELECT * FROM no_such_table`);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject({ sqlState: '42P01', retryable: false });
    expect((error as Error).message).toContain('no_such_table');
  });

  it('Kysely’s NoResultError is a NotFoundError, from mapDatabaseError and from noRowReturned', async () => {
    const query = testDb.db.selectFrom('users').select('id').where('email', '=', 'nobody-at-all@example.org');
    const kyselys = await query.executeTakeFirstOrThrow().catch((e: unknown) => e);
    expect(kyselys).toBeInstanceOf(NoResultError);
    expect(mapDatabaseError(kyselys)).toBeInstanceOf(NotFoundError);
    expect(mapDatabaseError(kyselys)).toMatchObject({ entity: 'row', cause: kyselys });
    const ours = await query.executeTakeFirstOrThrow(noRowReturned).catch((e: unknown) => e);
    expect(ours).toBeInstanceOf(NotFoundError);
    expect((ours as Error).cause).toBeInstanceOf(NoResultError);
  });

  it('Kysely’s AbortedTransactionError (a COMMIT that rolled back) is a TransactionAbortedError', () => {
    const kyselys = new AbortedTransactionError();
    expect(mapDatabaseError(kyselys)).toBeInstanceOf(TransactionAbortedError);
    expect(mapDatabaseError(kyselys)).toMatchObject({ sqlState: '25P02', cause: kyselys });
  });

  it('maps whatever it is given to a DbError, and returns a DbError unchanged', () => {
    const typed = new NotFoundError('user');
    expect(mapDatabaseError(typed)).toBe(typed);
    for (const thrown of [new TypeError('boom'), 'a string', undefined, 42, { code: 'XX' }]) {
      const mapped = mapDatabaseError(thrown);
      expect(mapped).toBeInstanceOf(DbError);
      expect(mapped.cause).toBe(thrown);
    }
    expect(mapDatabaseError(new Error('Connection terminated unexpectedly'))).toBeInstanceOf(ConnectionError);
    expect(mapDatabaseError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }))).toMatchObject({
      reason: 'ECONNREFUSED',
      retryable: true,
    });
    expect(isRetryable(new Error('anything'))).toBe(false);
    expect(isRetryable(new pg.DatabaseError('x', 0, 'error'))).toBe(false);
  });

  // A pooler in statement mode refuses every transaction, so no retry can succeed; the same
  // SQLSTATE from PgBouncer's other refusals (a database it cannot find) may pass with time.
  it("08P01 is a ConfigError, not retryable, when it is PgBouncer's refusal of a transaction in statement mode; other 08P01s stay ConnectionErrors", () => {
    const fromPgBouncer = (text: string) => Object.assign(new pg.DatabaseError(text, 0, 'error'), { code: '08P01', severity: 'FATAL' });
    for (const text of ['transaction blocks not allowed in statement pooling mode', 'Long transactions not allowed']) {
      const refusal = fromPgBouncer(text);
      const mapped = mapDatabaseError(refusal);
      expect(mapped).toBeInstanceOf(ConfigError);
      expect(mapped).toMatchObject({ code: 'CONFIG_INVALID', variable: 'pool_mode', retryable: false, cause: refusal });
      expect(mapped.message).toBe(
        `The connection pooler refuses every transaction (08P01: ${text}): it runs in statement pooling mode ` +
          '(PgBouncer pool_mode = statement), which this library cannot work behind. Set pool_mode = transaction ' +
          '(or session) for this database and user; retrying cannot succeed',
      );
      expect(isRetryable(mapped)).toBe(false);
    }
    for (const text of ['database "kw_gone" does not exist', 'server login has been failing, try again later (server_login_retry)']) {
      const mapped = mapDatabaseError(fromPgBouncer(text));
      expect(mapped).toBeInstanceOf(ConnectionError);
      expect(mapped).toMatchObject({ reason: '08P01', serverMessage: text, retryable: true });
    }
  });

  // Node's socket errors say what was tried; a name with several addresses fails with one
  // error per address, gathered in an AggregateError whose own message is empty.
  it('names the address and port a failed socket tried, or the host name that did not resolve', () => {
    const refused = (address: string, port: number) =>
      Object.assign(new Error(`connect ECONNREFUSED ${address}:${port}`), { code: 'ECONNREFUSED', address, port });
    const both = Object.assign(new AggregateError([refused('::1', 5433), refused('127.0.0.1', 5433)], ''), { code: 'ECONNREFUSED' });
    expect(mapDatabaseError(both)).toMatchObject({
      server: '[::1]:5433 and 127.0.0.1:5433',
      message: 'The database connection to [::1]:5433 and 127.0.0.1:5433 failed (ECONNREFUSED); the operation may be retried',
    });
    const unknown = Object.assign(new Error('getaddrinfo ENOTFOUND db.internal'), { code: 'ENOTFOUND', hostname: 'db.internal' });
    expect(mapDatabaseError(unknown).message).toBe('The database connection to db.internal failed (ENOTFOUND); the operation may be retried');
  });
});
