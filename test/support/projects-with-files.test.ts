import { describe, expect, inject, it } from 'vitest';
import { projectsWithFiles } from './projects-with-files.js';

// Stand-ins shaped like vitest.config.ts's projects: `direct` runs every file, the others fewer.
const project = (name: string, matches: (file: string) => boolean) => ({ name, matchesTestGlob: matches });
const direct = project('direct', () => true);
const pooler = project('pooler', (file) => file.includes('/test/queries/'));
const pg15 = project('pg15', (file) => file.includes('/test/queries/') || file.includes('/test/schema/'));
const projects = [direct, pooler, pg15];

describe('the projects whose servers a run starts', () => {
  it('are those with a file of the run: a filter on a command file needs the direct project only', () => {
    expect(projectsWithFiles(projects, ['/repo/test/cli/commands.test.ts']).map(({ name }) => name)).toEqual(['direct']);
  });

  it('are every project that runs one of the files, in their order', () => {
    const files = ['/repo/test/schema/constraints.test.ts', '/repo/test/cli/commands.test.ts'];
    expect(projectsWithFiles(projects, files).map(({ name }) => name)).toEqual(['direct', 'pg15']);
    expect(projectsWithFiles(projects, ['/repo/test/queries/users.test.ts'])).toEqual(projects);
  });

  it('are none when the run has not said which files it runs (the set-up then starts them all)', () => {
    expect(projectsWithFiles(projects, [])).toEqual([]);
  });

  it("include this file's own project: vitest told the run's set-up which files run, and its globs matched them", ({ task }) => {
    // Were they not (a vitest that no longer collects the paths first, or matches them
    // otherwise), every run would start every project's servers again, and nothing else would fail.
    expect(inject('runProjects')).toContain(task.file.projectName);
  });
});
