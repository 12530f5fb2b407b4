import { performance } from 'node:perf_hooks';
import type * as pg from 'pg';
import { destroyConnection, eachQuery, roundTripDeadlineMs } from './answer-deadline.js';
import { type LookConnection, sessionLooks } from './session-looks.js';
import { ConnectionError } from '../errors.js';

/** Where a command's statements run (a restore's, a migration's): its session, looked at from a connection of its own. */
export interface WatchedSession {
  /** The command's URL, for the looks. */
  url: string;
  /** The command's backend, once known; without it nothing can be looked at, and a statement is waited for. */
  pid: number | undefined;
  /** The looks in flight, which the command may wait for before it returns. */
  looks: Set<Promise<unknown>>;
  /** The command's `application_name`; the looks' is it with `-watch`. */
  applicationName: string;
  /** A connection of the command's to look from, rather than one more for each look. */
  lookFrom?: LookConnection | undefined;
}

/**
 * Waits for `call`'s answer on `client` (a restore's or a migration's session) for as long as
 * the server runs the statement. Such a statement may run long (an index of a big table, the
 * deferred checks, a drop of many objects), so it gets no fixed deadline; but an answer that
 * never comes (a path that stalls while its kernel acknowledges, which TCP never tells) was
 * waited for without end, with the statement's tables (a restore: every table of public) or the
 * migration lock held. So, each `timeoutMs` without an answer, the session is looked at from
 * another connection (`pg_stat_activity`, as the login: `SET ROLE NONE`): running a statement,
 * it is given as long again; gone, or idle (in its transaction) for at least `timeoutMs` (at
 * most a round trip's deadline: PostgreSQL marks a session idle before its answer has drained
 * to the client), its answer was lost on the way, or its statement never arrived: the
 * connection is closed, which fails `call` with a retryable `ConnectionError` (`deadline`), and
 * the server rolls the transaction back. What the look cannot tell (a state this role may not
 * see, statistics turned off) is waited for; a look that fails counts as {@link SessionLooks}
 * says (one that cannot reach the server gives up at the second in a row, one the server refuses
 * a login at the tenth). (A backend that froze while it ran shows as running: that one is
 * waited for, as a long statement is.)
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
  const sent = performance.now();
  const answered = call();
  let settled = false;
  let timer: NodeJS.Timeout | undefined;
  const looks = sessionLooks(session.url, `${session.applicationName}-watch`, session.looks, session.lookFrom);
  const unanswered = new Promise<never>((_resolve, reject) => {
    const giveUp = (seen: string) => {
      const waited = Math.round((performance.now() - sent) / 100) / 10;
      const error = new ConnectionError('deadline', {
        detail: `no answer to ${what} for ${waited} s (looked at every ${timeoutMs / 1000} s), and ${seen}; the connection was closed`,
      });
      destroyConnection(client, error);
      reject(error);
    };
    const look = async () => {
      if (settled) return;
      const pid = session.pid;
      if (pid === undefined) {
        timer = setTimeout(() => void look(), timeoutMs);
        return;
      }
      let seen: SessionState;
      try {
        seen = await looks.look('the look at its session', (looking) => sessionState(looking, pid));
      } catch (error) {
        if (settled) return;
        if (looks.failed(error)) giveUp(`its session could not be looked at in pg_stat_activity, ${looks.failures()}`);
        else timer = setTimeout(() => void look(), timeoutMs);
        return;
      }
      looks.answered();
      if (settled) return;
      // Only a session seen idle for a while has nothing on its way: PostgreSQL marks it idle
      // before its answer has drained to the client (a large result through a slow path).
      // Anything else (running, a state this role may not see, statistics turned off) is waited for.
      const graceMs = Math.min(timeoutMs, roundTripDeadlineMs);
      if (seen === 'gone') giveUp('its session is gone from pg_stat_activity');
      else if (seen !== undefined && idleStates.has(seen.state)) {
        if (seen.idleMs >= graceMs) giveUp(`its session runs no statement (pg_stat_activity: ${seen.state})`);
        // Idle only a moment: looked at again once the grace is over, not a whole bound later.
        else timer = setTimeout(() => void look(), Math.max(1, Math.ceil(graceMs - seen.idleMs)));
      } else timer = setTimeout(() => void look(), timeoutMs);
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
  return eachQuery(client, (what, send) => answeredWhileRunning(client, timeoutMs, what, session, send));
}

// What a look may see of a session: its state, and for how long it has been in it; undefined
// where this role may not see it, or statistics are off (state 'disabled', no state_change);
// 'gone' once the backend has ended.
type SessionState = { state: string; idleMs: number } | undefined | 'gone';

// The states of a session that runs no statement.
const idleStates = new Set(['idle', 'idle in transaction', 'idle in transaction (aborted)']);

// The command's backend's state in pg_stat_activity, on a connection of the looks'.
async function sessionState(client: pg.Client, pid: number): Promise<SessionState> {
  const { rows } = await client.query<{ state: string | null; idle_ms: number | null }>(
    `SELECT state, (extract(epoch FROM pg_catalog.clock_timestamp() - state_change) * 1000)::float8 AS idle_ms
       FROM pg_catalog.pg_stat_activity WHERE pid = $1`,
    [pid],
  );
  const row = rows[0];
  if (row === undefined) return 'gone';
  return row.state === null || row.idle_ms === null ? undefined : { state: row.state, idleMs: row.idle_ms };
}
