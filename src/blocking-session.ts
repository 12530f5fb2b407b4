/** A session that blocked a migration's statement, as `pg_stat_activity` showed it. */
export interface BlockingSession {
  pid: number;
  applicationName: string;
  /** `active`, `idle in transaction` …; for a prepared transaction (`pid` 0), `prepared transaction 'gid' of role r`. */
  state: string;
  /** When its transaction began. */
  xactStart?: Date | undefined;
  /**
   * The shape of its current or last statement, never its data: constants replaced by `$1`,
   * `$2` …, comments dropped, whitespace collapsed, cut at 80 characters
   * (`UPDATE users SET password_hash = $1 WHERE email = $2`). Only its first keyword
   * (`UPDATE …`) when the text could not be parsed (`track_activity_query_size` cuts long
   * statements short); empty when not visible to the migrating role.
   */
  query: string;
}

/**
 * The one wording of who blocks a migration, for `MigrationBlockedError`'s message and for
 * each attempt reported on stderr.
 *
 * @example
 * describeBlockingSessions([{ pid: 4242, applicationName: 'psql', state: 'idle in transaction', query: 'UPDATE users SET name = $1' }])
 * // "blocked by pid 4242 (application 'psql', idle in transaction, query 'UPDATE users SET name = $1')"
 */
export function describeBlockingSessions(blockers: readonly BlockingSession[]): string {
  if (blockers.length === 0) return 'no blocking session seen (it ended, or is not visible to this role)';
  return `blocked by ${blockers
    .map((b) =>
      // pid 0: a prepared transaction, which no session holds.
      b.pid === 0
        ? `a ${b.state}${b.xactStart ? ` (prepared at ${b.xactStart.toISOString()})` : ''}, which never ends by itself: COMMIT PREPARED or ROLLBACK PREPARED it`
        : `pid ${b.pid} (application '${b.applicationName}', ${b.state}` +
          `${b.xactStart ? `, transaction since ${b.xactStart.toISOString()}` : ''}${b.query ? `, query '${b.query}'` : ''})`,
    )
    .join('; ')}`;
}
