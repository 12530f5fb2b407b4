import pg, { type ClientBase } from 'pg';
import type { MigrationScript } from './migration-script.js';

/** What a statement does to every row of a table it holds locked, queries of it waiting meanwhile. */
export interface TableHold {
  /** The table as the statement names it. */
  table: string;
  /** The same, as `to_regclass` reads it. */
  ref: string;
  /** The lock it holds for the whole statement. */
  lock: 'ACCESS EXCLUSIVE' | 'SHARE' | 'SHARE ROW EXCLUSIVE';
  /** What it does meanwhile: "scans every row (a CHECK without NOT VALID)". */
  doing: string;
}

type Node = Record<string, unknown>;
interface RangeVar {
  schemaname?: string;
  relname?: string;
}
interface Constraint {
  contype?: string;
  raw_expr?: Node;
  initially_valid?: boolean;
  skip_validation?: boolean;
  indexname?: string;
  generated_kind?: string;
}

const constraintOf = (node: unknown) => (node as { Constraint?: Constraint } | undefined)?.Constraint;

// A default PostgreSQL records once, without touching the rows (11 and later): a constant,
// possibly cast. Anything else may be volatile (gen_random_uuid(), clock_timestamp()), and is
// then computed for each row, rewriting the table.
function isConstant(expr: Node | undefined): boolean {
  if (expr === undefined) return true;
  if ('A_Const' in expr) return true;
  const cast = expr.TypeCast as { arg?: Node } | undefined;
  return cast !== undefined && isConstant(cast.arg);
}

// What adding this constraint does to the rows already there.
function constraintWork(constraint: Constraint, column: boolean): Pick<TableHold, 'lock' | 'doing'> | undefined {
  switch (constraint.contype) {
    case 'CONSTR_CHECK':
      return constraint.skip_validation ? undefined : { lock: 'ACCESS EXCLUSIVE', doing: 'scans every row (a CHECK without NOT VALID)' };
    case 'CONSTR_FOREIGN':
      return constraint.skip_validation ? undefined : { lock: 'SHARE ROW EXCLUSIVE', doing: 'scans every row (a FOREIGN KEY without NOT VALID)' };
    case 'CONSTR_PRIMARY':
    case 'CONSTR_UNIQUE':
    case 'CONSTR_EXCLUSION':
      return constraint.indexname === undefined ? { lock: 'ACCESS EXCLUSIVE', doing: 'builds an index over every row' } : undefined;
    case 'CONSTR_DEFAULT':
      return column && !isConstant(constraint.raw_expr)
        ? { lock: 'ACCESS EXCLUSIVE', doing: 'may rewrite every row (a default that is not a constant is computed for each row when it is volatile)' }
        : undefined;
    case 'CONSTR_GENERATED':
      return constraint.generated_kind === 's' ? { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row (a stored generated column)' } : undefined;
    default:
      return undefined;
  }
}

function alterTableWork(cmd: Node): Pick<TableHold, 'lock' | 'doing'> | undefined {
  const { subtype, def } = cmd as { subtype?: string; def?: Node };
  switch (subtype) {
    case 'AT_AddColumn': {
      const constraints = ((def?.ColumnDef as { constraints?: unknown[] } | undefined)?.constraints ?? []).map(constraintOf);
      for (const constraint of constraints) {
        const work = constraint && constraintWork(constraint, true);
        if (work) return work;
      }
      return undefined;
    }
    case 'AT_AddConstraint': {
      const constraint = constraintOf(def);
      return constraint && constraintWork(constraint, false);
    }
    case 'AT_AlterColumnType':
      return { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row unless the new type is binary-compatible (varchar to text, a longer varchar)' };
    case 'AT_SetNotNull':
      return { lock: 'ACCESS EXCLUSIVE', doing: 'scans every row (SET NOT NULL, unless a valid CHECK (column IS NOT NULL) proves it)' };
    default:
      return undefined;
  }
}

function held(relation: RangeVar | undefined, work: Pick<TableHold, 'lock' | 'doing'> | undefined, createdHere: ReadonlySet<string>): TableHold | undefined {
  if (relation?.relname === undefined || work === undefined || createdHere.has(relation.relname)) return undefined;
  const parts = [relation.schemaname, relation.relname].filter((part): part is string => part !== undefined);
  return { table: parts.join('.'), ref: parts.map((part) => pg.escapeIdentifier(part)).join('.'), ...work };
}

/**
 * Whether `node` (a statement's parse tree) holds a table's lock while it rewrites or scans every
 * row of it, or builds an index over them: the table's queries wait for the whole statement,
 * however short its wait for the lock was. A table the same file created before (in
 * `createdHere`) has no traffic yet.
 *
 * @example
 * tableHold(parseSync('ALTER TABLE users ADD CONSTRAINT c CHECK (id IS NOT NULL)').stmts[0].stmt, new Set())
 * // { table: 'users', ref: '"users"', lock: 'ACCESS EXCLUSIVE', doing: 'scans every row (a CHECK without NOT VALID)' }
 */
export function tableHold(node: Node, createdHere: ReadonlySet<string>): TableHold | undefined {
  const alter = node.AlterTableStmt as { relation?: RangeVar; cmds?: Array<{ AlterTableCmd?: Node }>; objtype?: string } | undefined;
  if (alter !== undefined && alter.objtype === 'OBJECT_TABLE') {
    for (const { AlterTableCmd: cmd } of alter.cmds ?? []) {
      const hold = cmd && held(alter.relation, alterTableWork(cmd), createdHere);
      if (hold) return hold;
    }
    return undefined;
  }
  const index = node.IndexStmt as { relation?: RangeVar; concurrent?: boolean } | undefined;
  if (index !== undefined) {
    return index.concurrent ? undefined : held(index.relation, { lock: 'SHARE', doing: 'builds an index over every row (writes wait; CREATE INDEX CONCURRENTLY does not block them)' }, createdHere);
  }
  const vacuum = node.VacuumStmt as { options?: Array<{ DefElem?: { defname?: string } }>; rels?: Array<{ VacuumRelation?: { relation?: RangeVar } }> } | undefined;
  if (vacuum?.options?.some((option) => option.DefElem?.defname === 'full')) {
    return held(vacuum.rels?.[0]?.VacuumRelation?.relation, { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row (VACUUM FULL)' }, createdHere);
  }
  const cluster = node.ClusterStmt as { relation?: RangeVar } | undefined;
  return cluster ? held(cluster.relation, { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row (CLUSTER)' }, createdHere) : undefined;
}

/**
 * One line for each statement about to run that holds a table with rows (as the planner's
 * statistics count them: `pg_class`, read without a lock) while it rewrites or scans every row:
 * an outage for that table's traffic as long as the statement runs. Said before anything is
 * applied (and by `--dry-run`); it stops nothing: on a small table, or in a maintenance window,
 * it may be meant.
 *
 * @example
 * await statementsHoldingBusyTables(client, scripts)
 * // ["20990101_x.up.sql:3: ALTER TABLE holds ACCESS EXCLUSIVE on refresh_tokens (about 400000 rows) while it scans every row …"]
 */
export async function statementsHoldingBusyTables(client: ClientBase, scripts: readonly MigrationScript[]): Promise<string[]> {
  const holds = scripts.flatMap((script) => script.statements.flatMap((statement) => (statement.holds ? [{ script, statement, hold: statement.holds }] : [])));
  if (holds.length === 0) return [];
  const { rows } = await client.query<{ ref: string; rows: string | null }>(
    `SELECT r.ref, greatest(c.reltuples, 0)::bigint::text AS rows
       FROM pg_catalog.unnest($1::text[]) AS r(ref)
       JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(r.ref)
      WHERE c.reltuples > 0 OR c.relpages > 0`,
    [holds.map(({ hold }) => hold.ref)],
  );
  const sizes = new Map(rows.map((row) => [row.ref, row.rows]));
  return holds.flatMap(({ script, statement, hold }) => {
    if (!sizes.has(hold.ref)) return [];
    const words = /^\s*([A-Za-z]+(?:\s+[A-Za-z]+)?)/.exec(statement.text)?.[1]?.toUpperCase() ?? statement.kind;
    return [
      `${script.file}:${statement.line}: ${words} holds ${hold.lock} on ${hold.table} (about ${sizes.get(hold.ref)} rows) while it ${hold.doing}: ` +
        "the table's queries wait for the whole statement, and past the services' lock_timeout they fail. Unless that is meant " +
        '(a maintenance window), write it in steps that hold the lock briefly (README: A migration that meets a long transaction)',
    ];
  });
}
