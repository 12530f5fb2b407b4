import type * as pg from 'pg';
import type { LibraryClient } from './library-client.js';
import type { PreparedStatementsMode } from './db-config.js';
import type { ConnectionRoute } from './inspect-connection.js';
import { adoptNamedStatement, forgetNamedStatements, hasParsedStatement } from './named-statement.js';
import { type PoolerVerdict, probePooler } from './pooler-probe.js';
import { statementNameOf } from './statement-names.js';

export type { ConnectionRoute } from './inspect-connection.js';

/** Which way a pool sends the statements built with prepareQuery, and why (see `poolOf(db).statementNaming()`). */
export interface StatementNamingReport {
  /** `DB_PREPARED_STATEMENTS`. */
  mode: PreparedStatementsMode;
  /** Whether they are sent as named (server-side prepared) statements now. */
  named: boolean;
  /** Where the pool's connections lead, as the last one checked said; `unknown` when none could tell. */
  route: ConnectionRoute | 'unknown';
  /** Why, in words for a log line. */
  reason: string;
}

/** How to send one registered statement on a connection: its name and text, and the names it replaces. */
export interface NamedForm {
  name: string;
  text: string;
  /** Earlier names of the same statement: closed on a connection that holds them, before the Parse. */
  replaces: readonly string[] | undefined;
  /** The SQL prepareQuery registered, and how many times its plan went stale. */
  sql: string;
  generation: number;
}

/** The pool's policy for named statements; created by the tuned pool, used by createDb's statement path. */
export interface StatementNaming {
  /** Told where a new connection leads (the pool asks each one, see inspectConnection). */
  learnRoute(client: pg.ClientBase, route: ConnectionRoute): void;
  /** How to send `sqlText` on this connection now; undefined: unnamed. */
  formOf(client: pg.ClientBase, sqlText: string): NamedForm | undefined;
  /**
   * After a named statement failed: repairs what the error says went wrong (the connection's
   * record, the statement's name, naming through a pooler), for errors that come before the
   * statement runs (26000, 42P05, and 0A000 on a statement the connection had prepared). Says
   * `retry` outside a transaction (the call may be sent again), `abort` inside one (repaired,
   * but the transaction is aborted), undefined for any other error.
   */
  recover(client: pg.ClientBase, error: unknown, form: NamedForm, inTransaction: boolean): 'retry' | 'abort' | undefined;
  report(connect: () => Promise<pg.PoolClient>): Promise<StatementNamingReport>;
  /** Ends a probe under way (the pool is closing). */
  close(): Promise<void>;
}

export interface StatementNamingOptions {
  mode: PreparedStatementsMode;
  /** A client of the pool's server and settings, outside the pool: the probe's two connections. */
  openClient: () => LibraryClient;
  onError: (message: string, error: unknown) => void;
}

// The probe of a pooler: two connections of its own, a few round trips per attempt.
const probeBudgetMs = 5_000;

/**
 * Decides which statements go out named, per connection:
 * - `off`: none.
 * - Every new connection first says where it leads (the pool asks, see inspectConnection):
 *   PostgreSQL announces its server process id at login, and `pg_backend_pid()` answers with
 *   the same one; a pooler makes up the id it announces. On a direct connection statements
 *   are named; on one that has not answered yet (the pool waits for the answer a bounded
 *   time), unnamed.
 * - Through a pooler, `on` names them; `auto` names them once the pooler passed the probe
 *   (see probePooler, run once per pool in the background; meanwhile statements go unnamed,
 *   so no caller waits for it and none fails by it).
 * - A named statement that fails before it runs is repaired where it failed: after `DISCARD ALL`
 *   or `DEALLOCATE ALL` (26000) on a direct connection, that connection forgets its statements
 *   and prepares them again; a statement whose result type a migration changed (0A000, "cached
 *   plan must not change result type") is prepared again under a new name and text, by every
 *   connection of the pool, so that a pooler, which shares prepared statements by text, cannot
 *   hand back the outdated one. A 26000 or 42P05 behind a pooler is evidence that it loses
 *   statements: naming through it stops for the pool's life, told once.
 */
export function createStatementNaming(options: StatementNamingOptions): StatementNaming {
  const { mode, openClient, onError } = options;
  const routes = new WeakMap<pg.ClientBase, ConnectionRoute>();
  let lastRoute: ConnectionRoute | undefined;
  // What the pool knows of the pooler (only consulted for connections that are not direct).
  let pooler: { verdict: PoolerVerdict | 'unprobed' | 'probing' | 'assumed'; reason: string } =
    mode === 'on'
      ? { verdict: 'assumed', reason: 'DB_PREPARED_STATEMENTS=on' }
      : { verdict: 'unprobed', reason: 'no connection through a pooler was opened yet' };
  let probe: Promise<void> | undefined;
  const ending = new AbortController();
  // The form each registered statement is sent in; a new one replaces it after a 0A000.
  const forms = new Map<string, NamedForm>();

  const poolerKeeps = () => pooler.verdict === 'keeps' || pooler.verdict === 'assumed';
  const names = (client: pg.ClientBase) => mode !== 'off' && (routes.get(client) === 'direct' || poolerKeeps());

  const startProbe = () => {
    if (probe !== undefined || ending.signal.aborted) return;
    pooler = { verdict: 'probing', reason: 'the probe of the pooler is under way' };
    probe = probePooler(openClient, probeBudgetMs, ending.signal).then((result) => {
      if (pooler.verdict !== 'probing') return;
      pooler = result;
      if (result.verdict === 'refuses-transactions' && !ending.signal.aborted) {
        onError(
          'the pooler refuses every transaction: it runs in statement pooling mode (PgBouncer pool_mode = statement), ' +
            'so every call that opens one fails with ConfigError (not retryable); set pool_mode = transaction (or session)',
          result.error,
        );
      }
      if (result.verdict === 'undecided' && !ending.signal.aborted) {
        onError(
          'could not tell whether the pooler keeps named statements, so they are not used through it ' +
            '(DB_PREPARED_STATEMENTS=on names them: PgBouncer 1.21+ with max_prepared_statements > 0)',
          new Error(result.reason),
        );
      }
    });
  };

  const poolerLost = (error: unknown, what: string) => {
    if (!poolerKeeps()) return;
    pooler = { verdict: 'loses', reason: `${what} through the pooler, so statements are no longer named through it` };
    onError(`${what}: a pooler in between loses them; statements are no longer named`, error);
  };

  // A new name and text for a statement whose plan went stale: `/* … */` changes the text,
  // not the statement, and a pooler that shares statements by text then prepares it afresh.
  // Once per generation: the connections that meet the stale one next only switch to it.
  const renew = (stale: NamedForm) => {
    const base = statementNameOf(stale.sql);
    if (base === undefined || forms.get(stale.sql) !== stale) return;
    const generation = stale.generation + 1;
    forms.set(stale.sql, {
      name: `${base}_${generation}`,
      text: `${stale.sql} /* kw: prepared again (${generation}) */`,
      replaces: [base, ...Array.from({ length: generation - 1 }, (_, i) => `${base}_${i + 1}`)],
      sql: stale.sql,
      generation,
    });
  };

  return {
    learnRoute: (client, route) => {
      routes.set(client, route);
      lastRoute = route;
      if (route === 'pooler' && mode === 'auto') startProbe();
    },

    formOf: (client, sqlText) => {
      if (!names(client)) return undefined;
      let form = forms.get(sqlText);
      if (form === undefined) {
        const name = statementNameOf(sqlText);
        if (name === undefined) return undefined;
        forms.set(sqlText, (form = { name, text: sqlText, replaces: undefined, sql: sqlText, generation: 0 }));
      }
      return form;
    },

    recover: (client, error, form, inTransaction) => {
      switch ((error as { code?: unknown } | null)?.code) {
        case '0A000':
          // At Parse, it is a statement PostgreSQL does not support; after it, an outdated plan.
          if (!hasParsedStatement(client, form.name)) return undefined;
          renew(form);
          break;
        case '26000':
          forgetNamedStatements(client);
          if (routes.get(client) !== 'direct') poolerLost(error, 'the server was missing a named statement (SQLSTATE 26000)');
          break;
        case '42P05':
          // Directly, it is ours (names come from the text): bind it from now on.
          if (routes.get(client) === 'direct') adoptNamedStatement(client, form.name, form.text);
          else poolerLost(error, 'the server already had a named statement of another client (SQLSTATE 42P05)');
          break;
        default:
          return undefined;
      }
      return inTransaction ? 'abort' : 'retry';
    },

    report: async (connect) => {
      if (mode !== 'off' && lastRoute === undefined) (await connect()).release();
      await probe;
      const route = lastRoute ?? 'unknown';
      if (mode === 'off') return { mode, named: false, route, reason: 'DB_PREPARED_STATEMENTS=off' };
      if (route === 'direct') {
        return { mode, named: true, route, reason: 'the connections reach PostgreSQL itself (no pooler in between)' };
      }
      if (route === 'unknown' && !poolerKeeps()) {
        return { mode, named: false, route, reason: 'no connection said in time where it leads: statements are sent unnamed on those' };
      }
      return { mode, named: poolerKeeps(), route, reason: pooler.reason };
    },

    close: async () => {
      ending.abort();
      await probe;
    },
  };
}
