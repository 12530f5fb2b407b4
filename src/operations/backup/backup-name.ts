// A backup's name starts with the name of the database it holds, so that backups of two
// databases in one folder under one <env> (production's, and a copy's backed up with
// NODE_ENV=production left set) are never taken for each other: retention counts one database's
// files only, and the newest production backup is production's. Database names may hold any
// character; those beyond letters, digits, '_' and '-' are percent-encoded (UTF-8), so the name
// stays one file name, never hidden (no leading '.'), and reads back unambiguously: an <env>
// holds no '_', so the database is everything before the last two '_'.
// A leading '-' is encoded too: a file name that starts with one reads as an option on a command line.
function databaseNamePart(database: string): string {
  return Array.from(new TextEncoder().encode(database), (byte, index) => {
    const char = String.fromCharCode(byte);
    return /[A-Za-z0-9_-]/.test(char) && !(index === 0 && char === '-') ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }).join('');
}

/**
 * How a backup is stored: `custom`, a pg_dump custom-format archive (`.dump`), made by a
 * native pg_dump; `sql-gzip`, plain SQL compressed with gzip (`.sql.gz`), made by the
 * WebAssembly pg_dump when no native one fits the server.
 */
export type BackupFormat = 'custom' | 'sql-gzip';

const extensions: Record<BackupFormat, string> = { custom: '.dump', 'sql-gzip': '.sql.gz' };

/**
 * The UTC time in ISO 8601 basic format with milliseconds (`20250914T134643.512Z`): sorts as
 * text in time order and has no ':' (awkward in file names, scp and Windows).
 *
 * @example
 * backupTimestamp(new Date('2025-09-14T13:46:43.512Z')) // '20250914T134643.512Z'
 */
export function backupTimestamp(at: Date): string {
  return at.toISOString().replace(/[-:]/g, '');
}

/**
 * The file name of a backup of `database`, under `environment`, taken at `at`.
 *
 * @example
 * backupFileName('kennwilliamson', 'production', new Date('2025-09-14T13:46:43.512Z'))
 * // 'kennwilliamson_production_20250914T134643.512Z.dump'
 * backupFileName('kennwilliamson_copy', 'development', new Date('2025-09-14T13:46:43.512Z'), 'sql-gzip')
 * // 'kennwilliamson_copy_development_20250914T134643.512Z.sql.gz'
 */
export function backupFileName(database: string, environment: string, at: Date, format: BackupFormat = 'custom'): string {
  return `${databaseNamePart(database)}_${environment}_${backupTimestamp(at)}${extensions[format]}`;
}

/**
 * Matches the backup files of one database and environment in either format (and nothing else:
 * no temporary files, no other database's or environment's), so retention counts both when a
 * machine switches between a native and the WebAssembly pg_dump.
 *
 * @example
 * backupFilePattern('kennwilliamson', 'production').test('kennwilliamson_production_20250914T134643.512Z.sql.gz') // true
 * backupFilePattern('kennwilliamson', 'production').test('kennwilliamson_copy_production_20250914T134643.512Z.dump') // false
 */
export function backupFilePattern(database: string, environment: string): RegExp {
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escape(databaseNamePart(database))}_${escape(environment)}_\\d{8}T\\d{6}(\\.\\d{3})?Z\\.(dump|sql\\.gz)$`);
}

/**
 * The time in a backup's file name, or undefined when it is no real UTC time (month 13,
 * 25 o'clock): the name pattern takes any digits, and retention must not sort by those.
 *
 * @example
 * backupTimeOf('kennwilliamson_production_20250914T134643.512Z.dump') // 2025-09-14T13:46:43.512Z
 * backupTimeOf('kennwilliamson_production_99999999T999999Z.dump') // undefined
 */
export function backupTimeOf(name: string): Date | undefined {
  const match = /_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{3}))?Z\.(?:dump|sql\.gz)$/.exec(name);
  if (!match) return undefined;
  const [year, month, day, hour, minute, second, milli] = match.slice(1).map((part) => Number(part ?? '0'));
  const at = new Date(Date.UTC(year!, month! - 1, day!, hour!, minute!, second!, milli!));
  // Date.UTC rolls what overflows into the next unit (day 32 is the 1st of the next month), and
  // reads years below 100 as 19xx: a time that does not print back as written is none.
  const written = `${match[1]}${match[2]}${match[3]}T${match[4]}${match[5]}${match[6]}.${match[7] ?? '000'}Z`;
  return !Number.isNaN(at.getTime()) && backupTimestamp(at) === written ? at : undefined;
}
