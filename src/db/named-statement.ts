import type { ClientBase, QueryConfig } from 'pg';
import pgUtils from 'pg/lib/utils.js';
import { libraryTypeParsers } from './library-type-parsers.js';

// pg's own conversion of JavaScript values to parameters (Dates, Buffers, arrays, JSON), so a
// named statement binds exactly what `client.query(text, values)` would. A static import, which
// a service's bundler follows: looked up at run time (createRequire), it needed a node_modules
// beside the bundle, and an ES module bundled into CommonJS had no import.meta.url to look from.
const { prepareValue } = pgUtils;

/** What pg's connection offers a custom query (its `Submittable` protocol); only what we use. */
interface ProtocolConnection {
  parsedStatements: Record<string, string | undefined>;
  submittedNamedStatements: Record<string, string | undefined>;
  stream: { cork?: () => void; uncork?: () => void };
  parse(message: { text: string; name: string; types: number[] }): void;
  bind(message: { portal: string; statement: string; values: unknown[]; valueMapper: (value: unknown) => unknown }): void;
  describe(message: { type: 'P'; name: string }): void;
  close(message: { type: 'S'; name: string }): void;
  execute(message: { portal: string; rows: number }): void;
  sync(): void;
}

interface FieldDescription {
  name: string;
  dataTypeID: number;
}

/** How to turn a statement's raw rows into objects: learned from its RowDescription. */
interface RowShape {
  build: (values: Array<string | null>) => Record<string, unknown>;
}

/** The rows and command tag of a statement, shaped as pg's own results. */
export interface StatementResult {
  command: string;
  rowCount: number | null;
  rows: Array<Record<string, unknown>>;
}

// Row shapes per connection and statement: a connection learns a statement's shape when it
// parses it, so a schema change between two connections' Parse never mixes up columns.
const shapes = new WeakMap<object, Map<string, RowShape>>();

const commandTag = /^([A-Za-z]+)(?: (\d+))?(?: (\d+))?/;

/**
 * A named statement as pg would send it, minus what pg repeats on every call: pg sends a
 * Describe with every execution, so the server sends the row description again, and pg then
 * rebuilds the row template and looks up every column's type parser (`addFields`) for each
 * result. This sends Parse and Describe only the first time a connection runs the statement
 * (pg's own bookkeeping of parsed statements says when), then Bind, Execute and Sync, and
 * builds rows with a constructor made once per shape. It speaks pg's custom-query protocol
 * (the one pg-cursor uses), so the client's queue, errors and statement bookkeeping are pg's.
 *
 * `replaces` names earlier forms of the same statement: those this connection holds are closed
 * in the same round trip, before the Parse (see statement-naming.ts: a statement whose plan a
 * migration outdated is prepared again under a new name).
 *
 * @example const { rows } = await runNamedStatement(client, 'kw_1a2b…', 'select "id" from "users" where "id" = $1', [id])
 */
export function runNamedStatement(
  client: ClientBase,
  name: string,
  text: string,
  values: readonly unknown[],
  replaces?: readonly string[],
): Promise<StatementResult> {
  return new Promise((resolve, reject) => {
    // pg hands back the custom query itself (not a promise); its callback settles ours.
    const settle = (error: unknown, result?: StatementResult) => (error ? reject(error) : resolve(result!));
    void client.query(new NamedStatementQuery(name, text, values, settle, replaces) as unknown as QueryConfig);
  });
}

/** How a custom query reports its outcome, as pg's own queries do: `(error)` or `(null, result)`. */
type QueryCallback = (error: unknown, result?: StatementResult) => void;

function connectionOf(client: ClientBase): ProtocolConnection {
  return (client as unknown as { connection: ProtocolConnection }).connection;
}

/** Whether this connection has prepared `name` (pg's record of the statements it parsed). */
export function hasParsedStatement(client: ClientBase, name: string): boolean {
  return connectionOf(client).parsedStatements[name] !== undefined;
}

/**
 * Forgets every statement this connection prepared, after the server lost them (`DISCARD ALL`,
 * `DEALLOCATE ALL`): the next run of each prepares it again.
 */
export function forgetNamedStatements(client: ClientBase): void {
  const connection = connectionOf(client);
  for (const name of Object.keys(connection.parsedStatements)) delete connection.parsedStatements[name];
  shapes.delete(connection);
}

/**
 * Closes the named statement `name` on this connection, at the protocol level (a Close
 * message): PostgreSQL drops it, and does not mind a name it does not hold; PgBouncer 1.21+
 * forgets its client's name for it. Unlike SQL `DEALLOCATE`, which PgBouncer forwards as it is
 * and PostgreSQL refuses for a name it does not hold.
 *
 * @example await closeNamedStatement(client, 'kw_probe_1a2b')
 */
export function closeNamedStatement(client: ClientBase, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (error: unknown) => (error ? reject(error) : resolve());
    void client.query(new CloseStatementQuery(name, settle) as unknown as QueryConfig);
  });
}

class CloseStatementQuery {
  readonly #name: string;
  // What a trace shows for it. pg never reads it (a query object with submit() is sent as it
  // is), but OpenTelemetry's pg instrumentation wraps the callback, and so ends the span it
  // starts for every query, only for a query object with a text: without one, each Close left
  // a span open in the trace of the request whose connection the pooler probe checked.
  readonly text: string;
  // Settles through this property, as NamedStatementQuery does, so that whatever wraps it
  // (OpenTelemetry's pg instrumentation, pg's query_timeout) sees the end.
  callback: (error: unknown) => void;
  // Said, though it parses no statement, for the reason ScriptQuery says its own: without one,
  // the instrumentation's commenter had pg send this text as SQL, and the statement stayed prepared.
  readonly name = '';

  constructor(name: string, callback: (error: unknown) => void) {
    this.#name = name;
    this.text = `-- close statement ${name} (a protocol Close message, not SQL)`;
    this.callback = callback;
  }

  submit(connection: ProtocolConnection): Error | null {
    connection.close({ type: 'S', name: this.#name });
    connection.sync();
    delete connection.parsedStatements[this.#name];
    shapes.get(connection)?.delete(this.#name);
    return null;
  }

  handleReadyForQuery(): void {
    this.callback(null);
  }

  // pg drops the active query on an error, so no ReadyForQuery follows for it.
  handleError(error: unknown): void {
    this.callback(error);
  }

  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
}

/**
 * Records `name` as prepared on this connection, after the server said it already holds it
 * (names are derived from the text, so it holds this statement): the next run only binds it.
 */
export function adoptNamedStatement(client: ClientBase, name: string, text: string): void {
  connectionOf(client).parsedStatements[name] = text;
}

class NamedStatementQuery {
  // Read by pg's client: it records `name` → `text` as parsed when ParseComplete arrives.
  readonly name: string;
  readonly text: string;
  readonly #values: readonly unknown[];
  readonly #replaces: readonly string[] | undefined;
  #shapes: Map<string, RowShape> | undefined;
  #shape: RowShape | undefined;
  #describing = false;
  #rows: Array<Record<string, unknown>> = [];
  #command = '';
  #rowCount: number | null = null;
  #failed: unknown;
  // The outcome goes through this property, called at the end like pg's own queries call theirs:
  // whatever wraps it after construction sees the end of the statement. OpenTelemetry's pg
  // instrumentation replaces it with one that ends the query's span, and pg with one that
  // clears its query_timeout timer.
  callback: QueryCallback;

  constructor(name: string, text: string, values: readonly unknown[], callback: QueryCallback, replaces: readonly string[] | undefined) {
    this.name = name;
    this.#replaces = replaces;
    this.text = text;
    this.#values = values;
    this.callback = callback;
  }

  submit(connection: ProtocolConnection): Error | null {
    let known = shapes.get(connection);
    if (known === undefined) shapes.set(connection, (known = new Map()));
    this.#shapes = known;
    const parsed = connection.parsedStatements[this.name] ?? connection.submittedNamedStatements[this.name];
    if (parsed !== undefined && parsed !== this.text) {
      return new Error(`Prepared statements must be unique - '${this.name}' was used for a different statement`);
    }
    this.#shape = parsed === undefined ? undefined : known.get(this.name);
    this.#describing = this.#shape === undefined;
    connection.stream.cork?.();
    try {
      if (parsed === undefined) {
        for (const old of this.#replaces ?? []) {
          if (connection.parsedStatements[old] === undefined) continue;
          // The server answers CloseComplete, which pg does not pass on to a query.
          connection.close({ type: 'S', name: old });
          delete connection.parsedStatements[old];
          known.delete(old);
        }
        connection.parse({ text: this.text, name: this.name, types: [] });
        connection.submittedNamedStatements[this.name] = this.text;
      }
      connection.bind({ portal: '', statement: this.name, values: [...this.#values], valueMapper: prepareValue });
      if (this.#describing) connection.describe({ type: 'P', name: '' });
      connection.execute({ portal: '', rows: 0 });
      connection.sync();
    } catch (error) {
      // A value pg cannot convert: nothing was sent yet but Parse; end the exchange cleanly.
      this.#failed = error;
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  // pg calls these from its socket's data handler: what one throws would be uncaught there, and
  // end the service's process. A failure is the query's, reported at ReadyForQuery.
  handleRowDescription(message: { fields: FieldDescription[] }): void {
    try {
      this.#shape = shapeOf(message.fields);
    } catch (error) {
      this.#failed ??= error;
    }
  }

  handleDataRow(message: { fields: Array<string | null> }): void {
    if (this.#failed !== undefined) return;
    try {
      this.#rows.push(this.#shape!.build(message.fields));
    } catch (error) {
      this.#failed = error;
    }
  }

  handleCommandComplete(message: { text: string }): void {
    const match = commandTag.exec(message.text);
    if (match) {
      this.#command = match[1]!;
      const count = match[3] ?? match[2];
      this.#rowCount = count === undefined ? null : Number(count);
    }
  }

  handleReadyForQuery(): void {
    if (this.#failed !== undefined) return this.callback(this.#failed);
    // A statement that returns no rows answers Describe with NoData, which pg does not pass on.
    this.#shape ??= shapeOf([]);
    if (this.#describing) this.#shapes!.set(this.name, this.#shape);
    this.callback(null, { command: this.#command, rowCount: this.#rowCount, rows: this.#rows });
  }

  handleError(error: unknown): void {
    this.callback(this.#failed ?? error);
  }

  handleEmptyQuery(): void {}

  handlePortalSuspended(): void {}

  handleCopyInResponse(connection: { sendCopyFail(message: string): void }): void {
    connection.sendCopyFail('No source stream defined');
  }

  handleCopyData(): void {}
}

// Whether this process may compile code from strings: a service run with Node's
// --disallow-code-generation-from-strings (a common hardening) may not, and gets rows built
// by a loop instead, as pg builds them.
let compiledShapes = true;

function shapeOf(fields: FieldDescription[]): RowShape {
  const parsers = fields.map((field) => libraryTypeParsers.getTypeParser(field.dataTypeID, 'text'));
  if (compiledShapes) {
    // One object literal per shape, made once: every row of the statement gets the same hidden
    // class, and no per-result template is spread into each row as pg does.
    const body = `return (r) => ({ ${fields
      .map((field, i) => `${JSON.stringify(field.name)}: r[${i}] === null ? null : p[${i}](r[${i}])`)
      .join(', ')} });`;
    try {
      return { build: new Function('p', body)(parsers) as RowShape['build'] };
    } catch (error) {
      if (!(error instanceof EvalError)) throw error;
      compiledShapes = false;
    }
  }
  const names = fields.map((field) => field.name);
  return {
    build: (r) => {
      const row: Record<string, unknown> = {};
      for (let i = 0; i < names.length; i++) row[names[i]!] = r[i] === null ? null : parsers[i]!(r[i]!);
      return row;
    },
  };
}
