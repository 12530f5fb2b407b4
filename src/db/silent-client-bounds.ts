/**
 * Server-side settings that end a session whose client went silent (its host lost, or cut off
 * by a partition that drops packets without a word), and with it the session's locks and
 * snapshot. The server's own TCP keepalive is off until two hours of silence by default: a
 * migration's, a restore's or a backup's session would keep every table it locked that long,
 * and each service query on them would queue behind it. With these, the server probes after
 * 5 s of silence, every second, and gives up after five unanswered probes (about 10 s); a
 * session that waits (for a lock, for a long statement) checks its connection every second,
 * so it ends too instead of waiting out the lock. Any role may set them (PostgreSQL 14 on).
 */
export const silentClientSettings: ReadonlyArray<readonly [string, string]> = [
  ['tcp_keepalives_idle', '5'],
  ['tcp_keepalives_interval', '1'],
  ['tcp_keepalives_count', '5'],
  ['client_connection_check_interval', '1000'],
];

/**
 * The settings for the current transaction (`SET LOCAL`, so nothing stays on the session) of
 * a client that reads every answer at once (the migrator, a restore), with data the server
 * sent left unacknowledged for 10 s ending the session too (`tcp_user_timeout`), rather than
 * after the kernel's quarter of an hour of retransmissions, during which keepalive is silent.
 * They hold while the transaction does: PostgreSQL undoes `SET LOCAL` as soon as a statement
 * fails, before the client's `ROLLBACK`, so the error of a lock wait that ran out, never
 * acknowledged by a client gone silent, keeps the session for the quarter of an hour (seen:
 * 168 bytes unacknowledged, 'idle in transaction (aborted)', after 24 s). That session holds
 * no lock and no snapshot any more, only its connection slot.
 *
 * @example await client.query(`BEGIN; ${silentClientBoundsLocal}`)
 */
// A client that reads every answer at once can bear a limit on unacknowledged data too.
const readerSettings = [...silentClientSettings, ['tcp_user_timeout', '10000'] as const];

export const silentClientBoundsLocal = readerSettings.map(([name, value]) => `SET LOCAL ${name} = ${value};`).join(' ');

/**
 * The same as {@link silentClientBoundsLocal} for a whole session (`SET`), for work that runs
 * outside a transaction (a migration file without one); {@link silentClientBoundsReset} puts
 * the session back.
 *
 * @example await client.query(silentClientBoundsSession); try { … } finally { await client.query(silentClientBoundsReset) }
 */
export const silentClientBoundsSession = readerSettings.map(([name, value]) => `SET ${name} = ${value};`).join(' ');

/** Undoes {@link silentClientBoundsSession}. */
export const silentClientBoundsReset = readerSettings.map(([name]) => `RESET ${name};`).join(' ');

/**
 * The same settings as libpq's `PGOPTIONS` (`-c name=value …`), for a PostgreSQL program's
 * session (pg_dump), which sends them at login. Without `tcp_user_timeout`: Linux applies it to
 * a receiver that advertises no room as well, and pg_dump stops reading while its output waits
 * for a slow disk; with it set, it would also replace keepalive's count (it ends a silent idle
 * session only after the timeout). A partition while the server sends is then the kernel's
 * quarter of an hour.
 *
 * @example spawn('pg_dump', args, { env: { ...process.env, PGOPTIONS: silentClientBoundsOptions } })
 */
export const silentClientBoundsOptions = silentClientSettings.map(([name, value]) => `-c ${name}=${value}`).join(' ');
