import type * as pg from 'pg';

/** The role attributes that reach beyond a database's rows, as `ALTER ROLE` spells them. */
const powerfulAttributes = ['SUPERUSER', 'CREATEROLE', 'CREATEDB', 'REPLICATION', 'BYPASSRLS'] as const;

/** One power a role holds beyond its own database, and the statement that takes it away. */
export interface RolePower {
  /** In words, after the role's name: `is a superuser`, `has CREATEDB`, `is a member of pg_signal_backend, which …`. */
  description: string;
  /**
   * The role that carries the power: the role itself (for its own attributes), or the role
   * it is a member of (a predefined role, or one with attributes).
   */
  carrier: string;
  /** `ALTER ROLE … NOCREATEDB`, or `REVOKE <the role it is directly a member of> FROM <role>`. */
  fix: string;
}

// What some predefined roles let their members do, in words; any other one (and those a
// later PostgreSQL adds) is "a predefined role", which is reason enough.
const predefinedPowers: Record<string, string> = {
  pg_execute_server_program: 'which runs programs on the server',
  pg_read_server_files: 'which reads or writes files on the server',
  pg_write_server_files: 'which reads or writes files on the server',
  pg_read_all_data: 'which reads every table of every database',
  pg_write_all_data: 'which writes every table of every database',
  pg_signal_backend: "which cancels and terminates other sessions, the services' among them",
  pg_create_subscription: 'which opens connections to other servers',
  pg_checkpoint: 'which runs CHECKPOINT',
  pg_maintain: 'which runs VACUUM, ANALYZE, REINDEX and LOCK on every table',
  pg_use_reserved_connections: 'which takes the connections reserved for administrators',
};

// The attributes of a role, as ALTER ROLE spells them.
interface AttributeRow {
  rolsuper: boolean;
  rolcreaterole: boolean;
  rolcreatedb: boolean;
  rolreplication: boolean;
  rolbypassrls: boolean;
}

const attributesOf = (row: AttributeRow) =>
  [
    row.rolsuper && 'SUPERUSER',
    row.rolcreaterole && 'CREATEROLE',
    row.rolcreatedb && 'CREATEDB',
    row.rolreplication && 'REPLICATION',
    row.rolbypassrls && 'BYPASSRLS',
  ].filter((attribute): attribute is PowerfulAttribute => Boolean(attribute));

// The role's own attributes, and every role it is a member of (directly, or through other
// roles, whether it inherits their privileges or may only SET ROLE to them, however long the
// chain) with a role it is directly a member of on a way there. UNION, not UNION ALL: each
// (role, via) pair is reached once, so the walk ends (PostgreSQL forbids membership cycles
// anyway) and a diamond of memberships does not multiply it. The predefined roles are the server's
// own (object ids below FirstNormalObjectId, names starting pg_; no other role may be named
// so), asked of the server so that those of a newer PostgreSQL count too. pg_database_owner
// is the database's owner, which the owner is by design.
const powersQuery = `
  WITH RECURSIVE me AS (SELECT r.oid, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls
                          FROM pg_catalog.pg_roles r WHERE r.rolname = $1),
  reached(roleid, via) AS (
    SELECT m.roleid, m.roleid FROM pg_catalog.pg_auth_members m JOIN me ON m.member = me.oid
    UNION
    SELECT m.roleid, reached.via FROM pg_catalog.pg_auth_members m JOIN reached ON m.member = reached.roleid
  ),
  nearest AS (
    SELECT DISTINCT ON (reached.roleid) reached.roleid, reached.via FROM reached ORDER BY reached.roleid, reached.via
  )
  SELECT r.rolname AS name, v.rolname AS via, r.oid < 16384 AND r.rolname ~ '^pg_' AS predefined,
         r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls
    FROM nearest JOIN pg_catalog.pg_roles r ON r.oid = nearest.roleid JOIN pg_catalog.pg_roles v ON v.oid = nearest.via
   WHERE (r.oid < 16384 AND r.rolname ~ '^pg_' AND r.rolname <> 'pg_database_owner')
      OR r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
   ORDER BY r.rolname`;

/** An attribute of a role that reaches beyond its database's rows, as `ALTER ROLE` spells it. */
export type PowerfulAttribute = (typeof powerfulAttributes)[number];

/**
 * The role's own attributes that reach beyond its database's rows (SUPERUSER, CREATEROLE,
 * CREATEDB, REPLICATION, BYPASSRLS; `[]` for a plain role) and whether it may log in, or
 * `undefined` when there is no such role. Its memberships are {@link rolePowers}'.
 *
 * @example
 * await roleAttributes(client, 'kennwilliamson') // { powerful: [], login: true }
 */
export async function roleAttributes(client: pg.ClientBase, role: string): Promise<{ powerful: PowerfulAttribute[]; login: boolean } | undefined> {
  const { rows } = await client.query<AttributeRow & { rolcanlogin: boolean }>(
    'SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1',
    [role],
  );
  return rows[0] && { powerful: attributesOf(rows[0]), login: rows[0].rolcanlogin };
}

/**
 * Every power a role holds beyond its own database's rows, with the statement that takes
 * each away, or `[]` when it has none: it is a superuser, or has CREATEROLE (on PostgreSQL 15
 * and older as good as superuser), CREATEDB, REPLICATION or BYPASSRLS; or it is a member
 * (directly, or through other roles, inherited or by `SET ROLE`) of any predefined role but
 * `pg_database_owner` (`pg_execute_server_program`, `pg_read_server_files`,
 * `pg_signal_backend`, `pg_create_subscription`, `pg_read_all_data` … whichever the server
 * has), or of a role with one of those attributes. The one check for both the role that
 * restores a backup (any function in it, a CHECK constraint's or a default's, runs with these
 * powers, and `RESET ROLE` undoes a `SET ROLE`) and the application role (which must have
 * rows only).
 *
 * @example
 * await rolePowers(client, 'kennwilliamson') // [] for the owner set-up makes
 * await rolePowers(client, 'kw_app')
 * // [{ description: 'is a member of pg_signal_backend, which cancels and terminates other sessions, …',
 * //    carrier: 'pg_signal_backend', fix: 'REVOKE pg_signal_backend FROM kw_app' }]
 */
export async function rolePowers(client: pg.ClientBase, role: string): Promise<RolePower[]> {
  const attributes = (await roleAttributes(client, role))?.powerful;
  if (attributes === undefined) return [];
  // A superuser is a member of every role: the one fact says it all.
  if (attributes.includes('SUPERUSER')) return [{ description: 'is a superuser', carrier: role, fix: `ALTER ROLE ${client.escapeIdentifier(role)} NOSUPERUSER` }];
  const powers: RolePower[] = [];
  if (attributes.length > 0) {
    powers.push({
      description: `has ${attributes.join(', ')}`,
      carrier: role,
      fix: `ALTER ROLE ${client.escapeIdentifier(role)} ${attributes.map((attribute) => `NO${attribute}`).join(' ')}`,
    });
  }
  const { rows } = await client.query<AttributeRow & { name: string; via: string; predefined: boolean }>(powersQuery, [role]);
  for (const row of rows) {
    const what = row.predefined
      ? (predefinedPowers[row.name] ?? 'a predefined role, whose powers reach beyond this database')
      : `which has ${attributesOf(row).join(', ')}`;
    powers.push({
      description: `is a member of ${row.name}${row.via === row.name ? '' : ` (through ${row.via})`}, ${what}`,
      carrier: row.name,
      fix: `REVOKE ${client.escapeIdentifier(row.via)} FROM ${client.escapeIdentifier(role)}`,
    });
  }
  return powers;
}

/**
 * Powers as a message says them, after the role's name and "it":
 * `'is a superuser; it has CREATEDB'`.
 *
 * @example
 * `role 'kenn' ${describePowers(await rolePowers(client, 'kenn'))}`
 */
export function describePowers(powers: RolePower[]): string {
  return powers.map((power) => power.description).join('; it ');
}

/**
 * The statements that take powers away, each ended by `;`, as a message gives them:
 * `'ALTER ROLE kenn NOCREATEDB; REVOKE pg_read_all_data FROM kenn;'`.
 *
 * @example
 * `take them away: ${powerFixes(await rolePowers(client, 'kenn'))}`
 */
export function powerFixes(powers: RolePower[]): string {
  return powers.map((power) => `${power.fix};`).join(' ');
}

/**
 * {@link rolePowers}, in words only: `['is a superuser']`, `['has CREATEDB', 'is a member of
 * pg_read_all_data, which reads every table of every database']`, or `[]`.
 *
 * @example
 * await powersBeyondDatabase(client, 'postgres') // ['is a superuser']
 */
export async function powersBeyondDatabase(client: pg.ClientBase, role: string): Promise<string[]> {
  return (await rolePowers(client, role)).map((power) => power.description);
}
