import type pg from 'pg';

/**
 * The predefined roles whose members reach the server's machine: running programs
 * (`COPY … TO PROGRAM`) and reading or writing its files (`COPY … FROM '/etc/…'`,
 * `pg_read_file`). A role that restores a backup must be a member of none of them.
 */
export const serverReachingRoles = ['pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files'] as const;

/**
 * What a role can do beyond its own databases, each said in words, or `[]` when nothing:
 * it is a superuser; it is a member (directly, or through other roles, inherited or by
 * `SET ROLE`) of a role that runs programs or reads and writes files on the server
 * ({@link serverReachingRoles}); or it is, or is a member of, a role with SUPERUSER,
 * CREATEROLE (which on PostgreSQL 15 and older can grant itself any of these) or BYPASSRLS.
 * Such a role must never run SQL that came from outside: any function in it (a CHECK
 * constraint's, a default's, an index expression's) runs with these powers, and `RESET ROLE`
 * undoes a `SET ROLE` from inside such a function.
 *
 * @example
 * await powersBeyondDatabase(client, 'kennwilliamson') // [] for the owner set-up makes
 * await powersBeyondDatabase(client, 'postgres')       // ['is a superuser']
 */
export async function powersBeyondDatabase(client: pg.Client, role: string): Promise<string[]> {
  const { rows } = await client.query<{ rolname: string; rolsuper: boolean; rolcreaterole: boolean; rolbypassrls: boolean }>(
    `SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolbypassrls
       FROM pg_catalog.pg_roles r
      WHERE pg_catalog.pg_has_role($1, r.oid, 'MEMBER')
        AND (r.rolname = ANY ($2::text[]) OR r.rolsuper OR r.rolcreaterole OR r.rolbypassrls)
      ORDER BY r.rolname <> $1, r.rolname`,
    [role, serverReachingRoles],
  );
  const own = rows.find((row) => row.rolname === role);
  // A superuser is a member of every role: the one fact says it all.
  if (own?.rolsuper) return ['is a superuser'];
  const attributes = (row: (typeof rows)[number]) =>
    [row.rolsuper && 'SUPERUSER', row.rolcreaterole && 'CREATEROLE', row.rolbypassrls && 'BYPASSRLS'].filter(Boolean).join(', ');
  return rows.map((row) => {
    if (row.rolname === role) return `has ${attributes(row)}`;
    const what = (serverReachingRoles as readonly string[]).includes(row.rolname)
      ? row.rolname === 'pg_execute_server_program'
        ? 'which runs programs on the server'
        : 'which reads or writes files on the server'
      : `which has ${attributes(row)}`;
    return `is a member of ${row.rolname}, ${what}`;
  });
}
