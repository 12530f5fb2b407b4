import type pg from 'pg';
import { checkValues, loadCheckParser } from './check-values.js';

/** A jsonb column whose shape a TypeScript type describes: the type, and where it is declared. */
export interface JsonShape {
  /** The type's name, as the generated file will use it. */
  type: string;
  /** Its module, relative to the generated file (kysely-codegen's `customImports`: `path#Name` for another name). */
  from: string;
}

/** kysely-codegen's `overrides.columns` and `customImports`, computed from the live schema. */
export interface ColumnOverrides {
  /** `schema.table.column` → the column's TypeScript type. */
  columns: Record<string, string>;
  customImports: Record<string, string>;
  /** `table.column (constraint)` of each CHECK that tests values but is no list the deriver reads. */
  notUnderstood: string[];
  /**
   * `table.column (constraint)` of each CHECK added `NOT VALID` and not validated since: it
   * holds for rows written after it, not for those already there, so it narrows no type.
   */
  notValidated: string[];
  /**
   * `table.column (constraint)` of each CHECK whose list is no bound on what the table reads
   * back: on a column of a nondeterministic collation (a case-insensitive one lets 'LIGHT'
   * through a list of 'light'), `NO INHERIT` on a table with children (their rows, read
   * through it, need not meet it), `NOT ENFORCED`, or on a table with a foreign table among its
   * children or partitions (which checks nothing). It narrows no type.
   */
  notBinding: string[];
  /**
   * `table.column (type)` of each column that is an array of an enum: pg returns it as its text
   * (`'{red,blue}'`), having no parser for a type whose number differs in every database, so it
   * is typed `string`, not kysely-codegen's array.
   */
  enumArrays: string[];
}

interface CheckRow {
  schema: string;
  table: string;
  constraint: string;
  expression: string;
  column: string;
  nullable: boolean;
  has_default: boolean;
  validated: boolean;
  binding: boolean;
}

interface ColumnRow {
  schema: string;
  table: string;
  column: string;
  type: string;
  nullable: boolean;
  has_default: boolean;
}

// Whether a column may hold NULL: not NOT NULL, or (PostgreSQL 18) NOT NULL … NOT VALID, which
// sets attnotnull while rows from before it may still be NULL.
const nullable = `(NOT a.attnotnull OR EXISTS (
    SELECT 1 FROM pg_catalog.pg_constraint nn
     WHERE nn.conrelid = a.attrelid AND nn.contype = 'n' AND nn.conkey[1] = a.attnum AND NOT nn.convalidated))`;

// Every CHECK on a single text or varchar column of a table (partitions are left out, as
// kysely-codegen leaves them out), with the expression as PostgreSQL prints it. A CHECK on
// several columns relates them (`(status = 'pending') = (reviewed_at IS NULL)`); it never is
// one column's list of values, so it is not read. A CHECK binds less than its list (see
// ColumnOverrides.notBinding) on a nondeterministic collation, NO INHERIT on a table with
// children, NOT ENFORCED (PostgreSQL 18: conenforced, read through to_jsonb so that the query
// runs on the majors before it), or above a foreign table (a child or a partition), whose rows
// come from elsewhere unchecked.
const checksSql = `
  SELECT n.nspname AS schema, t.relname AS table, c.conname AS constraint,
         pg_get_expr(c.conbin, c.conrelid) AS expression, a.attname AS column,
         ${nullable} AS nullable, a.atthasdef AS has_default, c.convalidated AS validated,
         -- NOT ENFORCED is never validated either: said as what it is, not as NOT VALID.
         COALESCE((pg_catalog.to_jsonb(c) ->> 'conenforced')::boolean, true)
           AND COALESCE(co.collisdeterministic, true) AND NOT (c.connoinherit AND t.relhassubclass)
           AND NOT EXISTS (
             WITH RECURSIVE below (oid) AS (
               SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = t.oid
               UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN below ON i.inhparent = below.oid)
             SELECT 1 FROM below JOIN pg_catalog.pg_class child ON child.oid = below.oid WHERE child.relkind = 'f') AS binding
    FROM pg_catalog.pg_constraint c
    JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
    LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
   WHERE c.contype = 'c' AND cardinality(c.conkey) = 1
     AND t.relkind IN ('r', 'p') AND NOT t.relispartition
     AND a.atttypid IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype)
     AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
   ORDER BY n.nspname, t.relname, a.attnum, c.conname`;

// A column with what its type override needs: its type's name, whether it is nullable and has a default.
const columnsFrom = `
  SELECT n.nspname AS schema, t.relname AS table, a.attname AS column,
         pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
         ${nullable} AS nullable, a.atthasdef AS has_default
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_class t ON t.oid = a.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace`;

// Every column of a table or view that is an array of an enum, as kysely-codegen lists them
// (partitions left out).
const enumArraysSql = `${columnsFrom}
    JOIN pg_catalog.pg_type array_type ON array_type.oid = a.atttypid
    JOIN pg_catalog.pg_type element ON element.oid = array_type.typelem
   WHERE a.attnum > 0 AND NOT a.attisdropped AND array_type.typcategory = 'A' AND element.typtype = 'e'
     AND t.relkind IN ('r', 'p', 'v', 'm') AND NOT t.relispartition
     AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
   ORDER BY n.nspname, t.relname, a.attnum`;

const columnSql = `${columnsFrom}
   WHERE n.nspname = $1 AND t.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped`;

/**
 * The column types kysely-codegen cannot see, read from the live schema:
 * - every text or varchar column that a CHECK limits to a list of values (`status IN
 *   ('pending', 'approved')`) gets that list as a union of literals, nullable where the
 *   column is and `Generated<…>` where it has a default, as kysely-codegen writes its own
 *   types (several lists on one column: the values in all of them);
 * - every jsonb column of `jsonShapes` (`schema.table.column`) gets its TypeScript type,
 *   imported into the generated file; a shape for a column that is missing or not json is an
 *   error, so a renamed column cannot silently lose its type.
 * - every column that is an array of an enum is typed `string`, which pg returns for it.
 * A CHECK that tests a column's values in a way the deriver does not read leaves the column
 * as kysely-codegen types it, and is listed in `notUnderstood`; so does one that is `NOT VALID`
 * (listed in `notValidated`), which rows from before it need not meet.
 *
 * @example
 * const { columns } = await columnOverrides(client, {})
 * // { 'public.phrase_suggestions.status': 'Generated<"pending" | "approved" | "rejected">', … }
 */
export async function columnOverrides(client: pg.ClientBase, jsonShapes: Record<string, JsonShape>): Promise<ColumnOverrides> {
  await loadCheckParser();
  // The expressions printed with every type outside pg_catalog schema-qualified (see checkValues).
  await client.query('SET search_path = pg_catalog');
  const overrides = await overridesOf(client, jsonShapes).catch(async (error: unknown) => {
    // Its own failure is the one to tell, not the reset's on a connection that failed it.
    await client.query('RESET search_path').catch(() => undefined);
    throw error;
  });
  // Back for kysely-codegen's introspection, which names its schemas as the database's users see them.
  await client.query('RESET search_path');
  return overrides;
}

async function overridesOf(client: pg.ClientBase, jsonShapes: Record<string, JsonShape>): Promise<ColumnOverrides> {
  const lists = new Map<string, { row: CheckRow; values: string[] }>();
  const notUnderstood: string[] = [];
  const notValidated: string[] = [];
  const notBinding: string[] = [];
  for (const row of (await client.query<CheckRow>(checksSql)).rows) {
    if (!row.binding) {
      notBinding.push(`${row.table}.${row.column} (${row.constraint})`);
      continue;
    }
    if (!row.validated) {
      notValidated.push(`${row.table}.${row.column} (${row.constraint})`);
      continue;
    }
    const found = checkValues(row.expression, row.column);
    const key = `${row.schema}.${row.table}.${row.column}`;
    if (found.kind === 'not-understood') notUnderstood.push(`${row.table}.${row.column} (${row.constraint})`);
    if (found.kind !== 'values') continue;
    const earlier = lists.get(key);
    lists.set(key, { row, values: earlier ? earlier.values.filter((value) => found.values.includes(value)) : found.values });
  }

  const columns: Record<string, string> = {};
  for (const [key, { row, values }] of lists) {
    columns[key] = columnType(values.map((value) => JSON.stringify(value)), row);
  }
  const enumArrays: string[] = [];
  for (const row of (await client.query<ColumnRow>(enumArraysSql)).rows) {
    columns[`${row.schema}.${row.table}.${row.column}`] = columnType(['string'], row);
    enumArrays.push(`${row.table}.${row.column} (${row.type})`);
  }
  const customImports: Record<string, string> = {};
  for (const [key, shape] of Object.entries(jsonShapes)) {
    const [schema, table, column] = key.split('.');
    const { rows } = await client.query<ColumnRow>(columnSql, [schema, table, column]);
    const row = rows[0];
    if (row === undefined || !['json', 'jsonb'].includes(row.type)) {
      throw new Error(`codegen: the JSON shape ${shape.type} is declared for ${key}, which is ${row ? row.type : 'missing'}`);
    }
    columns[key] = columnType([shape.type], row);
    customImports[shape.type] = shape.from;
  }
  return { columns, customImports, notUnderstood, notValidated, notBinding, enumArrays };
}

function columnType(members: string[], column: { nullable: boolean; has_default: boolean }): string {
  const union = [...(members.length === 0 ? ['never'] : members), ...(column.nullable ? ['null'] : [])].join(' | ');
  return column.has_default ? `Generated<${union}>` : union;
}
