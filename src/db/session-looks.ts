import type * as pg from 'pg';
import { answeredWithin, roundTripDeadlineMs } from './answer-deadline.js';
import { withClient } from './with-client.js';
import { ConnectionError } from '../errors.js';

/** The looks at a command's session (a restore's, a migration's), and what they came to. */
export interface SessionLooks {
  /**
   * Runs `look` on a connection of its own to `url`, as the login itself (`SET ROLE NONE`: a
   * login whose settings SET ROLE to the owner sees its own backends only so), under a round
   * trip's deadline, named `applicationName`. Kept in {@link SessionLooks.underWay} until it
   * settles, so that the command can wait for it before it returns.
   */
  look<T>(what: string, look: (client: pg.Client) => Promise<T>): Promise<T>;
  /** The looks under way. */
  readonly underWay: Set<Promise<unknown>>;
  /** A look answered: the failures in a row start again. */
  answered(): void;
  /**
   * A look failed: whether the session is to be given up on now. A look that cannot reach the
   * server (a silent path, the server gone) tells nothing, and the second in a row gives up; one
   * whose login the server refuses (too many connections, as while the services queue behind a
   * restore's locks; a role's CONNECTION LIMIT) says the server answers, and is waited for
   * longer, up to the tenth in a row, so that a healthy long statement is not given up on for
   * a moment without connections, and a lost one still is in the end.
   */
  failed(error: unknown): boolean;
  /** The failures in a row, said: `twice in a row (the last: its connection terminated)`. */
  failures(): string;
}

/**
 * A connection the looks may use instead of one of their own for each: a command's open
 * connection that does nothing else meanwhile (a migration run's blocker monitor), so that a
 * long statement's looks take no connection slot more than the command already has. `use`
 * opens it when needed, and one that failed is opened again at the next use.
 */
export interface LookConnection {
  use<T>(work: (client: pg.Client) => Promise<T>): Promise<T>;
}

const unreachableLimit = 2;
const refusedLimit = 10;

/**
 * The looks of one command at its own session, from connections of their own, or from
 * `connection`'s (see {@link SessionLooks}).
 *
 * @example
 * const looks = sessionLooks(url, 'kennwilliamson-restore')
 * const state = await looks.look('the look at its session', (client) => client.query('SELECT state FROM pg_catalog.pg_stat_activity WHERE pid = $1', [pid]))
 */
export function sessionLooks(url: string, applicationName: string, underWay: Set<Promise<unknown>> = new Set(), connection?: LookConnection): SessionLooks {
  let inARow = 0;
  let allRefused = true;
  let last = '';
  return {
    underWay,
    look: (what, look) => {
      const asLogin = (client: pg.Client) =>
        answeredWithin(client, roundTripDeadlineMs, what, async () => {
          await client.query('SET ROLE NONE');
          return look(client);
        });
      const looking = connection ? connection.use(asLogin) : withClient(url, asLogin, applicationName);
      underWay.add(looking);
      return looking.finally(() => underWay.delete(looking));
    },
    answered: () => {
      inARow = 0;
      allRefused = true;
    },
    failed: (error) => {
      inARow += 1;
      // Refused by the server itself: a SQLSTATE, which only an answering server sends.
      allRefused &&= error instanceof ConnectionError && /^[0-9A-Z]{5}$/.test(error.reason);
      last = error instanceof ConnectionError ? `its connection ${error.reason}` : (error as Error).message;
      return inARow >= (allRefused ? refusedLimit : unreachableLimit);
    },
    failures: () => `${inARow === 2 ? 'twice' : `${inARow} times`} in a row${allRefused ? ', the server refusing its login' : ''} (the last: ${last})`,
  };
}
