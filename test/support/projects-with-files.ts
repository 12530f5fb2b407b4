/** What {@link projectsWithFiles} asks of a vitest project (`TestProject` has it). */
export interface ProjectOfFiles {
  matchesTestGlob(moduleId: string): boolean;
}

/**
 * The projects that run at least one of the run's test files (none when the files are not
 * known). A file filter (`npx vitest run test/cli/commands.test.ts`) names files of the
 * `direct` project only, so the run need not start the servers and PgBouncers of the others.
 *
 * @example projectsWithFiles(vitest.projects, vitest.state.getPaths()) // [direct] for a file of test/cli/
 */
export function projectsWithFiles<P extends ProjectOfFiles>(projects: readonly P[], files: readonly string[]): P[] {
  return projects.filter((project) => files.some((file) => project.matchesTestGlob(file)));
}
