import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { CheckViolationError, ForeignKeyViolationError, NotNullViolationError, UniqueViolationError } from '../src/errors.js';
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
