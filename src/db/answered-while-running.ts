import type * as pg from 'pg';
import { answeredWithin, destroyConnection, roundTripDeadlineMs } from './answer-deadline.js';
import { leadingWords } from './leading-words.js';
import { withClient } from './with-client.js';
import { ConnectionError } from '../errors.js';

/** Where a command's statements run (a restore's, a migration's): its session, looked at from a connection of its own. */
export interface WatchedSession {
  /** The command's URL, for the looks. */
  url: string;
  /** The command's backend, once known; without it nothing can be looked at, and a statement is waited for. */
  pid: number | undefined;
  /** The looks in flight, which the command may wait for before it returns. */
  looks: Set<Promise<unknown>>;
  /** The looks' `application_name`: the command's own. */
  applicationName: string;
}

/**
 * Waits for `call`'s answer on `client` (a restore's or a migration's session) for as long as
 * the server runs the statement. Such a statement may run long (an index of a big table, the
 * deferred checks, a drop of many objects), so it gets no fixed deadline; but an answer that
 * never comes (a path that stalls while its kernel acknowledges, which TCP never tells) was
 * waited for without end, with the statement's tables (a restore: every table of public) or the
 * migration lock held. So, each `timeoutMs` without an answer, the session is looked at from
 * another connection (`pg_stat_activity`): running a statement, it is given as long again;
 * running none (idle in its transaction: its answer was lost on the way, or its statement never
 * arrived) or gone, the connection is closed, which fails `call` with a retryable
 * `ConnectionError` (`deadline`), and the server rolls the transaction back. A look that fails
 * tells nothing: the session is given up on at the second failure in a row. (A backend that
 * froze while it ran shows as running: that one is waited for, as a long statement is.)
 *
 * @example
 * await answeredWhileRunning(client, 60_000, 'DROP TABLE', session, () => client.query('DROP TABLE public.t'))
 */
export async function answeredWhileRunning<T>(
  client: pg.ClientBase,
  timeoutMs: number,
  what: string,
  session: WatchedSession,
  call: () => Promise<T>,
): Promise<T> {
  const answered = call();
  let settled = false;
  let timer: NodeJS.Timeout | undefined;
  const unanswered = new Promise<never>((_resolve, reject) => {
    let failedLooks = 0;
    let lookFailure = '';
    const giveUp = (seen: string) => {
      const error = new ConnectionError('deadline', {
        detail: `no answer to ${what} for ${timeoutMs / 1000} s, and ${seen}; the connection was closed`,
      });
      destroyConnection(client, error);
      reject(error);
    };
    const look = async () => {
      if (settled) return;
      if (session.pid === undefined) {
        timer = setTimeout(() => void look(), timeoutMs);
        return;
      }
      const looking = sessionState(session.url, session.pid, session.applicationName);
      session.looks.add(looking);
      let state: string | undefined;
      try {
        state = await looking.finally(() => session.looks.delete(looking));
      } catch (error) {
        failedLooks += 1;
        lookFailure = error instanceof ConnectionError ? `its connection ${error.reason}` : (error as Error).message;
        if (settled) return;
        if (failedLooks >= 2) giveUp(`its session could not be looked at in pg_stat_activity, twice in a row (the last: ${lookFailure})`);
        else timer = setTimeout(() => void look(), timeoutMs);
        return;
      }
      failedLooks = 0;
      if (settled) return;
      if (state === 'active') timer = setTimeout(() => void look(), timeoutMs);
      else giveUp(state === undefined ? 'its session is gone from pg_stat_activity' : `its session runs no statement (pg_stat_activity: ${state})`);
    };
    timer = setTimeout(() => void look(), timeoutMs);
  });
  // Settled here too, so that a give-up after the answer raises no unhandled rejection.
  unanswered.catch(() => undefined);
  try {
    return await Promise.race([answered, unanswered]);
  } finally {
    settled = true;
    clearTimeout(timer);
  }
}

/**
 * `client`, each of whose queries is waited for as {@link answeredWhileRunning} says. A query
 * sent as a submittable (pg's `Query`) is passed on as it is, its caller's to watch.
 *
 * @example
 * await clearPublicSchema(whileRunning(client, 60_000, session))
 */
export function whileRunning<C extends pg.ClientBase>(client: C, timeoutMs: number, session: WatchedSession): C {
  const query = (...args: unknown[]) => {
    const [first] = args;
    const send = () => (client.query as (...a: unknown[]) => unknown)(...args);
    if (typeof (first as { submit?: unknown } | undefined)?.submit === 'function') return send();
    const text = typeof first === 'string' ? first : (first as { text?: unknown } | undefined)?.text;
    const what = (typeof text === 'string' ? leadingWords(text) : undefined) ?? 'a statement';
    return answeredWhileRunning(client, timeoutMs, what, session, send as () => Promise<unknown>);
  };
  return new Proxy(client, {
    get(target, property) {
      if (property === 'query') return query;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

// The command's backend's state in pg_stat_activity (its role sees its own backends there),
// from a connection of its own; undefined once the backend is gone.
async function sessionState(url: string, pid: number, applicationName: string): Promise<string | undefined> {
  return withClient(
    url,
    async (client) =>
      (
        await answeredWithin(client, roundTripDeadlineMs, 'the look at its session', () =>
          client.query<{ state: string | null }>('SELECT state FROM pg_catalog.pg_stat_activity WHERE pid = $1', [pid]),
        )
      ).rows[0]?.state ?? undefined,
    applicationName,
  );
}
