// PostgreSQL's own functions that act beyond the row an expression is computed for: on the
// session (a setting, random()'s seed, pg_trgm's threshold, an advisory lock, a sleep), other
// sessions (a notification, a cancel) or the server (large objects, files, configuration,
// replication, the write-ahead log). As a regular expression's alternation, for the catalog's
// check (PostgreSQL's) and the text's (JavaScript's) alike.
export const actsBeyondTheRowNames = String.raw`set_config|setseed|set_limit|pg_(try_)?advisory_\w+|pg_notify|lo_\w+|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|pg_sleep\w*|setval|pg_stat_reset\w*|pg_log_backend_memory_contexts|pg_promote|pg_switch_wal|pg_create_restore_point|pg_\w+_replication_slot|pg_replication_origin_\w+|pg_file_\w+|pg_read_\w+|pg_ls_\w+|pg_logical_emit_message`;

// PostgreSQL's own functions that run a query given as text: an expression that calls one runs
// whatever the text says, and depends on nothing the catalog records.
export const runsSqlTextNames = String.raw`query_to_xml|query_to_xmlschema|query_to_xml_and_xmlschema|cursor_to_xml|cursor_to_xmlschema|ts_stat|ts_rewrite|database_to_xml|database_to_xmlschema|database_to_xml_and_xmlschema|schema_to_xml|schema_to_xmlschema|schema_to_xml_and_xmlschema|table_to_xml|table_to_xmlschema|table_to_xml_and_xmlschema`;

const unsafeName = new RegExp(`^(${actsBeyondTheRowNames}|${runsSqlTextNames})$`);

interface FuncCallNode {
  funcname?: Array<{ String?: { sval?: string } }>;
  args?: Array<{ TypeCast?: { arg?: ConstantNode }; A_Const?: ConstantNode['A_Const'] }>;
}
interface ConstantNode {
  A_Const?: { sval?: { sval?: string } };
}

// Comparisons cost no more than reading their operands, and pg_dump writes them where the
// migrations said otherwise (BETWEEN as >= and <=, IN as = ANY).
const comparisons = new Set(['=', '<>', '<', '>', '<=', '>=']);

// Computations that are no function call in the parse tree: SQL/XML and SQL/JSON.
const forms = new Set([
  'XmlExpr',
  'XmlSerialize',
  'JsonFuncExpr',
  'JsonParseExpr',
  'JsonScalarExpr',
  'JsonSerializeExpr',
  'JsonObjectConstructor',
  'JsonArrayConstructor',
  'JsonArrayQueryConstructor',
  'JsonObjectAgg',
  'JsonArrayAgg',
  'JsonIsPredicate',
  'JsonTable',
]);

interface OperatorNode {
  kind?: string;
  name?: Array<{ String?: { sval?: string } }>;
}

// The operators an A_Expr applies, as pg_dump writes it back.
function operatorsOf(expression: OperatorNode): string[] {
  switch (expression.kind) {
    case 'AEXPR_BETWEEN':
    case 'AEXPR_BETWEEN_SYM':
      return ['>=', '<='];
    case 'AEXPR_NOT_BETWEEN':
    case 'AEXPR_NOT_BETWEEN_SYM':
      return ['<', '>'];
    case 'AEXPR_DISTINCT':
    case 'AEXPR_NOT_DISTINCT':
    case 'AEXPR_NULLIF':
      return ['='];
    default: {
      const name = expression.name?.at(-1)?.String?.sval;
      return name === undefined ? [] : [name];
    }
  }
}

// What a parse tree computes with, each by its name as the parser read it (quotes and escapes
// undone): the functions it calls (with the call), the operators it applies and the SQL/XML and
// SQL/JSON forms it uses: what both checks of a backup's statement read.
type Computation = { kind: 'function'; name: string; call: FuncCallNode } | { kind: 'operator' | 'form'; name: string };
function computations(tree: unknown, found: Computation[] = []): Computation[] {
  if (Array.isArray(tree)) {
    for (const each of tree) computations(each, found);
  } else if (tree !== null && typeof tree === 'object') {
    for (const [key, value] of Object.entries(tree)) {
      if (key === 'FuncCall') {
        const call = value as FuncCallNode;
        const name = call.funcname?.at(-1)?.String?.sval;
        if (name !== undefined) found.push({ kind: 'function', name, call });
      } else if (key === 'A_Expr') {
        for (const name of operatorsOf(value as OperatorNode)) found.push({ kind: 'operator', name });
      } else if (forms.has(key)) {
        found.push({ kind: 'form', name: key });
      }
      computations(value, found);
    }
  }
  return found;
}

// nextval as pg_dump writes a serial column's default, on a sequence of public named as a
// constant ('public.t_id_seq'::regclass): any other advances a sequence that no rollback resets,
// one of another schema among them, at every row.
function publicSequenceDefault(call: FuncCallNode): boolean {
  const [first, ...rest] = call.args ?? [];
  const named = (first?.TypeCast?.arg?.A_Const ?? first?.A_Const)?.sval?.sval;
  return rest.length === 0 && named !== undefined && /^public\.[^.]+$/.test(named);
}

/**
 * The first function that acts beyond its row, or runs SQL text (or `nextval` other than of a
 * sequence of public named as a constant, as pg_dump writes a serial column's default), which
 * the backup's statement calls in an expression (a CHECK, a default, an index's, a view's, a
 * trigger's WHEN, an argument default), or undefined; `tree` is the statement as the allow-list
 * parsed it (libpg_query's `stmt`). Asked before the statement runs: a CHECK runs for each row
 * as it loads, and what such a call does beyond the transaction (another session ended, a
 * notification sent, a sleep of hours with every table held) stayed done when the check
 * before COMMIT refused it. Read from PostgreSQL's parse tree, so a quoted or escaped name is
 * the name it is. Not for pg_dump's own `SELECT pg_catalog.set_config(…)` and `setval(…)`.
 *
 * @example unsafeCallIn(part.tree) // 'pg_sleep', for "ALTER TABLE ONLY public.t ADD CONSTRAINT c CHECK (pg_catalog.pg_sleep(3600) IS NOT NULL);"
 */
export function unsafeCallIn(tree: unknown): string | undefined {
  const unsafe = computations(tree).find(
    (each) => each.kind === 'function' && (unsafeName.test(each.name) || (each.name === 'nextval' && !publicSequenceDefault(each.call))),
  );
  return unsafe?.name;
}

/** What expressions compute with: the functions they call, the operators they apply, the SQL/XML and SQL/JSON forms they use. */
export interface ExpressionWork {
  functions: ReadonlySet<string>;
  operators: ReadonlySet<string>;
  forms: ReadonlySet<string>;
}

/**
 * What the statements' expressions compute with (libpg_query's trees).
 *
 * @example expressionWork([parseSync("CREATE TABLE t (e text CHECK (lower(e) ~ '^x'))").stmts[0].stmt]) // { functions: Set { 'lower' }, operators: Set { '~' }, forms: Set {} }
 */
export function expressionWork(trees: readonly unknown[]): ExpressionWork {
  const found = computations(trees);
  const of = (kind: string) => new Set(found.filter((each) => each.kind === kind).map((each) => each.name));
  return { functions: of('function'), operators: of('operator'), forms: of('form') };
}

/**
 * The first computation the backup's statement makes in an expression that the migrations'
 * own SQL never makes (`known`, see `callsOfMigrations`), said as the refusal names it
 * (`calls factorial`, `applies the operator ^`), or undefined. Comparisons are always
 * allowed, and `nextval` of a sequence of public named as a constant (a serial column's
 * default, as pg_dump writes it). Asked before the statement runs, as unsafeCallIn is: a
 * deny-list names what acts beyond the row, but any other computation may still spend the
 * server's time or memory for as long as the backup likes (`factorial(20000)`,
 * `repeat('x', 100000000)`, `7::numeric ^ 150000` in a CHECK, for each row), with every table
 * of public held meanwhile and the server's memory at stake; no expression of a backup this
 * package made computes anything its migrations do not.
 *
 * @example workNoMigrationDoes(part.tree, known) // 'calls factorial', for "… CHECK (factorial(id + 20000) IS NOT NULL)"
 */
export function workNoMigrationDoes(tree: unknown, known: ExpressionWork): string | undefined {
  for (const each of computations(tree)) {
    const { kind, name } = each;
    if (kind === 'function' && !known.functions.has(name) && !(name === 'nextval' && publicSequenceDefault(each.call))) return `calls ${name}`;
    if (kind === 'operator' && !comparisons.has(name) && !known.operators.has(name)) return `applies the operator ${name}`;
    if (kind === 'form' && !known.forms.has(name)) return `uses SQL/XML or SQL/JSON (${name})`;
  }
  return undefined;
}

// Where code a backup's statement names may live: PostgreSQL's own, and public's, which the
// restore replaces and checks against the migrations.
const codeSchemas = new Set(['pg_catalog', 'public']);

interface NamedNode {
  names?: Array<{ String?: { sval?: string } }>;
  funcname?: Array<{ String?: { sval?: string } }>;
  name?: Array<{ String?: { sval?: string } }>;
}

// A name of a parse tree, schema-qualified and outside codeSchemas, as `schema.name`.
function beyondPublic(parts: NamedNode['names']): string | undefined {
  const names = (parts ?? []).map((part) => part.String?.sval ?? '');
  return names.length >= 2 && !codeSchemas.has(names.at(-2)!) ? names.join('.') : undefined;
}

/**
 * The first code of another schema than public and pg_catalog that the backup's statement
 * names (a function it calls, an operator it applies, a trigger's function, a column's or
 * cast's type, whose domain CHECK or input function runs), said as the refusal names it
 * (`function reporting.lower`), or undefined; `tree` as the allow-list parsed it. Asked before
 * the statement runs: the names the other checks compare are the last part alone, so a
 * `reporting.lower(…)` in a CHECK passed for `lower`, and a role that may create code in such a
 * schema had it run as the owner while the rows loaded (reading what only the owner may, and
 * leaving its effects in that schema after the rollback), before the check before COMMIT
 * refused it. pg_dump names nothing outside them for this schema.
 *
 * @example codeBeyondPublic(part.tree) // 'function reporting.lower', for "… CHECK ((reporting.lower(name) IS NOT NULL))"
 */
export function codeBeyondPublic(tree: unknown): string | undefined {
  if (Array.isArray(tree)) {
    for (const each of tree) {
      const found = codeBeyondPublic(each);
      if (found !== undefined) return found;
    }
  } else if (tree !== null && typeof tree === 'object') {
    for (const [key, value] of Object.entries(tree)) {
      const node = value as NamedNode;
      const named =
        key === 'FuncCall' ? beyondPublic(node.funcname) && `function ${beyondPublic(node.funcname)}`
        : key === 'A_Expr' ? beyondPublic(node.name) && `operator ${beyondPublic(node.name)}`
        : key === 'CreateTrigStmt' ? beyondPublic(node.funcname) && `trigger function ${beyondPublic(node.funcname)}`
        : key === 'TypeName' || key === 'typeName' ? beyondPublic(node.names) && `type ${beyondPublic(node.names)}`
        : undefined;
      if (named) return named;
      const found = codeBeyondPublic(value);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}
