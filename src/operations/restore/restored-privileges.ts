import type * as pg from 'pg';
import { migrationsTable } from '../../migrations/migration-storage.js';
import { applicationPrivileges, onColumns } from '../../provisioning/application-privileges.js';
import type { BackupGrantees } from '../vetting/backup-statement-allow-list.js';

// What the application role may hold (applicationPrivileges), one row: $2 on the schema, $3
// on tables and views, $4 on their columns, $5 and $6 on the migrations record ($9) and its
// columns, $7 on sequences, $8 on routines, $10 on types.
const applicationPrivilegesRow = `
  application AS (
    SELECT $2::text[] AS schema, $3::text[] AS tables, $4::text[] AS table_columns, $5::text[] AS record, $6::text[] AS record_columns,
           $7::text[] AS sequences, $8::text[] AS routines, $9::text AS record_name, $10::text[] AS types
  )`;

// Every privilege on an object in public (the schema itself, relations and their columns,
// routines, types) that goes beyond what a restore leaves: the owner's own; PUBLIC's as
// PostgreSQL grants them (USAGE on the schema, EXECUTE on routines, USAGE on types); an
// application role's as the release step grants them (applicationPrivileges); and no grant
// options. Only objects whose owner the role restoring acts for (an extension a superuser
// created stays as it is).
const excessPrivilegesQuery = `
  WITH ${applicationPrivilegesRow},
  acl_objects AS (
    SELECT 'SCHEMA'::text AS kind, 'public'::text AS object, NULL::text AS columns, n.nspowner AS owner, n.nspacl AS acl,
           ARRAY['USAGE'] AS to_public, app.schema AS to_application, false AS view
      FROM pg_catalog.pg_namespace n, application app WHERE n.nspname = 'public'
    UNION ALL
    SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, pg_catalog.format('public.%I', c.relname), NULL, c.relowner, c.relacl,
           ARRAY[]::text[],
           CASE WHEN c.relkind = 'S' THEN app.sequences WHEN c.relname = app.record_name THEN app.record ELSE app.tables END, c.relkind = 'v'
      FROM pg_catalog.pg_class c, application app
     WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    UNION ALL
    SELECT 'TABLE', pg_catalog.format('public.%I', c.relname), pg_catalog.quote_ident(a.attname), c.relowner, a.attacl,
           ARRAY[]::text[], CASE WHEN c.relname = app.record_name THEN app.record_columns ELSE app.table_columns END, c.relkind = 'v'
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid, application app
     WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT 'ROUTINE', p.oid::pg_catalog.regprocedure::text, NULL, p.proowner, p.proacl, ARRAY['EXECUTE'], app.routines, false
      FROM pg_catalog.pg_proc p, application app WHERE p.pronamespace = 'public'::pg_catalog.regnamespace
    UNION ALL
    SELECT CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, pg_catalog.format('public.%I', t.typname), NULL, t.typowner, t.typacl,
           ARRAY['USAGE'], app.types, false
      FROM pg_catalog.pg_type t, application app WHERE t.typnamespace = 'public'::pg_catalog.regnamespace
  )
  SELECT o.kind, o.object, o.columns, a.privilege_type AS privilege,
         CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee,
         a.privilege_type = ANY (allowed.privileges) AS option_only
    FROM acl_objects o, application app, LATERAL pg_catalog.aclexplode(o.acl) a,
         LATERAL (SELECT pg_catalog.pg_get_userbyid(a.grantee) AS name) grantee,
         LATERAL (SELECT CASE WHEN a.grantee = 0 THEN o.to_public
                              WHEN grantee.name = ANY ($1::text[]) THEN o.to_application
                              -- A reader: its own privileges on tables (the record: SELECT), and what reads.
                              WHEN $11::pg_catalog.jsonb ? grantee.name THEN
                                CASE WHEN o.kind = 'TABLE' AND o.object <> pg_catalog.format('public.%I', app.record_name) THEN
                                       ARRAY(SELECT pg_catalog.jsonb_array_elements_text($11::pg_catalog.jsonb -> grantee.name))
                                     WHEN o.kind IN ('TABLE', 'SEQUENCE') THEN ARRAY['SELECT']
                                     WHEN o.kind = 'ROUTINE' THEN ARRAY['EXECUTE']
                                     ELSE ARRAY['USAGE'] END
                              ELSE ARRAY[]::text[] END AS privileges) granted,
         -- On a view, the writes the release step's grants carry are taken back from the role the
         -- restore gives them to ($12) once this check passed; anyone else may only read one.
         LATERAL (SELECT CASE WHEN o.view AND grantee.name IS DISTINCT FROM $12::text
                              THEN ARRAY(SELECT p FROM pg_catalog.unnest(granted.privileges) p WHERE p = 'SELECT')
                              ELSE granted.privileges END AS privileges) allowed
   WHERE o.acl IS NOT NULL AND pg_catalog.pg_has_role(o.owner, 'USAGE')
     AND a.grantee <> o.owner AND a.grantee <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
     AND (a.is_grantable OR NOT a.privilege_type = ANY (allowed.privileges))
   ORDER BY 1, 2, 3, 5, 4`;

// The same for the default privileges of the roles the role restoring acts for, in public and
// database-wide (no schema: they apply in every schema, public included, and outlive any
// restore's emptying of public; a backup's function can set them while its rows load). A
// database-wide entry replaces PostgreSQL's built-in defaults for its kind, which the PUBLIC
// rules below allow.
const excessDefaultPrivilegesQuery = `
  WITH ${applicationPrivilegesRow},
  defaults AS (
    SELECT d.defaclrole, d.defaclobjtype, d.defaclnamespace = 0 AS everywhere, a.grantee, a.privilege_type, a.is_grantable,
           CASE WHEN a.grantee = 0 THEN CASE d.defaclobjtype WHEN 'f' THEN ARRAY['EXECUTE'] WHEN 'T' THEN ARRAY['USAGE'] ELSE ARRAY[]::text[] END
                WHEN pg_catalog.pg_get_userbyid(a.grantee) = ANY ($1::text[]) THEN
                  CASE d.defaclobjtype WHEN 'r' THEN app.tables WHEN 'S' THEN app.sequences
                                       WHEN 'f' THEN app.routines WHEN 'T' THEN app.types ELSE ARRAY[]::text[] END
                WHEN $11::pg_catalog.jsonb ? pg_catalog.pg_get_userbyid(a.grantee) THEN
                  CASE d.defaclobjtype WHEN 'r' THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text($11::pg_catalog.jsonb -> pg_catalog.pg_get_userbyid(a.grantee)))
                                       WHEN 'S' THEN ARRAY['SELECT'] WHEN 'f' THEN ARRAY['EXECUTE'] WHEN 'T' THEN ARRAY['USAGE'] ELSE ARRAY[]::text[] END
                ELSE ARRAY[]::text[] END AS allowed
      FROM pg_catalog.pg_default_acl d, LATERAL pg_catalog.aclexplode(d.defaclacl) a, application app
     WHERE d.defaclnamespace IN (0, 'public'::pg_catalog.regnamespace) AND pg_catalog.pg_has_role(d.defaclrole, 'USAGE')
       AND a.grantee <> d.defaclrole
  )
  SELECT pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(defaclrole)) AS role,
         CASE defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END AS objects,
         privilege_type AS privilege,
         CASE grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(grantee)) END AS grantee,
         privilege_type = ANY (allowed) AS option_only, everywhere
    FROM defaults WHERE is_grantable OR NOT privilege_type = ANY (allowed)
   ORDER BY 1, 2, 4, 3`;

// The parameters of applicationPrivilegesRow, after the application roles ($1).
const applicationPrivilegesParameters = [
  applicationPrivileges.schema,
  applicationPrivileges.tables,
  onColumns(applicationPrivileges.tables),
  applicationPrivileges.migrationsRecord,
  onColumns(applicationPrivileges.migrationsRecord),
  applicationPrivileges.sequences,
  applicationPrivileges.routines,
  migrationsTable,
  applicationPrivileges.types,
];

interface ExcessPrivilege {
  kind: string;
  object: string;
  columns: string | null;
  privilege: string;
  grantee: string;
  option_only: boolean;
}

interface ExcessDefaultPrivilege {
  role: string;
  objects: string;
  privilege: string;
  grantee: string;
  option_only: boolean;
  everywhere: boolean;
}

/**
 * The restore's second layer, run in its transaction before COMMIT: the privileges in
 * `public` that go beyond what a restore may leave, in words (`SELECT on table public.users
 * to "reporting"`), or `[]`. The allow-list already refused every statement that would grant
 * them; this asks the catalog what the backup's statements actually left, whatever their
 * form (a custom archive's ACL entries included), and the restore refuses to COMMIT when
 * anything is found. Beyond what a restore may leave: on any object in `public` whose owner
 * the role restoring acts for (the schema, relations and their columns, routines, types) and
 * in the default privileges there or database-wide, a privilege of any role but the owner, the role restoring
 * and `grantees.applicationRoles` and `grantees.readers`; of PUBLIC anything beyond
 * PostgreSQL's own defaults (USAGE on the schema, EXECUTE on routines, USAGE on types); of an
 * application role anything beyond the release step's grants ({@link applicationPrivileges});
 * of a reader anything beyond what it may read (its own privileges on new tables; USAGE on
 * the schema and types, SELECT on sequences, EXECUTE); on a view, any write but `givenGrants`' (the role whose grants the restore sets
 * next, taking writes on views back: a view over the migrations record would write it); and
 * any grant option.
 *
 * @example
 * await excessRestoredPrivileges(client, { owner: 'kennwilliamson', applicationRoles: ['kennwilliamson_app'] }) // []
 */
export async function excessRestoredPrivileges(client: pg.ClientBase, grantees: BackupGrantees, givenGrants?: string): Promise<string[]> {
  const parameters = [[...grantees.applicationRoles], ...applicationPrivilegesParameters, JSON.stringify(grantees.readers ?? {})];
  const { rows: excess } = await client.query<ExcessPrivilege>(excessPrivilegesQuery, [...parameters, givenGrants ?? null]);
  const { rows: excessDefaults } = await client.query<ExcessDefaultPrivilege>(excessDefaultPrivilegesQuery, parameters);
  const option = (row: { option_only: boolean }) => (row.option_only ? ' WITH GRANT OPTION' : '');
  return [
    ...excess.map(
      (row) => `${row.privilege}${row.columns ? ` (${row.columns})` : ''} on ${row.kind.toLowerCase()} ${row.object} to ${row.grantee}${option(row)}`,
    ),
    ...excessDefaults.map(
      (row) =>
        `${row.privilege} on new ${row.objects.toLowerCase()} of ${row.role} to ${row.grantee}${option(row)} ` +
        `(default privileges${row.everywhere ? ' in every schema' : ''})`,
    ),
  ];
}

/**
 * The constraint triggers and the constraints that can be deferred, on the tables of the roles
 * the role restoring acts for, in any schema (a backup's function may make one), as `trigger on
 * table` and `constraint name on table`. A constraint's own triggers are internal, so the
 * constraint stands for them: a deferrable unique or exclusion constraint rechecks at COMMIT,
 * running its index expressions (the backup's functions), and a deferrable foreign key's
 * cascade fires the referencing table's triggers there; this schema has none.
 *
 * @example await deferrableTriggers(client) // ['at_commit on public.secrets', 'constraint once on public.notes']
 */
export async function deferrableTriggers(client: pg.ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ trigger: string }>(
    `SELECT pg_catalog.format('%I on %s', t.tgname, t.tgrelid::pg_catalog.regclass) AS trigger
       FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
      WHERE NOT t.tgisinternal AND t.tgdeferrable AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
     UNION ALL
     SELECT pg_catalog.format('constraint %I on %s', k.conname, k.conrelid::pg_catalog.regclass)
       FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
      WHERE k.condeferrable AND k.contype <> 't' AND pg_catalog.pg_has_role(c.relowner, 'USAGE') -- a constraint trigger is named above
      ORDER BY 1`,
  );
  return rows.map((row) => row.trigger);
}
