/**
 * The 1-based line of a 1-based character position in `text`, as PostgreSQL reports an
 * error's `position`: for migrations and restores alike, which send whole scripts.
 *
 * @example lineOfPosition("SELECT 'é';\nSELECT x", 13) // 2
 */
export function lineOfPosition(text: string, position: number): number {
  let line = 1;
  let seen = 0;
  // Code points, not UTF-16 units: PostgreSQL counts characters.
  for (const char of text) {
    if (++seen >= position) break;
    if (char === '\n') line++;
  }
  return line;
}
