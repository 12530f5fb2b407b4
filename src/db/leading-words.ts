/**
 * A statement's first two words, upper-cased (`ALTER TABLE`, `SELECT PG_CATALOG.PG_ADVISORY_XACT_LOCK`):
 * what a message may say of it, never its values. Undefined where it starts with neither.
 *
 * @example leadingWords("alter table users add column x int default 5") // 'ALTER TABLE'
 */
export function leadingWords(text: string): string | undefined {
  return /^\s*([A-Za-z_]+(?:\s+[A-Za-z_.]+)?)/.exec(text)?.[1]?.replace(/\s+/g, ' ').toUpperCase();
}
