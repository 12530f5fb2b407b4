import { loadModule, parseSync } from 'libpg-query';
import { migrationsTable } from '../../migrations/migration-storage.js';
import { type ApplicationObjectKind, applicationPrivileges } from '../../provisioning/application-privileges.js';

/**
 * The kinds of statement a backup's SQL may hold: what pg_dump 15 to 18 writes for this
 * schema with `--no-owner` (and `pg_restore --no-owner --file=-` of its archives), and
 * nothing else. Each is further narrowed below (objects in `public`, pg_dump's own settings).
 */
export const acceptedStatementKinds = [
  'SET',
  'SELECT pg_catalog.set_config',
  'SELECT pg_catalog.setval',
  'CREATE EXTENSION',
  'CREATE TYPE',
  'CREATE FUNCTION',
  'CREATE TABLE',
  'CREATE SEQUENCE',
  'ALTER SEQUENCE',
  'ALTER TABLE ADD CONSTRAINT',
  'ALTER TABLE SET DEFAULT',
  'ALTER TABLE ADD IDENTITY',
  'CREATE VIEW',
  'CREATE INDEX',
  'CREATE TRIGGER',
  'COMMENT',
  'GRANT',
  'REVOKE',
  'ALTER DEFAULT PRIVILEGES',
  'COPY FROM stdin',
] as const;

/** One of {@link acceptedStatementKinds}. */
export type AcceptedStatementKind = (typeof acceptedStatementKinds)[number];

/** What {@link checkBackupStatement} decided. */
export type StatementVerdict =
  | {
      accepted: AcceptedStatementKind;
      /** The statement's parse tree (libpg_query's `stmt`), read once here: the restore reads it further. */
      tree?: Record<string, unknown>;
      /** For `COPY … FROM stdin`: the table, whose rows follow. */
      copyTable?: string;
      /** For `CREATE EXTENSION` and `COMMENT ON EXTENSION`: the extension. */
      extension?: string;
      /** For `SET`: the setting. */
      setting?: string;
      /** For `GRANT`, `REVOKE` and `ALTER DEFAULT PRIVILEGES`: whom it grants to or revokes from. */
      privileges?: PrivilegeChange;
    }
  | { refused: string };

/**
 * Whom a `GRANT`, `REVOKE` or `ALTER DEFAULT PRIVILEGES` of a backup names, for the restore
 * to decide whether that role may receive privileges in this database (the allow-list cannot
 * know the roles of the server restored into).
 */
export interface PrivilegeChange {
  /** `GRANT` (true) or `REVOKE` (false). */
  grant: boolean;
  /** The one role it grants to or revokes from, or `PUBLIC`. */
  grantee: { role: string } | 'PUBLIC';
  /** `ALTER DEFAULT PRIVILEGES FOR ROLE …`: whose default privileges; `[]` for the role running it. */
  forRoles: string[];
  /**
   * Accepted only to be left out by the restore, which gives the application role its grants
   * itself: a change that names a role other than the database's owner and application role (a
   * REVOKE, or with `setsDefaultPrivileges` a GRANT), or another role's default privileges.
   */
  leaveOut?: true;
}

/** The extensions the migrations create; a backup may create these and no others. */
export const backupExtensions = ['pg_trgm', 'pg_uuidv7'] as const;

// The settings pg_dump and pg_restore write at the top of their SQL (and pg_restore again
// before objects), each with the one value they write. client_encoding and
// standard_conforming_strings matter most: the statements are parsed here as UTF-8 with
// standard strings, and the server must read them the same way.
const fixedSettings: Record<string, string[]> = {
  statement_timeout: ['0'],
  lock_timeout: ['0'],
  idle_in_transaction_session_timeout: ['0'],
  transaction_timeout: ['0'],
  client_encoding: ['UTF8', 'UTF-8', 'utf8'],
  standard_conforming_strings: ['on'],
  check_function_bodies: ['false'],
  xmloption: ['content'],
  client_min_messages: ['warning'],
  row_security: ['off'],
  default_tablespace: [''],
  default_table_access_method: ['heap'],
};

const trustedLanguages = new Set(['sql', 'plpgsql']);

// Subcommands of ALTER TABLE that pg_dump writes for this schema.
const alterTableKinds: Record<string, AcceptedStatementKind> = {
  AT_AddConstraint: 'ALTER TABLE ADD CONSTRAINT',
  AT_ColumnDefault: 'ALTER TABLE SET DEFAULT',
  AT_AddIdentity: 'ALTER TABLE ADD IDENTITY',
};

// Objects a GRANT, REVOKE or COMMENT may name (all in `public`, or `public` itself).
const grantableObjects = new Set(['OBJECT_TABLE', 'OBJECT_SEQUENCE', 'OBJECT_FUNCTION', 'OBJECT_PROCEDURE', 'OBJECT_SCHEMA', 'OBJECT_TYPE']);
const commentableObjects = new Set([
  'OBJECT_TABLE',
  'OBJECT_COLUMN',
  'OBJECT_VIEW',
  'OBJECT_INDEX',
  'OBJECT_SEQUENCE',
  'OBJECT_FUNCTION',
  'OBJECT_PROCEDURE',
  'OBJECT_TYPE',
  'OBJECT_TRIGGER',
  'OBJECT_TABCONSTRAINT',
  'OBJECT_SCHEMA',
  'OBJECT_EXTENSION',
]);

// Why the statement kinds a backup must never hold are refused, in words. Anything else
// outside the allow-list is refused as "not a statement pg_dump writes".
const refusedKinds: Record<string, string> = {
  DoStmt: 'DO runs code; pg_dump never writes it',
  CallStmt: 'CALL runs a procedure; pg_dump never writes it',
  TransactionStmt: "transaction control would end the restore's one transaction; pg_dump never writes it",
  CreateRoleStmt: 'CREATE ROLE makes a role of the whole server, which would outlive the restore',
  AlterRoleStmt: 'ALTER ROLE changes a role of the whole server',
  AlterRoleSetStmt: 'ALTER ROLE changes a role of the whole server',
  DropRoleStmt: 'DROP ROLE changes the roles of the whole server',
  GrantRoleStmt: 'GRANT or REVOKE of role membership changes the roles of the whole server',
  AlterSystemStmt: "ALTER SYSTEM changes the server's configuration",
  AlterDatabaseStmt: 'ALTER DATABASE changes the database itself',
  AlterDatabaseSetStmt: 'ALTER DATABASE changes the database itself',
  AlterDatabaseRefreshCollStmt: 'ALTER DATABASE changes the database itself',
  CreatedbStmt: 'CREATE DATABASE is not part of a restore',
  DropdbStmt: 'DROP DATABASE is not part of a restore',
  CreateForeignServerStmt: 'CREATE SERVER reaches other servers',
  CreateUserMappingStmt: 'CREATE USER MAPPING holds credentials for other servers',
  CreateFdwStmt: 'CREATE FOREIGN DATA WRAPPER runs code of its own',
  CreateSubscriptionStmt: 'CREATE SUBSCRIPTION connects to other servers',
  CreatePublicationStmt: 'CREATE PUBLICATION is not part of this schema',
  CreateEventTrigStmt: 'CREATE EVENT TRIGGER runs code on every later DDL command',
  AlterOwnerStmt: 'ALTER … OWNER TO hands objects to another role; backups are made and restored without owners',
  CreatePLangStmt: 'CREATE LANGUAGE is not part of this schema',
  LoadStmt: 'LOAD loads a shared library into the server',
  CreateTableAsStmt: 'CREATE TABLE AS and CREATE MATERIALIZED VIEW run a query',
  RefreshMatViewStmt: 'REFRESH MATERIALIZED VIEW runs a query',
  InsertStmt: 'INSERT can call any function; pg_dump writes rows as COPY … FROM stdin',
  UpdateStmt: 'UPDATE is not what pg_dump writes',
  DeleteStmt: 'DELETE is not what pg_dump writes',
  MergeStmt: 'MERGE is not what pg_dump writes',
  ExplainStmt: 'EXPLAIN (ANALYZE) runs a query',
  ExecuteStmt: 'EXECUTE runs a prepared statement',
  PrepareStmt: 'PREPARE is not what pg_dump writes',
  DeclareCursorStmt: 'DECLARE runs a query',
  NotifyStmt: 'NOTIFY is not what pg_dump writes',
  SecLabelStmt: 'SECURITY LABEL is not part of this schema',
  VariableShowStmt: 'SHOW is not what pg_dump writes',
  DiscardStmt: 'DISCARD is not what pg_dump writes',
  CheckPointStmt: 'CHECKPOINT is not what pg_dump writes',
  VacuumStmt: 'VACUUM and ANALYZE are not what pg_dump writes',
  ClusterStmt: 'CLUSTER is not what pg_dump writes',
  ReindexStmt: 'REINDEX is not what pg_dump writes',
  LockStmt: 'LOCK is not what pg_dump writes',
  TruncateStmt: 'TRUNCATE is not what pg_dump writes',
  DropStmt: 'DROP is not what pg_dump writes with these options',
  CreateSchemaStmt: 'CREATE SCHEMA: a restore replaces only the public schema',
  CreateCastStmt: 'CREATE CAST is not part of this schema',
  CreateOpClassStmt: 'CREATE OPERATOR CLASS is not part of this schema',
  DefineStmt: 'CREATE AGGREGATE, OPERATOR, COLLATION or base TYPE is not part of this schema',
  CreateDomainStmt: 'CREATE DOMAIN is not part of this schema',
  RuleStmt: 'CREATE RULE is not part of this schema',
  CreatePolicyStmt: 'CREATE POLICY is not part of this schema',
  CreateStatsStmt: 'CREATE STATISTICS is not part of this schema',
  CreateTableSpaceStmt: 'CREATE TABLESPACE writes outside the database',
  AlterFunctionStmt: 'ALTER FUNCTION is not what pg_dump writes for this schema',
  AlterExtensionStmt: 'ALTER EXTENSION is not what pg_dump writes for this schema',
  AlterObjectSchemaStmt: 'ALTER … SET SCHEMA moves objects out of the public schema',
  RenameStmt: 'ALTER … RENAME is not what pg_dump writes',
  ReassignOwnedStmt: 'REASSIGN OWNED hands objects to another role',
  DropOwnedStmt: 'DROP OWNED drops objects of a role in the whole database',
  ImportForeignSchemaStmt: 'IMPORT FOREIGN SCHEMA reaches other servers',
  CreateForeignTableStmt: 'CREATE FOREIGN TABLE reaches other servers',
};

type Tree = Record<string, unknown>;
type Check = (node: Tree, options: BackupStatementOptions) => StatementVerdict;

const accept = (kind: AcceptedStatementKind): StatementVerdict => ({ accepted: kind });
const refuse = (reason: string): StatementVerdict => ({ refused: reason });

const strings = (list: unknown): string[] =>
  Array.isArray(list) ? list.map((item) => String((item as { String?: { sval?: string } }).String?.sval ?? '?')) : [];

// A_Const as the text of the value it holds ('' for an empty string, 'false' for false).
function constantText(node: unknown): string | undefined {
  const constant = (node as { A_Const?: Tree } | undefined)?.A_Const;
  if (!constant) return undefined;
  if ('sval' in constant) return String((constant.sval as { sval?: string }).sval ?? '');
  if ('ival' in constant) return String((constant.ival as { ival?: number }).ival ?? 0);
  if ('fval' in constant) return String((constant.fval as { fval?: string }).fval ?? '0');
  if ('boolval' in constant) return String((constant.boolval as { boolval?: boolean }).boolval ?? false);
  return undefined;
}

// "public.name" for a RangeVar in the public schema, undefined for anything else (an
// unqualified name resolves through the search_path, which a restore keeps empty, so pg_dump
// always qualifies).
function publicRelation(relation: unknown): string | undefined {
  const range = relation as { schemaname?: string; relname?: string; catalogname?: string } | undefined;
  if (!range || range.catalogname !== undefined || range.schemaname !== 'public' || !range.relname) return undefined;
  return `public.${range.relname}`;
}

const inPublic = (names: string[]) => names.length >= 2 && names[0] === 'public';
const outsidePublic = (what: string) => refuse(`${what} outside the public schema, which is all a restore replaces`);

function functionOptions(options: unknown): Map<string, unknown> {
  return new Map(optionElements(options).map((element) => [element.defname, element.arg]));
}

// Each option as written: SET may come more than once (one clause per setting), which a Map
// of the options keeps only the last of.
function optionElements(options: unknown): Array<{ defname: string; arg: unknown }> {
  return (Array.isArray(options) ? options : []).flatMap((option) => {
    const element = (option as { DefElem?: { defname?: string; arg?: unknown } }).DefElem;
    return element?.defname ? [{ defname: element.defname, arg: element.arg }] : [];
  });
}

const checkSet: Check = (node) => {
  const set = node as { kind?: string; name?: string; args?: unknown[]; is_local?: boolean };
  const name = (set.name ?? '').toLowerCase();
  if (name === 'role' || name === 'session_authorization') {
    return refuse(`SET ${name === 'role' ? 'ROLE' : 'SESSION AUTHORIZATION'} changes the role that runs the rest of the restore`);
  }
  if (set.kind !== 'VAR_SET_VALUE' || set.is_local) return refuse(`this form of SET ${name} is not what pg_dump writes`);
  const allowed = fixedSettings[name];
  if (!allowed) return refuse(`SET ${name || '…'} is not one of the settings pg_dump writes`);
  const value = set.args?.length === 1 ? constantText(set.args[0]) : undefined;
  if (value === undefined || !allowed.includes(value)) {
    return refuse(`SET ${name} to anything but ${allowed.map((v) => `'${v}'`).join(' or ')}, as pg_dump writes it, is not allowed`);
  }
  return { accepted: 'SET', setting: name };
};

// SELECT pg_catalog.set_config('search_path', '', false) and SELECT pg_catalog.setval('public.seq', n, bool):
// one call of a built-in function on constants, nothing else (no FROM, no WHERE).
const checkSelect: Check = (node) => {
  const select = node as { targetList?: unknown[] } & Tree;
  const other = Object.keys(select).filter((key) => !['targetList', 'limitOption', 'op'].includes(key));
  const call = (select.targetList?.length === 1 ? (select.targetList[0] as { ResTarget?: { val?: { FuncCall?: Tree }; name?: string } }).ResTarget : undefined);
  const funcCall = call?.val?.FuncCall as { funcname?: unknown; args?: unknown[] } & Tree | undefined;
  const name = strings(funcCall?.funcname).join('.');
  const extra = funcCall ? Object.keys(funcCall).filter((key) => !['funcname', 'args', 'funcformat', 'location'].includes(key)) : [];
  if (other.length === 0 && funcCall && !call?.name && extra.length === 0) {
    const args = (funcCall.args ?? []).map(constantText);
    if (name === 'pg_catalog.set_config' && args.length === 3 && args[0] === 'search_path' && args[1] === '' && args[2] === 'false') {
      return accept('SELECT pg_catalog.set_config');
    }
    if (
      name === 'pg_catalog.setval' &&
      (args.length === 2 || args.length === 3) &&
      /^public\.[^.]+$/.test(args[0] ?? '') &&
      /^-?\d+$/.test(args[1] ?? '') &&
      (args.length === 2 || args[2] === 'true' || args[2] === 'false')
    ) {
      return accept('SELECT pg_catalog.setval');
    }
  }
  return refuse(
    "a SELECT other than pg_dump's pg_catalog.set_config('search_path', '', false) and pg_catalog.setval('public.…', n, …) (a query can call any function)",
  );
};

const checkCopy: Check = (node) => {
  const copy = node as { relation?: unknown; query?: unknown; is_from?: boolean; is_program?: boolean; filename?: string; options?: unknown; whereClause?: unknown; attlist?: unknown };
  if (copy.is_program) return refuse("COPY to or from a program runs that program on the database server's machine");
  if (copy.filename !== undefined) return refuse("COPY to or from a file reads or writes the database server's files");
  if (!copy.is_from || copy.query !== undefined) return refuse('only COPY table (columns) FROM stdin, as pg_dump writes it, is allowed');
  if (copy.options !== undefined || copy.whereClause !== undefined) return refuse('COPY … FROM stdin with options or WHERE is not what pg_dump writes');
  const table = publicRelation(copy.relation);
  if (!table) return outsidePublic('COPY into a table');
  return { accepted: 'COPY FROM stdin', copyTable: table };
};

const checkCreateFunction: Check = (node) => {
  const create = node as { funcname?: unknown; options?: unknown; is_procedure?: boolean; replace?: boolean };
  const what = create.is_procedure ? 'a procedure' : 'a function';
  if (!inPublic(strings(create.funcname))) return outsidePublic(`CREATE FUNCTION of ${what}`);
  // pg_dump writes each function once; a replacement would swap the body of one that ran
  // while rows loaded for one the restore's check accepts.
  if (create.replace) return refuse(`CREATE OR REPLACE of ${what} is not what pg_dump writes`);
  const options = functionOptions(create.options);
  const language = String((options.get('language') as { String?: { sval?: string } } | undefined)?.String?.sval ?? 'sql').toLowerCase();
  if (!trustedLanguages.has(language)) {
    return refuse(`${what} in language ${language}: only SQL and PL/pgSQL, which cannot reach outside the database on their own, are allowed`);
  }
  if ((options.get('security') as { Boolean?: { boolval?: boolean } } | undefined)?.Boolean?.boolval) {
    return refuse(`SECURITY DEFINER makes ${what} run with its owner's powers, whoever calls it`);
  }
  for (const option of ['support', 'transform']) if (options.has(option)) return refuse(`${what} with ${option.toUpperCase()} is not part of this schema`);
  for (const { arg } of optionElements(create.options).filter((element) => element.defname === 'set')) {
    const name = String((arg as { VariableSetStmt?: { name?: string } }).VariableSetStmt?.name ?? '');
    if (name !== 'search_path') return refuse(`${what} that sets ${name || 'a setting'} when called is not part of this schema`);
  }
  return accept('CREATE FUNCTION');
};

const checkCreateTable: Check = (node) => {
  const create = node as { relation?: unknown; inhRelations?: unknown; partbound?: unknown; partspec?: unknown; ofTypename?: unknown; tableElts?: unknown[]; tablespacename?: string; accessMethod?: string };
  if (!publicRelation(create.relation)) return outsidePublic('CREATE TABLE');
  if (create.inhRelations || create.partbound || create.partspec || create.ofTypename) {
    return refuse('inherited, partitioned and typed tables are not part of this schema');
  }
  if (create.tablespacename !== undefined) return refuse('a table in a tablespace is not part of this schema');
  if (create.accessMethod !== undefined && create.accessMethod !== 'heap') return refuse(`table access method ${create.accessMethod} is not part of this schema`);
  for (const element of create.tableElts ?? []) {
    const kind = Object.keys(element as Tree)[0];
    if (kind !== 'ColumnDef' && kind !== 'Constraint') return refuse('CREATE TABLE … (LIKE …) is not what pg_dump writes');
  }
  return accept('CREATE TABLE');
};

const checkAlterTable: Check = (node) => {
  const alter = node as { relation?: unknown; cmds?: unknown[]; objtype?: string };
  if (alter.objtype !== 'OBJECT_TABLE') return refuse(`ALTER ${String(alter.objtype).replace('OBJECT_', '')} is not what pg_dump writes for this schema`);
  if (!publicRelation(alter.relation)) return outsidePublic('ALTER TABLE');
  const subtypes = (alter.cmds ?? []).map((cmd) => String((cmd as { AlterTableCmd?: { subtype?: string } }).AlterTableCmd?.subtype));
  if (subtypes.includes('AT_ChangeOwner')) return refuse(refusedKinds.AlterOwnerStmt!);
  const kinds = subtypes.map((subtype) => alterTableKinds[subtype]);
  if (kinds.length !== 1 || kinds[0] === undefined) {
    return refuse(`ALTER TABLE … ${subtypes.map((s) => s.replace(/^AT_/, '')).join(', ')} is not what pg_dump writes for this schema`);
  }
  return accept(kinds[0]);
};

const checkCreateExtension: Check = (node) => {
  const create = node as { extname?: string; options?: unknown };
  if (!(backupExtensions as readonly string[]).includes(create.extname ?? '')) {
    return refuse(`CREATE EXTENSION ${create.extname}: only the extensions the migrations create (${backupExtensions.join(', ')}) are allowed`);
  }
  const options = functionOptions(create.options);
  const schema = (options.get('schema') as { String?: { sval?: string } } | undefined)?.String?.sval;
  if ([...options.keys()].some((key) => key !== 'schema') || (schema !== undefined && schema !== 'public')) {
    return refuse(`CREATE EXTENSION ${create.extname} other than WITH SCHEMA public is not what pg_dump writes`);
  }
  return { accepted: 'CREATE EXTENSION', extension: create.extname! };
};

// The schema-qualified name of the object a GRANT or COMMENT names, as a list.
function objectNames(object: unknown): string[] {
  const node = object as Tree;
  if (node.List) return strings((node.List as { items?: unknown }).items);
  if (node.String) return strings([node]);
  if (node.ObjectWithArgs) return strings((node.ObjectWithArgs as { objname?: unknown }).objname);
  if (node.TypeName) return strings((node.TypeName as { names?: unknown }).names);
  if (node.RangeVar) {
    const range = node.RangeVar as { schemaname?: string; relname?: string };
    return range.schemaname ? [range.schemaname, range.relname ?? ''] : [range.relname ?? ''];
  }
  return [];
}

function objectAllowed(objtype: string, object: unknown): boolean {
  const names = objectNames(object);
  if (objtype === 'OBJECT_SCHEMA') return names.length === 1 && names[0] === 'public';
  if (objtype === 'OBJECT_EXTENSION') return names.length === 1 && (backupExtensions as readonly string[]).includes(names[0]!);
  return inPublic(names);
}

type RoleSpecNode = { RoleSpec?: { roletype?: string; rolename?: string } };

/**
 * The roles a restore may grant privileges to: the role restoring it, which owns every
 * restored object, and the application role(s). Any other grantee is refused.
 */
export interface BackupGrantees {
  /** The role restoring (the database's owner). */
  owner: string;
  /** The application role(s): `DB_APP_USER`, or those the owner's default privileges in public give the release step's privileges on new tables. */
  applicationRoles: readonly string[];
  /**
   * Other roles the owner's default privileges in public let read new tables (a reporting
   * role), each with the privileges they give it there (`['SELECT']`): a backup may give such
   * a role no more on a table, and on other objects only what reads (USAGE on the schema,
   * SELECT on sequences, EXECUTE, USAGE on types).
   */
  readers?: Readonly<Record<string, readonly string[]>> | undefined;
  /**
   * The restore gives the application role its default privileges itself (`DB_APP_USER`):
   * the backup's default privileges `FOR ROLE` another role (the owner where it was made, as
   * in backups made before the owner role) are accepted, for the restore to leave out,
   * rather than refused, and so are grants to another role by name (the application role
   * where the backup was made), which the restore leaves out too. PUBLIC, predefined roles and
   * grant options are refused all the same.
   */
  setsDefaultPrivileges?: boolean | undefined;
}

/** Options of {@link checkBackupStatement}. */
export interface BackupStatementOptions {
  /**
   * Whom the backup may grant to. Left out (vetting a file alone, at backup time), only
   * PUBLIC, predefined roles and grant options are refused; a restore always gives it.
   */
  grantees?: BackupGrantees;
}

// What a backup may grant the application role on each kind of object: what the release step
// grants it (applicationPrivileges), in the parse tree's lower case, worked out once. ALL is
// allowed where it means no more than that: where those are every privilege PostgreSQL has on
// the kind (functions and procedures: EXECUTE; types: USAGE). The lists of every privilege
// are PostgreSQL's own, of its newest supported major (MAINTAIN on tables since 17): one a
// later major adds goes there.
interface ApplicationLimits {
  allowed: string[];
  all: boolean;
}
const limitsOf = (kind: ApplicationObjectKind, every: string[]): ApplicationLimits => {
  const granted = applicationPrivileges[kind];
  return { allowed: granted.map((privilege) => privilege.toLowerCase()), all: every.every((privilege) => granted.includes(privilege)) };
};
const everyOnTables = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'MAINTAIN'];
const applicationLimits: Record<string, ApplicationLimits> = {
  OBJECT_TABLE: limitsOf('tables', everyOnTables),
  OBJECT_SEQUENCE: limitsOf('sequences', ['USAGE', 'SELECT', 'UPDATE']),
  OBJECT_FUNCTION: limitsOf('routines', ['EXECUTE']),
  OBJECT_PROCEDURE: limitsOf('routines', ['EXECUTE']),
  OBJECT_TYPE: limitsOf('types', ['USAGE']),
  OBJECT_SCHEMA: limitsOf('schema', ['USAGE', 'CREATE']),
};
const migrationsRecordLimits = limitsOf('migrationsRecord', everyOnTables);
// What a reader (BackupGrantees.readers) may receive beside its privileges on tables: what
// lets it read and nothing that writes, as a reporting role's grants in a pg_dump backup hold
// them (USAGE on the schema, SELECT on sequences: USAGE would let it draw from one; EXECUTE,
// USAGE on types, which PUBLIC has already). ALL where that is all there is.
const readerLimits: Record<string, ApplicationLimits> = {
  OBJECT_SCHEMA: { allowed: ['usage'], all: false },
  OBJECT_SEQUENCE: { allowed: ['select'], all: false },
  OBJECT_FUNCTION: { allowed: ['execute'], all: true },
  OBJECT_PROCEDURE: { allowed: ['execute'], all: true },
  OBJECT_TYPE: { allowed: ['usage'], all: true },
};

const objectWords = (objtype: string) => objtype.replace('OBJECT_', '').toLowerCase();
const privilegeWords = (privileges: string[] | undefined) => (privileges === undefined ? 'ALL' : privileges.map((p) => p.toUpperCase()).join(', '));

// Whom one GRANT (or ALTER DEFAULT PRIVILEGES … GRANT) gives what, decided: by name as pg_dump
// names roles (never CURRENT_USER and the like, which would mean whoever restores), one
// grantee a statement, no GRANTED BY, no grant option (the grantee could pass it on to any
// role). PUBLIC may receive only USAGE on the public schema, as PostgreSQL itself grants it:
// anything more opens the restored tables (password and token hashes) to every login of the
// server, and CREATE on public to every role is CVE-2018-1058's way into the owner's
// migrations. A predefined role (pg_*) receives nothing: its members are other roles of the
// server. With `grantees`, only the owner and the application role receive anything, the
// latter no more than the release step gives it. REVOKE may name anyone: it only takes away
// (from the owner it is left out: see privilegeChange).
function granteeOf(
  what: string,
  objtype: string,
  grant: { is_grant?: boolean; grantees?: unknown[]; grant_option?: boolean; grantor?: unknown; privileges?: unknown },
  options: BackupStatementOptions,
  migrationsRecord = false,
): { role: string } | 'PUBLIC' | { refused: string } {
  if (grant.grantor !== undefined) return { refused: `${what} … GRANTED BY is not what pg_dump writes` };
  const grantees = (grant.grantees ?? []) as RoleSpecNode[];
  if (grantees.length !== 1) return { refused: `${what} to more than one role is not what pg_dump writes (one statement a role)` };
  const spec = grantees[0]!.RoleSpec ?? {};
  const role = spec.roletype === 'ROLESPEC_PUBLIC' ? 'PUBLIC' : spec.roletype === 'ROLESPEC_CSTRING' && spec.rolename ? { role: spec.rolename } : undefined;
  if (role === undefined) return { refused: `${what} to CURRENT_USER, SESSION_USER or CURRENT_ROLE is not what pg_dump writes (it names roles)` };
  if (!grant.is_grant) return role;

  const privileges = privilegeNames(grant.privileges);
  const granted = `${what} of ${privilegeWords(privileges)} on ${objectWords(objtype)}`;
  const to = role === 'PUBLIC' ? 'PUBLIC' : `'${role.role}'`;
  if (grant.grant_option) return { refused: `${granted} to ${to} WITH GRANT OPTION would let that role grant it on to any other role` };
  if (role === 'PUBLIC') {
    if (objtype === 'OBJECT_SCHEMA' && privileges?.length === 1 && privileges[0] === 'usage') return role;
    return {
      refused:
        `${granted} to PUBLIC would give every role of the database server these privileges on the restored objects ` +
        '(PUBLIC may receive only USAGE on the public schema, as PostgreSQL itself grants it)',
    };
  }
  if (/^pg_/.test(role.role)) {
    return { refused: `${granted} to the predefined role '${role.role}' would give its members, other roles of the server, privileges on the restored objects` };
  }
  const { grantees: expected } = options;
  if (expected === undefined || role.role === expected.owner) return role;
  if (expected.applicationRoles.includes(role.role)) {
    // Services may read which migrations ran; only the owner records them.
    const limits = migrationsRecord ? migrationsRecordLimits : applicationLimits[objtype];
    const within =
      limits !== undefined && (privileges === undefined ? limits.all : privileges.every((privilege) => limits.allowed.includes(privilege)));
    if (within) return role;
    return {
      refused:
        `${granted} to the application role '${role.role}' goes beyond what the release step grants it ` +
        `(${limits ? `${privilegeWords(limits.allowed)} on ${migrationsRecord ? 'the migrations record' : `a ${objectWords(objtype)}`}` : `nothing on a ${objectWords(objtype)}`})`,
    };
  }
  const readable = readerPrivileges(expected, role.role);
  if (readable !== undefined) {
    // Only the owner records migrations, whoever else may write.
    const onTables = readable.map((privilege) => privilege.toLowerCase()).filter((privilege) => !migrationsRecord || privilege === 'select');
    const allowed = objtype === 'OBJECT_TABLE' ? onTables : (readerLimits[objtype]?.allowed ?? []);
    const all = objtype !== 'OBJECT_TABLE' && readerLimits[objtype]?.all === true;
    if (privileges === undefined ? all : privileges.length > 0 && privileges.every((privilege) => allowed.includes(privilege))) return role;
    return {
      refused:
        `${granted} to '${role.role}' goes beyond what the owner's default privileges give it on a new table ` +
        `(${allowed.length > 0 ? `${privilegeWords(allowed)} on a table` : `nothing on a ${objectWords(objtype)}`})`,
    };
  }
  // With DB_APP_USER the restore gives the application role the release step's grants itself,
  // so a grant to another role by name (the application role where the backup was made, under
  // another name: production's backup restored onto staging) is left out by the restore, never
  // run; PUBLIC, predefined roles and grant options are refused above all the same.
  if (expected.setsDefaultPrivileges) return role;
  const application = expected.applicationRoles.length > 0 ? expected.applicationRoles.map((name) => `'${name}'`).join(', ') : 'none known';
  return {
    refused:
      `${granted} to '${role.role}', which is neither the database's owner '${expected.owner}' (the role restoring) nor its application role ` +
      `(${application}): a restore grants nothing to any other role of the server. If '${role.role}' is this database's application role, ` +
      `set DB_APP_USER=${role.role} and restore again (on a new server, run the provisioning step first: setup --admin, with DB_APP_USER and DB_APP_PASSWORD)`,
  };
}

// What the owner's default privileges let `role` do on a new table, when it is a reader of
// `grantees` (see BackupGrantees.readers).
const readerPrivileges = (grantees: BackupGrantees, role: string): readonly string[] | undefined =>
  grantees.readers !== undefined && Object.hasOwn(grantees.readers, role) ? grantees.readers[role] : undefined;

// The privileges a GRANT names, lower-case ('select'; a column list as '(columns)' of it),
// undefined for ALL.
const privilegeNames = (privileges: unknown): string[] | undefined =>
  Array.isArray(privileges)
    ? privileges.map((privilege) => String((privilege as { AccessPriv?: { priv_name?: string } }).AccessPriv?.priv_name ?? '?').toLowerCase())
    : undefined;

const checkGrant = (node: Tree, options: BackupStatementOptions): StatementVerdict => {
  const grant = node as {
    is_grant?: boolean;
    targtype?: string;
    objtype?: string;
    objects?: unknown[];
    privileges?: unknown;
    grantees?: unknown[];
    grant_option?: boolean;
    grantor?: unknown;
  };
  const verb = grant.is_grant ? 'GRANT' : 'REVOKE';
  const objtype = grant.objtype ?? '';
  if (grant.targtype !== 'ACL_TARGET_OBJECT' || !grantableObjects.has(objtype)) {
    return refuse(`${verb} on ${objectWords(objtype) || 'this'} is not what pg_dump writes for this schema`);
  }
  if (!(grant.objects ?? []).every((object) => objectAllowed(objtype, object))) return outsidePublic(`${verb} on an object`);
  const migrationsRecord =
    objtype === 'OBJECT_TABLE' && (grant.objects ?? []).some((object) => objectNames(object).join('.') === `public.${migrationsTable}`);
  const grantee = granteeOf(verb, objtype, grant, options, migrationsRecord);
  if (grantee !== 'PUBLIC' && 'refused' in grantee) return refuse(grantee.refused);
  return { accepted: grant.is_grant ? 'GRANT' : 'REVOKE', privileges: privilegeChange(grant.is_grant === true, grantee, [], options) };
};

// Decided here, where the grantees are checked, so that the restore only follows it.
const privilegeChange = (grant: boolean, grantee: PrivilegeChange['grantee'], forRoles: string[], options: BackupStatementOptions): PrivilegeChange => {
  const { grantees: expected } = options;
  // A REVOKE from the role restoring takes its own rights on its own tables away (the
  // migrations record's among them: the next migration then fails); the owner's rights are
  // its own, whatever the backup says.
  const leaveOut =
    expected !== undefined &&
    (forRoles.some((role) => role !== expected.owner) ||
      (grantee !== 'PUBLIC' &&
        (grantee.role === expected.owner
          ? !grant
          : !expected.applicationRoles.includes(grantee.role) && readerPrivileges(expected, grantee.role) === undefined)));
  return { grant, grantee, forRoles, ...(leaveOut ? { leaveOut: true as const } : {}) };
};

// ALTER DEFAULT PRIVILEGES' object kinds, as GRANT names them.
const defaultPrivilegeObjects: Record<string, string> = {
  OBJECT_TABLE: 'OBJECT_TABLE',
  OBJECT_SEQUENCE: 'OBJECT_SEQUENCE',
  OBJECT_FUNCTION: 'OBJECT_FUNCTION',
  OBJECT_TYPE: 'OBJECT_TYPE',
};

const checkDefaultPrivileges = (node: Tree, options: BackupStatementOptions): StatementVerdict => {
  const alter = node as { options?: unknown; action?: { is_grant?: boolean; objtype?: string; grantees?: unknown[]; grant_option?: boolean; grantor?: unknown; privileges?: unknown } };
  const settings = functionOptions(alter.options);
  const schemas = strings((settings.get('schemas') as { List?: { items?: unknown } } | undefined)?.List?.items);
  if (schemas.length !== 1 || schemas[0] !== 'public') return outsidePublic('ALTER DEFAULT PRIVILEGES');
  const forRoles: string[] = [];
  for (const item of ((settings.get('roles') as { List?: { items?: unknown[] } } | undefined)?.List?.items ?? []) as RoleSpecNode[]) {
    const spec = item.RoleSpec ?? {};
    if (spec.roletype !== 'ROLESPEC_CSTRING' || !spec.rolename || /^pg_/.test(spec.rolename)) {
      return refuse('ALTER DEFAULT PRIVILEGES FOR ROLE other than a role by name is not what pg_dump writes');
    }
    // Only the owner's own: another role's default privileges would grant on whatever that role creates later.
    if (options.grantees !== undefined && spec.rolename !== options.grantees.owner && !options.grantees.setsDefaultPrivileges) {
      return refuse(
        `ALTER DEFAULT PRIVILEGES FOR ROLE '${spec.rolename}' would set the default privileges of a role other than the database's owner ` +
          `'${options.grantees.owner}', which restores it (the backup was made where the database had another owner: set DB_APP_USER ` +
          'to the application role, and the restore gives it its default privileges itself, leaving these out)',
      );
    }
    forRoles.push(spec.rolename);
  }
  const action = alter.action ?? {};
  const objtype = defaultPrivilegeObjects[action.objtype ?? ''];
  if (objtype === undefined) return refuse('ALTER DEFAULT PRIVILEGES on these objects is not what pg_dump writes for this schema');
  const grantee = granteeOf(`ALTER DEFAULT PRIVILEGES … ${action.is_grant ? 'GRANT' : 'REVOKE'}`, objtype, action, options);
  if (grantee !== 'PUBLIC' && 'refused' in grantee) return refuse(grantee.refused);
  return { accepted: 'ALTER DEFAULT PRIVILEGES', privileges: privilegeChange(action.is_grant === true, grantee, forRoles, options) };
};

const checkComment: Check = (node) => {
  const comment = node as { objtype?: string; object?: unknown };
  const objtype = comment.objtype ?? '';
  if (!commentableObjects.has(objtype)) return refuse(`COMMENT ON ${objtype.replace('OBJECT_', '').toLowerCase()} is not what pg_dump writes for this schema`);
  if (!objectAllowed(objtype, comment.object)) return outsidePublic('COMMENT on an object');
  return objtype === 'OBJECT_EXTENSION' ? { accepted: 'COMMENT', extension: objectNames(comment.object)[0]! } : accept('COMMENT');
};

const checks: Record<string, Check> = {
  VariableSetStmt: checkSet,
  SelectStmt: checkSelect,
  CopyStmt: checkCopy,
  CreateFunctionStmt: checkCreateFunction,
  CreateStmt: checkCreateTable,
  AlterTableStmt: checkAlterTable,
  CreateExtensionStmt: checkCreateExtension,
  GrantStmt: checkGrant,
  AlterDefaultPrivilegesStmt: checkDefaultPrivileges,
  CommentStmt: checkComment,
  CreateSeqStmt: (node) => (publicRelation(node.sequence) ? accept('CREATE SEQUENCE') : outsidePublic('CREATE SEQUENCE')),
  AlterSeqStmt: (node) => (publicRelation(node.sequence) ? accept('ALTER SEQUENCE') : outsidePublic('ALTER SEQUENCE')),
  ViewStmt: (node) => (publicRelation(node.view) ? accept('CREATE VIEW') : outsidePublic('CREATE VIEW')),
  // CONCURRENTLY cannot run in the restore's one transaction: refused here, before a restore
  // would hold every table of public only to fail at it.
  IndexStmt: (node) =>
    node.tableSpace !== undefined
      ? refuse('an index in a tablespace is not part of this schema')
      : node.concurrent === true
        ? refuse('CREATE INDEX CONCURRENTLY is not what pg_dump writes, and cannot run in the restore\'s one transaction')
        : publicRelation(node.relation)
        ? accept('CREATE INDEX')
        : outsidePublic('CREATE INDEX'),
  CreateTrigStmt: (node) => (publicRelation(node.relation) ? accept('CREATE TRIGGER') : outsidePublic('CREATE TRIGGER')),
  CreateEnumStmt: (node) => (inPublic(strings(node.typeName)) ? accept('CREATE TYPE') : outsidePublic('CREATE TYPE')),
  CompositeTypeStmt: (node) => (publicRelation(node.typevar) ? accept('CREATE TYPE') : outsidePublic('CREATE TYPE')),
};

/**
 * Loads PostgreSQL's parser (WebAssembly); {@link checkBackupStatement} needs it loaded.
 *
 * @example
 * await loadBackupStatementParser()
 */
export function loadBackupStatementParser(): Promise<void> {
  return loadModule();
}

/**
 * Decides whether one statement of a backup's SQL may run, from PostgreSQL's own parse tree
 * of it (libpg_query, PostgreSQL 18's grammar, with standard strings): it must be exactly one
 * statement of the {@link acceptedStatementKinds}, on objects in the `public` schema, with
 * pg_dump's own settings; everything else is refused with the reason. A `COPY … FROM stdin`
 * also gives its table, so the caller knows that data rows follow. Call
 * {@link loadBackupStatementParser} first.
 *
 * @example
 * checkBackupStatement('COPY public.users (id, email) FROM stdin;') // { accepted: 'COPY FROM stdin', copyTable: 'public.users' }
 * checkBackupStatement("DO $$ BEGIN PERFORM 1; END $$;")       // { refused: 'DO runs code; pg_dump never writes it' }
 */
export function checkBackupStatement(text: string, options: BackupStatementOptions = {}): StatementVerdict {
  let statements: unknown[];
  try {
    statements = parseSync(text).stmts ?? [];
  } catch (error) {
    return refuse(`PostgreSQL's parser cannot read it (${(error as Error).message})`);
  }
  if (statements.length !== 1) return refuse(statements.length === 0 ? 'an empty statement' : 'more than one statement where one was expected');
  const tree = (statements[0] as { stmt?: Tree }).stmt ?? {};
  const kind = Object.keys(tree)[0] ?? '';
  const check = checks[kind];
  if (!check) return refuse(refusedKinds[kind] ?? `${kind.replace(/Stmt$/, '')} is not a statement pg_dump writes for this schema`);
  const verdict = check(tree[kind] as Tree, options);
  return 'refused' in verdict ? verdict : { ...verdict, tree };
}
