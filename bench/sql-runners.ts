import { createHash } from 'node:crypto';
import type pg from 'pg';
import type postgres from 'postgres';

/** Runs one statement and returns its rows. */
export type RunSql = (sqlText: string, parameters: unknown[]) => Promise<Array<Record<string, any>>>;

/**
 * Hand-written SQL on one client library: the benchmark's raw sides run the same statements
 * through each of these, so they differ only in how the statements reach the server.
 */
export interface SqlRunner {
  query: RunSql;
  /** BEGIN, `work` on one connection, COMMIT (ROLLBACK when it throws). */
  transaction<T>(work: (query: RunSql) => Promise<T>): Promise<T>;
}

/** `pg` with unnamed statements (`pool.query(text, values)`): parsed and planned on every call. */
export function pgUnnamed(pool: pg.Pool): SqlRunner {
  const onClient = (client: pg.ClientBase): RunSql => async (text, values) => (await client.query(text, values)).rows;
  return {
    query: async (text, values) => (await pool.query(text, values)).rows,
    transaction: (work) => pgTransaction(pool, (client) => work(onClient(client))),
  };
}

/** `pg` with named statements (`{ name, text, values }`): parsed once per connection. */
export function pgNamed(pool: pg.Pool): SqlRunner {
  const names = new Map<string, string>();
  const nameOf = (text: string) => {
    let name = names.get(text);
    if (name === undefined) {
      name = `raw_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
      names.set(text, name);
    }
    return name;
  };
  const onClient = (client: pg.ClientBase): RunSql => async (text, values) =>
    (await client.query({ name: nameOf(text), text, values })).rows;
  return {
    query: async (text, values) => (await pool.query({ name: nameOf(text), text, values })).rows,
    transaction: (work) => pgTransaction(pool, (client) => work(onClient(client))),
  };
}

async function pgTransaction<T>(pool: pg.Pool, work: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

/**
 * postgres.js with its defaults: every statement prepared (as its tagged templates are; its
 * `unsafe` needs `prepare: true` to do the same), pipelined on its connections.
 */
export function postgresJs(sql: postgres.Sql): SqlRunner {
  const onSql = (tx: postgres.Sql | postgres.TransactionSql): RunSql => async (text, values) =>
    (await tx.unsafe(text, values as postgres.ParameterOrJSON<never>[], { prepare: true })) as unknown as Array<Record<string, any>>;
  return {
    query: onSql(sql),
    transaction: async <T>(work: (query: RunSql) => Promise<T>) => (await sql.begin((tx) => work(onSql(tx)))) as T,
  };
}
