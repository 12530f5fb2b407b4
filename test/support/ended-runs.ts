import type pg from 'pg';
import { openClient, withClient } from '../../src/db/with-client.js';
import { databaseUrlWith } from '../../src/provisioning/database-admin.js';

// Every database and the owner role a run makes on its server start with the run's prefix,
// `kw_<pid>_<start time in base 36>_`. On a server of the run's own (embedded, a container)
// they go with the server; on an existing one (TEST_DATABASE_URL) the run's teardown drops
// them, and a run that was killed never gets there. Whether a run still runs cannot be told
// from its pid there (the server may serve other machines' runs), so the server tells: a run
// holds an advisory lock named after its prefix for as long as it runs, on a connection of its
// own, and the lock goes with that connection when the run's process dies.
const prefixPattern = /^kw_\d+_[0-9a-z]+_/;
// Advisory locks are per database: the holder and the sweeper meet in `postgres`.
const meetingDatabase = 'postgres';

/** A new run's prefix for the databases and roles it makes (see {@link holdRunPrefix}). */
export function newRunPrefix(): string {
  return `kw_${process.pid}_${Date.now().toString(36)}_`;
}

/** A run's hold on its prefix; ending it lets {@link dropEndedRuns} drop what the prefix names. */
export interface RunPrefixHold {
  release: () => Promise<void>;
}

/**
 * Marks the run of `prefix` as running on the server of `serverUrl` (a superuser's or the
 * database owner's URL), until `release()` or until the process ends: before the run makes
 * anything there, so that nothing of a running run is ever without its mark.
 *
 * @example
 * const hold = await holdRunPrefix(server.url, prefix) // … the run … await hold.release()
 */
export async function holdRunPrefix(serverUrl: string, prefix: string): Promise<RunPrefixHold> {
  const client = await openClient(databaseUrlWith(serverUrl, meetingDatabase), 'kennwilliamson-test-run');
  // The server may stop first (an embedded one at the end of a run); a lost hold is the
  // sweeper's to notice, not a crash of this process.
  client.on('error', () => undefined);
  try {
    if (!(await prefixLock(client, 'pg_try_advisory_lock', prefix))) throw new Error(`another run holds the prefix ${prefix}`);
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
  return { release: () => client.end().catch(() => undefined) };
}

/**
 * Drops the databases and roles of every run on the server of `serverUrl` whose prefix no
 * session holds (see {@link holdRunPrefix}): the leftovers of runs that were killed. Each
 * prefix is taken while its things are dropped, so two runs starting together do not both
 * drop them. Returns the prefixes it dropped.
 *
 * @example
 * const dropped = await dropEndedRuns(server.url) // ['kw_4242_mf3k2a1b_']
 */
export async function dropEndedRuns(serverUrl: string): Promise<string[]> {
  return withClient(
    databaseUrlWith(serverUrl, meetingDatabase),
    async (client) => {
      const { rows } = await client.query<{ name: string; kind: 'database' | 'role' }>(
        `SELECT datname AS name, 'database' AS kind FROM pg_database WHERE datname ~ $1
         UNION ALL SELECT rolname, 'role' FROM pg_roles WHERE rolname ~ $1`,
        [prefixPattern.source],
      );
      const dropped: string[] = [];
      for (const prefix of new Set(rows.map((row) => prefixPattern.exec(row.name)![0]))) {
        if (!(await prefixLock(client, 'pg_try_advisory_lock', prefix))) continue;
        try {
          const of = (kind: string) => rows.filter((row) => row.kind === kind && row.name.startsWith(prefix)).map((row) => client.escapeIdentifier(row.name));
          // The roles owned objects in those databases only, which go with them.
          for (const database of of('database')) await client.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
          for (const role of of('role')) await client.query(`DROP ROLE IF EXISTS ${role}`);
          dropped.push(prefix);
        } catch (error) {
          // Clearing away is a courtesy: what cannot go (another account's database, a role
          // with grants elsewhere) is said, and never stops the run.
          console.warn(`[test run] could not drop what the ended run ${prefix} left: ${(error as Error).message}`);
        } finally {
          await prefixLock(client, 'pg_advisory_unlock', prefix);
        }
      }
      return dropped;
    },
    'kennwilliamson-test-run',
  );
}

// Session-level, on purpose: the mark must last as long as the run's connection (test
// scaffolding, never the library's pooled path).
async function prefixLock(client: pg.Client, action: 'pg_try_advisory_lock' | 'pg_advisory_unlock', prefix: string): Promise<boolean> {
  const { rows } = await client.query<{ done: boolean }>(`SELECT ${action}(hashtextextended($1, 0)) AS done`, [prefix]);
  return rows[0]!.done;
}
