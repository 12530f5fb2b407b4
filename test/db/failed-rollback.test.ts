import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { expect, it } from 'vitest';
import { createDb, poolOf } from '../../src/db/create-db.js';
import { prepareQuery } from '../../src/db/prepared-query.js';
import { useTestDatabase } from '../support/test-database.js';

const testDb = useTestDatabase();
const roleByName = prepareQuery((db, p: { name: string }) => db.selectFrom('roles').select('name').where('name', '=', p.name));

it('closes a connection whose ROLLBACK failed instead of handing its open transaction to the next caller', async () => {
  const db = createDb({ databaseUrl: testDb.url, maxConnections: 1, minConnections: 0 });
  try {
    // Fault injection on a real connection: its next ROLLBACK is lost before it reaches the
    // server (a network hiccup, a client-side timeout), so the server session is still
    // inside the transaction when Kysely gives the connection back with release(true).
    let injected = false;
    poolOf(db).pool.once('acquire', (client: pg.PoolClient) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      client.query = ((...args: unknown[]) => {
        if (args[0] !== 'rollback') return query(...args);
        client.query = query as typeof client.query;
        injected = true;
        return Promise.reject(new Error('injected: the ROLLBACK never reached the server'));
      }) as typeof client.query;
    });
    const name = `rollback-${randomBytes(4).toString('hex')}`;
    const failed = db.transaction().execute(async (trx) => {
      await trx.insertInto('roles').values({ name }).execute();
      throw new Error('the work failed');
    });
    await expect(failed).rejects.toThrow();
    expect(injected, 'the ROLLBACK went through the injected failure').toBe(true);

    // With one connection in the pool, a connection handed back as it was would run these in
    // the abandoned transaction, and see (and later commit) its insert.
    expect((await roleByName.execute(db, { name })).rows).toEqual([]);
    expect(await db.selectFrom('roles').select('name').where('name', '=', name).execute()).toEqual([]);
    expect(await testDb.db.selectFrom('roles').select('name').where('name', '=', name).execute()).toEqual([]);
  } finally {
    await db.destroy();
  }
});
