import { realpath, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, ValidationError } from '../errors.js';

// A migration belongs to this package's repository. A folder under node_modules is an
// installed copy: `npm ci` deletes what is written there, and the database would then record a
// migration whose file is "missing", which stops every later release. Followed through
// symlinks, so a workspace's link to the package's own folder is fine.
async function refuseInstalledCopy(migrationsDir: string): Promise<void> {
  const real = await realpath(migrationsDir).catch(() => path.resolve(migrationsDir));
  if (!real.split(path.sep).includes('node_modules')) return;
  throw new ConfigError(
    'migrations-dir',
    `migrate create writes into the migrations folder of the @kennwilliamson/db repository, and ${real} is inside ` +
      "node_modules, an installed copy of the package: npm ci would delete the new file, and every release after it " +
      "would stop on a 'missing' migration. Add the migration in the @kennwilliamson/db repository, then publish a new " +
      'version and update the dependency.',
  );
}

/**
 * Writes an empty up/down pair named `<UTC yyyymmddhhmmss>_<name>` into `migrationsDir` and
 * returns the two paths. The name is lower-cased, with runs of other characters turned into
 * underscores, so it sorts and reads like the existing migrations. For this repository only:
 * a folder inside `node_modules` (a service's installed copy) is refused with a `ConfigError`.
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
  await refuseInstalledCopy(migrationsDir);
  const stamp = now.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  const base = path.join(migrationsDir, `${stamp}_${slug}`);
  const upPath = `${base}.up.sql`;
  const downPath = `${base}.down.sql`;
  // 'wx' refuses to overwrite: two creates in the same second must not clobber each other.
  await writeFile(upPath, `-- ${slug}: describe why this change is needed.\n`, { flag: 'wx' });
  await writeFile(downPath, `-- Undo ${stamp}_${slug}.up.sql exactly.\n`, { flag: 'wx' });
  return { upPath, downPath };
}
