/** Every backup file name starts with this. */
export const backupNamePrefix = 'kennwilliamson';

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
 */
export function backupFileName(environment: string, at: Date): string {
  return `${backupNamePrefix}_${environment}_${backupTimestamp(at)}.dump`;
}

/**
 * Matches the backup files of one environment (and nothing else: no temporary or foreign files).
 *
 * @example
 * backupFilePattern('production').test('kennwilliamson_production_20250914T134643.512Z.dump') // true
 */
export function backupFilePattern(environment: string): RegExp {
  const escaped = environment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${backupNamePrefix}_${escaped}_\\d{8}T\\d{6}(\\.\\d{3})?Z\\.dump$`);
}
