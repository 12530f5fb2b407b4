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

// Every function a parse tree calls, by its name as the parser read it (quotes and escapes
// undone), with its call.
function calls(tree: unknown, found: Array<{ name: string; call: FuncCallNode }> = []): Array<{ name: string; call: FuncCallNode }> {
  if (Array.isArray(tree)) {
    for (const each of tree) calls(each, found);
  } else if (tree !== null && typeof tree === 'object') {
    const call = (tree as { FuncCall?: FuncCallNode }).FuncCall;
    const name = call?.funcname?.at(-1)?.String?.sval;
    if (call !== undefined && name !== undefined) found.push({ name, call });
    for (const value of Object.values(tree)) calls(value, found);
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
  const unsafe = calls(tree).find(({ name, call }) => unsafeName.test(name) || (name === 'nextval' && !publicSequenceDefault(call)));
  return unsafe?.name;
}

/**
 * Every function name a parse tree calls (libpg_query's tree: a statement, or a whole script),
 * as the parser read it.
 *
 * @example calledNames(parseSync("CREATE TABLE t (e text CHECK (lower(e) = e))")) // ['lower']
 */
export function calledNames(tree: unknown): string[] {
  return calls(tree).map(({ name }) => name);
}

/**
 * The first function the backup's statement calls in an expression that is none of `known`
 * (what the migrations' own SQL calls or creates, see `callsOfMigrations`), or undefined;
 * `nextval` of a sequence of public named as a constant (a serial column's default, as pg_dump
 * writes it) is the migrations' too. Asked before the statement runs, as unsafeCallIn is: a
 * deny-list names what acts beyond the row, but any other call may still spend the server's
 * time or memory for as long as the backup likes (`factorial(20000)`, `repeat('x', 100000000)`
 * in a CHECK, for each row), with every table of public held meanwhile and the server's memory
 * at stake; no expression of a backup this package made calls anything its migrations do not.
 *
 * @example callNoMigrationMakes(part.tree, new Set(['lower', 'now'])) // 'factorial', for "… CHECK (factorial(id + 20000) IS NOT NULL)"
 */
export function callNoMigrationMakes(tree: unknown, known: ReadonlySet<string>): string | undefined {
  const unknown = calls(tree).find(({ name, call }) => !known.has(name) && !(name === 'nextval' && publicSequenceDefault(call)));
  return unknown?.name;
}
