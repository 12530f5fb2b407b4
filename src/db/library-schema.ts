import {
  createQueryId,
  type Kysely,
  type KyselyPlugin,
  type OperationNode,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RawBuilder,
  type RootOperationNode,
  sql,
  type UnknownRow,
} from 'kysely';
import type { DB } from '../../generated/db.js';

/** The schema the migrations create the library's tables and functions in. */
export const librarySchema = 'public';

// Kysely's operation nodes, as far as this file looks into them: frozen plain objects.
type Node = OperationNode & Record<string, unknown>;

const isNode = (value: unknown): value is Node => typeof value === 'object' && value !== null && typeof (value as Node).kind === 'string';

// Where a node names a table to read or write, rather than a column's table or a lock target
// (`FOR UPDATE OF t` takes no schema): node kind → its fields that hold such tables.
const tablePositions: Record<string, readonly string[]> = {
  FromNode: ['froms'],
  JoinNode: ['table'],
  InsertQueryNode: ['into'],
  UpdateQueryNode: ['table'],
  UsingNode: ['tables'],
  MergeQueryNode: ['into'],
  RawNode: ['parameters'], // sql.table('users')
};

// Nodes the walk does not enter: values are the caller's data (a jsonb value may look like a
// node), and the others never hold a statement; skipping them is most of the walk's speed.
const opaque = new Set([
  'ValueNode',
  'PrimitiveValueListNode',
  'DefaultInsertValueNode',
  'IdentifierNode',
  'SchemableIdentifierNode',
  'TableNode',
  'ColumnNode',
  'ReferenceNode',
  'OperatorNode',
  'SelectAllNode',
]);

// CTE names are not tables: `with "owner" as (…) … from "owner"` stays as it is. The names are
// gathered when the walk enters a statement, before its FROM is looked at.
function addCteNames(node: Node, ctes: Set<string>): void {
  const expressions = (node.with as { expressions?: Array<{ name: { table: { table: { identifier: { name: string } } } } }> } | undefined)
    ?.expressions;
  for (const expression of expressions ?? []) ctes.add(expression.name.table.table.identifier.name);
}

function tableInSchema(node: unknown, ctes: Set<string>): unknown {
  if (!isNode(node)) return node;
  if (node.kind === 'TableNode') {
    const { table } = node as unknown as { table: { schema?: unknown; identifier: { name: string } } };
    if (table.schema !== undefined || ctes.has(table.identifier.name)) return node;
    return Object.freeze({ ...node, table: Object.freeze({ ...table, schema: schemaNode }) });
  }
  if (node.kind === 'AliasNode') {
    const inner = tableInSchema(node.node, ctes);
    return inner === node.node ? node : Object.freeze({ ...node, node: inner });
  }
  return qualify(node, ctes);
}

const schemaNode = Object.freeze({ kind: 'IdentifierNode', name: librarySchema });

// Rebuilds only the nodes on the way to a table it qualifies; everything else is shared.
// Plain loops over Object.keys: this runs for every statement built per call.
function qualify(node: Node, ctes: Set<string>): Node {
  if (opaque.has(node.kind)) return node;
  if (node.with !== undefined) addCteNames(node, ctes);
  const positions = tablePositions[node.kind];
  const keys = Object.keys(node);
  let changed: Node | undefined;
  for (let k = 0; k < keys.length; k++) {
    const key = keys[k]!;
    const child = node[key];
    if (typeof child !== 'object' || child === null) continue;
    const inPosition = positions !== undefined && positions.includes(key);
    let next: unknown;
    if (Array.isArray(child)) next = qualifyList(child, ctes, inPosition);
    else if (!isNode(child)) continue;
    else next = inPosition ? tableInSchema(child, ctes) : qualify(child, ctes);
    if (next !== child) (changed ??= { ...node })[key] = next;
  }
  return changed === undefined ? node : (Object.freeze(changed) as Node);
}

function qualifyList(list: readonly unknown[], ctes: Set<string>, inPosition: boolean): readonly unknown[] {
  let changed: unknown[] | undefined;
  for (let index = 0; index < list.length; index++) {
    const item = list[index];
    if (!isNode(item)) continue;
    const next = inPosition ? tableInSchema(item, ctes) : qualify(item, ctes);
    if (next !== item) (changed ??= [...list])[index] = next;
  }
  return changed === undefined ? list : Object.freeze(changed);
}

const librarySchemaPluginBrand = Symbol.for('@kennwilliamson/db/library-schema-plugin');

/**
 * Names the library's schema for every table a statement reads or writes (`from
 * "public"."users"`), except CTE names; column references stay as they are (`"users"."id"`:
 * the table keeps its name in the query). A lighter cousin of Kysely's `WithSchemaPlugin`, which
 * rebuilds every node of the statement and qualifies every column too: this one walks the tree
 * and rebuilds only the nodes on the way to a table, which keeps the statements that are built
 * per call nearly as cheap as before.
 */
export class LibrarySchemaPlugin implements KyselyPlugin {
  // Told apart by a registered symbol, as both builds of this package (ESM, CommonJS) make one.
  readonly [librarySchemaPluginBrand] = true;

  transformQuery({ node }: PluginTransformQueryArgs): RootOperationNode {
    return qualify(node as unknown as Node, new Set()) as unknown as RootOperationNode;
  }

  async transformResult({ result }: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return result;
  }
}

const plugin = new LibrarySchemaPlugin();

// One qualified instance per root Kysely, so the common call allocates nothing; a
// transaction lives for one call, and gets its own.
const qualified = new WeakMap<Kysely<DB>, Kysely<DB>>();

// A statement of one table without a schema, as Kysely builds it: a plugin that gives its
// table a schema is a `withSchema` (Kysely's WithSchemaPlugin, or one like it).
const unqualifiedProbe = Object.freeze({
  kind: 'SelectQueryNode',
  from: Object.freeze({
    kind: 'FromNode',
    froms: Object.freeze([
      Object.freeze({
        kind: 'TableNode',
        table: Object.freeze({ kind: 'SchemableIdentifierNode', identifier: Object.freeze({ kind: 'IdentifierNode', name: 'kw_schema_probe' }) }),
      }),
    ]),
  }),
}) as unknown as RootOperationNode;

// Per plugin instance, which a transaction shares with its Kysely: asked once each.
const setsSchema = new WeakMap<KyselyPlugin, boolean>();

// Asked of what a plugin does, not of its class: `instanceof WithSchemaPlugin` fails for a
// plugin of another copy of Kysely (a CommonJS service's own beside the one this build loads).
// The library's own plugin is not one: it only fills in the schema where none is named.
function givesSchema(plugin: KyselyPlugin): boolean {
  if ((plugin as { [librarySchemaPluginBrand]?: boolean })[librarySchemaPluginBrand] === true) return false;
  let found = setsSchema.get(plugin);
  if (found === undefined) {
    try {
      const node = plugin.transformQuery({ node: unqualifiedProbe, queryId: createQueryId() }) as unknown as {
        from?: { froms?: Array<{ table?: { schema?: unknown } }> };
      };
      found = node.from?.froms?.[0]?.table?.schema !== undefined;
    } catch {
      found = false;
    }
    setsSchema.set(plugin, found);
  }
  return found;
}

/**
 * `db` (or a transaction) whose statements name the library's schema for every table they
 * read or write (`"public"."users"`): a `search_path` changed on a shared server connection
 * (pg_dump leaves `''` behind a transaction-mode pooler; CVE-2018-1058 is a schema that
 * shadows `users`) can neither break nor redirect a statement of the library. Names inside raw
 * `sql` need {@link libraryTable} and {@link libraryFunction}. Statements built by prepareQuery
 * are qualified when compiled, at no cost per call. A caller's `withSchema` does not move the
 * library's tables: then Kysely's own `withSchema(librarySchema)` goes in front of it.
 *
 * @example
 * await inLibrarySchema(db).selectFrom('users').select('users.id').where('slug', '=', slug).execute()
 * // select "users"."id" from "public"."users" where "slug" = $1
 */
export function inLibrarySchema(db: Kysely<DB>): Kysely<DB> {
  const found = qualified.get(db);
  if (found !== undefined) return found;
  const plugins = db.getExecutor().plugins;
  const result = plugins.some(givesSchema) ? db.withSchema(librarySchema) : db.withPlugin(plugin);
  if (!db.isTransaction) qualified.set(db, result);
  return result;
}

/**
 * A table of the library, qualified, for raw `sql` fragments.
 *
 * @example sql`(SELECT max(p.draw_no) FROM ${libraryTable('phrases')} p)` // … FROM "public"."phrases" p
 */
export function libraryTable(table: keyof DB & string): RawBuilder<unknown> {
  return sql.table(`${librarySchema}.${table}`);
}

/**
 * A function the migrations create, qualified, for raw `sql` fragments: `uuid_generate_v7`.
 *
 * @example sql<string>`${libraryFunction('uuid_generate_v7')}()` // "public"."uuid_generate_v7"()
 */
export function libraryFunction(name: 'uuid_generate_v7'): RawBuilder<unknown> {
  return sql.id(librarySchema, name);
}
