import { describe, expect, inject, it } from 'vitest';
import { withClient } from '../../src/db/with-client.js';
import { ConnectionError, mapDatabaseError } from '../../src/errors.js';
import { databaseUrlWith } from '../../src/provisioning/database-admin.js';

// What an operator acts on is the server's or the pooler's reason (PgBouncer's
// query_wait_timeout, a failing server login, a database it cannot find), so the message
// carries it, not only `cause`.
describe('ConnectionError says what the server or the pooler said', () => {
  it('carries PgBouncer\'s own reason in its message, with its SQLSTATE as the reason', async () => {
    const poolerUrl = inject('poolerUrl');
    if (!poolerUrl) throw new Error('this test needs PgBouncer (/usr/sbin/pgbouncer; apt-get install pgbouncer)');

    const error = await withClient(databaseUrlWith(poolerUrl, 'kw_no_such_database'), async () => undefined).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).reason).toBe('08P01');
    expect((error as ConnectionError).serverMessage).toBe('database "kw_no_such_database" does not exist');
    expect((error as Error).message).toBe(
      'The database connection failed (08P01: database "kw_no_such_database" does not exist); the operation may be retried',
    );
  });

  it('carries the server\'s message for the SQLSTATEs that end a session, and none for a socket error', () => {
    const starting = Object.assign(new Error('the database system is starting up'), { code: '57P03', severity: 'FATAL' });
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

    expect(mapDatabaseError(starting).message).toBe('The database connection failed (57P03: the database system is starting up); the operation may be retried');
    expect(mapDatabaseError(refused)).toMatchObject({ reason: 'ECONNREFUSED', serverMessage: undefined });
  });
});
