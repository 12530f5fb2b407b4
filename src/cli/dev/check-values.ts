import { loadModule, parseSync } from 'libpg-query';

/**
 * What a CHECK constraint says about the values of one column:
 * - `values`: it allows exactly these (and NULL, which every CHECK lets through);
 * - `not-understood`: it tests the column against string constants, but not as a plain list
 *   of values (an AND, a NOT IN, a function of the column, a NULL among the values…);
 * - `other`: it tests no value at all (a length, a pattern), so there is nothing to derive.
 */
export type CheckValues = { kind: 'values'; values: string[] } | { kind: 'not-understood' } | { kind: 'other' };

// libpg-query's parse tree, as JSON: one key (the node's type) per node.
type Node = Record<string, any>;

/** Loads PostgreSQL's parser (WebAssembly) once; {@link checkValues} needs it loaded. */
export async function loadCheckParser(): Promise<void> {
  await loadModule();
}

/**
 * Reads a CHECK constraint's expression, as PostgreSQL prints it (`pg_get_expr(conbin,
 * conrelid)`: `status IN ('a', 'b')` comes back as `status = ANY (ARRAY['a'::text,
 * 'b'::text])`), with PostgreSQL's own parser, and says which values it allows `column`.
 * Understood: `col = 'a'`, `col = ANY (ARRAY[…])` (and `col IN (…)`), ORs of them, and casts
 * of the column or the constants to text or varchar of no length, which is how PostgreSQL
 * prints a varchar column's list. Call {@link loadCheckParser} first.
 *
 * @example
 * checkValues("(status = ANY (ARRAY['pending'::text, 'approved'::text]))", 'status')
 * // { kind: 'values', values: ['pending', 'approved'] }
 */
export function checkValues(expression: string, column: string): CheckValues {
  const target = (parseSync(`SELECT ${expression}`) as Node).stmts?.[0]?.stmt?.SelectStmt?.targetList;
  if (!Array.isArray(target) || target.length !== 1) return { kind: 'not-understood' };
  const root = (target[0] as Node).ResTarget?.val as Node | undefined;
  if (root === undefined) return { kind: 'not-understood' };
  const values = valueList(root, column);
  if (values !== undefined) return { kind: 'values', values: [...new Set(values)] };
  return testsValues(root, column) ? { kind: 'not-understood' } : { kind: 'other' };
}

const textTypes = new Set(['text', 'varchar']);

// A cast to text, or to varchar of no length (as PostgreSQL prints a varchar column's list),
// changes nothing about which strings compare equal. Any other does: a length cuts the value
// short ('abcdef'::varchar(3) is 'abc'), char compares without trailing spaces ('a   ' is
// 'a'), so the constants would allow more values than they say.
function uncast(node: Node | undefined): Node | undefined {
  let current = node;
  while (current?.TypeCast !== undefined) {
    const typeName = current.TypeCast.typeName as Node | undefined;
    // PostgreSQL's own types only: the expression is printed with pg_catalog alone on the
    // search_path (columnOverrides), so a type of another schema comes qualified, and a domain
    // public.varchar (of one character) is not taken for varchar.
    const names = ((typeName?.names ?? []) as Node[]).map((name) => name.String?.sval as string | undefined);
    const type = names.length === 1 || (names.length === 2 && names[0] === 'pg_catalog') ? names.at(-1) : undefined;
    if (type === undefined || !textTypes.has(type) || typeName?.typmods !== undefined) return current;
    current = current.TypeCast.arg as Node | undefined;
  }
  return current;
}

function isColumn(node: Node | undefined, column: string): boolean {
  const fields = uncast(node)?.ColumnRef?.fields as Node[] | undefined;
  return fields?.length === 1 && fields[0]!.String?.sval === column;
}

// A string constant; undefined for anything else, NULL included (`col IN ('a', NULL)` lets
// every value through, since `'b' = NULL` is NULL and a CHECK passes on NULL).
function stringConstant(node: Node | undefined): string | undefined {
  const constant = uncast(node)?.A_Const as Node | undefined;
  if (constant === undefined || constant.isnull === true || constant.sval === undefined) return undefined;
  return (constant.sval.sval as string | undefined) ?? '';
}

function constants(nodes: Node[] | undefined): string[] | undefined {
  if (nodes === undefined || nodes.length === 0) return undefined;
  const values = nodes.map(stringConstant);
  return values.every((value) => value !== undefined) ? (values as string[]) : undefined;
}

function operatorOf(expression: Node): string | undefined {
  const names = (expression.name ?? []) as Node[];
  return names.length === 1 ? (names[0]!.String?.sval as string | undefined) : undefined;
}

// The exact list of values the expression allows the column, or undefined when it is not a list.
function valueList(node: Node, column: string): string[] | undefined {
  const expression = node.A_Expr as Node | undefined;
  if (expression !== undefined && operatorOf(expression) === '=') {
    const { kind, lexpr, rexpr } = expression as { kind: string; lexpr?: Node; rexpr?: Node };
    if (kind === 'AEXPR_OP') {
      if (isColumn(lexpr, column)) return constants(rexpr === undefined ? undefined : [rexpr]);
      if (isColumn(rexpr, column)) return constants(lexpr === undefined ? undefined : [lexpr]);
      return undefined;
    }
    if (kind === 'AEXPR_OP_ANY' && isColumn(lexpr, column)) {
      return constants(uncast(rexpr)?.A_ArrayExpr?.elements as Node[] | undefined);
    }
    if (kind === 'AEXPR_IN' && isColumn(lexpr, column)) return constants(rexpr?.List?.items as Node[] | undefined);
    return undefined;
  }
  const bool = node.BoolExpr as Node | undefined;
  if (bool?.boolop === 'OR_EXPR') {
    const lists = (bool.args as Node[]).filter((arg) => !isNullTestOf(arg, column)).map((arg) => valueList(arg, column));
    if (lists.length === 0 || lists.some((list) => list === undefined)) return undefined;
    return lists.flat() as string[];
  }
  return undefined;
}

// `col IS NULL` as one branch of an OR adds nothing: a CHECK lets NULL through anyway.
function isNullTestOf(node: Node, column: string): boolean {
  return node.NullTest?.nulltesttype === 'IS_NULL' && isColumn(node.NullTest.arg as Node | undefined, column);
}

// Whether the column (or an expression of it) is compared for equality with a string constant
// anywhere in the expression: such a constraint means to restrict the column to values, so
// failing to read it as a list is worth saying; so does excluding values (NOT IN). Patterns,
// lengths and a plain `<>` are no such test.
function testsValues(node: unknown, column: string): boolean {
  if (Array.isArray(node)) return node.some((child) => testsValues(child, column));
  if (typeof node !== 'object' || node === null) return false;
  const expression = (node as Node).A_Expr as Node | undefined;
  // `col NOT IN (…)`, which PostgreSQL prints as `col <> ALL (ARRAY[…])`, excludes values: no list.
  const excludes = expression !== undefined && operatorOf(expression) === '<>' && expression.kind === 'AEXPR_OP_ALL';
  if (expression !== undefined && ((operatorOf(expression) === '=' && equalityKinds.has(expression.kind as string)) || excludes)) {
    const sides = [expression.lexpr, expression.rexpr] as Array<Node | undefined>;
    const [left, right] = sides.map((side) => side !== undefined && mentions(side, column));
    const [leftConstant, rightConstant] = sides.map((side) => side !== undefined && hasStringConstant(side));
    if ((left && rightConstant) || (right && leftConstant)) return true;
  }
  return Object.values(node).some((child) => testsValues(child, column));
}

const equalityKinds = new Set(['AEXPR_OP', 'AEXPR_OP_ANY', 'AEXPR_IN']);

function mentions(node: unknown, column: string): boolean {
  if (Array.isArray(node)) return node.some((child) => mentions(child, column));
  if (typeof node !== 'object' || node === null) return false;
  if (isColumn(node as Node, column)) return true;
  return Object.values(node).some((child) => mentions(child, column));
}

function hasStringConstant(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(hasStringConstant);
  if (typeof node !== 'object' || node === null) return false;
  if ((node as Node).A_Const?.sval !== undefined) return true;
  return Object.values(node).some(hasStringConstant);
}
