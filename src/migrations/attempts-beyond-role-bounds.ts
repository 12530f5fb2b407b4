import type * as pg from 'pg';
import { formatDuration, parseDuration } from '../db/duration.js';
import { lockWaitOf, type LockWaitPolicy } from './lock-retries.js';
import type { MigrationScript } from './migration-script.js';

/** A role whose sessions in this database start with a `lock_timeout` of their own. */
export interface RoleLockTimeout {
  role: string;
  ms: number;
}

// ALTER ROLE … IN DATABASE … SET lock_timeout (what setup --admin writes for the application
// role from DB_LOCK_TIMEOUT), and ALTER ROLE … SET for every database; the database's own
// ALTER DATABASE … SET applies to every role.
const roleLockTimeoutsQuery = `
  SELECT coalesce(r.rolname, '') AS role, pg_catalog.substr(c.setting, 14) AS value
    FROM pg_catalog.pg_db_role_setting s
    LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
    CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) AS c(setting)
   WHERE s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
     AND c.setting LIKE 'lock_timeout=%'`;

/**
 * The `lock_timeout` the sessions of each role start with in this database (0, no bound, left
 * out), shortest first; `''` for the database's own, which every role gets. A value the
 * library cannot read is left out too: this only feeds a warning.
 *
 * @example await roleLockTimeouts(client) // [{ role: 'kennwilliamson_app', ms: 2000 }]
 */
export async function roleLockTimeouts(client: pg.ClientBase): Promise<RoleLockTimeout[]> {
  const { rows } = await client.query<{ role: string; value: string }>(roleLockTimeoutsQuery);
  const bounds: RoleLockTimeout[] = [];
  for (const { role, value } of rows) {
    try {
      bounds.push({ role, ms: parseDuration('lock_timeout', value) });
    } catch {
      // 0 (no bound), or a spelling of PostgreSQL's the library does not read.
    }
  }
  return bounds.sort((a, b) => a.ms - b.ms);
}

/**
 * One line for each migration whose attempts may wait longer for their locks than a role's
 * `lock_timeout` here (the services' `DB_LOCK_TIMEOUT`, which `setup --admin` gives the
 * application role): while one of its attempts waits, that role's queries of the tables it
 * locks queue behind it and fail. Said before anything is applied (and by `--dry-run`); it
 * stops nothing: a file's `-- migrate:lock-wait attempt=` may mean it, in a maintenance window.
 *
 * @example
 * attemptsBeyondRoleBounds(scripts, defaultLockWait, [{ role: 'kennwilliamson_app', ms: 2000 }])
 * // ["20990101_x.up.sql: each attempt may wait up to 30s for its locks (its -- migrate:lock-wait header), longer than …"]
 */
export function attemptsBeyondRoleBounds(scripts: readonly MigrationScript[], run: LockWaitPolicy, bounds: readonly RoleLockTimeout[]): string[] {
  const shortest = bounds[0];
  if (shortest === undefined) return [];
  return scripts.flatMap((script) => {
    const policy = lockWaitOf(run, script.lockWait);
    if (policy.attemptMs <= shortest.ms) return [];
    const whose = shortest.role === '' ? "this database's lock_timeout" : `the lock_timeout of role '${shortest.role}' in this database`;
    return [
      `${script.file}: each attempt may wait up to ${formatDuration(policy.attemptMs)} for its locks` +
        `${script.lockWait?.attemptMs !== undefined ? ' (its -- migrate:lock-wait header)' : ''}, longer than ${whose} ` +
        `(${formatDuration(shortest.ms)}): while one waits, that role's queries of the tables it locks fail. Keep attempt below it, ` +
        'or apply it with the services stopped or expecting it',
    ];
  });
}
