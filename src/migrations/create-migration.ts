import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ValidationError } from '../errors.js';

/**
 * Writes an empty up/down pair named `<UTC yyyymmddhhmmss>_<name>` into `migrationsDir` and
 * returns the two paths. The name is lower-cased, with runs of other characters turned into
 * underscores, so it sorts and reads like the existing migrations.
 *
 * @example
 * await createMigration('migrations', 'add timer labels')
 * // migrations/20251126103000_add_timer_labels.up.sql and .down.sql
 */
export async function createMigration(
  migrationsDir: string,
  name: string,
  now: Date = new Date(),
): Promise<{ upPath: string; downPath: string }> {
  const slug = name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  if (slug === '') throw new ValidationError('name', 'a migration needs a name made of letters or digits');
  const stamp = now.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const base = path.join(migrationsDir, `${stamp}_${slug}`);
  const upPath = `${base}.up.sql`;
  const downPath = `${base}.down.sql`;
  // 'wx' refuses to overwrite: two creates in the same second must not clobber each other.
  await writeFile(upPath, `-- ${slug}: describe why this change is needed.\n`, { flag: 'wx' });
  await writeFile(downPath, `-- Undo ${stamp}_${slug}.up.sql exactly.\n`, { flag: 'wx' });
  return { upPath, downPath };
}
