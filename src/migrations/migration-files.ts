import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../errors.js';

/** A migration as found on disk: `<name>.up.sql` with its `<name>.down.sql`. */
export interface MigrationFile {
  /** `20250914134643_initial_schema`. */
  name: string;
  upPath: string;
  downPath: string;
  /** SHA-256 (hex) of the up file, recorded when the migration is applied. */
  checksum: string;
  /** The up file's SQL: the very bytes that were checksummed, so what runs is what is recorded. */
  upSql: string;
}

const upSuffix = '.up.sql';

/** SHA-256 of a migration's SQL, as hex. */
export function checksumOf(sql: string | Buffer): string {
  return createHash('sha256').update(sql).digest('hex');
}

/**
 * Lists the migrations in `dir`, oldest first (names start with a UTC timestamp, so name
 * order is time order), with each up file read once: its checksum and its SQL come from the
 * same read, so a file edited during a run cannot be recorded under another file's checksum.
 *
 * @example
 * const files = await listMigrationFiles('migrations') // [{ name: '20250914134643_initial_schema', … }]
 */
export async function listMigrationFiles(dir: string): Promise<MigrationFile[]> {
  const entries = await readdir(dir).catch((error: unknown) => {
    const code = (error as { code?: string }).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
    throw new ConfigError('migrationsDir', `the migrations folder ${dir} does not exist (migrationsDir, or --migrations-dir)`, { cause: error });
  });
  const names = entries
    .filter((file) => file.endsWith(upSuffix))
    .map((file) => file.slice(0, -upSuffix.length))
    .sort();
  return Promise.all(
    names.map(async (name) => {
      const upPath = path.join(dir, `${name}${upSuffix}`);
      const bytes = await readFile(upPath);
      return {
        name,
        upPath,
        downPath: path.join(dir, `${name}.down.sql`),
        checksum: checksumOf(bytes),
        upSql: bytes.toString('utf8'),
      };
    }),
  );
}
