import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { ConfigError, type DbError, mapDatabaseError } from '../errors.js';
import { closeGraceMs, type LibraryClient } from './library-client.js';
import { closeNamedStatement } from './named-statement.js';
import { settlesWithin } from './settles-within.js';

/**
 * What a pooler does with a client's named statement when it hands the client another server
 * connection: `keeps` (it prepares the statement there too: PgBouncer 1.21+ with
 * `max_prepared_statements` > 0), `loses` (the statement is missing there, SQLSTATE 26000:
 * PgBouncer before 1.21, or with the setting 0), `pins` (the client never moved: session
 * pooling, or a proxy that pins a client once it prepares a statement), or `undecided`.
 * `refuses-transactions`: the pooler closed the probe's connection at its `BEGIN` (PgBouncer in
 * `pool_mode = statement`), as it will every call of the library that opens a transaction.
 */
export type PoolerVerdict = 'keeps' | 'loses' | 'pins' | 'undecided' | 'refuses-transactions';

export interface PoolerProbeResult {
  verdict: PoolerVerdict;
  /** Why, in words for a log line (never a URL or a password). */
  reason: string;
  /** With `refuses-transactions`: the error every transaction will meet (a `ConfigError`). */
  error?: DbError;
}

class ProbeExpired extends Error {}

// An attempt proves nothing when the pooler hands the preparer the server connection it
// prepared on again: under traffic, another client may take that connection before the holder
// does, then give it back. Each attempt takes a few round trips (milliseconds); ten that all
// land there mean the pooler keeps the client where it is.
const attempts = 10;
const statementText = 'SELECT pg_catalog.pg_backend_pid() AS pid /* kennwilliamson-db: statement probe */';

/**
 * Asks a pooler whether a client's named statements survive a change of server connection,
 * with two client connections of its own (`openClient`, never the pool's, so that no caller
 * waits for them and a pool of one connection can be probed too):
 *
 * 1. the preparer prepares and runs `SELECT pg_backend_pid()` under a new name, on server
 *    connection P;
 * 2. the holder opens a transaction, which takes the server connection the pooler hands out
 *    next: P, as PgBouncer reuses the connection released last;
 * 3. the preparer runs its statement again (Bind and Execute only). The pooler must run it on
 *    another server connection, which has never seen that name: an old pooler forwards the
 *    Bind and the server answers 26000; a new one prepares the statement there first.
 *
 * A run on P again (another client took P before the holder) proves nothing; the probe tries
 * again, up to ten times. Everything is bounded by `budgetMs`: a pooler with one server
 * connection cannot hand out another while the holder keeps it, so its probe ends undecided,
 * and so does any error, except the one of a pooler in statement mode, which closes the
 * holder's connection at its `BEGIN`: `refuses-transactions`, with the `ConfigError` that
 * every transaction of the pool will meet. `signal` ends it early (the pool is closing), and
 * then its two connections are destroyed at once, without the bounded clean-up a verdict is
 * followed by.
 *
 * @example const { verdict } = await probePooler(() => new LibraryClient(config), 5_000, signal)
 */
export async function probePooler(openClient: () => LibraryClient, budgetMs: number, signal: AbortSignal): Promise<PoolerProbeResult> {
  const preparer = openClient();
  const holder = openClient();

  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProbeExpired(`the probe ran out of time (${budgetMs} ms)`)), budgetMs);
    timer.unref();
    onAbort = () => reject(new ProbeExpired('the pool was ended'));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  expired.catch(() => undefined);
  const bounded = <T>(work: Promise<T>): Promise<T> => Promise.race([work, expired]);
  let holding = false;
  // The preparer's query under way, which an expired probe leaves waiting in the pooler's queue.
  let pending: Promise<unknown> = Promise.resolve();
  const prepare = <R extends pg.QueryResultRow>(statement: pg.QueryConfig) => {
    const query = preparer.query<R>(statement);
    pending = query.catch(() => undefined);
    return bounded(query);
  };
  // The probe's statements that may still be prepared somewhere: closed on the way out.
  const leftovers = new Set<string>();

  try {
    await bounded(Promise.all([preparer.connect(), holder.connect()]));
    for (let attempt = 0; attempt < attempts; attempt++) {
      const statement = { name: `kw_probe_${randomBytes(8).toString('hex')}`, text: statementText };
      leftovers.add(statement.name);
      const preparedOn = (await prepare<{ pid: number }>(statement)).rows[0]?.pid;
      // A multi-statement query answers with one result per statement.
      const opened = (await bounded(holder.query('BEGIN; SELECT pg_catalog.pg_backend_pid() AS pid'))) as unknown as Array<pg.QueryResult<{ pid: number }>>;
      holding = true;
      const heldPid = opened[1]?.rows[0]?.pid;
      let ranOn: number | undefined;
      try {
        ranOn = (await prepare<{ pid: number }>(statement)).rows[0]?.pid;
      } catch (error) {
        if (error instanceof ProbeExpired) throw error;
        if ((error as { code?: unknown }).code === '26000') {
          // The statement stays on the server connection it was prepared on; when that is
          // the holder's, the holder closes it there.
          if (heldPid === preparedOn) {
            await bounded(closeNamedStatement(holder, statement.name));
            leftovers.delete(statement.name);
          }
          return {
            verdict: 'loses',
            reason:
              'the pooler loses a named statement when it hands its client another server connection ' +
              '(SQLSTATE 26000: PgBouncer before 1.21, or max_prepared_statements = 0)',
          };
        }
        return { verdict: 'undecided', reason: `the probe's statement failed: ${describe(error)}` };
      }
      if (ranOn !== preparedOn) {
        return {
          verdict: 'keeps',
          reason:
            'the pooler prepared the probe’s statement again on the other server connection it handed the probe ' +
            '(PgBouncer 1.21+ with max_prepared_statements > 0)',
        };
      }
      // It ran where it was prepared: the server connection the pooler took back last, and so
      // the one it hands the preparer next, while the holder keeps its own.
      await bounded(closeNamedStatement(preparer, statement.name));
      leftovers.delete(statement.name);
      await bounded(holder.query('ROLLBACK'));
      holding = false;
    }
    return {
      verdict: 'pins',
      reason:
        `the pooler kept the probe's client on the server connection it prepared on (${attempts} times): ` +
        'session pooling, or a proxy that pins a client to its server connection once it prepares a statement',
    };
  } catch (error) {
    if (error instanceof ProbeExpired) {
      return {
        verdict: 'undecided',
        reason: `${error.message}: the pooler did not hand the probe another server connection (it has one only, or all were busy)`,
      };
    }
    // The holder's BEGIN, refused by a pooler in statement mode: mapped where every refusal is.
    const mapped = mapDatabaseError(error);
    if (mapped instanceof ConfigError && mapped.variable === 'pool_mode') {
      return { verdict: 'refuses-transactions', reason: mapped.message, error: mapped };
    }
    return { verdict: 'undecided', reason: `the probe failed: ${describe(error)}` };
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort!);
    // The pool is closing: no goodbye, which on a dead path would wait for the same silence again.
    const destroy = () => {
      preparer.destroy();
      holder.destroy();
    };
    if (signal.aborted) destroy();
    else {
      signal.addEventListener('abort', destroy, { once: true });
      try {
        // The holder's transaction ends first: a client that leaves in the middle of one makes
        // PgBouncer close that server connection rather than hand it to the next client. Then
        // the preparer's waiting query runs, and it closes what it prepared (a Close never fails:
        // an old pooler passes it to the server connection released last, the likeliest holder of
        // the statement; a new one forgets the name). Each step is bounded, and so is each end.
        if (holding) await settlesWithin(holder.query('ROLLBACK'), closeGraceMs);
        if (await settlesWithin(pending, closeGraceMs)) {
          for (const name of leftovers) await settlesWithin(closeNamedStatement(preparer, name), closeGraceMs);
        }
        await Promise.all([preparer.end(), holder.end()]);
      } finally {
        signal.removeEventListener('abort', destroy);
      }
    }
  }
}

function describe(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' && message !== '' ? message : String(error);
  return typeof code === 'string' ? `${text} (${code})` : text;
}

