import { answeredWithin, roundTripDeadlineMs } from './answer-deadline.js';
import { withClient } from './with-client.js';

/**
 * Ends, from a connection of its own named `applicationName`, the server sessions that `which`
 * (a condition on `pg_catalog.pg_stat_activity`'s columns, with `params`) picks out: a
 * command's own session that its stopped program, or a path that went silent, left holding
 * locks (a role may end its own sessions). Waits up to 5 s for each to go. Says what was left,
 * naming `pid` where the caller knows it, or undefined when none was (or none was found).
 *
 * @example await endServerSessions({ url, which: 'pid = $1', params: [pid], applicationName: 'kennwilliamson-restore-stop', what: "ending the restore's session" })
 */
export async function endServerSessions(options: {
  url: string;
  which: string;
  params: unknown[];
  applicationName: string;
  what: string;
  pid?: number | undefined;
}): Promise<string | undefined> {
  const { url, which, params, applicationName, what, pid } = options;
  try {
    const { rows } = await withClient(
      url,
      (other) =>
        answeredWithin(other, 5_000 + roundTripDeadlineMs, what, () =>
          other.query<{ pid: number; ended: boolean }>(
            `SELECT pid, pg_catalog.pg_terminate_backend(pid, 5000) AS ended FROM pg_catalog.pg_stat_activity WHERE ${which}`,
            params,
          ),
        ),
      applicationName,
    );
    const left = rows.filter((row) => !row.ended).map((row) => row.pid);
    return left.length === 0 ? undefined : `its server session (pid ${left.join(', ')}) had not ended 5 s after it was told to`;
  } catch (error) {
    return `its server session${pid === undefined ? '' : ` (pid ${pid})`} could not be ended (${(error as Error).message})`;
  }
}
