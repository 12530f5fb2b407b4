import { createHash } from 'node:crypto';
import { processWide } from './process-wide.js';

// SQL text → statement name, for every statement compiled by prepareQuery. Keyed by the very
// string the prepared query holds, so a lookup hashes nothing after the first (V8 caches a
// string's hash in the string). Process-wide: a pool made by one copy of this package (ESM or
// CommonJS build) names the statements that the other copy's query functions registered.
const names = processWide('statement-names', () => new Map<string, string>());

/**
 * Registers SQL that runs many times, so that the runtime may send it as a named (server-side
 * prepared) statement, parsed and planned once per connection. The name is derived from the
 * text: one text, one name, in every process. Behind a pooler a server connection may hold a
 * statement that another client prepared; with names derived from the text it is the same
 * statement, never a different one under our name.
 *
 * @example registerStatement('SELECT id FROM users WHERE id = $1') // 'kw_3f0c…'
 */
export function registerStatement(sqlText: string): string {
  let name = names.get(sqlText);
  if (name === undefined) {
    name = `kw_${createHash('sha256').update(sqlText).digest('hex').slice(0, 24)}`;
    names.set(sqlText, name);
  }
  return name;
}

/** The name of registered SQL (see {@link registerStatement}), or undefined for any other. */
export function statementNameOf(sqlText: string): string | undefined {
  return names.get(sqlText);
}
