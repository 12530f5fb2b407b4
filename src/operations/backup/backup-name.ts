/** Every backup file name starts with this. */
export const backupNamePrefix = 'kennwilliamson';

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
 * The file name of a backup of `environment` taken at `at`.
 *
 * @example
 * backupFileName('production', new Date('2025-09-14T13:46:43.512Z'))
 * // 'kennwilliamson_production_20250914T134643.512Z.dump'
 * backupFileName('development', new Date('2025-09-14T13:46:43.512Z'), 'sql-gzip')
 * // 'kennwilliamson_development_20250914T134643.512Z.sql.gz'
 */
export function backupFileName(environment: string, at: Date, format: BackupFormat = 'custom'): string {
  return `${backupNamePrefix}_${environment}_${backupTimestamp(at)}${extensions[format]}`;
}

/**
 * Matches the backup files of one environment in either format (and nothing else: no
 * temporary or foreign files), so retention counts both when a machine switches between a
 * native and the WebAssembly pg_dump.
 *
 * @example
 * backupFilePattern('production').test('kennwilliamson_production_20250914T134643.512Z.dump') // true
 * backupFilePattern('production').test('kennwilliamson_production_20250914T134643.512Z.sql.gz') // true
 */
export function backupFilePattern(environment: string): RegExp {
  const escaped = environment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${backupNamePrefix}_${escaped}_\\d{8}T\\d{6}(\\.\\d{3})?Z\\.(dump|sql\\.gz)$`);
}
