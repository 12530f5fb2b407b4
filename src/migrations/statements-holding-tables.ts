import pg, { type ClientBase } from 'pg';
import { leadingWords } from '../db/leading-words.js';
import { optionOn, type OptionNode } from './parse-tree-option.js';
import type { MigrationScript } from './migration-script.js';

/** What a statement does to every row of a table it holds locked, queries of it waiting meanwhile. */
export interface TableHold {
  /** The table as the statement names it. */
  table: string;
  /** The same, as `to_regclass` reads it. */
  ref: string;
  /** The lock it holds for the whole statement. */
  lock: 'ACCESS EXCLUSIVE' | 'EXCLUSIVE' | 'SHARE ROW EXCLUSIVE' | 'SHARE';
  /** What it does meanwhile: "scans every row (a CHECK without NOT VALID)". */
  doing: string;
  /** `ALTER TABLE ONLY …`: the table alone, not the partitions or children below it (the parser leaves `inh` out then). */
  only: boolean;
  /** `table` and `ref` name an index (DROP INDEX's): the lock is on its table, which the catalog tells. */
  index?: true;
  /** SET NOT NULL's column: no scan where a validated CHECK (column IS NOT NULL) proves it, which the catalog tells. */
  notNullOf?: string;
}

type Node = Record<string, unknown>;
export interface RangeVar {
  schemaname?: string;
  relname?: string;
  inh?: boolean;
  /** Not the parser's: `relname` is an index (DROP INDEX names no table), whose table is locked. */
  index?: true;
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

// Functions of the transaction's start, stable: a default of them is computed once.
const stableCalls = new Set(['now', 'transaction_timestamp', 'statement_timestamp', 'current_date', 'localtimestamp']);

// A default PostgreSQL records once, without touching the rows (11 and later): a constant, an
// array or operator of constants, CURRENT_TIMESTAMP and the like, now(), each possibly cast.
// Anything else may be volatile (gen_random_uuid(), clock_timestamp(), a function of the
// schema's), and is then computed for each row, rewriting the table.
function recordedOnce(expr: Node | undefined): boolean {
  if (expr === undefined) return true;
  if ('A_Const' in expr || 'SQLValueFunction' in expr) return true;
  const cast = expr.TypeCast as { arg?: Node } | undefined;
  if (cast !== undefined) return recordedOnce(cast.arg);
  const array = expr.A_ArrayExpr as { elements?: Node[] } | undefined;
  if (array !== undefined) return (array.elements ?? []).every(recordedOnce);
  const operator = expr.A_Expr as { lexpr?: Node; rexpr?: Node } | undefined;
  if (operator !== undefined) return recordedOnce(operator.lexpr) && recordedOnce(operator.rexpr);
  const call = expr.FuncCall as { funcname?: Array<{ String?: { sval?: string } }>; args?: Node[] } | undefined;
  const name = call?.funcname?.at(-1)?.String?.sval;
  return name !== undefined && stableCalls.has(name) && (call!.args ?? []).length === 0;
}

// Column types whose default is a new sequence's nextval(), computed for each row.
const serialTypes = new Set(['serial', 'serial2', 'serial4', 'serial8', 'smallserial', 'bigserial']);

// What adding this constraint does to the rows already there.
function constraintWork(constraint: Constraint, column: boolean): Pick<TableHold, 'lock' | 'doing'> | undefined {
  switch (constraint.contype) {
    case 'CONSTR_CHECK':
      return constraint.skip_validation ? undefined : { lock: 'ACCESS EXCLUSIVE', doing: 'scans every row (a CHECK without NOT VALID)' };
    case 'CONSTR_FOREIGN':
      // A new column holds no value yet for the key to check.
      return constraint.skip_validation || column ? undefined : { lock: 'SHARE ROW EXCLUSIVE', doing: 'scans every row (a FOREIGN KEY without NOT VALID)' };
    case 'CONSTR_PRIMARY':
    case 'CONSTR_UNIQUE':
    case 'CONSTR_EXCLUSION':
      return constraint.indexname === undefined ? { lock: 'ACCESS EXCLUSIVE', doing: 'builds an index over every row' } : undefined;
    case 'CONSTR_IDENTITY':
      return { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row (an identity column numbers each one)' };
    case 'CONSTR_DEFAULT':
      return column && !recordedOnce(constraint.raw_expr)
        ? { lock: 'ACCESS EXCLUSIVE', doing: 'may rewrite every row (a default that is not a constant is computed for each row when it is volatile)' }
        : undefined;
    case 'CONSTR_GENERATED':
      return constraint.generated_kind === 's' ? { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row (a stored generated column)' } : undefined;
    default:
      return undefined;
  }
}

function alterTableWork(cmd: Node): Pick<TableHold, 'lock' | 'doing' | 'notNullOf'> | undefined {
  const { subtype, def, name } = cmd as { subtype?: string; def?: Node; name?: string };
  switch (subtype) {
    case 'AT_AddColumn': {
      const column = def?.ColumnDef as { constraints?: unknown[]; typeName?: { names?: Array<{ String?: { sval?: string } }> } } | undefined;
      if (serialTypes.has(column?.typeName?.names?.at(-1)?.String?.sval ?? '')) {
        return { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row (a serial column numbers each one)' };
      }
      const constraints = (column?.constraints ?? []).map(constraintOf);
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
    case 'AT_SetLogged':
    case 'AT_SetUnLogged':
      return { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row (SET LOGGED or UNLOGGED)' };
    case 'AT_SetNotNull':
      return { lock: 'ACCESS EXCLUSIVE', doing: 'scans every row (SET NOT NULL, unless a valid CHECK (column IS NOT NULL) proves it)', ...(name === undefined ? {} : { notNullOf: name }) };
    default:
      return undefined;
  }
}

/**
 * The constraints a statement validates (`ALTER TABLE … VALIDATE CONSTRAINT`), each with its
 * table's {@link tableKey}: a SET NOT NULL after it, in the same file or a later one of the run,
 * scans nothing where it is the CHECK (column IS NOT NULL) the README's steps validate, which
 * the catalog cannot tell before the run.
 *
 * @example validatedConstraints(parseSync('ALTER TABLE t VALIDATE CONSTRAINT t_n_nn').stmts[0].stmt) // [{ table: 'public.t', constraint: 't_n_nn' }]
 */
export function validatedConstraints(node: Node): Array<{ table: string; constraint: string }> {
  const alter = node.AlterTableStmt as { relation?: RangeVar; cmds?: Array<{ AlterTableCmd?: { subtype?: string; name?: string } }>; objtype?: string } | undefined;
  if (alter?.objtype !== 'OBJECT_TABLE' || alter.relation?.relname === undefined) return [];
  const table = tableKey(alter.relation);
  return (alter.cmds ?? []).flatMap(({ AlterTableCmd: cmd }) => (cmd?.subtype === 'AT_ValidateConstraint' && cmd.name !== undefined ? [{ table, constraint: cmd.name }] : []));
}

/**
 * The key under which a file's tables are known (those it created, those it locked): `schema.name`,
 * public where the file named no schema (the migrator runs with public first in search_path).
 *
 * @example tableKey({ relname: 'audit' }) // 'public.audit'
 */
export function tableKey(relation: RangeVar): string {
  return `${relation.schemaname ?? 'public'}.${relation.relname}`;
}

/**
 * A relation as a statement names it, quoted, as `to_regclass` and SQL read it: `"audit"."events"`,
 * `"users"` where the file named no schema.
 *
 * @example quotedName({ schemaname: 'audit', relname: 'Events' }) // '"audit"."Events"'
 */
export function quotedName(relation: RangeVar): string {
  return nameParts(relation).map((part) => pg.escapeIdentifier(part)).join('.');
}

const nameParts = (relation: RangeVar) => [relation.schemaname, relation.relname].filter((part): part is string => part !== undefined);

// The relation a DROP names by a list of names (`[schema,] name`), with `objectName` for what
// follows it (a trigger's, a policy's or a rule's own name, after its table's).
function droppedRelation(items: Array<{ String?: { sval?: string } }> | undefined, objectName: boolean): RangeVar | undefined {
  const parts = (items ?? []).map((item) => item.String?.sval).slice(0, objectName ? -1 : undefined);
  const relname = parts.at(-1);
  const schemaname = parts.length > 1 ? parts.at(-2) : undefined;
  return relname === undefined ? undefined : { ...(schemaname === undefined ? {} : { schemaname }), relname, inh: true };
}

const createdBefore = (relation: RangeVar, createdHere: ReadonlySet<string>) => createdHere.has(tableKey(relation));

function held(relation: RangeVar | undefined, work: Pick<TableHold, 'lock' | 'doing' | 'notNullOf'> | undefined, createdHere: ReadonlySet<string>): TableHold | undefined {
  if (relation?.relname === undefined || work === undefined || createdBefore(relation, createdHere)) return undefined;
  return { table: nameParts(relation).join('.'), ref: quotedName(relation), only: relation.inh !== true, ...work, ...(relation.index ? { index: true as const } : {}) };
}

/**
 * Whether `node` (a statement's parse tree) holds a table's lock while it rewrites or scans every
 * row of it, or builds an index over them: the table's queries wait for the whole statement,
 * however short its wait for the lock was. A table the same file created before (in
 * `createdHere`) has no traffic yet.
 *
 * @example
 * tableHold(parseSync('ALTER TABLE users ADD CONSTRAINT c CHECK (id IS NOT NULL)').stmts[0].stmt, new Set())
 * // { table: 'users', ref: '"users"', lock: 'ACCESS EXCLUSIVE', doing: 'scans every row (a CHECK without NOT VALID)', only: false }
 */
export function tableHold(node: Node, createdHere: ReadonlySet<string>): TableHold | undefined {
  const alter = node.AlterTableStmt as { relation?: RangeVar; cmds?: Array<{ AlterTableCmd?: Node }>; objtype?: string } | undefined;
  if (alter !== undefined && alter.objtype === 'OBJECT_TABLE') {
    const works = (alter.cmds ?? []).flatMap(({ AlterTableCmd: cmd }) => {
      const work = cmd && alterTableWork(cmd);
      return work ? [work] : [];
    });
    // A SET NOT NULL that a validated CHECK may spare (notNullOf) is said by itself only where
    // it is the statement's one piece of work: beside another, the statement scans all the same.
    const work = works.find((each) => each.notNullOf === undefined) ?? works[0];
    if (work === undefined) return undefined;
    return held(alter.relation, works.length === 1 ? work : { lock: work.lock, doing: work.doing }, createdHere);
  }
  const index = node.IndexStmt as { relation?: RangeVar; concurrent?: boolean } | undefined;
  if (index !== undefined) {
    return index.concurrent ? undefined : held(index.relation, { lock: 'SHARE', doing: 'builds an index over every row (writes wait; CREATE INDEX CONCURRENTLY does not block them)' }, createdHere);
  }
  const vacuum = node.VacuumStmt as { options?: OptionNode[]; rels?: Array<{ VacuumRelation?: { relation?: RangeVar } }> } | undefined;
  if (vacuum !== undefined && optionOn(vacuum.options, 'full')) {
    return held(vacuum.rels?.[0]?.VacuumRelation?.relation, { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row (VACUUM FULL)' }, createdHere);
  }
  const cluster = node.ClusterStmt as { relation?: RangeVar } | undefined;
  if (cluster) return held(cluster.relation, { lock: 'ACCESS EXCLUSIVE', doing: 'rewrites every row (CLUSTER)' }, createdHere);
  const refresh = node.RefreshMatViewStmt as { relation?: RangeVar; concurrent?: boolean } | undefined;
  return refresh && !refresh.concurrent
    ? held(refresh.relation, { lock: 'ACCESS EXCLUSIVE', doing: 'computes every row again (REFRESH MATERIALIZED VIEW without CONCURRENTLY: reads of it wait)' }, createdHere)
    : undefined;
}

// Commands whose second word is a name, not part of the command: said by their kind.
const commandOfKind: Record<string, string> = {
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE',
  MergeStmt: 'MERGE',
  InsertStmt: 'INSERT',
  TruncateStmt: 'TRUNCATE',
  LockStmt: 'LOCK TABLE',
  ClusterStmt: 'CLUSTER',
  RenameStmt: 'ALTER TABLE',
  CreateTrigStmt: 'CREATE TRIGGER',
  ReindexStmt: 'REINDEX',
  CreateStmt: 'CREATE TABLE',
  RefreshMatViewStmt: 'REFRESH MATERIALIZED VIEW',
};

/**
 * A statement's command, as the warnings name it: `ALTER TABLE`, `CREATE UNIQUE INDEX`, `UPDATE`.
 *
 * @example statementWords('UpdateStmt', 'UPDATE users SET theme = 1') // 'UPDATE'
 */
export function statementWords(kind: string, text: string): string {
  if (kind === 'IndexStmt') return /^\s*create\s+unique\b/i.test(text) ? 'CREATE UNIQUE INDEX' : 'CREATE INDEX';
  return commandOfKind[kind] ?? leadingWords(text) ?? kind;
}

/** A table an earlier statement of a transactional file locked, and keeps locked until COMMIT. */
export interface LockKeptUntilCommit {
  relation: RangeVar;
  lock: TableHold['lock'];
  /** Where it was taken: "line 1's ALTER TABLE". */
  takenBy: string;
}

// ALTER TABLE's subcommands that take SHARE UPDATE EXCLUSIVE, which neither reads nor writes wait
// for (ATTACH PARTITION: on the parent; the partition attached gets ACCESS EXCLUSIVE, below), or
// SHARE ROW EXCLUSIVE, which writes wait for.
const neitherReadsNorWritesWait = new Set([
  'AT_ValidateConstraint',
  'AT_SetStatistics',
  'AT_SetOptions',
  'AT_ResetOptions',
  'AT_ClusterOn',
  'AT_DropCluster',
  'AT_SetRelOptions',
  'AT_ResetRelOptions',
  'AT_AttachPartition',
]);
const writesWait = new Set(['AT_EnableTrig', 'AT_DisableTrig', 'AT_EnableAlwaysTrig', 'AT_EnableReplicaTrig', 'AT_EnableTrigAll', 'AT_DisableTrigAll', 'AT_EnableTrigUser', 'AT_DisableTrigUser']);
// LOCK TABLE's modes (PostgreSQL's lock numbers) that reads or writes wait for.
const lockModes: Record<number, TableHold['lock']> = { 5: 'SHARE', 6: 'SHARE ROW EXCLUSIVE', 7: 'EXCLUSIVE', 8: 'ACCESS EXCLUSIVE' };
const strength: Record<TableHold['lock'], number> = { SHARE: 1, 'SHARE ROW EXCLUSIVE': 2, EXCLUSIVE: 3, 'ACCESS EXCLUSIVE': 4 };
// What DROP names as `ON table` (its last name the object's own), taking ACCESS EXCLUSIVE on the table.
const droppedFromTable = new Set(['OBJECT_TRIGGER', 'OBJECT_POLICY', 'OBJECT_RULE']);
// Renaming a table, a column or a constraint takes ACCESS EXCLUSIVE on the table.
const tableRenames = new Set(['OBJECT_TABLE', 'OBJECT_COLUMN', 'OBJECT_TABCONSTRAINT']);

/** Whether `lock` makes more of the table's queries wait than `than`. @example stronger('ACCESS EXCLUSIVE', 'SHARE') // true */
export function stronger(lock: TableHold['lock'], than: TableHold['lock']): boolean {
  return strength[lock] > strength[than];
}

function alterTableLock(cmds: Array<{ AlterTableCmd?: Node }>): TableHold['lock'] | undefined {
  let lock: TableHold['lock'] | undefined;
  for (const { AlterTableCmd: cmd } of cmds) {
    const { subtype, def } = (cmd ?? {}) as { subtype?: string; def?: Node };
    if (subtype === undefined || neitherReadsNorWritesWait.has(subtype)) continue;
    const foreignKey = subtype === 'AT_AddConstraint' && constraintOf(def)?.contype === 'CONSTR_FOREIGN';
    const taken = writesWait.has(subtype) || foreignKey ? 'SHARE ROW EXCLUSIVE' : 'ACCESS EXCLUSIVE';
    if (lock === undefined || stronger(taken, lock)) lock = taken;
  }
  return lock;
}

// The tables a statement's foreign keys reference, which it locks SHARE ROW EXCLUSIVE (writes
// of them wait): in CREATE TABLE's columns and constraints, ALTER TABLE's ADD COLUMN and ADD CONSTRAINT.
function referencedTables(constraints: unknown[]): RangeVar[] {
  return constraints.flatMap((node) => {
    const constraint = constraintOf(node) as (Constraint & { pktable?: RangeVar }) | undefined;
    return constraint?.contype === 'CONSTR_FOREIGN' && constraint.pktable !== undefined ? [constraint.pktable] : [];
  });
}
const columnConstraints = (node: unknown) => ((node as { ColumnDef?: { constraints?: unknown[] } } | undefined)?.ColumnDef?.constraints ?? []);

/**
 * The tables `node` locks so that reads or writes of them wait, for as long as the transaction
 * lasts: ALTER TABLE (most of its subcommands, however quick; a partition it attaches; the
 * tables its foreign keys reference), a rename, CREATE TABLE's references and the parent of a
 * partition, CREATE INDEX, CREATE TRIGGER, REINDEX, TRUNCATE, LOCK TABLE, CLUSTER, a policy or
 * rule made or dropped, DROP TRIGGER, REFRESH MATERIALIZED VIEW (not CONCURRENTLY), and DROP
 * INDEX: the table of an index the file created before (`indexesHere`, by {@link tableKey} of
 * the index), else the index it names, whose table the catalog tells (`index`). Tables the
 * file created before have no traffic yet.
 *
 * @example locksKept(parseSync('ALTER TABLE users ADD COLUMN theme text').stmts[0].stmt, new Set()) // [{ relation: { relname: 'users', … }, lock: 'ACCESS EXCLUSIVE' }]
 */
export function locksKept(
  node: Node,
  createdHere: ReadonlySet<string>,
  indexesHere: ReadonlyMap<string, RangeVar> = new Map(),
): Array<{ relation: RangeVar; lock: TableHold['lock'] }> {
  const kept = (relation: RangeVar | undefined, lock: TableHold['lock'] | undefined) =>
    relation?.relname === undefined || lock === undefined || createdBefore(relation, createdHere) ? [] : [{ relation, lock }];
  const references = (constraints: unknown[]) => referencedTables(constraints).flatMap((table) => kept(table, 'SHARE ROW EXCLUSIVE'));
  const relations = (list: unknown) => ((list ?? []) as Array<{ RangeVar?: RangeVar }>).map((item) => item.RangeVar);

  const alter = node.AlterTableStmt as { relation?: RangeVar; cmds?: Array<{ AlterTableCmd?: Node }>; objtype?: string } | undefined;
  if (alter !== undefined) {
    if (alter.objtype !== 'OBJECT_TABLE') return [];
    const cmds = (alter.cmds ?? []).flatMap(({ AlterTableCmd: cmd }) => (cmd ? [cmd as { subtype?: string; def?: Node }] : []));
    return [
      ...kept(alter.relation, alterTableLock(alter.cmds ?? [])),
      ...cmds.flatMap(({ subtype, def }) =>
        subtype === 'AT_AttachPartition'
          ? kept((def?.PartitionCmd as { name?: RangeVar } | undefined)?.name, 'ACCESS EXCLUSIVE')
          : references(subtype === 'AT_AddColumn' ? columnConstraints(def) : subtype === 'AT_AddConstraint' ? [def] : []),
      ),
    ];
  }
  const rename = node.RenameStmt as { renameType?: string; relation?: RangeVar } | undefined;
  if (rename !== undefined) return tableRenames.has(rename.renameType ?? '') ? kept(rename.relation, 'ACCESS EXCLUSIVE') : [];
  const create = node.CreateStmt as { tableElts?: unknown[]; inhRelations?: unknown; partbound?: unknown } | undefined;
  if (create !== undefined) {
    const elements = create.tableElts ?? [];
    return [
      ...references([...elements.flatMap(columnConstraints), ...elements]),
      // A new partition locks its parent ACCESS EXCLUSIVE; a child of plain inheritance, SHARE UPDATE EXCLUSIVE.
      ...(create.partbound === undefined ? [] : relations(create.inhRelations).flatMap((parent) => kept(parent, 'ACCESS EXCLUSIVE'))),
    ];
  }
  const index = node.IndexStmt as { relation?: RangeVar; concurrent?: boolean } | undefined;
  if (index !== undefined) return index.concurrent ? [] : kept(index.relation, 'SHARE');
  const trigger = node.CreateTrigStmt as { relation?: RangeVar } | undefined;
  if (trigger !== undefined) return kept(trigger.relation, 'SHARE ROW EXCLUSIVE');
  const reindex = node.ReindexStmt as { kind?: string; relation?: RangeVar; params?: OptionNode[] } | undefined;
  if (reindex !== undefined) return reindex.kind === 'REINDEX_OBJECT_TABLE' && !optionOn(reindex.params, 'concurrently') ? kept(reindex.relation, 'SHARE') : [];
  const truncate = node.TruncateStmt as { relations?: unknown } | undefined;
  if (truncate !== undefined) return relations(truncate.relations).flatMap((relation) => kept(relation, 'ACCESS EXCLUSIVE'));
  const lock = node.LockStmt as { relations?: unknown; mode?: number } | undefined;
  if (lock !== undefined) return relations(lock.relations).flatMap((relation) => kept(relation, lockModes[lock.mode ?? 8]));
  const cluster = node.ClusterStmt as { relation?: RangeVar } | undefined;
  if (cluster !== undefined) return kept(cluster.relation, 'ACCESS EXCLUSIVE');
  // A policy or a rule, made or dropped, and a trigger dropped: ACCESS EXCLUSIVE on its table.
  const policy = node.CreatePolicyStmt as { table?: RangeVar } | undefined;
  if (policy !== undefined) return kept(policy.table, 'ACCESS EXCLUSIVE');
  const rule = node.RuleStmt as { relation?: RangeVar } | undefined;
  if (rule !== undefined) return kept(rule.relation, 'ACCESS EXCLUSIVE');
  const refresh = node.RefreshMatViewStmt as { relation?: RangeVar; concurrent?: boolean } | undefined;
  if (refresh !== undefined) return refresh.concurrent ? [] : kept(refresh.relation, 'ACCESS EXCLUSIVE');
  const drop = node.DropStmt as { removeType?: string; concurrent?: boolean; objects?: Array<{ List?: { items?: Array<{ String?: { sval?: string } }> } }> } | undefined;
  if (drop !== undefined && droppedFromTable.has(drop.removeType ?? '')) {
    return (drop.objects ?? []).flatMap(({ List: name }) => kept(droppedRelation(name?.items, true), 'ACCESS EXCLUSIVE'));
  }
  if (drop?.removeType !== 'OBJECT_INDEX' || drop.concurrent) return [];
  // Inherited (inh): a partitioned index's table holds its rows in its partitions.
  return (drop.objects ?? []).flatMap(({ List: name }) => {
    const named = droppedRelation(name?.items, false);
    if (named === undefined) return [];
    const index: RangeVar = { ...named, index: true };
    return kept(indexesHere.get(tableKey(index)) ?? index, 'ACCESS EXCLUSIVE');
  });
}

// The kept locks' tables were checked against those the file created when they were kept.
const noTables: ReadonlySet<string> = new Set();

// A query that reads a table's rows: a FROM, in either side of a UNION, INTERSECT or EXCEPT too.
interface SelectBody {
  valuesLists?: unknown[];
  fromClause?: unknown[];
  larg?: SelectBody;
  rarg?: SelectBody;
}
const readsRows = (select: SelectBody | undefined): boolean =>
  select !== undefined && select.valuesLists === undefined && ((select.fromClause ?? []).length > 0 || readsRows(select.larg) || readsRows(select.rarg));

// What writes rows in bulk: UPDATE, DELETE, MERGE, an INSERT of a query's rows (one of VALUES,
// or of a SELECT without FROM, writes the rows it lists), each also inside a WITH.
function bulkWriteTargets(node: Node | undefined): RangeVar[] {
  if (node === undefined) return [];
  const [kind, statement] = Object.entries(node)[0] ?? [];
  const body = statement as { relation?: RangeVar; withClause?: { ctes?: Array<{ CommonTableExpr?: { ctequery?: Node } }> }; selectStmt?: { SelectStmt?: { valuesLists?: unknown[]; fromClause?: unknown[] } } } | undefined;
  const inWith = (body?.withClause?.ctes ?? []).flatMap((cte) => bulkWriteTargets(cte.CommonTableExpr?.ctequery));
  const select = body?.selectStmt?.SelectStmt;
  const writes = kind === 'UpdateStmt' || kind === 'DeleteStmt' || kind === 'MergeStmt' || (kind === 'InsertStmt' && select !== undefined && readsRows(select));
  return [...(writes && body?.relation !== undefined ? [body.relation] : []), ...inWith];
}

/**
 * For a statement of a transactional file that writes rows in bulk (a backfill's `UPDATE`,
 * `DELETE`, `MERGE`, `INSERT … SELECT`, in a `WITH` too): the tables earlier statements of the
 * file locked, which stay locked while it runs, since locks last until COMMIT. The `ALTER
 * TABLE` that adds a column takes ACCESS EXCLUSIVE for a moment's work, and an `UPDATE` of
 * every row after it in the same file keeps every read of the table waiting for as long as the
 * update runs. The tables it writes come first, then the others by how much their locks make
 * wait (`kept` holds each table once, with its strongest lock).
 *
 * @example heldWhileWriting(parseSync("UPDATE users SET theme = 'light'").stmts[0].stmt, kept) // [{ table: 'users', lock: 'ACCESS EXCLUSIVE', doing: "writes rows …", … }]
 */
export function heldWhileWriting(node: Node, kept: Iterable<LockKeptUntilCommit>): TableHold[] {
  const written = new Set(bulkWriteTargets(node).map(tableKey));
  if (written.size === 0) return [];
  const order = (lock: LockKeptUntilCommit) => (written.has(tableKey(lock.relation)) ? 10 : 0) + strength[lock.lock];
  return [...kept]
    .sort((a, b) => order(b) - order(a))
    .flatMap(({ relation, lock, takenBy }) =>
      held(relation, { lock, doing: `writes rows while the lock ${takenBy} took stays, until the file's COMMIT (write rows in batches, in a later file with -- migrate:no-transaction)` }, noTables) ?? [],
    );
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
  // Each statement's tables, its own hold first: the first with rows is said. A SET NOT NULL's
  // with the constraints a VALIDATE CONSTRAINT of the run validated on its table before it
  // (the README's steps, in one file: warned about as a scan, the file was safe).
  const holds: Array<{ script: MigrationScript; statement: MigrationScript['statements'][number]; hold: TableHold; validated: string }> = [];
  const validated: Array<{ table: string; constraint: string }> = [];
  for (const script of scripts) {
    for (const statement of script.statements) {
      for (const hold of [statement.holds ?? [], statement.whileLocked ?? []].flat()) {
        const table = hold.table.includes('.') ? hold.table : `public.${hold.table}`;
        const before = hold.notNullOf === undefined ? [] : validated.filter((each) => each.table === table).map((each) => each.constraint);
        holds.push({ script, statement, hold, validated: before.join('\x1f') });
      }
      validated.push(...(statement.validates ?? []));
    }
  }
  if (holds.length === 0) return [];
  // A partitioned table, or a parent of inheritance, holds its rows in the tables below it (and
  // autovacuum never counts a partitioned one's): counted over all of them, unless ONLY. An
  // index (DROP INDEX's) stands for its table, named as the migrator's search_path prints it.
  // SET NOT NULL scans nothing where a validated CHECK (column IS NOT NULL) proves it, as the
  // README's steps leave it: that hold is not said. Validated in the catalog already, or by the
  // run before it (above).
  const { rows } = await client.query<{ n: number; rows: string; name: string }>(
    `WITH RECURSIVE named AS (
       SELECT a.n::int AS n, a.alone, a.not_null, pg_catalog.string_to_array(a.validated, E'\\x1f') AS validated, pg_catalog.to_regclass(a.ref) AS relid
         FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::boolean[]), pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::text[]))
              WITH ORDINALITY AS a(ref, alone, not_null, validated, n)
     ), asked AS (
       SELECT n, alone, coalesce((SELECT x.indrelid FROM pg_catalog.pg_index x WHERE x.indexrelid = named.relid), relid) AS relid FROM named
        WHERE not_null IS NULL OR NOT EXISTS (
          SELECT 1 FROM pg_catalog.pg_constraint c
           WHERE c.conrelid = named.relid AND c.contype = 'c' AND (c.convalidated OR c.conname = ANY (named.validated))
             AND pg_catalog.pg_get_constraintdef(c.oid) = 'CHECK ((' || pg_catalog.quote_ident(not_null) || ' IS NOT NULL))' ||
               CASE WHEN c.convalidated THEN '' ELSE ' NOT VALID' END)
     ), tree AS (
       SELECT n, relid FROM asked WHERE relid IS NOT NULL
       UNION
       SELECT t.n, i.inhrelid FROM tree t JOIN asked a USING (n) JOIN pg_catalog.pg_inherits i ON i.inhparent = t.relid WHERE NOT a.alone
     )
     SELECT t.n, sum(greatest(c.reltuples, 0))::bigint::text AS rows, a.relid::pg_catalog.regclass::text AS name
       FROM tree t JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN asked a USING (n)
      GROUP BY t.n, a.relid
     HAVING sum(greatest(c.reltuples, 0)) > 0 OR sum(c.relpages) > 0`,
    [holds.map(({ hold }) => hold.ref), holds.map(({ hold }) => hold.only), holds.map(({ hold }) => hold.notNullOf ?? null), holds.map(({ validated: names }) => names)],
  );
  const sizes = new Map(rows.map((row) => [row.n, row]));
  const said = new Set<MigrationScript['statements'][number]>();
  return holds.flatMap(({ script, statement, hold }, index) => {
    const size = sizes.get(index + 1);
    if (size === undefined || said.has(statement)) return [];
    said.add(statement);
    const words = statementWords(statement.kind, statement.text);
    const table = hold.index ? `${size.name} (the table of the index ${hold.table})` : hold.table;
    return [
      `${script.file}:${statement.line}: ${words} holds ${hold.lock} on ${table} (about ${size.rows} rows) while it ${hold.doing}: ` +
        "the table's queries wait for the whole statement, and past the services' lock_timeout they fail. Unless that is meant " +
        '(a maintenance window), write it in steps that hold the lock briefly (README: A migration that meets a long transaction)',
    ];
  });
}
