import { describe, expect, it } from 'vitest';
import { savepointBounds, savepointCommand } from '../../src/db/savepoint-bounds.js';

describe('savepointCommand', () => {
  it.each([
    ['SAVEPOINT "kw_savepoint_1"', { kind: 'savepoint', name: 'kw_savepoint_1' }],
    ['ROLLBACK TO SAVEPOINT "kw_savepoint_1"', { kind: 'rollback', name: 'kw_savepoint_1' }],
    ['RELEASE SAVEPOINT "kw_savepoint_1"', { kind: 'release', name: 'kw_savepoint_1' }],
    // Kysely's controlled transactions.
    ['savepoint "a"', { kind: 'savepoint', name: 'a' }],
    ['rollback to "a"', { kind: 'rollback', name: 'a' }],
    ['release "a"', { kind: 'release', name: 'a' }],
    // By hand: unquoted names fold to lower case, quoted ones keep theirs.
    ['ROLLBACK TRANSACTION TO SAVEPOINT Before_Import;', { kind: 'rollback', name: 'before_import' }],
    ['savepoint "Say ""hi"""', { kind: 'savepoint', name: 'Say "hi"' }],
  ])('reads %s', (sqlText, command) => {
    expect(savepointCommand(sqlText)).toEqual(command);
  });

  it.each(['ROLLBACK', 'COMMIT', 'SELECT 1', "SELECT 'savepoint a'", 'rollback to'])('leaves %s alone', (sqlText) => {
    expect(savepointCommand(sqlText)).toBeUndefined();
  });
});

describe('savepointBounds', () => {
  const bounds = (statementTimeoutMs: number) => ({ statementTimeoutMs, lockTimeoutMs: 1_000, deadlineMs: statementTimeoutMs + 5_000 });

  it('gives back the bounds a savepoint found, which it keeps for a second rollback; a release forgets it and those after it', () => {
    const marks = savepointBounds();
    marks.opened('outer', bounds(5_000), false);
    marks.opened('inner', bounds(60_000), true);
    expect(marks.rolledBackTo('outer')).toEqual({ name: 'outer', bounds: bounds(5_000), overridden: false });
    // inner went with the rollback to outer.
    expect(marks.rolledBackTo('inner')).toBeUndefined();
    expect(marks.rolledBackTo('outer')).toEqual({ name: 'outer', bounds: bounds(5_000), overridden: false });
    marks.released('outer');
    expect(marks.rolledBackTo('outer')).toBeUndefined();
  });
});
