import { Kysely, type LogConfig, PostgresDialect, type PostgresPoolClient, type QueryResult } from 'kysely';
import type pg from 'pg';
import { ConnectionError, mapDatabaseError, ValidationError } from '../errors.js';
import type { DB } from '../../generated/db.js';
import { type DbConfig, loadDbConfig, resolveDbConfig } from './db-config.js';
import { createTunedPool, type PoolErrorListener, type TunedPool } from './tuned-pool.js';

export interface CreateDbOptions {
  /** Called when an idle connection is lost or a refill fails; defaults to a line on stderr. */
  onPoolError?: PoolErrorListener;
  /**
   * Kysely's query log. Log `event.query.sql` only: parameters can hold password hashes and
   * token hashes, which must not reach a log line.
   */
  log?: LogConfig;
}

const tunedPools = new WeakMap<Kysely<DB>, TunedPool>();

/** Runs compiled SQL on a pooled connection, as Kysely would, minus Kysely's executor layers. */
export type DirectQueryRunner = <R>(sqlText: string, parameters: readonly unknown[]) => Promise<QueryResult<R>>;

const directRunners = new WeakMap<Kysely<DB>, DirectQueryRunner>();

/**
 * The direct runner of a `Kysely` made by {@link createDb}, for statements compiled once
 * (see prepareQuery): checkout, query, release, errors mapped, and nothing else on the hot
 * path. Undefined for a transaction (its statements must use its own connection) and when
 * Kysely's query log is on (which would not see these statements).
 */
export function directQueryRunner(db: Kysely<DB>): DirectQueryRunner | undefined {
  return directRunners.get(db);
}

function createDirectRunner(tuned: TunedPool): DirectQueryRunner {
  return async <R>(sqlText: string, parameters: readonly unknown[]) => {
    const client = await tuned.connect();
    try {
      const result = await client.query(sqlText, parameters as unknown[]);
      const counted = result.command === 'INSERT' || result.command === 'UPDATE' || result.command === 'DELETE';
      return {
        rows: (result.rows ?? []) as R[],
        ...(counted && result.rowCount !== null ? { numAffectedRows: BigInt(result.rowCount) } : {}),
      };
    } catch (error) {
      throw mapClientError(client, error);
    } finally {
      client.release();
    }
  };
}

// A query can fail with the server's 57P01 before the socket's end reaches pg, which then
// still counts the client as usable: released as it is, it would go back to the pool and fail
// the next borrower (often the caller's retry). Ending it now makes pg-pool discard it on release.
function mapClientError(client: pg.PoolClient, error: unknown): unknown {
  const mapped = mapDatabaseError(error);
  if (mapped instanceof ConnectionError) client.end().catch(() => undefined);
  return mapped;
}

// Every statement Kysely runs goes through here, which makes this the one place where
// PostgreSQL errors become typed errors (by SQLSTATE, see mapDatabaseError).
// One wrapper per pg client, kept for the client's life: Kysely caches its connection object
// by the client it is handed, and a new wrapper per checkout would defeat that cache.
const errorMappingClients = new WeakMap<pg.PoolClient, PostgresPoolClient>();

function mapErrorsOf(client: pg.PoolClient): PostgresPoolClient {
  let wrapper = errorMappingClients.get(client);
  if (wrapper === undefined) {
    wrapper = errorMappingWrapper(client);
    errorMappingClients.set(client, wrapper);
  }
  return wrapper;
}

function errorMappingWrapper(client: pg.PoolClient): PostgresPoolClient {
  return {
    query: ((sqlText: string, parameters: unknown[]) =>
      client.query(sqlText, parameters).catch((error: unknown) => {
        throw mapClientError(client, error);
      })) as unknown as PostgresPoolClient['query'], // no cursor form: the dialect has no cursor configured

    release: () => client.release(),
  };
}

// Kysely starts its driver on the first query and skips the driver's destroy if none ran,
// yet the pool opened its minimum connections at creation: destroy() must always close them.
class TunedKysely extends Kysely<DB> {
  readonly #tuned: TunedPool;

  constructor(tuned: TunedPool, log: LogConfig | undefined) {
    super({
      dialect: new PostgresDialect({ pool: { connect: async () => mapErrorsOf(await tuned.connect()), end: tuned.end } }),
      ...(log === undefined ? {} : { log }),
    });
    this.#tuned = tuned;
  }

  override async destroy(): Promise<void> {
    await super.destroy();
    await this.#tuned.end();
  }
}

/**
 * Creates the `Kysely<DB>` that every query function takes first, on one tuned `pg` pool.
 * Without a config it reads the environment (see {@link loadDbConfig}); a partial config
 * fills the rest from the defaults. `await db.destroy()` closes every connection.
 *
 * @example
 * const db = createDb() // DATABASE_URL, DB_MAX_CONNECTIONS=10, DB_MIN_CONNECTIONS=2, DB_ACQUIRE_TIMEOUT=30
 * const user = await users.findByEmail(db, 'kenn@example.org')
 * await db.destroy()
 */
export function createDb(
  config?: Partial<DbConfig> & { databaseUrl: string },
  options: CreateDbOptions = {},
): Kysely<DB> {
  const resolved = config === undefined ? loadDbConfig() : resolveDbConfig(config);
  const tuned = createTunedPool(resolved, options.onPoolError);
  const db = new TunedKysely(tuned, options.log);
  tunedPools.set(db, tuned);
  if (options.log === undefined) directRunners.set(db, createDirectRunner(tuned));
  return db;
}

/**
 * The tuned pool behind a `Kysely` made by {@link createDb}: wait for its minimum connections
 * at start-up, or read its statistics.
 *
 * @example
 * const db = createDb()
 * await poolOf(db).ready() // fail fast at start-up if the database is unreachable
 */
export function poolOf(db: Kysely<DB>): TunedPool {
  const tuned = tunedPools.get(db);
  if (!tuned) throw new ValidationError('db', 'poolOf() takes a Kysely instance made by createDb()');
  return tuned;
}
