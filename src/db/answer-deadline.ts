import type * as pg from 'pg';
import { ConnectionError } from '../errors.js';
import { leadingWords } from './leading-words.js';
import { LibraryClient } from './library-client.js';

/**
 * How long a round trip that does no work of its own (BEGIN and its settings, a ROLLBACK, a
 * look at pg_stat_activity or pg_locks) may go unanswered on a connection of the commands'
 * own: as long as the pool's call deadline by default. Past it the peer is taken for silent:
 * cut off by a partition (the kernel would retransmit for a quarter of an hour) or stalled
 * while its kernel still acknowledges (keepalive never fires then).
 */
export const roundTripDeadlineMs = 10_000;

/**
 * Closes `client`'s connection at once, failing what is in flight there with `error`, where it
 * is a connection of the library's own (LibraryClient: from openClient, or the pool's).
 *
 * @example destroyConnection(client, new ConnectionError('deadline'))
 */
export function destroyConnection(client: pg.ClientBase, error: Error): void {
  if (client instanceof LibraryClient) client.destroy(error);
}

/**
 * Runs `call` (a round trip on `client`) and, when no answer comes within `ms`, closes the
 * connection and rejects with a retryable `ConnectionError` (`deadline`) that says what went
 * unanswered (and `note`, if given, why that is telling), rather than waiting for TCP, which
 * may never tell.
 *
 * @example
 * await answeredWithin(client, roundTripDeadlineMs, 'ROLLBACK', () => client.query('ROLLBACK'))
 */
export async function answeredWithin<T>(client: pg.ClientBase, ms: number, what: string, call: () => Promise<T>, note?: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const unanswered = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const error = new ConnectionError('deadline', { detail: `no answer to ${what} within ${ms} ms${note ? `, ${note}` : ''}; the connection was closed` });
      destroyConnection(client, error);
      reject(error);
    }, ms);
  });
  try {
    return await Promise.race([call(), unanswered]);
  } finally {
    clearTimeout(timer);
  }
}

// What a query was, for a message that says what went unanswered without its values.
function firstWords(statement: unknown): string {
  const text = typeof statement === 'string' ? statement : (statement as { text?: unknown } | undefined)?.text;
  return (typeof text === 'string' ? leadingWords(text) : undefined) ?? 'a statement';
}

/**
 * `client`, each of whose queries gets an answer within `ms` (as {@link answeredWithin} gives
 * one), for a connection whose statements are all short or wait for a lock no longer than `ms`
 * less a round trip: an admin's DDL and grants. A query sent as a submittable (pg's `Query`) is
 * passed on as it is, its caller's to bound.
 *
 * @example
 * const bounded = answeringWithin(client, lockTimeoutMs + roundTripDeadlineMs)
 * await bounded.query('GRANT SELECT ON users TO app') // ConnectionError 'deadline' if no answer comes
 */
export function answeringWithin<C extends pg.ClientBase>(client: C, ms: number): C {
  return eachQuery(client, (what, send) => answeredWithin(client, ms, what, send));
}

/**
 * `client`, each of whose queries `wrap` sends (with what the query is, in its first words, never
 * its values): for a bound on every query of a connection. A query sent as a submittable (pg's
 * `Query`) is passed on as it is, its caller's to bound.
 *
 * @example
 * const bounded = eachQuery(client, (what, send) => answeredWithin(client, 10_000, what, send))
 */
export function eachQuery<C extends pg.ClientBase>(client: C, wrap: (what: string, send: () => Promise<unknown>) => Promise<unknown>): C {
  const query = (...args: unknown[]) => {
    const [first] = args;
    const send = () => (client.query as (...a: unknown[]) => unknown)(...args);
    if (typeof (first as { submit?: unknown } | undefined)?.submit === 'function') return send();
    return wrap(firstWords(first), send as () => Promise<unknown>);
  };
  return new Proxy(client, {
    get(target, property) {
      if (property === 'query') return query;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
