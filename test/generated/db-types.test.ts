import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/package-root.js';

const root = packageRoot();

// Each line ends with what the compiler must say about it: `ok`, or `error` (then a type error
// on that line, and only there). Misspelt values sit next to right ones in the same position.
const fixture = `
import type { Kysely } from 'kysely';
import type { DB } from '../../generated/db.js';
import type * as phraseSuggestions from '../../src/queries/phrase-suggestions.js';
import type * as refreshTokens from '../../src/queries/refresh-tokens.js';
import type { RevokedReason } from '../../src/queries/revoke-live-tokens.js';
declare const db: Kysely<DB>;
db.selectFrom('phrase_suggestions').selectAll().where('status', '=', 'pending'); // ok
db.selectFrom('phrase_suggestions').selectAll().where('status', '=', 'pendng'); // error
db.updateTable('phrase_suggestions').set({ status: 'rejected' }); // ok
db.updateTable('phrase_suggestions').set({ status: 'rejectd' }); // error
db.updateTable('refresh_tokens').set({ revoked_reason: 'password_changed' }); // ok
db.updateTable('refresh_tokens').set({ revoked_reason: 'password_change' }); // error
db.updateTable('refresh_tokens').set({ revoked_reason: null }); // ok
export const approved: phraseSuggestions.SuggestionStatus = 'approved'; // ok
export const aproved: phraseSuggestions.SuggestionStatus = 'aproved'; // error
export const reuse: RevokedReason = 'reuse'; // ok
export const reused: RevokedReason = 'reused'; // error
export const device: refreshTokens.DeviceInfo = { userAgent: 'x', screen: { width: 1 } }; // ok
export const notAnObject: refreshTokens.DeviceInfo = ['x']; // error
export async function status(id: string) {
  const row = await db.selectFrom('phrase_suggestions').select('status').where('id', '=', id).executeTakeFirstOrThrow();
  const known: 'pending' | 'approved' | 'rejected' = row.status; // ok
  const tokens = await db.selectFrom('refresh_tokens').select('device_info').executeTakeFirstOrThrow();
  const info: refreshTokens.DeviceInfo | null = tokens.device_info; // ok
  return [known, info];
}
`;

describe('the generated types', () => {
  it('make a misspelt CHECK value a type error, and a right one not', () => {
    const fileName = path.join(root, 'test', 'generated', 'constrained-values.fixture.ts');
    const { config } = ts.readConfigFile(path.join(root, 'tsconfig.json'), ts.sys.readFile);
    const { options } = ts.parseJsonConfigFileContent(config, ts.sys, root);
    const host = ts.createCompilerHost(options);
    const readFile = host.readFile.bind(host);
    const getSourceFile = host.getSourceFile.bind(host);
    host.readFile = (name) => (name === fileName ? fixture : readFile(name));
    host.fileExists = (name) => name === fileName || ts.sys.fileExists(name);
    host.getSourceFile = (name, language, ...rest) =>
      name === fileName ? ts.createSourceFile(name, fixture, language, true) : getSourceFile(name, language, ...rest);
    const program = ts.createProgram([fileName], { ...options, noEmit: true }, host);
    const source = program.getSourceFile(fileName)!;

    // Only the fixture is checked (the rest of the program is typecheck's job), which is quick.
    const errorLines = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)].map(
      (diagnostic) => source.getLineAndCharacterOfPosition(diagnostic.start!).line,
    );
    const expected = fixture.split('\n').flatMap((line, index) => (line.endsWith('// error') ? [index] : []));
    expect(new Set(errorLines)).toEqual(new Set(expected));
    expect(expected).toHaveLength(6);
  });
});
