import type { MigrationFile } from './migration-files.js';

/** One migration in `migrationStatus`. */
export interface MigrationState {
  name: string;
  /** `changed`: the file differs from what was applied; `missing`: recorded, but the file is gone. */
  state: 'applied' | 'pending' | 'changed' | 'missing';
  appliedAt?: Date | undefined;
  durationMs?: number | undefined;
}

/**
 * Each migration as the record and the files tell it together: applied, pending, changed (its
 * file differs from what was applied) or missing (recorded, but no file), in the order they
 * apply. What `migrate status` lists, and what a restore asks of a backup's record.
 *
 * @example migrationStates(files, [{ name: '20250914134643_initial_schema', checksum: 'ab…' }]) // [{ name, state: 'changed' }, { name, state: 'pending' }, …]
 */
export function migrationStates(
  files: readonly MigrationFile[],
  // The record's rows (AppliedMigration's fields, named here: this module's types reach the
  // package's declarations, and migration-storage's would bring Umzug's, which a node10
  // service without esModuleInterop cannot compile).
  applied: ReadonlyArray<{ name: string; checksum: string; appliedAt?: Date | undefined; durationMs?: number | undefined }>,
): MigrationState[] {
  const byName = new Map(files.map((file) => [file.name, file]));
  const recorded = new Set(applied.map((row) => row.name));
  const states: MigrationState[] = applied.map((row) => {
    const file = byName.get(row.name);
    const state = file === undefined ? 'missing' : file.checksum === row.checksum ? 'applied' : 'changed';
    return { name: row.name, state, appliedAt: row.appliedAt, durationMs: row.durationMs };
  });
  for (const file of files) if (!recorded.has(file.name)) states.push({ name: file.name, state: 'pending' });
  // In the order they apply (the files' names by code point, as listMigrationFiles sorts them,
  // and Umzug runs and reverts them): by the locale's order, `_Zeta` came after `_alpha` here,
  // and `migrate down` named the one it would not revert.
  return states.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
